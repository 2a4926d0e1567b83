//! AVX2 and AVX-512 twins of `generic::float_ggml`: `F32`, `F16` and `BF16` row kernels in
//! llama.cpp's order (`ggml_vec_dot_{f32,f16,bf16}` and llamafile's sgemm as built with
//! AVX-512 and AVX512-BF16), equal to the scalar ones bit for bit.
//!
//! A 16-lane accumulator is one `__m512`, or at the `Avx2` level a pair of `__m256` (lanes
//! 0–7, 8–15). `BF16` products use `VDPBF16PS` where the CPU has AVX512-BF16, otherwise its
//! emulation (the odd value of each pair first, two FMAs, subnormals flushed — as
//! `generic::float_ggml::dpbf16`).

use super::super::{ActRow, GgmlPath, RowsFn, TileFn};
use crate::ops::ggml::tree16 as tree16_scalar;
use crate::quant::GgmlType;
use std::arch::x86_64::*;

/// Weight element kinds (const generic parameter).
const F32: u8 = 0;
const F16: u8 = 1;

/// The kernel for float type `ty` in the order of `path`: 512-bit with `wide` (the CPU has
/// AVX-512), `VDPBF16PS` for `BF16` with `bf16_native` (it has AVX512-BF16), else 256-bit
/// (AVX2). The caller (`dot::rows_kernel_ggml`) vouches for the features.
pub(crate) fn rows_kernel(
    ty: GgmlType,
    path: GgmlPath,
    wide: bool,
    bf16_native: bool,
) -> Option<RowsFn> {
    use GgmlPath as P;
    use GgmlType as T;
    let bf16_native = wide && bf16_native;
    Some(match (ty, path, wide) {
        (T::F32, P::VecDot, true) => vecdot512::<F32>,
        (T::F16, P::VecDot, true) => vecdot512::<F16>,
        (T::F32, P::Sgemm, true) => sgemm512::<F32>,
        (T::F16, P::Sgemm, true) => sgemm512::<F16>,
        (T::F32, P::VecDot, false) => vecdot256::<F32>,
        (T::F16, P::VecDot, false) => vecdot256::<F16>,
        (T::F32, P::Sgemm, false) => sgemm256::<F32>,
        (T::F16, P::Sgemm, false) => sgemm256::<F16>,
        (T::BF16, P::VecDot, _) if bf16_native => bf16_vecdot_native,
        (T::BF16, P::Sgemm, _) if bf16_native => bf16_sgemm_native,
        (T::BF16, P::VecDot, true) => bf16_vecdot512,
        (T::BF16, P::Sgemm, true) => bf16_sgemm512,
        (T::BF16, P::VecDot, false) => bf16_vecdot256,
        (T::BF16, P::Sgemm, false) => bf16_sgemm256,
        _ => return None,
    })
}

/// The scalar tail of a `vec_dot` after `np` values: `ggml_vec_dot_f32` adds `w·x` in f32,
/// the f16 and bf16 ones in f64.
///
/// # Safety
/// `w` holds `n` values of kind `T` (`T == 2`: bf16), `x` `n` values.
#[inline(always)]
unsafe fn tail<const T: u8>(s: f64, w: *const u8, x: *const f32, np: usize, n: usize) -> f32 {
    // SAFETY: `i < n` (caller).
    let at = |i: usize| unsafe {
        match T {
            F32 => w.cast::<f32>().add(i).read_unaligned(),
            F16 => half::f16::from_bits(w.cast::<u16>().add(i).read_unaligned()).to_f32(),
            _ => f32::from_bits(u32::from(w.cast::<u16>().add(i).read_unaligned()) << 16),
        }
    };
    if T == F32 {
        let mut s = s as f32;
        for i in np..n {
            // SAFETY: `i < n`.
            s += at(i) * unsafe { *x.add(i) };
        }
        s
    } else {
        let mut s = s;
        for i in np..n {
            // SAFETY: `i < n`.
            s += f64::from(at(i) * unsafe { *x.add(i) });
        }
        s as f32
    }
}

// ---- AVX-512 ----

/// `ops::ggml::tree16` of the 16 lanes (`_mm512_reduce_add_ps` as GCC expands it).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn tree16(v: __m512) -> f32 {
    let s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_permute_ps::<0b01_00_11_10>(s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
}

/// 16 weights of kind `T` from value `i` as f32.
///
/// # Safety
/// AVX-512F and F16C are enabled in the caller; values `i..i + 16` are readable.
#[inline(always)]
unsafe fn load16<const T: u8>(w: *const u8, i: usize) -> __m512 {
    // SAFETY: caller.
    unsafe {
        if T == F32 {
            _mm512_loadu_ps(w.cast::<f32>().add(i))
        } else {
            _mm512_cvtph_ps(_mm256_loadu_si256(w.cast::<u16>().add(i).cast()))
        }
    }
}

/// `ggml_vec_dot_f32` / `ggml_vec_dot_f16` (`T`): 64 lanes, [`tree16`] of their tree, tail.
///
/// # Safety
/// The [`RowsFn`] contract (`a.f`: `n` activations, rounded to f16 for `F16`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn vecdot512<const T: u8>(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    nrows: usize,
    a: ActRow,
    y: *mut f32,
) {
    let np = n & !63;
    let x = a.f;
    for r in 0..nrows {
        let wr = w.wrapping_add(r * row_bytes);
        let mut acc = [_mm512_setzero_ps(); 4];
        for i in (0..np).step_by(64) {
            for (j, c) in acc.iter_mut().enumerate() {
                // SAFETY: `i + 16j + 16 <= np <= n`: inside row `r` and `x` (caller).
                unsafe {
                    let k = i + 16 * j;
                    *c = _mm512_fmadd_ps(load16::<T>(wr, k), _mm512_loadu_ps(x.add(k)), *c);
                }
            }
        }
        let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
        // SAFETY: row `r` and `x` hold `n` values; `y` has room for `nrows` results.
        unsafe { *y.add(r) = tail::<T>(f64::from(tree16(s)), wr, x, np, n) };
    }
}

/// llamafile's sgemm dot for `F32` / `F16` (`T`): 16 lanes, [`tree16`] (`n` a multiple of 16).
///
/// # Safety
/// The [`RowsFn`] contract.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn sgemm512<const T: u8>(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    nrows: usize,
    a: ActRow,
    y: *mut f32,
) {
    let x = a.f;
    for r in 0..nrows {
        let wr = w.wrapping_add(r * row_bytes);
        let mut acc = _mm512_setzero_ps();
        for i in (0..n / 16 * 16).step_by(16) {
            // SAFETY: `i + 16 <= n`: inside row `r` and `x`.
            unsafe { acc = _mm512_fmadd_ps(load16::<T>(wr, i), _mm512_loadu_ps(x.add(i)), acc) };
        }
        // SAFETY: `y` has room for `nrows` results.
        unsafe { *y.add(r) = tree16(acc) };
    }
}

/// Subnormal lanes flushed to a zero of their sign.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn ftz512(v: __m512) -> __m512 {
    let normal = _mm512_test_epi32_mask(_mm512_castps_si512(v), _mm512_set1_epi32(0x7f80_0000));
    let sign = _mm512_castsi512_ps(_mm512_and_si512(
        _mm512_castps_si512(v),
        _mm512_set1_epi32(i32::MIN),
    ));
    _mm512_mask_blend_ps(normal, sign, v)
}

/// One emulated `VDPBF16PS` over 32 values: weights `wp` (32 bf16), activations `xp` (32 f32
/// holding bf16 values).
///
/// # Safety
/// The `Avx512` set is enabled in the caller; both are readable for 32 values.
#[inline(always)]
unsafe fn dp512(acc: __m512, wp: *const u16, xp: *const f32) -> __m512 {
    // SAFETY: caller.
    unsafe {
        let wv = _mm512_loadu_si512(wp.cast());
        let w_odd = _mm512_castsi512_ps(_mm512_and_si512(wv, _mm512_set1_epi32(-65536)));
        let w_even = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(wv));
        let (lo, hi) = (_mm512_loadu_ps(xp), _mm512_loadu_ps(xp.add(16)));
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        let x_even = _mm512_permutex2var_ps(lo, even, hi);
        let x_odd = _mm512_permutex2var_ps(lo, odd, hi);
        let s = ftz512(_mm512_fmadd_ps(ftz512(w_odd), ftz512(x_odd), acc));
        ftz512(_mm512_fmadd_ps(ftz512(w_even), ftz512(x_even), s))
    }
}

/// One `VDPBF16PS` step over 32 values: the instruction itself (`NATIVE`, AVX512-BF16 enabled in
/// the caller) or its exact emulation ([`dp512`]).
///
/// # Safety
/// As [`dp512`], and AVX512-BF16 with `NATIVE`.
#[inline(always)]
unsafe fn dp_bf16<const NATIVE: bool>(acc: __m512, wp: *const u16, xp: *const f32) -> __m512 {
    // SAFETY: caller.
    unsafe {
        if NATIVE {
            _mm512_dpbf16_ps(acc, w_bh(wp), x_bh(xp))
        } else {
            dp512(acc, wp, xp)
        }
    }
}

/// `ggml_vec_dot_bf16` in the AVX512-BF16 order: two accumulators over 64-value steps, then
/// the scalar tail.
///
/// # Safety
/// The [`RowsFn`] contract; the features of [`dp_bf16`] are enabled in the caller.
#[inline(always)]
unsafe fn bf16_vecdot_rows<const NATIVE: bool>(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    nrows: usize,
    a: ActRow,
    y: *mut f32,
) {
    // SAFETY: the `RowsFn` contract: `i + 64 <= np <= n` stays inside row `r` and `x`, `y` has
    // room for `nrows` results; the features are enabled in the caller.
    unsafe {
        let np = n / 64 * 64;
        let x = a.f;
        for r in 0..nrows {
            let wr = w.wrapping_add(r * row_bytes);
            let wh = wr.cast::<u16>();
            let (mut c1, mut c2) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for i in (0..np).step_by(64) {
                c1 = dp_bf16::<NATIVE>(c1, wh.add(i), x.add(i));
                c2 = dp_bf16::<NATIVE>(c2, wh.add(i + 32), x.add(i + 32));
            }
            let s = f64::from(tree16(c1)) + f64::from(tree16(c2));
            *y.add(r) = tail::<2>(s, wr, x, np, n);
        }
    }
}

/// llamafile's sgemm dot for `BF16` in the AVX512-BF16 order (`n` a multiple of 32): one
/// accumulator, one 16-lane tree.
///
/// # Safety
/// As [`bf16_vecdot_rows`].
#[inline(always)]
unsafe fn bf16_sgemm_rows<const NATIVE: bool>(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    nrows: usize,
    a: ActRow,
    y: *mut f32,
) {
    // SAFETY: the `RowsFn` contract: `i + 32 <= n` stays inside row `r` and `x`, `y` has room
    // for `nrows` results; the features are enabled in the caller.
    unsafe {
        let x = a.f;
        for r in 0..nrows {
            let wh = w.wrapping_add(r * row_bytes).cast::<u16>();
            let mut acc = _mm512_setzero_ps();
            for i in (0..n / 32 * 32).step_by(32) {
                acc = dp_bf16::<NATIVE>(acc, wh.add(i), x.add(i));
            }
            *y.add(r) = tree16(acc);
        }
    }
}

/// `ggml_vec_dot_bf16` (AVX512-BF16 order), emulated.
///
/// # Safety
/// The [`RowsFn`] contract.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn bf16_vecdot512(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    nrows: usize,
    a: ActRow,
    y: *mut f32,
) {
    // SAFETY: the contract; the emulation's features are enabled here.
    unsafe { bf16_vecdot_rows::<false>(n, w, row_bytes, nrows, a, y) }
}

/// llamafile's sgemm dot for `BF16` (AVX512-BF16 order), emulated (`n` a multiple of 32).
///
/// # Safety
/// The [`RowsFn`] contract.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn bf16_sgemm512(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    nrows: usize,
    a: ActRow,
    y: *mut f32,
) {
    // SAFETY: as above.
    unsafe { bf16_sgemm_rows::<false>(n, w, row_bytes, nrows, a, y) }
}

/// 32 activations (f32 holding bf16 values) as bf16 pairs, exactly (`_mm512_cvtne2ps_pbh`, as
/// llamafile's `load<__m512bh>(const float *)`).
///
/// # Safety
/// AVX512-BF16 is enabled in the caller; `xp` is readable for 32 values.
#[inline(always)]
unsafe fn x_bh(xp: *const f32) -> __m512bh {
    // SAFETY: caller.
    unsafe { _mm512_cvtne2ps_pbh(_mm512_loadu_ps(xp.add(16)), _mm512_loadu_ps(xp)) }
}

/// 32 bf16 weights.
///
/// # Safety
/// AVX-512F is enabled in the caller; `wp` is readable for 32 values.
#[inline(always)]
unsafe fn w_bh(wp: *const u16) -> __m512bh {
    // SAFETY: caller; `__m512bh` and `__m512i` are both 64 plain bytes.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(wp.cast())) }
}

/// `ggml_vec_dot_bf16` with `VDPBF16PS`.
///
/// # Safety
/// The [`RowsFn`] contract; the CPU has AVX512-BF16 (checked where the kernel is chosen).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512bf16")]
unsafe fn bf16_vecdot_native(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    nrows: usize,
    a: ActRow,
    y: *mut f32,
) {
    // SAFETY: the contract; AVX512-BF16 is enabled here.
    unsafe { bf16_vecdot_rows::<true>(n, w, row_bytes, nrows, a, y) }
}

/// llamafile's sgemm dot for `BF16` with `VDPBF16PS` (`n` a multiple of 32).
///
/// # Safety
/// As [`bf16_vecdot_native`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512bf16")]
unsafe fn bf16_sgemm_native(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    nrows: usize,
    a: ActRow,
    y: *mut f32,
) {
    // SAFETY: as above.
    unsafe { bf16_sgemm_rows::<true>(n, w, row_bytes, nrows, a, y) }
}

/// The 4×4 tile kernel of llamafile's sgemm order for float type `ty` (see [`TileFn`]): each
/// output the same 16-lane sum as the `Sgemm` row kernel, each weight vector loaded once for
/// four tokens. AVX-512 only (sixteen 512-bit accumulators: the caller, `dot::tile_kernel_ggml`,
/// vouches for it), and for `BF16` only with AVX512-BF16 (`bf16_native`).
pub(crate) fn tile_kernel(ty: GgmlType, bf16_native: bool) -> Option<TileFn> {
    match ty {
        GgmlType::F32 => Some(sgemm_tile512::<F32>),
        GgmlType::F16 => Some(sgemm_tile512::<F16>),
        GgmlType::BF16 if bf16_native => Some(bf16_sgemm_tile_native),
        _ => None,
    }
}

/// [`sgemm512`] for 4 rows × 4 tokens.
///
/// # Safety
/// The [`TileFn`] contract (`n` a multiple of 16).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn sgemm_tile512<const T: u8>(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    x: *const f32,
    xs: usize,
    y: *mut f32,
    ys: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 4]; 4];
    for i in (0..n / 16 * 16).step_by(16) {
        // SAFETY: `i + 16 <= n`: inside the four activation rows (caller).
        let xv: [__m512; 4] =
            std::array::from_fn(|t| unsafe { _mm512_loadu_ps(x.add(t * xs + i)) });
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: inside weight row `r` (caller).
            let wv = unsafe { load16::<T>(w.wrapping_add(r * row_bytes), i) };
            for (a, xt) in row.iter_mut().zip(&xv) {
                *a = _mm512_fmadd_ps(wv, *xt, *a);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (t, a) in row.iter().enumerate() {
            // SAFETY: the output is writable at `t·ys + r` (caller).
            unsafe { *y.add(t * ys + r) = tree16(*a) };
        }
    }
}

/// [`bf16_sgemm_native`] for 4 rows × 4 tokens.
///
/// # Safety
/// The [`TileFn`] contract (`n` a multiple of 32); the CPU has AVX512-BF16.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,avx512bf16")]
unsafe fn bf16_sgemm_tile_native(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    x: *const f32,
    xs: usize,
    y: *mut f32,
    ys: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); 4]; 4];
    for i in (0..n / 32 * 32).step_by(32) {
        // SAFETY: `i + 32 <= n`: inside the four activation rows (caller).
        let xv: [__m512bh; 4] = std::array::from_fn(|t| unsafe { x_bh(x.add(t * xs + i)) });
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: inside weight row `r` (caller).
            let wv = unsafe { w_bh(w.wrapping_add(r * row_bytes).cast::<u16>().add(i)) };
            for (a, xt) in row.iter_mut().zip(&xv) {
                *a = _mm512_dpbf16_ps(*a, wv, *xt);
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        for (t, a) in row.iter().enumerate() {
            // SAFETY: the output is writable at `t·ys + r` (caller).
            unsafe { *y.add(t * ys + r) = tree16(*a) };
        }
    }
}

// ---- AVX2: a 16-lane accumulator as two halves ----

/// [`tree16`] of lanes `lo` (0–7) and `hi` (8–15).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tree16_256(lo: __m256, hi: __m256) -> f32 {
    let mut a = [0.0f32; 16];
    // SAFETY: `a` holds 16 values.
    unsafe {
        _mm256_storeu_ps(a.as_mut_ptr(), lo);
        _mm256_storeu_ps(a.as_mut_ptr().add(8), hi);
    }
    tree16_scalar(&a)
}

/// 8 weights of kind `T` from value `i` as f32.
///
/// # Safety
/// AVX2 and F16C are enabled in the caller; values `i..i + 8` are readable.
#[inline(always)]
unsafe fn load8<const T: u8>(w: *const u8, i: usize) -> __m256 {
    // SAFETY: caller.
    unsafe {
        if T == F32 {
            _mm256_loadu_ps(w.cast::<f32>().add(i))
        } else {
            _mm256_cvtph_ps(_mm_loadu_si128(w.cast::<u16>().add(i).cast()))
        }
    }
}

/// One FMA step of a 16-lane accumulator over values `k..k + 16`.
///
/// # Safety
/// AVX2, FMA, F16C enabled in the caller; values `k..k + 16` readable.
#[inline(always)]
unsafe fn fma16<const T: u8>(
    c: (__m256, __m256),
    w: *const u8,
    x: *const f32,
    k: usize,
) -> (__m256, __m256) {
    // SAFETY: caller.
    unsafe {
        (
            _mm256_fmadd_ps(load8::<T>(w, k), _mm256_loadu_ps(x.add(k)), c.0),
            _mm256_fmadd_ps(load8::<T>(w, k + 8), _mm256_loadu_ps(x.add(k + 8)), c.1),
        )
    }
}

/// [`vecdot512`] at the `Avx2` level.
///
/// # Safety
/// The [`RowsFn`] contract.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn vecdot256<const T: u8>(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    nrows: usize,
    a: ActRow,
    y: *mut f32,
) {
    let np = n & !63;
    let x = a.f;
    for r in 0..nrows {
        let wr = w.wrapping_add(r * row_bytes);
        let mut acc = [(_mm256_setzero_ps(), _mm256_setzero_ps()); 4];
        for i in (0..np).step_by(64) {
            for (j, c) in acc.iter_mut().enumerate() {
                // SAFETY: `i + 16j + 16 <= np <= n`: inside row `r` and `x`.
                *c = unsafe { fma16::<T>(*c, wr, x, i + 16 * j) };
            }
        }
        let half = |h: fn(&(__m256, __m256)) -> __m256| {
            _mm256_add_ps(
                _mm256_add_ps(h(&acc[0]), h(&acc[2])),
                _mm256_add_ps(h(&acc[1]), h(&acc[3])),
            )
        };
        let s = tree16_256(half(|c| c.0), half(|c| c.1));
        // SAFETY: row `r` and `x` hold `n` values; `y` has room for `nrows` results.
        unsafe { *y.add(r) = tail::<T>(f64::from(s), wr, x, np, n) };
    }
}

/// [`sgemm512`] at the `Avx2` level.
///
/// # Safety
/// The [`RowsFn`] contract.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn sgemm256<const T: u8>(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    nrows: usize,
    a: ActRow,
    y: *mut f32,
) {
    let x = a.f;
    for r in 0..nrows {
        let wr = w.wrapping_add(r * row_bytes);
        let mut acc = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in (0..n / 16 * 16).step_by(16) {
            // SAFETY: `i + 16 <= n`: inside row `r` and `x`.
            acc = unsafe { fma16::<T>(acc, wr, x, i) };
        }
        // SAFETY: `y` has room for `nrows` results.
        unsafe { *y.add(r) = tree16_256(acc.0, acc.1) };
    }
}

/// Subnormal lanes flushed to a zero of their sign.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ftz256(v: __m256) -> __m256 {
    let bits = _mm256_castps_si256(v);
    let exp = _mm256_and_si256(bits, _mm256_set1_epi32(0x7f80_0000));
    let sub = _mm256_cmpeq_epi32(exp, _mm256_setzero_si256());
    let sign = _mm256_castsi256_ps(_mm256_and_si256(bits, _mm256_set1_epi32(i32::MIN)));
    _mm256_blendv_ps(v, sign, _mm256_castsi256_ps(sub))
}

/// [`dp512`] for 8 lanes: 16 values (weights `wp` as bf16, activations `xp` as f32).
///
/// # Safety
/// AVX2, FMA enabled in the caller; both readable for 16 values.
#[inline(always)]
unsafe fn dp256(acc: __m256, wp: *const u16, xp: *const f32) -> __m256 {
    // SAFETY: caller.
    unsafe {
        let wv = _mm256_loadu_si256(wp.cast());
        let w_odd = _mm256_castsi256_ps(_mm256_and_si256(wv, _mm256_set1_epi32(-65536)));
        let w_even = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(wv));
        let (a, b) = (_mm256_loadu_ps(xp), _mm256_loadu_ps(xp.add(8)));
        // [a0 a2 b0 b2 | a4 a6 b4 b6] → [a0 a2 a4 a6 b0 b2 b4 b6] (and the odd ones).
        let fix = |v: __m256| {
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(v)))
        };
        let x_even = fix(_mm256_shuffle_ps::<0b10_00_10_00>(a, b));
        let x_odd = fix(_mm256_shuffle_ps::<0b11_01_11_01>(a, b));
        let s = ftz256(_mm256_fmadd_ps(ftz256(w_odd), ftz256(x_odd), acc));
        ftz256(_mm256_fmadd_ps(ftz256(w_even), ftz256(x_even), s))
    }
}

/// One emulated `VDPBF16PS` of a 16-lane accumulator over the 32 values from `i`.
///
/// # Safety
/// As [`dp256`], for 32 values.
#[inline(always)]
unsafe fn dp16x2(c: (__m256, __m256), wh: *const u16, x: *const f32, i: usize) -> (__m256, __m256) {
    // SAFETY: caller.
    unsafe {
        (
            dp256(c.0, wh.add(i), x.add(i)),
            dp256(c.1, wh.add(i + 16), x.add(i + 16)),
        )
    }
}

/// [`bf16_vecdot512`] at the `Avx2` level.
///
/// # Safety
/// The [`RowsFn`] contract.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bf16_vecdot256(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    nrows: usize,
    a: ActRow,
    y: *mut f32,
) {
    let np = n / 64 * 64;
    let x = a.f;
    for r in 0..nrows {
        let wr = w.wrapping_add(r * row_bytes);
        let wh = wr.cast::<u16>();
        let zero = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (mut c1, mut c2) = (zero, zero);
        for i in (0..np).step_by(64) {
            // SAFETY: `i + 64 <= np <= n`: inside row `r` and `x`.
            unsafe {
                c1 = dp16x2(c1, wh, x, i);
                c2 = dp16x2(c2, wh, x, i + 32);
            }
        }
        let s = f64::from(tree16_256(c1.0, c1.1)) + f64::from(tree16_256(c2.0, c2.1));
        // SAFETY: as above; `y` has room for `nrows` results.
        unsafe { *y.add(r) = tail::<2>(s, wr, x, np, n) };
    }
}

/// [`bf16_sgemm512`] at the `Avx2` level.
///
/// # Safety
/// The [`RowsFn`] contract.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bf16_sgemm256(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    nrows: usize,
    a: ActRow,
    y: *mut f32,
) {
    let x = a.f;
    for r in 0..nrows {
        let wh = w.wrapping_add(r * row_bytes).cast::<u16>();
        let mut acc = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in (0..n / 32 * 32).step_by(32) {
            // SAFETY: `i + 32 <= n`: inside row `r` and `x`.
            acc = unsafe { dp16x2(acc, wh, x, i) };
        }
        // SAFETY: `y` has room for `nrows` results.
        unsafe { *y.add(r) = tree16_256(acc.0, acc.1) };
    }
}

#[cfg(test)]
mod tests {
    //! The emulated `VDPBF16PS` kernels against the scalar twins and, where the CPU has
    //! AVX512-BF16, the instruction itself (the fixture tests reach only the kernels this CPU
    //! selects), on values that hit the flushes: subnormal weights and activations, products
    //! that underflow, sums that cancel.
    use super::*;
    use crate::dot::generic::float_ggml as scalar;
    use crate::isa::Isa;

    fn rows(seed: u64, n: usize, nrows: usize) -> (Vec<u8>, Vec<f32>) {
        let mut s = seed;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut bits = |i: usize| -> u16 {
            let r = next();
            match i % 7 {
                // Subnormal.
                0 => (r as u16) & 0x807f,
                // Tiny normal: products underflow.
                1 => ((r as u16) & 0x807f) | 0x0080 | (((r >> 20) as u16 & 3) << 7),
                _ => ((r as u16) & 0x80ff) | 0x3c00 | (((r >> 24) as u16 & 7) << 7),
            }
        };
        let w: Vec<u8> = (0..n * nrows).flat_map(|i| bits(i).to_le_bytes()).collect();
        let x = (0..n)
            .map(|i| scalar::round_bf16(f32::from_bits(u32::from(bits(i + 3)) << 16)))
            .collect();
        (w, x)
    }

    fn run(f: RowsFn, n: usize, w: &[u8], nrows: usize, x: &[f32]) -> Vec<u32> {
        let mut y = vec![0.0f32; nrows];
        let a = ActRow {
            f: x.as_ptr(),
            qs: std::ptr::null(),
            d: std::ptr::null(),
            sums: std::ptr::null(),
            s: std::ptr::null(),
        };
        // SAFETY: `w` holds `nrows` rows of `n` bf16 values, `x` `n` values, `y` `nrows`; the
        // caller checked the kernel's instruction set.
        unsafe { f(n, w.as_ptr(), 2 * n, nrows, a, y.as_mut_ptr()) };
        y.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn emulated_bf16_kernels_equal_scalar_and_vdpbf16ps() {
        let native = std::arch::is_x86_feature_detected!("avx512bf16");
        let avx512 = Isa::best_supported() >= Isa::Avx512;
        if Isa::best_supported() < Isa::Avx2 {
            return;
        }
        for (seed, n) in [(1, 64), (2, 96), (3, 1056), (4, 160), (5, 1000), (6, 32)] {
            let nrows = 5;
            let (w, x) = rows(seed, n, nrows);
            for path in [GgmlPath::VecDot, GgmlPath::Sgemm] {
                if path == GgmlPath::Sgemm && n % 32 != 0 {
                    continue;
                }
                let want = run(
                    scalar::rows_kernel(GgmlType::BF16, path).unwrap(),
                    n,
                    &w,
                    nrows,
                    &x,
                );
                let (emu256, emu512, nat): (RowsFn, RowsFn, RowsFn) = match path {
                    GgmlPath::VecDot => (bf16_vecdot256, bf16_vecdot512, bf16_vecdot_native),
                    _ => (bf16_sgemm256, bf16_sgemm512, bf16_sgemm_native),
                };
                assert_eq!(run(emu256, n, &w, nrows, &x), want, "avx2 {path:?} n={n}");
                if avx512 {
                    assert_eq!(run(emu512, n, &w, nrows, &x), want, "avx512 {path:?} n={n}");
                }
                if native {
                    assert_eq!(run(nat, n, &w, nrows, &x), want, "vdpbf16ps {path:?} n={n}");
                }
            }
        }
    }
}
