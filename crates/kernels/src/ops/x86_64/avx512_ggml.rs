//! AVX-512 twins of the kernels in `ops::ggml` (ggml's own arithmetic): the same operations in
//! the same order as the scalar versions, so the results are the same bits.
//!
//! Every function carries `#[target_feature]` for the whole `Isa::Avx512` set; callers must have
//! checked that the CPU has it (`Ops::new` resolves them, once, through `Isa::dispatch`).

use std::arch::x86_64::*;

use half::f16;

use super::ggml16::{self, F32x16};
use crate::ops::generic::{Ahead, Rows};
use crate::ops::ggml::expc::*;

/// Lanes `0..r` set (`r < 16`), or all for `r >= 16`.
#[inline]
fn mask(r: usize) -> __mmask16 {
    if r >= 16 {
        0xFFFF
    } else {
        ((1u32 << r) - 1) as u16
    }
}

/// 16 f16 from `p`, widened (exactly).
///
/// # Safety
/// The CPU supports the `Isa::Avx512` set; `p` is valid for 16 reads.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn load_f16(p: *const f16) -> __m512 {
    // SAFETY: 16 f16 = 32 bytes readable at `p` (caller contract).
    _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.cast()) })
}

/// `ggml_v_expf` (see `ops::ggml::expf`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn exp(x: __m512) -> __m512 {
    let r = _mm512_set1_ps(SHIFT);
    let z = _mm512_fmadd_ps(x, _mm512_set1_ps(LOG2E), r);
    let n = _mm512_sub_ps(z, r);
    let b = _mm512_fnmadd_ps(
        n,
        _mm512_set1_ps(LN2_LO),
        _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x),
    );
    let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
    let u = _mm512_mul_ps(b, b);
    let j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(
            _mm512_fmadd_ps(_mm512_set1_ps(C5), b, _mm512_set1_ps(C4)),
            u,
            _mm512_fmadd_ps(_mm512_set1_ps(C3), b, _mm512_set1_ps(C2)),
        ),
        u,
        _mm512_fmadd_ps(_mm512_set1_ps(C1), b, _mm512_set1_ps(1.0)),
    );
    let res = _mm512_scalef_ps(j, n);
    if big == 0 {
        return res;
    }
    let zero = _mm512_setzero_ps();
    let neg = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, zero);
    let alt = _mm512_mask_blend_ps(neg, _mm512_set1_ps(f32::INFINITY), zero);
    _mm512_mask_blend_ps(big, res, alt)
}

/// `ops::ggml::tree16` of the 16 lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn tree16(v: __m512) -> f32 {
    let s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_permute_ps::<0b01_00_11_10>(s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
}

/// `y = silu(x) · u` (`u` null: `silu(x)`), as `ops::ggml::silu_mul`.
///
/// # Safety
/// The CPU supports the `Isa::Avx512` set; `x` valid for `n` reads, `y` for `n` writes
/// (`y == x` or `y == u` allowed), `u` for `n` reads when not null.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn silu_mul(n: usize, x: *const f32, u: *const f32, y: *mut f32) {
    // SAFETY: this level's features; the pointers as the caller guarantees.
    unsafe { ggml16::silu_mul::<__m512>(n, x, u, y) }
}

/// `y = gelu(x) · u` (`u` null: `gelu(x)`), as `ops::ggml::gelu_mul`: conversion to f16,
/// table lookup (a 32-bit gather at each entry, of which the low half is kept) and conversion
/// back in vectors.
///
/// # Safety
/// The CPU supports the `Isa::Avx512` set; `x` valid for `n` reads, `y` for `n` writes
/// (`y == x` or `y == u` allowed), `u` for `n` reads when not null.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn gelu_mul(n: usize, x: *const f32, u: *const f32, y: *mut f32) {
    let table: *const crate::ops::ggml::GeluTable = crate::ops::ggml::gelu_table();
    let (lo, hi) = (_mm512_set1_ps(-10.0), _mm512_set1_ps(10.0));
    let full = n & !15;
    for i in (0..full).step_by(16) {
        // SAFETY: `i + 16 <= n`; pointers valid for `n` elements (caller contract); each block
        // is read before it is written.
        unsafe {
            let v = _mm512_loadu_ps(x.add(i));
            let idx = _mm512_cvtepu16_epi32(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v));
            // Entry `i` and the next (or the padding): 4 bytes inside the table.
            let t = _mm512_i32gather_epi32::<2>(idx, table.cast());
            let mut r = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(t));
            r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, hi), r, v);
            if !u.is_null() {
                r = _mm512_mul_ps(r, _mm512_loadu_ps(u.add(i)));
            }
            r = _mm512_maskz_mov_ps(!_mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, lo), r);
            _mm512_storeu_ps(y.add(i), r);
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
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn kq_dots(
    q: &[f32],
    g: usize,
    k: &Rows<'_>,
    lanes16: bool,
    scores: &mut [f32],
    ld: usize,
    ahead: &mut Ahead<'_>,
) {
    // SAFETY: this level's features. Four heads' 64-lane accumulators (16 registers) at once.
    unsafe { ggml16::kq_dots::<__m512, 4>(q, g, k, lanes16, scores, ld, ahead) }
}

/// `ops::ggml::dots_f32`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn dots_f32(w: &[f32], x: &[f32], lanes16: bool, out: &mut [f32]) {
    // SAFETY: this level's features.
    unsafe { ggml16::dots_f32::<__m512>(w, x, lanes16, out) }
}

/// `ops::ggml::exp_block_sums`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn exp_block_sums(x: &mut [f32], max: f32) -> f64 {
    // SAFETY: this level's features.
    unsafe { ggml16::exp_block_sums::<__m512>(x, max) }
}

/// `ops::ggml::pv`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
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
    // SAFETY: this level's features. Four 16-value chunks per head in registers.
    unsafe { ggml16::pv::<__m512, 4>(p, ld, g, v, lane0, lanes, acc, out, ahead) }
}

// SAFETY (every method): the caller runs on a CPU with the `Isa::Avx512` set (the trait's
// contract) and passes pointers valid as each method of `F32x16` says.
impl F32x16 for __m512 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn zero() -> Self {
        _mm512_setzero_ps()
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn splat(v: f32) -> Self {
        _mm512_set1_ps(v)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: 16 values readable at `p` (trait contract).
        unsafe { _mm512_loadu_ps(p) }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: 16 values writable at `p` (trait contract).
        unsafe { _mm512_storeu_ps(p, self) }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn load_n(p: *const f32, r: usize) -> Self {
        // SAFETY: the mask keeps the load to the `min(r, 16)` readable values.
        unsafe { _mm512_maskz_loadu_ps(mask(r), p) }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn store_n(self, p: *mut f32, r: usize) {
        // SAFETY: the mask keeps the store to the `min(r, 16)` writable values.
        unsafe { _mm512_mask_storeu_ps(p, mask(r), self) }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn load_f16(p: *const f16) -> Self {
        // SAFETY: 16 f16 readable at `p` (trait contract).
        unsafe { load_f16(p) }
    }

    type Tail = __mmask16;

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn tail(r: usize) -> __mmask16 {
        mask(r)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn load_f16_tail(p: *const f16, t: __mmask16) -> Self {
        // SAFETY: the mask keeps the load to the values the caller may read (none for 0).
        unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(t, p.cast())) }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn store_tail(self, p: *mut f32, t: __mmask16) {
        // SAFETY: the mask keeps the store to the values the caller may write.
        unsafe { _mm512_mask_storeu_ps(p, t, self) }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn add(self, b: Self) -> Self {
        _mm512_add_ps(self, b)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn sub(self, b: Self) -> Self {
        _mm512_sub_ps(self, b)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn mul(self, b: Self) -> Self {
        _mm512_mul_ps(self, b)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn div(self, b: Self) -> Self {
        _mm512_div_ps(self, b)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn fmadd(self, b: Self, c: Self) -> Self {
        _mm512_fmadd_ps(self, b, c)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn exp(self) -> Self {
        exp(self)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn tree16(self) -> f32 {
        tree16(self)
    }

    const WIDE_REDUCE: bool = true;

    /// `tree16`'s four levels for 16 vectors at once: each level adds the same pairs of lanes,
    /// two vectors' worth per instruction (`shuffle_f32x4`, then `shuffle_ps`), and the 16
    /// results come out in the lane order `4·(r mod 4) + r / 4`, put back by one permute.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
    unsafe fn tree16x16(v: &[Self; 16], out: *mut f32) {
        // Level 1: rows 2i, 2i+1 → [row 2i: lanes j + (j + 8) | row 2i+1: the same], j < 8.
        let t: [__m512; 8] = std::array::from_fn(|i| {
            let (a, b) = (v[2 * i], v[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x44>(a, b),
                _mm512_shuffle_f32x4::<0xEE>(a, b),
            )
        });
        // Level 2: 128-bit lane L holds row 4i + L's four sums of level 2.
        let u: [__m512; 4] = std::array::from_fn(|i| {
            let (a, b) = (t[2 * i], t[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_f32x4::<0x88>(a, b),
                _mm512_shuffle_f32x4::<0xDD>(a, b),
            )
        });
        // Level 3: lane L holds the two sums of rows 8i + L and 8i + 4 + L.
        let w: [__m512; 2] = std::array::from_fn(|i| {
            let (a, b) = (u[2 * i], u[2 * i + 1]);
            _mm512_add_ps(
                _mm512_shuffle_ps::<0x44>(a, b),
                _mm512_shuffle_ps::<0xEE>(a, b),
            )
        });
        // Level 4: lane 4L + k holds row L + 4k.
        let s = _mm512_add_ps(
            _mm512_shuffle_ps::<0x88>(w[0], w[1]),
            _mm512_shuffle_ps::<0xDD>(w[0], w[1]),
        );
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        // SAFETY: `out` valid for 16 writes (trait contract).
        unsafe { _mm512_storeu_ps(out, _mm512_permutexvar_ps(order, s)) };
    }
}
