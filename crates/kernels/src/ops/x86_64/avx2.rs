//! AVX2 + FMA + F16C twins of the kernels in `ops::generic`, 8 lanes. Tails go through
//! `vmaskmovps` (masked-out lanes are never accessed) for f32 and a small stack buffer for
//! 16-bit formats.
//!
//! Every function carries `#[target_feature]` for the whole `Isa::Avx2` set; callers must have
//! checked that the CPU has it (`Ops::new` resolves them, once, through `Isa::dispatch`).

use std::arch::x86_64::*;

use half::{bf16, f16};

use crate::ops::generic::Rows;

/// All-ones in lanes `0..r` (`r < 8`) as a `vmaskmovps` mask.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tail_mask(r: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(r as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// Up to 8 f32 from `p[i..n]`, zeros past `n`.
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set, `p` is valid for `n` reads and `i < n`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn loadp(p: *const f32, n: usize, i: usize) -> __m256 {
    // SAFETY: either 8 elements from `i` are inside `p[..n]`, or the mask selects only lanes
    // below `n` and masked-out lanes are not accessed.
    unsafe {
        if i + 8 <= n {
            _mm256_loadu_ps(p.add(i))
        } else {
            _mm256_maskload_ps(p.add(i), tail_mask(n - i))
        }
    }
}

/// Stores the lanes of `v` that fall in `p[i..n]`.
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set, `p` is valid for `n` writes and `i < n`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn storep(p: *mut f32, n: usize, i: usize, v: __m256) {
    // SAFETY: as in `loadp`.
    unsafe {
        if i + 8 <= n {
            _mm256_storeu_ps(p.add(i), v);
        } else {
            _mm256_maskstore_ps(p.add(i), tail_mask(n - i), v);
        }
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load(x: &[f32], i: usize) -> __m256 {
    // SAFETY: `x` is valid for `x.len()` reads and every caller passes `i < x.len()`.
    unsafe { loadp(x.as_ptr(), x.len(), i) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store(x: &mut [f32], i: usize, v: __m256) {
    // SAFETY: `x` is valid for `x.len()` writes and every caller passes `i < x.len()`.
    unsafe { storep(x.as_mut_ptr(), x.len(), i, v) }
}

/// 8 bit patterns of a 16-bit float format from `x[i..]`, zeros past the end.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_u16(x: &[u16], i: usize) -> __m128i {
    let mut t = [0u16; 8];
    let src = &x[i..x.len().min(i + 8)];
    t[..src.len()].copy_from_slice(src);
    // SAFETY: `t` holds 8 u16 = 16 bytes.
    unsafe { _mm_loadu_si128(t.as_ptr().cast()) }
}

/// Stores the 8 u16 lanes of `v` that fall inside `x[i..]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store_u16(x: &mut [u16], i: usize, v: __m128i) {
    let mut t = [0u16; 8];
    // SAFETY: `t` holds 8 u16 = 16 bytes.
    unsafe { _mm_storeu_si128(t.as_mut_ptr().cast(), v) };
    let end = x.len().min(i + 8);
    x[i..end].copy_from_slice(&t[..end - i]);
}

fn f16_bits(x: &[f16]) -> &[u16] {
    // SAFETY: `f16` is `repr(transparent)` over `u16`, so the slices have the same layout.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) }
}

fn bf16_bits(x: &[bf16]) -> &[u16] {
    // SAFETY: `bf16` is `repr(transparent)` over `u16`.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast(), x.len()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_f16(x: &[u16], i: usize) -> __m256 {
    if i + 8 <= x.len() {
        // SAFETY: 8 u16 from `i` are inside `x`.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(x.as_ptr().add(i).cast()) })
    } else {
        _mm256_cvtph_ps(load_u16(x, i))
    }
}

/// `e^x`, same algorithm as the AVX-512 version but with `2^n` applied by adding `n` to the
/// exponent field, valid for results in the normal range: below −87 gives 0 (the true value is
/// under 1.7e-38), above 88.72 gives +inf, NaN stays NaN.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn exp(x: __m256) -> __m256 {
    let shifter = _mm256_set1_ps(f32::from_bits(0x4B40_0000)); // 1.5 · 2^23
    let z = _mm256_fmadd_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E), shifter);
    let n = _mm256_sub_ps(z, shifter);
    let b = _mm256_fnmadd_ps(n, _mm256_set1_ps(f32::from_bits(0x3F31_7200)), x);
    let b = _mm256_fnmadd_ps(n, _mm256_set1_ps(f32::from_bits(0x35BF_BE8E)), b);
    let u = _mm256_mul_ps(b, b);
    let p45 = _mm256_fmadd_ps(
        _mm256_set1_ps(f32::from_bits(0x3C07_2010)),
        b,
        _mm256_set1_ps(f32::from_bits(0x3D2B_9F17)),
    );
    let p23 = _mm256_fmadd_ps(
        _mm256_set1_ps(f32::from_bits(0x3E2A_AF33)),
        b,
        _mm256_set1_ps(f32::from_bits(0x3EFF_FEDB)),
    );
    let p01 = _mm256_fmadd_ps(
        _mm256_set1_ps(f32::from_bits(0x3F7F_FFF6)),
        b,
        _mm256_set1_ps(1.0),
    );
    let j = _mm256_fmadd_ps(_mm256_fmadd_ps(p45, u, p23), u, p01);
    // `z`'s low mantissa bits hold n as an integer; shifted into the exponent field.
    let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
    let r = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(j), e));
    let hi = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(88.722_83));
    let lo = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(-87.0));
    let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
    let r = _mm256_blendv_ps(r, _mm256_set1_ps(f32::INFINITY), hi);
    let r = _mm256_andnot_ps(lo, r);
    _mm256_blendv_ps(r, x, nan)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn silu(x: __m256) -> __m256 {
    let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e))
}

/// See the AVX-512 `gelu` for the sigmoid form.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn gelu(x: __m256) -> __m256 {
    let p = _mm256_fmadd_ps(
        _mm256_set1_ps(0.044_715),
        _mm256_mul_ps(x, x),
        _mm256_set1_ps(1.0),
    );
    let z = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(-2.0 * 0.797_884_6), x), p);
    _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), exp(z)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn add_f64(acc: &mut [__m256d; 2], v: __m256) {
    acc[0] = _mm256_add_pd(acc[0], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    acc[1] = _mm256_add_pd(acc[1], _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(v)));
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_pd(acc: [__m256d; 2]) -> f64 {
    let v = _mm256_add_pd(acc[0], acc[1]);
    let v = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
    _mm_cvtsd_f64(_mm_add_sd(v, _mm_unpackhi_pd(v, v)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_ps(v: __m256) -> f32 {
    let v = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
    _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub fn sum_squares(x: &[f32]) -> f64 {
    let mut acc = [_mm256_setzero_pd(); 2];
    for i in (0..x.len()).step_by(8) {
        let v = load(x, i);
        add_f64(&mut acc, _mm256_mul_ps(v, v));
    }
    hsum_pd(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub fn sum(x: &[f32]) -> f64 {
    let mut acc = [_mm256_setzero_pd(); 2];
    for i in (0..x.len()).step_by(8) {
        add_f64(&mut acc, load(x, i));
    }
    hsum_pd(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub fn sum_squared_deviations(x: &[f32], mean: f32) -> f64 {
    let vm = _mm256_set1_ps(mean);
    let mut acc = [_mm256_setzero_pd(); 2];
    for i in (0..x.len()).step_by(8) {
        let mut d = _mm256_sub_ps(load(x, i), vm);
        if i + 8 > x.len() {
            // Lanes past the end must contribute 0, not mean².
            d = _mm256_and_ps(d, _mm256_castsi256_ps(tail_mask(x.len() - i)));
        }
        add_f64(&mut acc, _mm256_mul_ps(d, d));
    }
    hsum_pd(acc)
}

/// # Safety
/// The CPU supports the `Isa::Avx2` set; `x` valid for `n` reads, `y` for `n` writes
/// (`y == x` allowed), `w`/`b` for `n` reads when not null.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn scale_mul_add(
    n: usize,
    x: *const f32,
    s: f32,
    shift: f32,
    w: *const f32,
    b: *const f32,
    y: *mut f32,
) {
    let vs = _mm256_set1_ps(s);
    let vsh = _mm256_set1_ps(shift);
    for i in (0..n).step_by(8) {
        // SAFETY: `i < n` and every pointer is valid for `n` elements (caller contract); element
        // `i` of `x` is read before element `i` of `y` is written.
        unsafe {
            let mut v = _mm256_mul_ps(_mm256_sub_ps(loadp(x, n, i), vsh), vs);
            if !w.is_null() {
                v = _mm256_mul_ps(v, loadp(w, n, i));
            }
            if !b.is_null() {
                v = _mm256_add_ps(v, loadp(b, n, i));
            }
            storep(y, n, i, v);
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = _mm256_set1_ps(f32::NEG_INFINITY);
    let full = x.len() / 8 * 8;
    for i in (0..full).step_by(8) {
        acc = _mm256_max_ps(acc, load(x, i));
    }
    let v = _mm_max_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
    let v = _mm_max_ps(v, _mm_movehl_ps(v, v));
    let v = _mm_max_ss(v, _mm_movehdup_ps(v));
    x[full..].iter().copied().fold(_mm_cvtss_f32(v), f32::max)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub fn exp_sub_sum(x: &mut [f32], max: f32) -> f64 {
    let vm = _mm256_set1_ps(max);
    let mut acc = [_mm256_setzero_pd(); 2];
    for i in (0..x.len()).step_by(8) {
        let mut e = exp(_mm256_sub_ps(load(x, i), vm));
        if i + 8 > x.len() {
            e = _mm256_and_ps(e, _mm256_castsi256_ps(tail_mask(x.len() - i)));
        }
        store(x, i, e);
        add_f64(&mut acc, e);
    }
    hsum_pd(acc)
}

#[target_feature(enable = "avx2,fma,f16c")]
pub fn scale(x: &mut [f32], s: f32) {
    let vs = _mm256_set1_ps(s);
    for i in (0..x.len()).step_by(8) {
        let v = _mm256_mul_ps(load(x, i), vs);
        store(x, i, v);
    }
}

/// # Safety
/// The CPU supports the `Isa::Avx2` set; `g` valid for `n` reads, `y` for `n` writes (`y` may
/// equal `g` or `u`), `u` for `n` reads when not null.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn act_mul(n: usize, gelu_act: bool, g: *const f32, u: *const f32, y: *mut f32) {
    for i in (0..n).step_by(8) {
        // SAFETY: `i < n`, pointers valid for `n` elements (caller contract).
        unsafe {
            let x = loadp(g, n, i);
            let mut v = if gelu_act { gelu(x) } else { silu(x) };
            if !u.is_null() {
                v = _mm256_mul_ps(v, loadp(u, n, i));
            }
            storep(y, n, i, v);
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub fn add(acc: &mut [f32], x: &[f32]) {
    let n = acc.len().min(x.len());
    let (acc, x) = (&mut acc[..n], &x[..n]);
    for i in (0..n).step_by(8) {
        let v = _mm256_add_ps(load(acc, i), load(x, i));
        store(acc, i, v);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub fn mul(acc: &mut [f32], x: &[f32]) {
    let n = acc.len().min(x.len());
    let (acc, x) = (&mut acc[..n], &x[..n]);
    for i in (0..n).step_by(8) {
        let v = _mm256_mul_ps(load(acc, i), load(x, i));
        store(acc, i, v);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub fn f16_to_f32(out: &mut [f32], x: &[f16]) {
    let n = out.len().min(x.len());
    let (out, x) = (&mut out[..n], f16_bits(&x[..n]));
    for i in (0..n).step_by(8) {
        store(out, i, load_f16(x, i));
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub fn f32_to_f16(out: &mut [f16], x: &[f32]) {
    let n = out.len().min(x.len());
    let x = &x[..n];
    // SAFETY: `f16` is `repr(transparent)` over `u16`; the slices have the same layout.
    let out: &mut [u16] = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), n) };
    for i in (0..n).step_by(8) {
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(load(x, i));
        store_u16(out, i, h);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub fn bf16_to_f32(out: &mut [f32], x: &[bf16]) {
    let n = out.len().min(x.len());
    let (out, x) = (&mut out[..n], bf16_bits(&x[..n]));
    for i in (0..n).step_by(8) {
        let w = _mm256_cvtepu16_epi32(load_u16(x, i));
        store(out, i, _mm256_castsi256_ps(_mm256_slli_epi32::<16>(w)));
    }
}

/// Round to nearest even on the bit pattern, NaN kept quiet (as `half::bf16::from_f32`).
#[target_feature(enable = "avx2,fma,f16c")]
pub fn f32_to_bf16(out: &mut [bf16], x: &[f32]) {
    let n = out.len().min(x.len());
    let x = &x[..n];
    // SAFETY: `bf16` is `repr(transparent)` over `u16`.
    let out: &mut [u16] = unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr().cast(), n) };
    for i in (0..n).step_by(8) {
        let bits = _mm256_castps_si256(load(x, i));
        let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(1));
        let rounded = _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7FFF)), lsb);
        let rounded = _mm256_srli_epi32::<16>(rounded);
        let abs = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFF_FFFF));
        let nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7F80_0000));
        let quiet = _mm256_or_si256(_mm256_srli_epi32::<16>(bits), _mm256_set1_epi32(0x0040));
        let r = _mm256_blendv_epi8(rounded, quiet, nan);
        // Every lane is below 0x10000, so unsigned saturation keeps it exactly.
        let packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256::<1>(r));
        store_u16(out, i, packed);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
pub fn dot_f16(q: &[f32], k: &[f16]) -> f32 {
    let n = q.len().min(k.len());
    let (q, k) = (&q[..n], f16_bits(&k[..n]));
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        acc0 = _mm256_fmadd_ps(load(q, i), load_f16(k, i), acc0);
        acc1 = _mm256_fmadd_ps(load(q, i + 8), load_f16(k, i + 8), acc1);
        i += 16;
    }
    while i < n {
        acc0 = _mm256_fmadd_ps(load(q, i), load_f16(k, i), acc0);
        i += 8;
    }
    hsum_ps(_mm256_add_ps(acc0, acc1))
}

#[target_feature(enable = "avx2,fma,f16c")]
pub fn axpy_f16(acc: &mut [f32], w: f32, v: &[f16]) {
    let n = acc.len().min(v.len());
    let (acc, v) = (&mut acc[..n], f16_bits(&v[..n]));
    let vw = _mm256_set1_ps(w);
    for i in (0..n).step_by(8) {
        let r = _mm256_fmadd_ps(vw, load_f16(v, i), load(acc, i));
        store(acc, i, r);
    }
}

/// See the AVX-512 `rope_rotate` for the cache layout.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn rope_rotate(head: &mut [f32], cos: &[f32], sin: &[f32], n_rot: usize, neox: bool) {
    if neox {
        let half = n_rot / 2;
        let (a, b) = head[..n_rot].split_at_mut(half);
        let (cos, sin) = (&cos[..half], &sin[..half]);
        for i in (0..half).step_by(8) {
            let (x0, x1, c, s) = (load(a, i), load(b, i), load(cos, i), load(sin, i));
            store(a, i, _mm256_fmsub_ps(x0, c, _mm256_mul_ps(x1, s)));
            store(b, i, _mm256_fmadd_ps(x0, s, _mm256_mul_ps(x1, c)));
        }
    } else {
        let x = &mut head[..n_rot];
        let (cos, sin) = (&cos[..n_rot], &sin[..n_rot]);
        for i in (0..n_rot).step_by(8) {
            let v = load(x, i);
            let swapped = _mm256_permute_ps::<0b1011_0001>(v);
            let (c, s) = (load(cos, i), load(sin, i));
            // Even lanes fuse `x0·c`, odd lanes `x0·s` (see `generic::rope_rotate`).
            let even = _mm256_fmadd_ps(v, c, _mm256_mul_ps(swapped, s));
            let odd = _mm256_fmadd_ps(swapped, s, _mm256_mul_ps(v, c));
            store(x, i, _mm256_blend_ps::<0b1010_1010>(even, odd));
        }
    }
}

/// 8 f16 from `p[..len]` widened, zeros past `len` (`len <= 8`).
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set; `p` is valid for `len` reads.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16_ptr(p: *const f16, len: usize) -> __m256 {
    if len >= 8 {
        // SAFETY: 8 elements are readable (caller contract).
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
    } else {
        let mut t = [0u16; 8];
        // SAFETY: `len` elements are readable; `t` has room for 8.
        unsafe { std::ptr::copy_nonoverlapping(p.cast::<u16>(), t.as_mut_ptr(), len) };
        // SAFETY: `t` holds 16 bytes.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(t.as_ptr().cast()) })
    }
}

/// See the AVX-512 `attn_scores_g`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn attn_scores_g<const G: usize>(
    q: &[f32],
    k: &Rows<'_>,
    scale: f32,
    scores: &mut [f32],
    ld: usize,
) {
    let hd = k.hd();
    assert!(q.len() >= G * hd && (k.n() == 0 || scores.len() >= (G - 1) * ld + k.n()));
    for j in 0..k.n() {
        let mut acc = [_mm256_setzero_ps(); G];
        for d in (0..hd).step_by(8) {
            // SAFETY: `Rows::new` checked that row `j` holds `hd` elements; `q` holds `G · hd`
            // (asserted); loads stop at `hd`.
            unsafe {
                let kv = load_f16_ptr(k.ptr().add(j * k.stride() + d), hd - d);
                for (h, a) in acc.iter_mut().enumerate() {
                    let qv = loadp(q.as_ptr().add(h * hd), hd, d);
                    *a = _mm256_fmadd_ps(qv, kv, *a);
                }
            }
        }
        for (h, a) in acc.iter().enumerate() {
            scores[h * ld + j] = hsum_ps(*a) * scale;
        }
    }
}

/// See the AVX-512 `attn_accum_g`: `C` 8-wide chunks per pass.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn attn_accum_g<const G: usize, const C: usize>(
    p: &[f32],
    ld: usize,
    v: &Rows<'_>,
    out: &mut [f32],
) {
    let hd = v.hd();
    let n = v.n();
    assert!(out.len() >= G * hd && (n == 0 || p.len() >= (G - 1) * ld + n));
    let mut d = 0;
    while d < hd {
        let cn = if d + 8 * C <= hd { C } else { 1 };
        let mut acc = [[_mm256_setzero_ps(); C]; G];
        for (h, a) in acc.iter_mut().enumerate() {
            for (c, ac) in a.iter_mut().enumerate().take(cn) {
                // SAFETY: `out` holds `G · hd` values (asserted); the load stops at `hd`.
                *ac = unsafe { loadp(out.as_ptr().add(h * hd), hd, d + 8 * c) };
            }
        }
        for j in 0..n {
            let mut vv = [_mm256_setzero_ps(); C];
            for (c, x) in vv.iter_mut().enumerate().take(cn) {
                let at = d + 8 * c;
                // SAFETY: row `j < n` holds `hd` elements (checked by `Rows::new`); the load
                // stops at `hd`.
                *x = unsafe { load_f16_ptr(v.ptr().add(j * v.stride() + at), hd - at) };
            }
            for (h, a) in acc.iter_mut().enumerate() {
                let w = _mm256_set1_ps(p[h * ld + j]);
                for c in 0..cn {
                    a[c] = _mm256_fmadd_ps(w, vv[c], a[c]);
                }
            }
        }
        for (h, a) in acc.iter().enumerate() {
            for (c, ac) in a.iter().enumerate().take(cn) {
                // SAFETY: as for the loads above.
                unsafe { storep(out.as_mut_ptr().add(h * hd), hd, d + 8 * c, *ac) };
            }
        }
        d += 8 * cn;
    }
}

/// See `generic::attn_scores`; `g` is 1..=8.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn attn_scores(q: &[f32], g: usize, k: &Rows<'_>, scale: f32, scores: &mut [f32], ld: usize) {
    match g {
        1 => attn_scores_g::<1>(q, k, scale, scores, ld),
        2 => attn_scores_g::<2>(q, k, scale, scores, ld),
        3 => attn_scores_g::<3>(q, k, scale, scores, ld),
        4 => attn_scores_g::<4>(q, k, scale, scores, ld),
        5 => attn_scores_g::<5>(q, k, scale, scores, ld),
        6 => attn_scores_g::<6>(q, k, scale, scores, ld),
        7 => attn_scores_g::<7>(q, k, scale, scores, ld),
        8 => attn_scores_g::<8>(q, k, scale, scores, ld),
        _ => crate::ops::generic::attn_scores(q, g, k, scale, scores, ld),
    }
}

/// See `generic::attn_accum`; `g` is 1..=8.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn attn_accum(p: &[f32], ld: usize, g: usize, v: &Rows<'_>, out: &mut [f32]) {
    match g {
        1 => attn_accum_g::<1, 4>(p, ld, v, out),
        2 => attn_accum_g::<2, 4>(p, ld, v, out),
        3 => attn_accum_g::<3, 2>(p, ld, v, out),
        4 => attn_accum_g::<4, 2>(p, ld, v, out),
        5 => attn_accum_g::<5, 1>(p, ld, v, out),
        6 => attn_accum_g::<6, 1>(p, ld, v, out),
        7 => attn_accum_g::<7, 1>(p, ld, v, out),
        8 => attn_accum_g::<8, 1>(p, ld, v, out),
        _ => crate::ops::generic::attn_accum(p, ld, g, v, out),
    }
}
