//! AVX-512 twins of the kernels in `ops::generic`, 16 lanes, tails through masked loads and
//! stores (a masked-out lane is never read or written, so tails need no scalar loop).
//!
//! Every function carries `#[target_feature]` for the whole `Isa::Avx512` set; callers must have
//! checked that the CPU has it (`Ops::new` resolves them, once, through `Isa::dispatch`).

use std::arch::x86_64::*;

use half::{bf16, f16};

use crate::ops::generic::Rows;

/// Lanes `0..r` set (`r < 16`), or all for `r >= 16`.
#[inline]
fn mask(r: usize) -> __mmask16 {
    if r >= 16 {
        0xFFFF
    } else {
        ((1u32 << r) - 1) as u16
    }
}

/// `e^x` for 16 lanes, after the Arm optimized-routines algorithm ggml also uses: `x = n·ln2 + b`,
/// a degree-5 polynomial for `e^b` (error ≤ 1.5 ulp), `scalef` for `2^n` (handles subnormal
/// results). Above 88.73 gives +inf, below −104 gives 0 (so `exp(-inf) = 0`), NaN stays NaN.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub(crate) fn exp(x: __m512) -> __m512 {
    let shifter = _mm512_set1_ps(f32::from_bits(0x4B40_0000)); // 1.5 · 2^23
    let z = _mm512_fmadd_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E), shifter);
    let n = _mm512_sub_ps(z, shifter);
    let b = _mm512_fnmadd_ps(n, _mm512_set1_ps(f32::from_bits(0x3F31_7200)), x); // ln2 hi
    let b = _mm512_fnmadd_ps(n, _mm512_set1_ps(f32::from_bits(0x35BF_BE8E)), b); // ln2 lo
    let u = _mm512_mul_ps(b, b);
    let p45 = _mm512_fmadd_ps(
        _mm512_set1_ps(f32::from_bits(0x3C07_2010)),
        b,
        _mm512_set1_ps(f32::from_bits(0x3D2B_9F17)),
    );
    let p23 = _mm512_fmadd_ps(
        _mm512_set1_ps(f32::from_bits(0x3E2A_AF33)),
        b,
        _mm512_set1_ps(f32::from_bits(0x3EFF_FEDB)),
    );
    let p01 = _mm512_fmadd_ps(
        _mm512_set1_ps(f32::from_bits(0x3F7F_FFF6)),
        b,
        _mm512_set1_ps(1.0),
    );
    let j = _mm512_fmadd_ps(_mm512_fmadd_ps(p45, u, p23), u, p01);
    let r = _mm512_scalef_ps(j, n);
    let hi = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(88.73));
    let lo = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(-104.0));
    let r = _mm512_mask_blend_ps(hi, r, _mm512_set1_ps(f32::INFINITY));
    _mm512_mask_blend_ps(lo, r, _mm512_setzero_ps())
}

/// `x / (1 + e^-x)`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn silu(x: __m512) -> __m512 {
    let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), x));
    _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), e))
}

/// Tanh-approximated GELU in its sigmoid form: `0.5·x·(1 + tanh(u)) = x / (1 + e^(−2u))`,
/// `u = √(2/π)·x·(1 + 0.044715·x²)` (the same value, without the cancellation of `1 + tanh`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn gelu(x: __m512) -> __m512 {
    let p = _mm512_fmadd_ps(
        _mm512_set1_ps(0.044_715),
        _mm512_mul_ps(x, x),
        _mm512_set1_ps(1.0),
    );
    let z = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(-2.0 * 0.797_884_6), x), p);
    _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), exp(z)))
}

/// Widens 16 lanes of f32 to two f64 halves and adds them to the accumulators.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn add_f64(acc: &mut [__m512d; 2], v: __m512) {
    acc[0] = _mm512_add_pd(acc[0], _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    acc[1] = _mm512_add_pd(acc[1], _mm512_cvtps_pd(_mm512_extractf32x8_ps::<1>(v)));
}

/// Masked load of up to 16 f32 from `x[i..]`, zeros elsewhere.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn load(x: &[f32], i: usize) -> __m512 {
    let m = mask(x.len() - i);
    // SAFETY: `i < x.len()` at every call site, and the mask selects only lanes below `x.len()`;
    // masked-out lanes are not accessed.
    unsafe { _mm512_maskz_loadu_ps(m, x.as_ptr().add(i)) }
}

/// Σ x², squares in f32, sum in f64.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn sum_squares(x: &[f32]) -> f64 {
    let mut acc = [_mm512_setzero_pd(); 2];
    for i in (0..x.len()).step_by(16) {
        let v = load(x, i);
        add_f64(&mut acc, _mm512_mul_ps(v, v));
    }
    _mm512_reduce_add_pd(_mm512_add_pd(acc[0], acc[1]))
}

/// Σ x in f64.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn sum(x: &[f32]) -> f64 {
    let mut acc = [_mm512_setzero_pd(); 2];
    for i in (0..x.len()).step_by(16) {
        add_f64(&mut acc, load(x, i));
    }
    _mm512_reduce_add_pd(_mm512_add_pd(acc[0], acc[1]))
}

/// Σ (x − mean)², differences and squares in f32, sum in f64.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn sum_squared_deviations(x: &[f32], mean: f32) -> f64 {
    let vm = _mm512_set1_ps(mean);
    let mut acc = [_mm512_setzero_pd(); 2];
    for i in (0..x.len()).step_by(16) {
        let m = mask(x.len() - i);
        // Masked-out lanes must contribute 0, not mean².
        let d = _mm512_maskz_sub_ps(m, load(x, i), vm);
        add_f64(&mut acc, _mm512_mul_ps(d, d));
    }
    _mm512_reduce_add_pd(_mm512_add_pd(acc[0], acc[1]))
}

/// `y = (x − shift) · s · w + b`, `w`/`b` skipped when null.
///
/// # Safety
/// The CPU supports the `Isa::Avx512` set; `x` valid for `n` reads, `y` for `n` writes
/// (`y == x` allowed), `w`/`b` for `n` reads when not null.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn scale_mul_add(
    n: usize,
    x: *const f32,
    s: f32,
    shift: f32,
    w: *const f32,
    b: *const f32,
    y: *mut f32,
) {
    let vs = _mm512_set1_ps(s);
    let vsh = _mm512_set1_ps(shift);
    for i in (0..n).step_by(16) {
        let m = mask(n - i);
        // SAFETY: the mask selects lanes `i..min(i + 16, n)`, inside every buffer (caller
        // contract); element `i` of `x` is read before element `i` of `y` is written.
        unsafe {
            let mut v = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x.add(i)), vsh), vs);
            if !w.is_null() {
                v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w.add(i)));
            }
            if !b.is_null() {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b.add(i)));
            }
            _mm512_mask_storeu_ps(y.add(i), m, v);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn max(x: &[f32]) -> f32 {
    let mut acc = _mm512_set1_ps(f32::NEG_INFINITY);
    for i in (0..x.len()).step_by(16) {
        let m = mask(x.len() - i);
        // SAFETY: lanes selected by `m` are inside `x`.
        let v = unsafe { _mm512_mask_loadu_ps(acc, m, x.as_ptr().add(i)) };
        acc = _mm512_max_ps(acc, v);
    }
    _mm512_reduce_max_ps(acc)
}

/// `x[i] = e^(x[i] − max)`, returning the f64 sum.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn exp_sub_sum(x: &mut [f32], max: f32) -> f64 {
    let vm = _mm512_set1_ps(max);
    let mut acc = [_mm512_setzero_pd(); 2];
    for i in (0..x.len()).step_by(16) {
        let m = mask(x.len() - i);
        let e = _mm512_maskz_mov_ps(m, exp(_mm512_sub_ps(load(x, i), vm)));
        // SAFETY: lanes selected by `m` are inside `x`.
        unsafe { _mm512_mask_storeu_ps(x.as_mut_ptr().add(i), m, e) };
        add_f64(&mut acc, e);
    }
    _mm512_reduce_add_pd(_mm512_add_pd(acc[0], acc[1]))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn scale(x: &mut [f32], s: f32) {
    let vs = _mm512_set1_ps(s);
    for i in (0..x.len()).step_by(16) {
        let m = mask(x.len() - i);
        let v = _mm512_mul_ps(load(x, i), vs);
        // SAFETY: lanes selected by `m` are inside `x`.
        unsafe { _mm512_mask_storeu_ps(x.as_mut_ptr().add(i), m, v) };
    }
}

/// `y = act(g) · u` (`u` skipped when null); `gelu` picks GELU, otherwise SiLU.
///
/// # Safety
/// The CPU supports the `Isa::Avx512` set; `g` valid for `n` reads, `y` for `n` writes (`y` may
/// equal `g` or `u`), `u` for `n` reads when not null.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn act_mul(n: usize, gelu_act: bool, g: *const f32, u: *const f32, y: *mut f32) {
    for i in (0..n).step_by(16) {
        let m = mask(n - i);
        // SAFETY: lanes selected by `m` lie in `i..n`, inside every buffer (caller contract).
        unsafe {
            let x = _mm512_maskz_loadu_ps(m, g.add(i));
            let mut v = if gelu_act { gelu(x) } else { silu(x) };
            if !u.is_null() {
                v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, u.add(i)));
            }
            _mm512_mask_storeu_ps(y.add(i), m, v);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn add(acc: &mut [f32], x: &[f32]) {
    let n = acc.len().min(x.len());
    for i in (0..n).step_by(16) {
        let m = mask(n - i);
        // SAFETY: lanes selected by `m` lie in `i..n`, inside both slices.
        unsafe {
            let a = _mm512_maskz_loadu_ps(m, acc.as_ptr().add(i));
            let b = _mm512_maskz_loadu_ps(m, x.as_ptr().add(i));
            _mm512_mask_storeu_ps(acc.as_mut_ptr().add(i), m, _mm512_add_ps(a, b));
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn mul(acc: &mut [f32], x: &[f32]) {
    let n = acc.len().min(x.len());
    for i in (0..n).step_by(16) {
        let m = mask(n - i);
        // SAFETY: lanes selected by `m` lie in `i..n`, inside both slices.
        unsafe {
            let a = _mm512_maskz_loadu_ps(m, acc.as_ptr().add(i));
            let b = _mm512_maskz_loadu_ps(m, x.as_ptr().add(i));
            _mm512_mask_storeu_ps(acc.as_mut_ptr().add(i), m, _mm512_mul_ps(a, b));
        }
    }
}

/// 16 f16 (or bf16) bit patterns from `x[i..]`, zeros past the end.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn load_u16(x: *const u16, len: usize, i: usize) -> __m256i {
    // SAFETY: `i < len` at every call site and `x` is valid for `len` elements; the mask selects
    // only lanes below `len`.
    unsafe { _mm256_maskz_loadu_epi16(mask(len - i), x.add(i).cast()) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn load_f16(x: &[f16], i: usize) -> __m512 {
    _mm512_cvtph_ps(load_u16(x.as_ptr().cast(), x.len(), i))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn f16_to_f32(out: &mut [f32], x: &[f16]) {
    let n = out.len().min(x.len());
    for i in (0..n).step_by(16) {
        let v = _mm512_cvtph_ps(load_u16(x.as_ptr().cast(), n, i));
        // SAFETY: lanes selected by the mask lie in `i..n`, inside `out`.
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), mask(n - i), v) };
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn f32_to_f16(out: &mut [f16], x: &[f32]) {
    let n = out.len().min(x.len());
    for i in (0..n).step_by(16) {
        let m = mask(n - i);
        // SAFETY: lanes selected by `m` lie in `i..n`, inside both slices.
        unsafe {
            let v = _mm512_maskz_loadu_ps(m, x.as_ptr().add(i));
            let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            _mm256_mask_storeu_epi16(out.as_mut_ptr().add(i).cast(), m, h);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn bf16_to_f32(out: &mut [f32], x: &[bf16]) {
    let n = out.len().min(x.len());
    for i in (0..n).step_by(16) {
        let w = _mm512_cvtepu16_epi32(load_u16(x.as_ptr().cast(), n, i));
        let v = _mm512_castsi512_ps(_mm512_slli_epi32::<16>(w));
        // SAFETY: lanes selected by the mask lie in `i..n`, inside `out`.
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(i), mask(n - i), v) };
    }
}

/// Round to nearest even on the bit pattern (as `half::bf16::from_f32`, subnormals kept — the
/// `vcvtneps2bf16` instruction would flush them); NaN stays a quiet NaN.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn f32_to_bf16(out: &mut [bf16], x: &[f32]) {
    let n = out.len().min(x.len());
    for i in (0..n).step_by(16) {
        let m = mask(n - i);
        // SAFETY: lanes selected by `m` lie in `i..n`, inside `x`.
        let bits = _mm512_castps_si512(unsafe { _mm512_maskz_loadu_ps(m, x.as_ptr().add(i)) });
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
        let rounded = _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7FFF)), lsb);
        let rounded = _mm512_srli_epi32::<16>(rounded);
        let abs = _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFF_FFFF));
        let nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7F80_0000));
        let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(0x0040));
        let r = _mm512_mask_blend_epi32(nan, rounded, quiet);
        // SAFETY: lanes selected by `m` lie in `i..n`, inside `out`.
        unsafe {
            _mm256_mask_storeu_epi16(out.as_mut_ptr().add(i).cast(), m, _mm512_cvtepi32_epi16(r))
        };
    }
}

/// Σ q·k, the f16 key widened exactly; two f32 accumulators.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn dot_f16(q: &[f32], k: &[f16]) -> f32 {
    let n = q.len().min(k.len());
    let (q, k) = (&q[..n], &k[..n]);
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        acc0 = _mm512_fmadd_ps(load(q, i), load_f16(k, i), acc0);
        acc1 = _mm512_fmadd_ps(load(q, i + 16), load_f16(k, i + 16), acc1);
        i += 32;
    }
    while i < n {
        acc0 = _mm512_fmadd_ps(load(q, i), load_f16(k, i), acc0);
        i += 16;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

/// `acc += w · v`, the f16 row widened exactly.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn axpy_f16(acc: &mut [f32], w: f32, v: &[f16]) {
    let n = acc.len().min(v.len());
    let (acc, v) = (&mut acc[..n], &v[..n]);
    let vw = _mm512_set1_ps(w);
    for i in (0..n).step_by(16) {
        let r = _mm512_fmadd_ps(vw, load_f16(v, i), load(acc, i));
        // SAFETY: lanes selected by the mask lie in `i..n`, inside `acc`.
        unsafe { _mm512_mask_storeu_ps(acc.as_mut_ptr().add(i), mask(n - i), r) };
    }
}

/// Rope rotation of one head; `cache` as built by `rope::RopeCache` (see `generic::rope_rotate`
/// for the pairing). Normal mode uses `cache` = [cos, cos, …] / [−sin, sin, …] duplicated per
/// element (`n_rot` each); neox uses [cos…] / [sin…] per pair (`n_rot / 2` each).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn rope_rotate(head: &mut [f32], cos: &[f32], sin: &[f32], n_rot: usize, neox: bool) {
    if neox {
        let half = n_rot / 2;
        let (a, b) = head[..n_rot].split_at_mut(half);
        for i in (0..half).step_by(16) {
            let m = mask(half - i);
            let (x0, x1, c, s) = (load(a, i), load(b, i), load(cos, i), load(sin, i));
            let y0 = _mm512_fmsub_ps(x0, c, _mm512_mul_ps(x1, s));
            let y1 = _mm512_fmadd_ps(x0, s, _mm512_mul_ps(x1, c));
            // SAFETY: lanes selected by `m` lie in `i..half`, inside `a` and `b`.
            unsafe {
                _mm512_mask_storeu_ps(a.as_mut_ptr().add(i), m, y0);
                _mm512_mask_storeu_ps(b.as_mut_ptr().add(i), m, y1);
            }
        }
    } else {
        let x = &mut head[..n_rot];
        for i in (0..n_rot).step_by(16) {
            let m = mask(n_rot - i);
            let v = load(x, i);
            // Swap the two elements of each pair: lanes (1, 0, 3, 2) in every 128-bit group.
            let swapped = _mm512_permute_ps::<0b1011_0001>(v);
            let (c, s) = (load(cos, i), load(sin, i));
            // Even lanes fuse `x0·c`, odd lanes `x0·s` (see `generic::rope_rotate`).
            let even = _mm512_fmadd_ps(v, c, _mm512_mul_ps(swapped, s));
            let odd = _mm512_fmadd_ps(swapped, s, _mm512_mul_ps(v, c));
            let y = _mm512_mask_blend_ps(0xAAAA, even, odd);
            // SAFETY: lanes selected by `m` lie in `i..n_rot`, inside `x`.
            unsafe { _mm512_mask_storeu_ps(x.as_mut_ptr().add(i), m, y) };
        }
    }
}

/// Scores of `G` query heads against a block of f16 key rows, two rows at a time: each key
/// chunk is widened once and multiplied into `G` accumulators per row, the query chunks loaded
/// once for both rows.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn attn_scores_g<const G: usize>(
    q: &[f32],
    k: &Rows<'_>,
    scale: f32,
    scores: &mut [f32],
    ld: usize,
) {
    let hd = k.hd();
    let n = k.n();
    assert!(q.len() >= G * hd && (n == 0 || scores.len() >= (G - 1) * ld + n));
    let row = |j: usize| {
        // SAFETY: callers pass `j < n`; `Rows::new` checked that such rows are in bounds.
        unsafe { k.ptr().add(j * k.stride()) }
    };
    let mut j = 0;
    while j + 2 <= n {
        let (r0, r1) = (row(j), row(j + 1));
        let mut a0 = [_mm512_setzero_ps(); G];
        let mut a1 = [_mm512_setzero_ps(); G];
        for d in (0..hd).step_by(16) {
            let m = mask(hd - d);
            // SAFETY: rows `j`, `j + 1` hold `hd` elements; `q` holds `G · hd` (asserted); the
            // mask keeps every lane below `hd`.
            unsafe {
                let k0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, r0.add(d).cast()));
                let k1 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, r1.add(d).cast()));
                for h in 0..G {
                    let qv = _mm512_maskz_loadu_ps(m, q.as_ptr().add(h * hd + d));
                    a0[h] = _mm512_fmadd_ps(qv, k0, a0[h]);
                    a1[h] = _mm512_fmadd_ps(qv, k1, a1[h]);
                }
            }
        }
        for h in 0..G {
            scores[h * ld + j] = _mm512_reduce_add_ps(a0[h]) * scale;
            scores[h * ld + j + 1] = _mm512_reduce_add_ps(a1[h]) * scale;
        }
        j += 2;
    }
    if j < n {
        let r0 = row(j);
        let mut a0 = [_mm512_setzero_ps(); G];
        for d in (0..hd).step_by(16) {
            let m = mask(hd - d);
            // SAFETY: as above, for row `j`.
            unsafe {
                let k0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, r0.add(d).cast()));
                for (h, a) in a0.iter_mut().enumerate() {
                    let qv = _mm512_maskz_loadu_ps(m, q.as_ptr().add(h * hd + d));
                    *a = _mm512_fmadd_ps(qv, k0, *a);
                }
            }
        }
        for (h, a) in a0.iter().enumerate() {
            scores[h * ld + j] = _mm512_reduce_add_ps(*a) * scale;
        }
    }
}

/// `out[h] += Σ_j p[h][j] · v_j` for `G` heads: `C` 16-wide column chunks at a time, the
/// `G · C` partial outputs kept in registers across every row of the block (enough independent
/// multiply-add chains to hide their latency).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
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
        // `C` chunks while they fit, then single (possibly partial) chunks.
        let wide = d + 16 * C <= hd;
        let cn = if wide { C } else { 1 };
        let mut acc = [[_mm512_setzero_ps(); C]; G];
        let masks: [__mmask16; C] =
            std::array::from_fn(|c| if c < cn { mask(hd - d - 16 * c) } else { 0 });
        for (h, a) in acc.iter_mut().enumerate() {
            for c in 0..cn {
                // SAFETY: `out` holds `G · hd` values (asserted), lanes masked to `..hd`.
                a[c] = unsafe {
                    _mm512_maskz_loadu_ps(masks[c], out.as_ptr().add(h * hd + d + 16 * c))
                };
            }
        }
        for j in 0..n {
            // SAFETY: row `j < n` holds `hd` elements (checked by `Rows::new`), masked to `hd`.
            let row = unsafe { v.ptr().add(j * v.stride() + d) };
            let mut vv = [_mm512_setzero_ps(); C];
            for c in 0..cn {
                // SAFETY: as above.
                vv[c] = _mm512_cvtph_ps(unsafe {
                    _mm256_maskz_loadu_epi16(masks[c], row.add(16 * c).cast())
                });
            }
            for (h, a) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_ps(p[h * ld + j]);
                for c in 0..cn {
                    a[c] = _mm512_fmadd_ps(w, vv[c], a[c]);
                }
            }
        }
        for (h, a) in acc.iter().enumerate() {
            for c in 0..cn {
                // SAFETY: as for the loads above.
                unsafe {
                    _mm512_mask_storeu_ps(out.as_mut_ptr().add(h * hd + d + 16 * c), masks[c], a[c])
                };
            }
        }
        d += 16 * cn;
    }
}

/// See `generic::attn_scores`; `g` is 1..=8.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
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
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn attn_accum(p: &[f32], ld: usize, g: usize, v: &Rows<'_>, out: &mut [f32]) {
    match g {
        1 => attn_accum_g::<1, 4>(p, ld, v, out),
        2 => attn_accum_g::<2, 4>(p, ld, v, out),
        3 => attn_accum_g::<3, 4>(p, ld, v, out),
        4 => attn_accum_g::<4, 4>(p, ld, v, out),
        5 => attn_accum_g::<5, 2>(p, ld, v, out),
        6 => attn_accum_g::<6, 2>(p, ld, v, out),
        7 => attn_accum_g::<7, 2>(p, ld, v, out),
        8 => attn_accum_g::<8, 2>(p, ld, v, out),
        _ => crate::ops::generic::attn_accum(p, ld, g, v, out),
    }
}
