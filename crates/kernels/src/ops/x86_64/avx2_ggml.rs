//! AVX2 twins of the kernels in `ops::ggml` (ggml's arithmetic as its AVX-512 build does it):
//! a 16-lane accumulator is two 8-lane halves, AVX-512's `scalef` is two exact-then-rounding
//! multiplications, so the results are the same bits as the scalar versions.
//!
//! Every function carries `#[target_feature]` for the whole `Isa::Avx2` set; callers must have
//! checked that the CPU has it (`Ops::new` resolves them, once, through `Isa::dispatch`).

use std::arch::x86_64::*;

use half::f16;

use super::ggml16::{self, F32x16};
use crate::ops::generic::{Ahead, Rows};
use crate::ops::ggml::expc::*;

/// All-ones in lanes `0..r` (`r < 8`) as a `vmaskmovps` mask.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tail_mask(r: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(r as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// 8 f16 from `p`, widened (exactly).
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set; `p` is valid for 8 reads.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16(p: *const f16) -> __m256 {
    // SAFETY: 8 f16 = 16 bytes readable at `p` (caller contract).
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
}

/// `2^k` for 8 lanes of integers in `−126..=127`, built in the exponent field.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pow2(k: __m256i) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        k,
        _mm256_set1_epi32(127),
    )))
}

/// `ggml_v_expf` as its AVX-512 version computes it (see `ops::ggml::expf`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn exp(x: __m256) -> __m256 {
    let r = _mm256_set1_ps(SHIFT);
    let z = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), r);
    let n = _mm256_sub_ps(z, r);
    let b = _mm256_fnmadd_ps(
        n,
        _mm256_set1_ps(LN2_LO),
        _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x),
    );
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let big = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(_mm256_set1_ps(C5), b, _mm256_set1_ps(C4)),
            u,
            _mm256_fmadd_ps(_mm256_set1_ps(C3), b, _mm256_set1_ps(C2)),
        ),
        u,
        _mm256_fmadd_ps(_mm256_set1_ps(C1), b, _mm256_set1_ps(1.0)),
    );
    // scalef(j, n) for |n| <= 192: the first product is exact, the second rounds once. Lanes
    // with a larger or NaN `n` get garbage here: they are replaced below, or `j` is NaN.
    let k = _mm256_cvtps_epi32(n);
    let h = _mm256_srai_epi32::<1>(k);
    let res = _mm256_mul_ps(_mm256_mul_ps(j, pow2(h)), pow2(_mm256_sub_epi32(k, h)));
    if _mm256_movemask_ps(big) == 0 {
        return res;
    }
    let neg = _mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps());
    let alt = _mm256_andnot_ps(neg, _mm256_set1_ps(f32::INFINITY));
    _mm256_blendv_ps(res, alt, big)
}

/// `ops::ggml::tree16` of lanes `lo` (0..8) and `hi` (8..16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tree16(lo: __m256, hi: __m256) -> f32 {
    let s8 = _mm256_add_ps(lo, hi);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_permute_ps::<0b01_00_11_10>(s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
}

/// `y = silu(x) · u` (`u` null: `silu(x)`), as `ops::ggml::silu_mul`.
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set; `x` valid for `n` reads, `y` for `n` writes
/// (`y == x` or `y == u` allowed), `u` for `n` reads when not null.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn silu_mul(n: usize, x: *const f32, u: *const f32, y: *mut f32) {
    // SAFETY: this level's features; the pointers as the caller guarantees.
    unsafe { ggml16::silu_mul::<Halves>(n, x, u, y) }
}

/// `y = gelu(x) · u` (`u` null: `gelu(x)`), as `ops::ggml::gelu_mul`: conversion to f16 and
/// back in vectors, the table looked up per element.
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set; `x` valid for `n` reads, `y` for `n` writes
/// (`y == x` or `y == u` allowed), `u` for `n` reads when not null.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gelu_mul(n: usize, x: *const f32, u: *const f32, y: *mut f32) {
    let table = &crate::ops::ggml::gelu_table().entries;
    let (lo, hi) = (_mm256_set1_ps(-10.0), _mm256_set1_ps(10.0));
    let full = n & !7;
    for i in (0..full).step_by(8) {
        // SAFETY: `i + 8 <= n`; pointers valid for `n` elements (caller contract); each chunk
        // is read before it is written.
        unsafe {
            let v = _mm256_loadu_ps(x.add(i));
            let mut idx = [0u16; 8];
            _mm_storeu_si128(
                idx.as_mut_ptr().cast(),
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v),
            );
            let t: [f16; 8] = std::array::from_fn(|l| table[usize::from(idx[l])]);
            let mut r = load_f16(t.as_ptr());
            r = _mm256_blendv_ps(r, v, _mm256_cmp_ps::<_CMP_GE_OQ>(v, hi));
            if !u.is_null() {
                r = _mm256_mul_ps(r, _mm256_loadu_ps(u.add(i)));
            }
            r = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(v, lo), r);
            _mm256_storeu_ps(y.add(i), r);
        }
    }
    // SAFETY: the tail `full..n` under the same contract.
    unsafe {
        crate::ops::ggml::gelu_mul(
            n - full,
            x.add(full),
            if u.is_null() { u } else { u.add(full) },
            y.add(full),
        );
    }
}

/// `ops::ggml::kq_dots`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn kq_dots(
    q: &[f32],
    g: usize,
    k: &Rows<'_>,
    lanes16: bool,
    scores: &mut [f32],
    ld: usize,
    ahead: &mut Ahead<'_>,
) {
    // SAFETY: this level's features. One head's 64-lane accumulators (8 registers) at a time.
    unsafe { ggml16::kq_dots::<Halves, 1>(q, g, k, lanes16, scores, ld, ahead) }
}

/// `ops::ggml::dots_f32`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn dots_f32(w: &[f32], x: &[f32], lanes16: bool, out: &mut [f32]) {
    // SAFETY: this level's features.
    unsafe { ggml16::dots_f32::<Halves>(w, x, lanes16, out) }
}

/// `ops::ggml::exp_block_sums`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn exp_block_sums(x: &mut [f32], max: f32) -> f64 {
    // SAFETY: this level's features.
    unsafe { ggml16::exp_block_sums::<Halves>(x, max) }
}

/// `ops::ggml::pv`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn pv(
    p: &[f32],
    ld: usize,
    g: usize,
    v: &Rows<'_>,
    lane0: usize,
    lanes: usize,
    acc: &mut [f32],
    out: &mut [f32],
    ahead: &mut Ahead<'_>,
) {
    // SAFETY: this level's features. One 16-value chunk (two registers) per head.
    unsafe { ggml16::pv::<Halves, 1>(p, ld, g, v, lane0, lanes, acc, out, ahead) }
}

/// Up to 8 f32 at `p` (`r` of them, `r <= 8`), zeros after.
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set; `p` is valid for `r` reads.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_n(p: *const f32, r: usize) -> __m256 {
    // SAFETY: 8 or, under the mask, `r` values readable (caller contract).
    unsafe {
        if r >= 8 {
            _mm256_loadu_ps(p)
        } else {
            _mm256_maskload_ps(p, tail_mask(r))
        }
    }
}

/// Stores the first `r` lanes (`r` capped at 8) of `v` at `p`.
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set; `p` is valid for `min(r, 8)` writes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store_n(p: *mut f32, r: usize, v: __m256) {
    // SAFETY: as in `load_n`, for writes.
    unsafe {
        if r >= 8 {
            _mm256_storeu_ps(p, v);
        } else if r > 0 {
            _mm256_maskstore_ps(p, tail_mask(r), v);
        }
    }
}

/// A 16-lane vector as two 8-lane halves (lanes 0..8, 8..16).
#[derive(Clone, Copy)]
pub(super) struct Halves(__m256, __m256);

impl Halves {
    /// `f` on each half.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn map2(self, b: Halves, f: impl Fn(__m256, __m256) -> __m256) -> Halves {
        Halves(f(self.0, b.0), f(self.1, b.1))
    }
}

// SAFETY (every method): the caller runs on a CPU with the `Isa::Avx2` set (the trait's
// contract) and passes pointers valid as each method of `F32x16` says.
impl F32x16 for Halves {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn zero() -> Self {
        Halves(_mm256_setzero_ps(), _mm256_setzero_ps())
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn splat(v: f32) -> Self {
        Halves(_mm256_set1_ps(v), _mm256_set1_ps(v))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: 16 values readable at `p` (trait contract).
        unsafe { Halves(_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8))) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: 16 values writable at `p` (trait contract).
        unsafe {
            _mm256_storeu_ps(p, self.0);
            _mm256_storeu_ps(p.add(8), self.1);
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_n(p: *const f32, r: usize) -> Self {
        // SAFETY: `min(r, 16)` values readable at `p` (trait contract): the low half reads
        // `min(r, 8)`, the high half `r − 8` from `p + 8` when there are any.
        unsafe {
            let hi = if r > 8 {
                load_n(p.add(8), r - 8)
            } else {
                _mm256_setzero_ps()
            };
            Halves(load_n(p, r), hi)
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn store_n(self, p: *mut f32, r: usize) {
        // SAFETY: as `load_n`, for writes.
        unsafe {
            store_n(p, r, self.0);
            if r > 8 {
                store_n(p.add(8), r - 8, self.1);
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_f16(p: *const f16) -> Self {
        // SAFETY: 16 f16 readable at `p` (trait contract).
        unsafe { Halves(load_f16(p), load_f16(p.add(8))) }
    }

    /// The lane count itself.
    type Tail = usize;

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tail(r: usize) -> usize {
        r.min(16)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_f16_tail(p: *const f16, r: usize) -> Self {
        if r >= 16 {
            // SAFETY: 16 f16 readable at `p` (trait contract).
            return unsafe { Self::load_f16(p) };
        }
        let mut t = [f16::ZERO; 16];
        // SAFETY: `r < 16` f16 readable at `p` (trait contract), copied into `t`, which
        // holds 16.
        unsafe {
            std::ptr::copy_nonoverlapping(p, t.as_mut_ptr(), r);
            Self::load_f16(t.as_ptr())
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn store_tail(self, p: *mut f32, r: usize) {
        // SAFETY: `r` lanes writable at `p` (trait contract).
        unsafe { self.store_n(p, r) }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn add(self, b: Self) -> Self {
        self.map2(b, |x, y| _mm256_add_ps(x, y))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn sub(self, b: Self) -> Self {
        self.map2(b, |x, y| _mm256_sub_ps(x, y))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn mul(self, b: Self) -> Self {
        self.map2(b, |x, y| _mm256_mul_ps(x, y))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn div(self, b: Self) -> Self {
        self.map2(b, |x, y| _mm256_div_ps(x, y))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn fmadd(self, b: Self, c: Self) -> Self {
        Halves(
            _mm256_fmadd_ps(self.0, b.0, c.0),
            _mm256_fmadd_ps(self.1, b.1, c.1),
        )
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn exp(self) -> Self {
        Halves(exp(self.0), exp(self.1))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn tree16(self) -> f32 {
        tree16(self.0, self.1)
    }
}
