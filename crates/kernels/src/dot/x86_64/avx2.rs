//! 256-bit row kernels for every weight type, written once over the [`Dot`] trait and compiled
//! twice: for plain AVX2 (`maddubs` + `madd`) and for AVX-512 VL + VNNI (`vpdpbusd`,
//! `vpdpwssd` on 256-bit registers), which the `Avx512` level uses for the types and rows its
//! 512-bit kernels do not cover.
//!
//! Each kernel walks a weight row block by block: it unpacks the block to one unsigned byte
//! per value, takes the integer dot product with the activation bytes, and scales by
//! `d_weight · d_act` (per block) or by the 6-bit/8-bit group scales and then `d · d_act` (per
//! k-quant super-block). Offsets (`q − 8`, `q − 16`, Q3_K's `−4`, Q6_K's `−32`) are applied with
//! the activation block sums instead of per value. Signed weights (`Q8_0`, the IQ4 grids) use
//! the sign trick (`|w|` × `sign(x, w)`) so products stay in `maddubs` range.
//!
//! For `MatrixOptions::ggml_order` there are also row kernels in llama.cpp's float orders, one
//! per code path it takes (`dot::GgmlPath`): `Q5_0` with the offset per value, and `Q4_K` and
//! `Q6_K` as `ggml_vec_dot_*_q8_K`, its tiled k-quant mat-mul and (`Q4_K`) its repacked gemv and
//! gemm sum them.

use super::{f16_at, hsum_epi32, hsum_ps};
use crate::dot::{ActKind, ActRow, ActTile, GgmlPath, PackedFn, Q8K_SUMS, QuantizeActsFn, RowsFn};
use crate::quant::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, BlockMxfp4,
    IQ1_DELTA, IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, MXFP4_VALUES,
    SIGNS_PM1, e8m0_half,
};
use crate::quant::{
    BlockIq4Nl, BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0,
    BlockQ5_1, BlockQ5K, BlockQ6K, BlockQ8_0, F16Bytes, GgmlType, IQ4_NL_VALUES, iq4xs_scale,
    q3k_scales, scale_min_k4,
};
use std::arch::x86_64::*;

/// The two ways to take 8-bit dot products on 256-bit registers.
pub(super) trait Dot {
    /// Sums of 4 adjacent products `u·s` (u unsigned, s signed) in 8 i32 lanes. Exact as long as
    /// each pair of adjacent products fits an i16 (`maddubs` saturates; `vpdpbusd` does not).
    ///
    /// # Safety
    /// the caller runs with AVX2 enabled.
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i;
    /// `acc +` sums of adjacent i16 pairs of `p·sc`, as i32 lanes.
    ///
    /// # Safety
    /// the caller runs with AVX2 enabled.
    unsafe fn madd_acc(acc: __m256i, p: __m256i, sc: __m256i) -> __m256i;
}

/// AVX2: `maddubs` to i16 pairs, `madd` to i32.
pub(super) struct Avx2;
/// AVX-512 VNNI on 256-bit registers.
pub(super) struct Vnni;

impl Dot for Avx2 {
    /// # Safety
    /// the caller runs with AVX2 enabled.
    #[inline(always)]
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: the caller runs with AVX2 enabled.
        unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)) }
    }
    /// # Safety
    /// The features of the `Dot` flavour (AVX2, or AVX-512 VL + VNNI) are enabled.
    #[inline(always)]
    unsafe fn madd_acc(acc: __m256i, p: __m256i, sc: __m256i) -> __m256i {
        // SAFETY: as above.
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc)) }
    }
}

impl Dot for Vnni {
    /// # Safety
    /// the caller runs with AVX-512 VL + VNNI enabled.
    #[inline(always)]
    unsafe fn dot(u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: the caller runs with AVX-512 VL + VNNI enabled.
        unsafe { _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s) }
    }
    /// # Safety
    /// The features of the `Dot` flavour (AVX2, or AVX-512 VL + VNNI) are enabled.
    #[inline(always)]
    unsafe fn madd_acc(acc: __m256i, p: __m256i, sc: __m256i) -> __m256i {
        // SAFETY: as above.
        unsafe { _mm256_dpwssd_epi32(acc, p, sc) }
    }
}

// ---------------------------------------------------------------------------------------------
// Unpacking helpers. All `#[inline(always)]`: they are only ever inlined into the
// `#[target_feature]` wrappers at the bottom, which provide the instruction sets.

/// 32 nibbles (16 bytes at `p`, ggml order: low nibbles are values 0–15) as 32 bytes.
///
/// # Safety
/// `p` is valid for 16 bytes (caller); AVX2 is enabled.
#[inline(always)]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    // SAFETY: `p` is valid for 16 bytes (caller); AVX2 is enabled.
    unsafe {
        let v = _mm_loadu_si128(p.cast());
        _mm256_and_si256(
            _mm256_set_m128i(_mm_srli_epi16::<4>(v), v),
            _mm256_set1_epi8(0xF),
        )
    }
}

/// 0x10 in byte `k` where bit `k` of the little-endian u32 at `p` is set, else 0.
///
/// # Safety
/// `p` is valid for 4 bytes (caller); AVX2 is enabled.
#[inline(always)]
unsafe fn bits32_to_0x10(p: *const u8) -> __m256i {
    // SAFETY: `p` is valid for 4 bytes (caller); AVX2 is enabled.
    unsafe {
        let x = _mm256_set1_epi32(p.cast::<i32>().read_unaligned());
        let spread = _mm256_shuffle_epi8(
            x,
            _mm256_set_epi64x(
                0x0303030303030303,
                0x0202020202020202,
                0x0101010101010101,
                0x0000000000000000,
            ),
        );
        let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }
}

/// # Safety
/// `p` is valid for 32 bytes (caller).
#[inline(always)]
unsafe fn load(p: *const i8) -> __m256i {
    // SAFETY: `p` is valid for 32 bytes (caller).
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// `|v|` (as unsigned bytes) and `x` with the sign of `v` applied: `Σ|v|·sign(x, v) = Σ v·x`.
///
/// # Safety
/// AVX2 is enabled.
#[inline(always)]
unsafe fn sign_split(v: __m256i, x: __m256i) -> (__m256i, __m256i) {
    // SAFETY: AVX2 is enabled.
    unsafe { (_mm256_sign_epi8(v, v), _mm256_sign_epi8(x, v)) }
}

/// Adds `k` to lane 0 of `v`.
///
/// # Safety
/// AVX2 is enabled.
#[inline(always)]
unsafe fn add_lane0(v: __m256i, k: i32) -> __m256i {
    // SAFETY: AVX2 is enabled.
    unsafe { _mm256_add_epi32(v, _mm256_castsi128_si256(_mm_cvtsi32_si128(k))) }
}

/// The IQ4_NL grid in both 128-bit lanes, for `pshufb` lookups.
///
/// # Safety
/// 16 bytes read from a 16-byte array; AVX2 is enabled.
#[inline(always)]
unsafe fn iq4_lut() -> __m256i {
    // SAFETY: 16 bytes read from a 16-byte array; AVX2 is enabled.
    unsafe { _mm256_broadcastsi128_si256(_mm_loadu_si128(IQ4_NL_VALUES.as_ptr().cast())) }
}

/// Scale vector for a 32-value chunk spanning 16-value groups `g` and `g + 1`: their i16 scales
/// in the low and high 128-bit lane.
///
/// # Safety
/// AVX2 is enabled.
#[inline(always)]
unsafe fn scales_16(lo: i16, hi: i16) -> __m256i {
    // SAFETY: AVX2 is enabled.
    unsafe { _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo)) }
}

// ---------------------------------------------------------------------------------------------
// Dot products of one row (`nb` blocks at `w`) with one activation row.

/// # Safety
/// `RowsFn` contract: `nb` blocks at `w`, a Q8 activation row of `32·nb` values.
#[inline(always)]
unsafe fn dot_q4_0<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: `RowsFn` contract: `nb` blocks at `w`, a Q8 activation row of `32·nb` values.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            let b = &*w.cast::<BlockQ4_0>().add(i);
            let q = nibbles32(b.qs.as_ptr());
            let p = add_lane0(
                D::dot(q, load(a.qs.add(32 * i))),
                -8 * i32::from(*a.sums.add(i)),
            );
            let s = _mm256_set1_ps(f16_at(b.d) * *a.d.add(i));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc);
        }
        hsum_ps(acc)
    }
}

/// # Safety
/// The `RowsFn` contract: `nb` blocks at `w`, a Q8 activation row of `32·nb` values.
#[inline(always)]
unsafe fn dot_q4_1<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q4_0`.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut mins = 0.0f32;
        for i in 0..nb {
            let b = &*w.cast::<BlockQ4_1>().add(i);
            let q = nibbles32(b.qs.as_ptr());
            let p = D::dot(q, load(a.qs.add(32 * i)));
            let da = *a.d.add(i);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f16_at(b.d) * da), acc);
            mins += f16_at(b.m) * *a.s.add(i);
        }
        hsum_ps(acc) + mins
    }
}

/// # Safety
/// The `RowsFn` contract: `nb` blocks at `w`, a Q8 activation row of `32·nb` values.
#[inline(always)]
unsafe fn dot_q5_0<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q4_0`.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            let b = &*w.cast::<BlockQ5_0>().add(i);
            let q = _mm256_or_si256(nibbles32(b.qs.as_ptr()), bits32_to_0x10(b.qh.as_ptr()));
            let p = add_lane0(
                D::dot(q, load(a.qs.add(32 * i))),
                -16 * i32::from(*a.sums.add(i)),
            );
            let s = _mm256_set1_ps(f16_at(b.d) * *a.d.add(i));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), s, acc);
        }
        hsum_ps(acc)
    }
}

/// `Q5_0` as llama.cpp's x86 kernels take it (`ggml_vec_dot_q5_0_q8_0`, `tinyBLAS_Q0_AVX`):
/// the offset applied per value (`q − 16` as signed bytes, sign trick), so each of the eight
/// lanes holds its own four values' signed sum, as in ggml's accumulator. [`dot_q5_0`] folds
/// the offset into lane 0 instead: the same total, different float rounding.
///
/// # Safety
/// The `RowsFn` contract: `nb` blocks at `w`, a Q8 activation row of `32·nb` values.
#[inline(always)]
unsafe fn dot_q5_0_ggml<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q4_0`.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            let b = &*w.cast::<BlockQ5_0>().add(i);
            let q = _mm256_or_si256(nibbles32(b.qs.as_ptr()), bits32_to_0x10(b.qh.as_ptr()));
            let v = _mm256_sub_epi8(q, _mm256_set1_epi8(16));
            let (u, s) = sign_split(v, load(a.qs.add(32 * i)));
            let sc = _mm256_set1_ps(f16_at(b.d) * *a.d.add(i));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(D::dot(u, s)), sc, acc);
        }
        hsum_ps(acc)
    }
}

/// # Safety
/// The `RowsFn` contract: `nb` blocks at `w`, a Q8 activation row of `32·nb` values.
#[inline(always)]
unsafe fn dot_q5_1<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q4_0`.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut mins = 0.0f32;
        for i in 0..nb {
            let b = &*w.cast::<BlockQ5_1>().add(i);
            let q = _mm256_or_si256(nibbles32(b.qs.as_ptr()), bits32_to_0x10(b.qh.as_ptr()));
            let p = D::dot(q, load(a.qs.add(32 * i)));
            let da = *a.d.add(i);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(f16_at(b.d) * da), acc);
            mins += f16_at(b.m) * *a.s.add(i);
        }
        hsum_ps(acc) + mins
    }
}

/// # Safety
/// The `RowsFn` contract: `nb` blocks at `w`, a Q8 activation row of `32·nb` values.
#[inline(always)]
unsafe fn dot_q8_0<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q4_0`.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            let b = &*w.cast::<BlockQ8_0>().add(i);
            let (u, s) = sign_split(load(b.qs.as_ptr()), load(a.qs.add(32 * i)));
            let p = D::dot(u, s);
            let sc = _mm256_set1_ps(f16_at(b.d) * *a.d.add(i));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc);
        }
        hsum_ps(acc)
    }
}

/// # Safety
/// The `RowsFn` contract: `nb` blocks at `w`, a Q8 activation row of `32·nb` values.
#[inline(always)]
unsafe fn dot_iq4_nl<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q4_0`.
    unsafe {
        let lut = iq4_lut();
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            let b = &*w.cast::<BlockIq4Nl>().add(i);
            let v = _mm256_shuffle_epi8(lut, nibbles32(b.qs.as_ptr()));
            let (u, s) = sign_split(v, load(a.qs.add(32 * i)));
            let sc = _mm256_set1_ps(f16_at(b.d) * *a.d.add(i));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(D::dot(u, s)), sc, acc);
        }
        hsum_ps(acc)
    }
}

/// `Σ_g m[g]·bsum[g]` over the 16 activation group sums of super-block `i`, with `m` given as
/// 16 i16 multipliers.
///
/// # Safety
/// a Q8K row has 16 sums per super-block; AVX2 is enabled.
#[inline(always)]
unsafe fn bsum_dot(a: ActRow, i: usize, m: __m256i) -> i32 {
    // SAFETY: a Q8K row has 16 sums per super-block; AVX2 is enabled.
    unsafe {
        hsum_epi32(_mm256_madd_epi16(
            _mm256_loadu_si256(a.sums.add(Q8K_SUMS * i).cast()),
            m,
        ))
    }
}

/// # Safety
/// `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_q2_k<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut mins = 0.0f32;
        let m3 = _mm256_set1_epi8(3);
        for i in 0..nb {
            let b = &*w.cast::<BlockQ2K>().add(i);
            let sc = _mm_loadu_si128(b.scales.as_ptr().cast());
            let m16 =
                _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(sc), _mm_set1_epi8(0xF)));
            let summ = bsum_dot(a, i, m16);
            let scales: [u8; 16] = b.scales.map(|s| s & 0xF);
            let x = a.qs.add(256 * i);
            let mut isum = _mm256_setzero_si256();
            for h in 0..2 {
                let mut bits = _mm256_loadu_si256(b.qs.as_ptr().add(32 * h).cast());
                for j in 0..4 {
                    let q = _mm256_and_si256(bits, m3);
                    bits = _mm256_srli_epi16::<2>(bits);
                    let g = 8 * h + 2 * j;
                    let p = _mm256_maddubs_epi16(q, load(x.add(128 * h + 32 * j)));
                    let s = scales_16(i16::from(scales[g]), i16::from(scales[g + 1]));
                    isum = D::madd_acc(isum, p, s);
                }
            }
            let da = *a.d.add(i);
            acc = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(isum),
                _mm256_set1_ps(da * f16_at(b.d)),
                acc,
            );
            mins += da * f16_at(b.dmin) * summ as f32;
        }
        hsum_ps(acc) - mins
    }
}

/// # Safety
/// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_q3_k<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q2_k`.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let m3 = _mm256_set1_epi8(3);
        let one = _mm256_set1_epi8(1);
        for i in 0..nb {
            let b = &*w.cast::<BlockQ3K>().add(i);
            let scales = q3k_scales(&b.scales).map(|s| i16::from(s) - 32);
            // Values are stored as q + 4 (0..8, unsigned): subtract 4·Σ sc·bsum afterwards.
            let sc16 = _mm256_loadu_si256(scales.as_ptr().cast());
            let offset = 4 * bsum_dot(a, i, sc16);
            let x = a.qs.add(256 * i);
            let mut hm = _mm256_loadu_si256(b.hmask.as_ptr().cast());
            let mut isum = _mm256_setzero_si256();
            for h in 0..2 {
                let mut bits = _mm256_loadu_si256(b.qs.as_ptr().add(32 * h).cast());
                for j in 0..4 {
                    let high = _mm256_slli_epi16::<2>(_mm256_and_si256(hm, one));
                    hm = _mm256_srli_epi16::<1>(hm);
                    let q = _mm256_or_si256(_mm256_and_si256(bits, m3), high);
                    bits = _mm256_srli_epi16::<2>(bits);
                    let g = 8 * h + 2 * j;
                    let p = _mm256_maddubs_epi16(q, load(x.add(128 * h + 32 * j)));
                    isum = D::madd_acc(isum, p, scales_16(scales[g], scales[g + 1]));
                }
            }
            let isum = add_lane0(isum, -offset);
            let s = _mm256_set1_ps(*a.d.add(i) * f16_at(b.d));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, acc);
        }
        hsum_ps(acc)
    }
}

/// `Q4_K` (`Q5 = false`) and `Q5_K` (`Q5 = true`): 8 groups of 32 with 6-bit scales and mins.
///
/// # Safety
/// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_k32<D: Dot, const Q5: bool>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q2_k` (the two block types share the header layout: d, dmin, scales).
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut mins = 0.0f32;
        let m4 = _mm256_set1_epi8(0xF);
        let one = _mm256_set1_epi8(1);
        for i in 0..nb {
            let (d, dmin, packed, qs, qh) = if Q5 {
                let b = &*w.cast::<BlockQ5K>().add(i);
                (b.d, b.dmin, &b.scales, b.qs.as_ptr(), b.qh.as_ptr())
            } else {
                let b = &*w.cast::<BlockQ4K>().add(i);
                (b.d, b.dmin, &b.scales, b.qs.as_ptr(), std::ptr::null())
            };
            let mut sc = [0i16; 8];
            let mut m = [0i16; 16];
            for g in 0..8 {
                let (s, mm) = scale_min_k4(g, packed);
                sc[g] = i16::from(s);
                m[2 * g] = i16::from(mm);
                m[2 * g + 1] = i16::from(mm);
            }
            let summ = bsum_dot(a, i, _mm256_loadu_si256(m.as_ptr().cast()));
            let x = a.qs.add(256 * i);
            let mut high = if Q5 {
                _mm256_loadu_si256(qh.cast())
            } else {
                _mm256_setzero_si256()
            };
            let mut isum = _mm256_setzero_si256();
            for j in 0..4 {
                let bits = _mm256_loadu_si256(qs.add(32 * j).cast());
                let mut lo = _mm256_and_si256(bits, m4);
                let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
                if Q5 {
                    lo = _mm256_or_si256(lo, _mm256_slli_epi16::<4>(_mm256_and_si256(high, one)));
                    hi = _mm256_or_si256(
                        hi,
                        _mm256_slli_epi16::<3>(_mm256_and_si256(high, _mm256_set1_epi8(2))),
                    );
                    high = _mm256_srli_epi16::<2>(high);
                }
                let p = _mm256_maddubs_epi16(lo, load(x.add(64 * j)));
                isum = D::madd_acc(isum, p, _mm256_set1_epi16(sc[2 * j]));
                let p = _mm256_maddubs_epi16(hi, load(x.add(64 * j + 32)));
                isum = D::madd_acc(isum, p, _mm256_set1_epi16(sc[2 * j + 1]));
            }
            let da = *a.d.add(i);
            acc = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(isum),
                _mm256_set1_ps(da * f16_at(d)),
                acc,
            );
            mins += da * f16_at(dmin) * summ as f32;
        }
        hsum_ps(acc) - mins
    }
}

/// # Safety
/// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_q4_k<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: the caller's `RowsFn` contract.
    unsafe { dot_k32::<D, false>(w, a, nb) }
}

/// # Safety
/// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_q5_k<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: the caller's `RowsFn` contract.
    unsafe { dot_k32::<D, true>(w, a, nb) }
}

/// The integer dot product of Q6_K super-block `b` (values as stored, `q + 32` in 0..64) with
/// the 256 activation bytes at `x`, each 16-value group times its scale, in 8 lanes: lane `m`
/// holds values `4m..4m + 4` of every 32-value chunk (the lanes of `ggml_vec_dot_q6_K_q8_K`).
///
/// # Safety
/// 256 activation bytes at `x`; the features of `D` are enabled.
#[inline(always)]
unsafe fn q6k_isum<D: Dot>(b: &BlockQ6K, x: *const i8) -> __m256i {
    // SAFETY: 256 activation bytes at `x`; the block's arrays are inside `b`.
    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let m3 = _mm256_set1_epi8(3);
        let scales = b.scales.map(i16::from);
        let mut isum = _mm256_setzero_si256();
        for h in 0..2 {
            let l0 = _mm256_loadu_si256(b.ql.as_ptr().add(64 * h).cast());
            let l1 = _mm256_loadu_si256(b.ql.as_ptr().add(64 * h + 32).cast());
            let hb = _mm256_loadu_si256(b.qh.as_ptr().add(32 * h).cast());
            let parts = [
                (_mm256_and_si256(l0, m4), hb),
                (_mm256_and_si256(l1, m4), _mm256_srli_epi16::<2>(hb)),
                (
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4),
                    _mm256_srli_epi16::<4>(hb),
                ),
                (
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4),
                    _mm256_srli_epi16::<6>(hb),
                ),
            ];
            for (part, (low, high)) in parts.into_iter().enumerate() {
                let q = _mm256_or_si256(low, _mm256_slli_epi16::<4>(_mm256_and_si256(high, m3)));
                let g = 8 * h + 2 * part;
                let p = _mm256_maddubs_epi16(q, load(x.add(128 * h + 32 * part)));
                isum = D::madd_acc(isum, p, scales_16(scales[g], scales[g + 1]));
            }
        }
        isum
    }
}

/// # Safety
/// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_q6_k<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q2_k`.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            let b = &*w.cast::<BlockQ6K>().add(i);
            let scales = b.scales.map(i16::from);
            // Values are stored as q + 32 (0..64): subtract 32·Σ sc·bsum afterwards.
            let offset = 32 * bsum_dot(a, i, _mm256_loadu_si256(scales.as_ptr().cast()));
            let isum = add_lane0(q6k_isum::<D>(b, a.qs.add(256 * i)), -offset);
            let s = _mm256_set1_ps(*a.d.add(i) * f16_at(b.d));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, acc);
        }
        hsum_ps(acc)
    }
}

// ---------------------------------------------------------------------------------------------
// K-quants in llama.cpp's float orders (`MatrixOptions::ggml_order`), one kernel per code path
// llama.cpp takes on x86 (`dot::GgmlPath`). The integer sums are exact in every path; what
// differs is where they are converted to float and how the products are summed.

/// `ggml_vec_dot_q6_K_q8_K` (AVX2): the eight lanes of [`q6k_isum`], each less its own share
/// of the `−32` offset (lane `m`: `32·(sc[2m]·bsum[2m] + sc[2m+1]·bsum[2m+1])`), each summed
/// over the super-blocks as `fma(d_x·d_w, float(lane), acc)`, then `hsum_float_8`.
///
/// # Safety
/// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_q6_k_vecdot<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q2_k`.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            let b = &*w.cast::<BlockQ6K>().add(i);
            let scales = b.scales.map(i16::from);
            let offset = _mm256_slli_epi32::<5>(_mm256_madd_epi16(
                _mm256_loadu_si256(a.sums.add(Q8K_SUMS * i).cast()),
                _mm256_loadu_si256(scales.as_ptr().cast()),
            ));
            let lanes = _mm256_sub_epi32(q6k_isum::<D>(b, a.qs.add(256 * i)), offset);
            let d = *a.d.add(i) * f16_at(b.d);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(lanes), acc);
        }
        hsum_ps(acc)
    }
}

/// The tiled k-quant mat-mul (`ggml-cpu/tiled`) on Q6_K: per super-block the whole integer
/// sum `S`, then `acc = fma(float(S)·d_w, d_x, acc)`.
///
/// # Safety
/// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_q6_k_tiled<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q2_k`.
    unsafe {
        let mut acc = 0.0f32;
        for i in 0..nb {
            let b = &*w.cast::<BlockQ6K>().add(i);
            let scales = b.scales.map(i16::from);
            let offset = 32 * bsum_dot(a, i, _mm256_loadu_si256(scales.as_ptr().cast()));
            let s = hsum_epi32(q6k_isum::<D>(b, a.qs.add(256 * i))).wrapping_sub(offset);
            acc = (s as f32 * f16_at(b.d)).mul_add(*a.d.add(i), acc);
        }
        acc
    }
}

/// The scales and mins of a Q4_K super-block as i16.
#[inline(always)]
fn q4k_scales_mins(packed: &[u8; 12]) -> ([i16; 8], [i16; 8]) {
    let mut sc = [0i16; 8];
    let mut m = [0i16; 8];
    for g in 0..8 {
        let (s, mm) = scale_min_k4(g, packed);
        sc[g] = i16::from(s);
        m[g] = i16::from(mm);
    }
    (sc, m)
}

/// The integer sums of 64-value chunk `j` (32-value groups `2j`, `2j + 1`) of Q4_K
/// super-block `b` against activation row `a`'s super-block `i`: (`Σ sc·Σ q·x`, in 8 lanes as
/// `ggml_vec_dot_q4_K_q8_K` keeps them) and the scalar `Σ m·bsum32` of the two groups.
///
/// # Safety
/// `a` is a Q8K row with super-block `i`; the features of `D` are enabled.
#[inline(always)]
unsafe fn q4k_chunk<D: Dot>(
    b: &BlockQ4K,
    sc: &[i16; 8],
    m: &[i16; 8],
    a: ActRow,
    i: usize,
    j: usize,
) -> (__m256i, i32) {
    // SAFETY: `a` is a Q8K row with super-block `i` (caller); the block's arrays are in `b`.
    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let x = a.qs.add(256 * i + 64 * j);
        let bits = _mm256_loadu_si256(b.qs.as_ptr().add(32 * j).cast());
        let lo = _mm256_and_si256(bits, m4);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4);
        let isum = D::madd_acc(
            _mm256_setzero_si256(),
            _mm256_maddubs_epi16(lo, load(x)),
            _mm256_set1_epi16(sc[2 * j]),
        );
        let isum = D::madd_acc(
            isum,
            _mm256_maddubs_epi16(hi, load(x.add(32))),
            _mm256_set1_epi16(sc[2 * j + 1]),
        );
        let s32 = a.sums.add(Q8K_SUMS * i + 16);
        let mins = i32::from(m[2 * j]) * i32::from(*s32.add(2 * j))
            + i32::from(m[2 * j + 1]) * i32::from(*s32.add(2 * j + 1));
        (isum, mins)
    }
}

/// `ggml_vec_dot_q4_K_q8_K` (AVX2): eight lanes of scaled sums, each summed over the
/// super-blocks as `fma(d_x·d_w, float(lane), acc)`; the mins in four lanes (lane `p`: chunk
/// `p`'s `Σ m·bsum32`) as `fma(−d_x·dmin, float(lane), acc_m)`; then `hsum_float_8(acc)` plus
/// `(m0 + m2) + (m1 + m3)`.
///
/// # Safety
/// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_q4_k_vecdot<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q2_k`.
    unsafe {
        let mut acc = _mm256_setzero_ps();
        let mut acc_m = [0.0f32; 4];
        for i in 0..nb {
            let b = &*w.cast::<BlockQ4K>().add(i);
            let (sc, m) = q4k_scales_mins(&b.scales);
            let dx = *a.d.add(i);
            let dmin = -dx * f16_at(b.dmin);
            let mut isum = _mm256_setzero_si256();
            for (j, acc_m) in acc_m.iter_mut().enumerate() {
                let (s, mins) = q4k_chunk::<D>(b, &sc, &m, a, i, j);
                isum = _mm256_add_epi32(isum, s);
                *acc_m = dmin.mul_add(mins as f32, *acc_m);
            }
            let d = dx * f16_at(b.d);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), acc);
        }
        hsum_ps(acc) + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]))
    }
}

/// The tiled k-quant mat-mul on Q4_K: per super-block the whole sums `S` and `M = Σ m·bsum32`,
/// `r = fma(−dmin, float(M), float(S)·d_w)`, `acc = fma(r, d_x, acc)`.
///
/// # Safety
/// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_q4_k_tiled<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q2_k`.
    unsafe {
        let mut acc = 0.0f32;
        for i in 0..nb {
            let b = &*w.cast::<BlockQ4K>().add(i);
            let (sc, m) = q4k_scales_mins(&b.scales);
            let (mut s, mut mins) = (0i32, 0i32);
            for j in 0..4 {
                let (v, mm) = q4k_chunk::<D>(b, &sc, &m, a, i, j);
                s = s.wrapping_add(hsum_epi32(v));
                mins += mm;
            }
            let r = (-f16_at(b.dmin)).mul_add(mins as f32, s as f32 * f16_at(b.d));
            acc = r.mul_add(*a.d.add(i), acc);
        }
        acc
    }
}

/// `ggml_gemv_q4_K_8x8_q8_K` (`GEMM = false`) and `ggml_gemm_q4_K_8x8_q8_K` (`GEMM = true`), the
/// kernels of llama.cpp's repacked Q4_K, for one row: two accumulators, `acc` taking
/// `fma(float(S), d_w·d_x, acc)` and `acc_m` `fma(float(M), dmin·d_x, acc_m)`, with `S`, `M` the
/// sums of a whole super-block (gemv) or of each 64-value chunk (gemm); then `acc − acc_m`.
///
/// # Safety
/// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_q4_k_repacked<D: Dot, const GEMM: bool>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q2_k`.
    unsafe {
        let (mut acc, mut acc_m) = (0.0f32, 0.0f32);
        for i in 0..nb {
            let b = &*w.cast::<BlockQ4K>().add(i);
            let (sc, m) = q4k_scales_mins(&b.scales);
            let dx = *a.d.add(i);
            let (d, dmin) = (f16_at(b.d) * dx, f16_at(b.dmin) * dx);
            let (mut s, mut mins) = (0i32, 0i32);
            for j in 0..4 {
                let (v, mm) = q4k_chunk::<D>(b, &sc, &m, a, i, j);
                let v = hsum_epi32(v);
                if GEMM {
                    acc = (v as f32).mul_add(d, acc);
                    acc_m = (mm as f32).mul_add(dmin, acc_m);
                } else {
                    s = s.wrapping_add(v);
                    mins += mm;
                }
            }
            if !GEMM {
                acc = (s as f32).mul_add(d, acc);
                acc_m = (mins as f32).mul_add(dmin, acc_m);
            }
        }
        acc - acc_m
    }
}

/// # Safety
/// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_q4_k_gemv<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: the caller's `RowsFn` contract.
    unsafe { dot_q4_k_repacked::<D, false>(w, a, nb) }
}

/// # Safety
/// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_q4_k_gemm<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: the caller's `RowsFn` contract.
    unsafe { dot_q4_k_repacked::<D, true>(w, a, nb) }
}

/// # Safety
/// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_iq4_xs<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q2_k`.
    unsafe {
        let lut = iq4_lut();
        let mut acc = _mm256_setzero_ps();
        for i in 0..nb {
            let b = &*w.cast::<BlockIq4Xs>().add(i);
            let x = a.qs.add(256 * i);
            let mut isum = _mm256_setzero_si256();
            for g in 0..8 {
                let v = _mm256_shuffle_epi8(lut, nibbles32(b.qs.as_ptr().add(16 * g)));
                let (u, s) = sign_split(v, load(x.add(32 * g)));
                let sc = _mm256_set1_epi16(i16::from(iq4xs_scale(b, g)) - 32);
                isum = D::madd_acc(isum, _mm256_maddubs_epi16(u, s), sc);
            }
            let s = _mm256_set1_ps(*a.d.add(i) * f16_at(b.d));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, acc);
        }
        hsum_ps(acc)
    }
}

// ---------------------------------------------------------------------------------------------
// `MXFP4` and the IQ lattice types, in llama.cpp's float order (`ggml_vec_dot_*` in
// `ggml-cpu/arch/x86/quants.c`, AVX2): eight i32 lanes per super-block (lane `m` holds values
// `4m..4m + 4` of every 32-value chunk, times the chunk's scale), converted to float and summed
// as `fma(d_w·d_x, lanes, acc)`, then `hsum_float_8` times the grid's common factor. The integer
// lanes are exact however they are formed, so these equal llama.cpp's results bit for bit.

/// Block `i` of an `MXFP4` row: its integer lanes and `d_x · e8m0_half(e)`.
///
/// # Safety
/// Block `i` lies inside the row at `w` and the activation row `a`; the features of `D` are
/// enabled.
#[inline(always)]
unsafe fn mxfp4_block<D: Dot>(w: *const u8, a: ActRow, i: usize, lut: __m256i) -> (__m256i, f32) {
    // SAFETY: the caller's bounds and features.
    unsafe {
        let b = &*w.cast::<BlockMxfp4>().add(i);
        let v = _mm256_shuffle_epi8(lut, nibbles32(b.qs.as_ptr()));
        let (u, s) = sign_split(v, load(a.qs.add(32 * i)));
        (D::dot(u, s), *a.d.add(i) * e8m0_half(b.e))
    }
}

/// Block `i` of an `IQ4_NL` row: its integer lanes and `d_x · d_w`.
///
/// # Safety
/// As [`mxfp4_block`].
#[inline(always)]
unsafe fn iq4_nl_block<D: Dot>(w: *const u8, a: ActRow, i: usize, lut: __m256i) -> (__m256i, f32) {
    // SAFETY: the caller's bounds and features.
    unsafe {
        let b = &*w.cast::<BlockIq4Nl>().add(i);
        let v = _mm256_shuffle_epi8(lut, nibbles32(b.qs.as_ptr()));
        let (u, s) = sign_split(v, load(a.qs.add(32 * i)));
        (D::dot(u, s), *a.d.add(i) * f16_at(b.d))
    }
}

/// Block `i` of a 4-bit lookup format with one scale per 32 values: `MXFP4` (`MX`) or
/// `IQ4_NL`.
///
/// # Safety
/// As [`mxfp4_block`].
#[inline(always)]
unsafe fn lut4_block<D: Dot, const MX: bool>(
    w: *const u8,
    a: ActRow,
    i: usize,
    lut: __m256i,
) -> (__m256i, f32) {
    // SAFETY: the caller's bounds and features.
    unsafe {
        if MX {
            mxfp4_block::<D>(w, a, i, lut)
        } else {
            iq4_nl_block::<D>(w, a, i, lut)
        }
    }
}

/// The 4-bit lookup formats with one scale per 32 values (`MXFP4` when `MX`, `IQ4_NL`) as
/// ggml's `vec_dot` (AVX2) sums them: two accumulators (even and odd blocks) over pairs of
/// blocks, each `fma(d_x·d_w, float(lanes), acc)`, their sum's `hsum_float_8`, then a last odd
/// block added in scalar as `fma(d, isum, sum)`.
///
/// # Safety
/// The `RowsFn` contract: `nb` blocks at `w`, a Q8 activation row of `32·nb` values.
#[inline(always)]
unsafe fn dot_lut4_vecdot<D: Dot, const MX: bool>(
    w: *const u8,
    a: ActRow,
    nb: usize,
    lut: __m256i,
) -> f32 {
    // SAFETY: the caller's contract.
    unsafe {
        let (mut acc1, mut acc2) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 1 < nb {
            let (p1, d1) = lut4_block::<D, MX>(w, a, i, lut);
            let (p2, d2) = lut4_block::<D, MX>(w, a, i + 1, lut);
            acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d1), _mm256_cvtepi32_ps(p1), acc1);
            acc2 = _mm256_fmadd_ps(_mm256_set1_ps(d2), _mm256_cvtepi32_ps(p2), acc2);
            i += 2;
        }
        let mut sum = hsum_ps(_mm256_add_ps(acc1, acc2));
        if i < nb {
            let (p, d) = lut4_block::<D, MX>(w, a, i, lut);
            // `sumf += d * (sumi1 + sumi2)`, which C compilers contract to an fma.
            sum = d.mul_add(hsum_epi32(p) as f32, sum);
        }
        sum
    }
}

/// `MXFP4` as `ggml_vec_dot_mxfp4_q8_0` sums it (see [`dot_lut4_vecdot`]).
///
/// # Safety
/// The `RowsFn` contract: `nb` blocks at `w`, a Q8 activation row of `32·nb` values.
#[inline(always)]
unsafe fn dot_mxfp4<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q4_0`.
    unsafe {
        let lut = _mm256_broadcastsi128_si256(_mm_loadu_si128(MXFP4_VALUES.as_ptr().cast()));
        dot_lut4_vecdot::<D, true>(w, a, nb, lut)
    }
}

/// `IQ4_NL` as `ggml_vec_dot_iq4_nl_q8_0` sums it (see [`dot_lut4_vecdot`]): llama.cpp's path
/// for matrices its loader leaves in ggml layout.
///
/// # Safety
/// The `RowsFn` contract: `nb` blocks at `w`, a Q8 activation row of `32·nb` values.
#[inline(always)]
unsafe fn dot_iq4_nl_vecdot<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q4_0`.
    unsafe { dot_lut4_vecdot::<D, false>(w, a, nb, iq4_lut()) }
}

/// `IQ4_NL` as llama.cpp's repacked kernels (`ggml_gemv_iq4_nl_8x8_q8_0`, `_gemm_`, the
/// template `MXFP4` shares) sum it: per block `acc = fma(float(S), d_w·d_x, acc)` — the order
/// of the 512-bit packed kernel, for the rows it does not cover.
///
/// # Safety
/// The `RowsFn` contract: `nb` blocks at `w`, a Q8 activation row of `32·nb` values.
#[inline(always)]
unsafe fn dot_iq4_nl_repacked<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q4_0`.
    unsafe {
        let lut = iq4_lut();
        let mut acc = 0.0f32;
        for i in 0..nb {
            let b = &*w.cast::<BlockIq4Nl>().add(i);
            let v = _mm256_shuffle_epi8(lut, nibbles32(b.qs.as_ptr()));
            let (u, s) = sign_split(v, load(a.qs.add(32 * i)));
            // The repacked kernels multiply the weight's scale by the activation's.
            acc = (hsum_epi32(D::dot(u, s)) as f32).mul_add(f16_at(b.d) * *a.d.add(i), acc);
        }
        acc
    }
}

/// `MXFP4` as llama.cpp's repacked kernels (`ggml_gemv_mxfp4_8x8_q8_0`, `_gemm_`) sum it: per
/// block the whole integer sum, `acc = fma(float(S), e8m0_half(e)·d_x, acc)` — the order of the
/// packed kernels, for the rows they do not cover.
///
/// # Safety
/// The `RowsFn` contract: `nb` blocks at `w`, a Q8 activation row of `32·nb` values.
#[inline(always)]
unsafe fn dot_mxfp4_repacked<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q4_0`.
    unsafe {
        let lut = _mm256_broadcastsi128_si256(_mm_loadu_si128(MXFP4_VALUES.as_ptr().cast()));
        let mut acc = 0.0f32;
        for i in 0..nb {
            let (p, d) = mxfp4_block::<D>(w, a, i, lut);
            acc = (hsum_epi32(p) as f32).mul_add(d, acc);
        }
        acc
    }
}

/// ±1 bytes from 32 sign bits (the little-endian u32 at `p`): byte `k` is −1 where bit `k` is set.
///
/// # Safety
/// `p` is valid for 4 bytes (caller); AVX2 is enabled.
#[inline(always)]
unsafe fn signs32(p: *const u8) -> __m256i {
    // SAFETY: `p` is valid for 4 bytes (caller); AVX2 is enabled.
    unsafe {
        let x = _mm256_set1_epi32(p.cast::<i32>().read_unaligned());
        let spread = _mm256_shuffle_epi8(
            x,
            _mm256_set_epi64x(
                0x0303030303030303,
                0x0202020202020202,
                0x0101010101010101,
                0x0000000000000000,
            ),
        );
        let bit = _mm256_set1_epi64x(0x8040201008040201u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
        _mm256_or_si256(set, _mm256_set1_epi8(1))
    }
}

/// Four 8-value grid points as one vector.
///
/// # Safety
/// AVX is enabled.
#[inline(always)]
unsafe fn points4(p: [u64; 4]) -> __m256i {
    // SAFETY: AVX is enabled.
    unsafe { _mm256_set_epi64x(p[3] as i64, p[2] as i64, p[1] as i64, p[0] as i64) }
}

/// Eight 4-value grid points as one vector (`set`, not a store and a reload).
///
/// # Safety
/// AVX is enabled.
#[inline(always)]
unsafe fn points8(g: [u32; 8]) -> __m256i {
    // SAFETY: AVX is enabled.
    unsafe {
        _mm256_set_epi32(
            g[7] as i32,
            g[6] as i32,
            g[5] as i32,
            g[4] as i32,
            g[3] as i32,
            g[2] as i32,
            g[1] as i32,
            g[0] as i32,
        )
    }
}

/// The ±1 sign bytes of four 7-bit sign indices, bits `0..28` of `aux` (7 each).
///
/// # Safety
/// AVX is enabled.
#[inline(always)]
unsafe fn signs_7bit(aux: u32) -> __m256i {
    // SAFETY: AVX is enabled.
    unsafe {
        points4(std::array::from_fn(|l| {
            SIGNS_PM1[((aux >> (7 * l)) & 127) as usize]
        }))
    }
}

/// A little-endian u32 at `p + k`.
///
/// # Safety
/// `p + k` is valid for 4 bytes.
#[inline(always)]
unsafe fn u32_at(p: *const u8, k: usize) -> u32 {
    // SAFETY: the caller's bounds.
    unsafe { p.add(k).cast::<u32>().read_unaligned() }
}

/// The integer sums of one lattice super-block against 256 activations, from which both of
/// llama.cpp's orders are made: `grid` in 8 lanes (lane `m`: values `4m..4m + 4` of every
/// 32-value chunk, times their scales, as ggml's `vec_dot` keeps them), and for the `IQ1` types
/// the 1/8-shift terms — `shift_lanes` in lanes (`IQ1_M`) or `shift` as one integer (`IQ1_S`).
#[derive(Clone, Copy)]
struct Sums {
    grid: __m256i,
    shift_lanes: __m256i,
    shift: i32,
}

/// A lattice super-block unpacked for the dot products: per 32-value chunk `c`, the unsigned
/// grid bytes `u`, the signs to put on the activations `s` (±1 bytes, or the signed grid
/// itself), each value's i16 scale `sc`; for `IQ1_M` the ±1 shift signs of each value `delta`,
/// for `IQ1_S` each chunk's signed shift weight `±(2s + 1)`.
struct Unpacked {
    u: [__m256i; 8],
    s: [__m256i; 8],
    sc: [__m256i; 8],
    delta: [__m256i; 8],
    shift_w: [i32; 8],
}

/// How a lattice type's 1/8 shift enters its sums.
#[derive(PartialEq, Eq)]
enum Shift {
    /// No shift (`IQ2`, `IQ3`).
    None,
    /// One sign per 32-value group, taken through the activations' sums of 32 (`IQ1_S`).
    PerGroup,
    /// One sign per 8 values, taken through the activations themselves (`IQ1_M`).
    PerPoint,
}

/// A lattice super-block as the dot kernels take it.
trait Lattice: Copy {
    /// The grid's common factor, applied once to the whole sum (ggml's `0.125f`, …; for the
    /// `IQ1` types 1, their shift terms taking 1/8).
    const K: f32;
    /// How the 1/8 shift enters (`IQ1` types).
    const SHIFT: Shift = Shift::None;
    /// Chunk `c` (< 8): `(u, s, sc)` of [`Unpacked`].
    ///
    /// # Safety
    /// AVX2 is enabled.
    unsafe fn chunk(&self, c: usize) -> (__m256i, __m256i, __m256i);
    /// The super-block scale.
    fn d(&self) -> F16Bytes;
    /// The shift's `delta` bytes (`IQ1_M`) or weight (`IQ1_S`) of chunk `c`.
    ///
    /// # Safety
    /// AVX2 is enabled.
    #[inline(always)]
    unsafe fn shift(&self, c: usize) -> (__m256i, i32) {
        let _ = c;
        // SAFETY: AVX2 is enabled.
        unsafe { (_mm256_setzero_si256(), 0) }
    }
    /// The whole super-block unpacked.
    ///
    /// # Safety
    /// AVX2 is enabled.
    #[inline(always)]
    unsafe fn unpack(&self) -> Unpacked {
        // SAFETY: AVX2 is enabled.
        unsafe {
            let z = _mm256_setzero_si256();
            let mut p = Unpacked {
                u: [z; 8],
                s: [z; 8],
                sc: [z; 8],
                delta: [z; 8],
                shift_w: [0; 8],
            };
            for c in 0..8 {
                (p.u[c], p.s[c], p.sc[c]) = self.chunk(c);
                if Self::SHIFT != Shift::None {
                    (p.delta[c], p.shift_w[c]) = self.shift(c);
                }
            }
            p
        }
    }
}

/// Adds chunk `c`'s products to `acc`: the grid (`u`, `s`, `sc` of [`Unpacked`]) against the
/// 32 activation bytes `xv`, and the shift as the type takes it (`delta`, or `shift_w` times
/// the activations' sum of 32 `sum32`).
///
/// # Safety
/// The features of `D` are enabled.
#[inline(always)]
unsafe fn sum_chunk<D: Dot, B: Lattice>(
    acc: &mut Sums,
    (u, s, sc): (__m256i, __m256i, __m256i),
    (delta, shift_w): (__m256i, i32),
    xv: __m256i,
    sum32: i16,
) {
    // SAFETY: the caller's features.
    unsafe {
        let xs = _mm256_sign_epi8(xv, s);
        acc.grid = D::madd_acc(acc.grid, _mm256_maddubs_epi16(u, xs), sc);
        match B::SHIFT {
            Shift::None => {}
            Shift::PerGroup => acc.shift += shift_w * i32::from(sum32),
            Shift::PerPoint => {
                let ones = _mm256_set1_epi8(1);
                let d = _mm256_maddubs_epi16(ones, _mm256_sign_epi8(xv, delta));
                acc.shift_lanes = D::madd_acc(acc.shift_lanes, d, sc);
            }
        }
    }
}

/// The integer sums of unpacked super-block `p` of type `B` against the 256 activation bytes at
/// `x`, whose 8 sums of 32 are at `sums32`.
///
/// # Safety
/// 256 bytes at `x`, 8 sums at `sums32`; the features of `D` are enabled.
#[inline(always)]
unsafe fn lattice_sums<D: Dot, B: Lattice>(p: &Unpacked, x: *const i8, sums32: *const i16) -> Sums {
    // SAFETY: the caller's bounds and features.
    unsafe {
        let z = _mm256_setzero_si256();
        let mut acc = Sums {
            grid: z,
            shift_lanes: z,
            shift: 0,
        };
        for c in 0..8 {
            let chunk = (p.u[c], p.s[c], p.sc[c]);
            let shift = (p.delta[c], p.shift_w[c]);
            sum_chunk::<D, B>(&mut acc, chunk, shift, load(x.add(32 * c)), *sums32.add(c));
        }
        acc
    }
}

/// [`lattice_sums`] straight from the block, each chunk unpacked as it is used (one token:
/// nothing to share, and no round trip through memory).
///
/// # Safety
/// As [`lattice_sums`].
#[inline(always)]
unsafe fn lattice_sums_direct<D: Dot, B: Lattice>(b: &B, x: *const i8, sums32: *const i16) -> Sums {
    // SAFETY: the caller's bounds and features.
    unsafe {
        let z = _mm256_setzero_si256();
        let mut acc = Sums {
            grid: z,
            shift_lanes: z,
            shift: 0,
        };
        for c in 0..8 {
            let shift = if B::SHIFT == Shift::None {
                (z, 0)
            } else {
                b.shift(c)
            };
            sum_chunk::<D, B>(
                &mut acc,
                b.chunk(c),
                shift,
                load(x.add(32 * c)),
                *sums32.add(c),
            );
        }
        acc
    }
}

impl Lattice for BlockIq2Xxs {
    const K: f32 = 0.125;
    #[inline(always)]
    unsafe fn chunk(&self, c: usize) -> (__m256i, __m256i, __m256i) {
        // SAFETY: `8c + 8 ≤ 64` bytes of `qs`; AVX2 is enabled.
        unsafe {
            let q = self.qs.as_ptr();
            let (idx, aux) = (u32_at(q, 8 * c), u32_at(q, 8 * c + 4));
            let u = points4(std::array::from_fn(|l| {
                IQ2XXS_GRID[((idx >> (8 * l)) & 0xff) as usize]
            }));
            (
                u,
                signs_7bit(aux),
                _mm256_set1_epi16(2 * (aux >> 28) as i16 + 1),
            )
        }
    }
    #[inline(always)]
    fn d(&self) -> F16Bytes {
        self.d
    }
}

impl Lattice for BlockIq2Xs {
    const K: f32 = 0.125;
    #[inline(always)]
    unsafe fn chunk(&self, c: usize) -> (__m256i, __m256i, __m256i) {
        // SAFETY: AVX2 is enabled.
        unsafe {
            let v: [u16; 4] = std::array::from_fn(|l| {
                u16::from_le_bytes([self.qs[8 * c + 2 * l], self.qs[8 * c + 2 * l + 1]])
            });
            let u = points4(v.map(|v| IQ2XS_GRID[usize::from(v & 511)]));
            let s = points4(v.map(|v| SIGNS_PM1[usize::from(v >> 9)]));
            let sc = self.scales[c];
            (
                u,
                s,
                scales_16(2 * i16::from(sc & 0xf) + 1, 2 * i16::from(sc >> 4) + 1),
            )
        }
    }
    #[inline(always)]
    fn d(&self) -> F16Bytes {
        self.d
    }
}

impl Lattice for BlockIq2S {
    const K: f32 = 0.125;
    #[inline(always)]
    unsafe fn chunk(&self, c: usize) -> (__m256i, __m256i, __m256i) {
        // SAFETY: `32 + 4c + 4 ≤ 64` bytes of `qs`; AVX2 is enabled.
        unsafe {
            let h = usize::from(self.qh[c]);
            let u = points4(std::array::from_fn(|l| {
                IQ2S_GRID[usize::from(self.qs[4 * c + l]) | ((h >> (2 * l)) & 3) << 8]
            }));
            let s = signs32(self.qs.as_ptr().add(32 + 4 * c));
            let sc = self.scales[c];
            (
                u,
                s,
                scales_16(2 * i16::from(sc & 0xf) + 1, 2 * i16::from(sc >> 4) + 1),
            )
        }
    }
    #[inline(always)]
    fn d(&self) -> F16Bytes {
        self.d
    }
}

impl Lattice for BlockIq3Xxs {
    const K: f32 = 0.25;
    #[inline(always)]
    unsafe fn chunk(&self, c: usize) -> (__m256i, __m256i, __m256i) {
        // SAFETY: `64 + 4c + 4 ≤ 96` bytes of `qs`; AVX2 is enabled.
        unsafe {
            let g: [u32; 8] = std::array::from_fn(|k| IQ3XXS_GRID[usize::from(self.qs[8 * c + k])]);
            let u = points8(g);
            let aux = u32_at(self.qs.as_ptr(), 64 + 4 * c);
            (
                u,
                signs_7bit(aux),
                _mm256_set1_epi16(2 * (aux >> 28) as i16 + 1),
            )
        }
    }
    #[inline(always)]
    fn d(&self) -> F16Bytes {
        self.d
    }
}

impl Lattice for BlockIq3S {
    const K: f32 = 1.0;
    #[inline(always)]
    unsafe fn chunk(&self, c: usize) -> (__m256i, __m256i, __m256i) {
        // SAFETY: `4c + 4 ≤ 32` sign bytes; AVX2 is enabled.
        unsafe {
            let h = usize::from(self.qh[c]);
            let g: [u32; 8] = std::array::from_fn(|k| {
                IQ3S_GRID[usize::from(self.qs[8 * c + k]) | ((h >> k) & 1) << 8]
            });
            let u = points8(g);
            let s = signs32(self.signs.as_ptr().add(4 * c));
            let sc = (self.scales[c / 2] >> (4 * (c % 2))) & 0xf;
            (u, s, _mm256_set1_epi16(2 * i16::from(sc) + 1))
        }
    }
    #[inline(always)]
    fn d(&self) -> F16Bytes {
        self.d
    }
}

/// Four `IQ1S_GRID` points (signed bytes −1, 0, 1) as one vector.
///
/// # Safety
/// AVX is enabled.
#[inline(always)]
unsafe fn iq1_points(index: [usize; 4]) -> __m256i {
    // SAFETY: AVX is enabled.
    unsafe { points4(index.map(|k| IQ1S_GRID[k])) }
}

impl Lattice for BlockIq1S {
    const K: f32 = 1.0;
    const SHIFT: Shift = Shift::PerGroup;
    #[inline(always)]
    unsafe fn chunk(&self, c: usize) -> (__m256i, __m256i, __m256i) {
        // SAFETY: AVX2 is enabled.
        unsafe {
            let h = usize::from(self.qh_word(c));
            let g = iq1_points(std::array::from_fn(|l| {
                usize::from(self.qs[4 * c + l]) | ((h >> (3 * l)) & 7) << 8
            }));
            let ls = 2 * ((h >> 12) & 7) as i16 + 1;
            (_mm256_sign_epi8(g, g), g, _mm256_set1_epi16(ls))
        }
    }
    #[inline(always)]
    fn d(&self) -> F16Bytes {
        self.d
    }
    /// `±(2s + 1)` of group `c` (as `ggml_vec_dot_iq1_s_q8_K` takes the shift, through the
    /// activations' sums of 32).
    #[inline(always)]
    unsafe fn shift(&self, c: usize) -> (__m256i, i32) {
        // SAFETY: AVX2 is enabled.
        unsafe {
            let h = self.qh_word(c);
            let ls = 2 * i32::from((h >> 12) & 7) + 1;
            (
                _mm256_setzero_si256(),
                if h & 0x8000 != 0 { -ls } else { ls },
            )
        }
    }
}

impl BlockIq1S {
    /// The `qh` word of group `c`.
    #[inline(always)]
    fn qh_word(&self, c: usize) -> u16 {
        u16::from_le_bytes([self.qh[2 * c], self.qh[2 * c + 1]])
    }
}

impl BlockIq1M {
    /// The four scale words.
    #[inline(always)]
    fn scale_words(&self) -> [u16; 4] {
        std::array::from_fn(|k| u16::from_le_bytes([self.scales[2 * k], self.scales[2 * k + 1]]))
    }

    /// The nibble of grid point `l` (< 4) of chunk `c`: index bits 8–10 and the shift sign.
    #[inline(always)]
    fn nibble(&self, c: usize, l: usize) -> usize {
        usize::from(self.qh[2 * c + l / 2] >> (4 * (l % 2))) & 0xf
    }
}

impl Lattice for BlockIq1M {
    const K: f32 = 1.0;
    const SHIFT: Shift = Shift::PerPoint;
    #[inline(always)]
    unsafe fn chunk(&self, c: usize) -> (__m256i, __m256i, __m256i) {
        // SAFETY: AVX2 is enabled.
        unsafe {
            let g = iq1_points(std::array::from_fn(|l| {
                usize::from(self.qs[4 * c + l]) | (self.nibble(c, l) & 7) << 8
            }));
            let sc = self.scale_words();
            let ls = |g: usize| 2 * ((sc[g / 4] >> (3 * (g % 4))) & 7) as i16 + 1;
            (
                _mm256_sign_epi8(g, g),
                g,
                scales_16(ls(2 * c), ls(2 * c + 1)),
            )
        }
    }
    /// The scale spread over the top nibbles of the four scale words.
    #[inline(always)]
    fn d(&self) -> F16Bytes {
        let sc = self.scale_words();
        let d =
            (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
        F16Bytes(d.to_le_bytes())
    }
    /// Each grid point's shift sign as 8 bytes of ±1 (the activations are signed by them and
    /// summed, as `ggml_vec_dot_iq1_m_q8_K` does).
    #[inline(always)]
    unsafe fn shift(&self, c: usize) -> (__m256i, i32) {
        // SAFETY: AVX2 is enabled.
        unsafe {
            let delta = points4(std::array::from_fn(|l| {
                if self.nibble(c, l) & 8 != 0 {
                    u64::MAX
                } else {
                    0x0101_0101_0101_0101
                }
            }));
            (delta, 0)
        }
    }
}

/// The float state of one row × token of a lattice product in `ggml_vec_dot_*_q8_K`'s order:
/// per super-block `fma(d_w·d_x, lanes, acc)` for the grid (and `IQ1_M`'s shift lanes), an
/// `fma(d_w·d_x, shift, acc)` scalar for `IQ1_S`'s shift; the result
/// `K·hsum(grid) + 1/8·(hsum(shift lanes) or the scalar)`.
#[derive(Clone, Copy)]
struct VecDotAcc {
    grid: __m256,
    shift_lanes: __m256,
    shift: f32,
}

impl VecDotAcc {
    /// # Safety
    /// AVX is enabled.
    #[inline(always)]
    unsafe fn new() -> VecDotAcc {
        // SAFETY: AVX is enabled.
        unsafe {
            VecDotAcc {
                grid: _mm256_setzero_ps(),
                shift_lanes: _mm256_setzero_ps(),
                shift: 0.0,
            }
        }
    }

    /// Adds one super-block's sums with `dd = d_w·d_x`.
    ///
    /// # Safety
    /// AVX2 and FMA are enabled.
    #[inline(always)]
    unsafe fn add<B: Lattice>(&mut self, s: Sums, dd: f32) {
        // SAFETY: AVX2 and FMA are enabled.
        unsafe {
            let d = _mm256_set1_ps(dd);
            self.grid = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s.grid), self.grid);
            if B::SHIFT != Shift::None {
                self.shift_lanes =
                    _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s.shift_lanes), self.shift_lanes);
                // `accum1 += d * sumi1`, which C compilers contract to an fma.
                self.shift = dd.mul_add(s.shift as f32, self.shift);
            }
        }
    }

    /// # Safety
    /// AVX is enabled.
    #[inline(always)]
    unsafe fn result<B: Lattice>(&self) -> f32 {
        // SAFETY: AVX is enabled.
        unsafe {
            if B::SHIFT != Shift::None {
                // One of the two shift terms is zero for each type (`+ 0` changes nothing).
                hsum_ps(self.grid) + IQ1_DELTA * (hsum_ps(self.shift_lanes) + self.shift)
            } else {
                B::K * hsum_ps(self.grid)
            }
        }
    }
}

/// One super-block's term in llama.cpp's tiled mat-mul (`ggml-cpu/tiled`): the whole integer
/// sum `S` (the `IQ1` grids taken times 8 with their shifts added) times its `d_w·K` (`d_w/8`
/// for `IQ1`), to be added as `fma(r, d_x, acc)`.
///
/// # Safety
/// AVX2 is enabled.
#[inline(always)]
unsafe fn tiled_term<B: Lattice>(s: Sums, d: F16Bytes) -> f32 {
    // SAFETY: AVX2 is enabled.
    unsafe {
        if B::SHIFT != Shift::None {
            let total = hsum_epi32(s.grid)
                .wrapping_mul(8)
                .wrapping_add(hsum_epi32(s.shift_lanes))
                .wrapping_add(s.shift);
            total as f32 * (f16_at(d) * IQ1_DELTA)
        } else {
            hsum_epi32(s.grid) as f32 * (f16_at(d) * B::K)
        }
    }
}

/// The lattice types as `ggml_vec_dot_*_q8_K` (AVX2) sums them; see [`VecDotAcc`].
///
/// # Safety
/// The `RowsFn` contract: `nb` super-blocks of `B` at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_lattice<D: Dot, B: Lattice>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q2_k`.
    unsafe {
        let mut acc = VecDotAcc::new();
        for i in 0..nb {
            let b = &*w.cast::<B>().add(i);
            let s =
                lattice_sums_direct::<D, B>(b, a.qs.add(256 * i), a.sums.add(Q8K_SUMS * i + 16));
            acc.add::<B>(s, *a.d.add(i) * f16_at(b.d()));
        }
        acc.result::<B>()
    }
}

/// The lattice types as llama.cpp's tiled mat-mul sums them (its path for products of 8 tokens
/// or more): `acc = fma(tiled_term, d_x, acc)` per super-block.
///
/// # Safety
/// The `RowsFn` contract: `nb` super-blocks of `B` at `w`, a Q8K row of `256·nb` values.
#[inline(always)]
unsafe fn dot_lattice_tiled<D: Dot, B: Lattice>(w: *const u8, a: ActRow, nb: usize) -> f32 {
    // SAFETY: as `dot_q2_k`.
    unsafe {
        let mut acc = 0.0f32;
        for i in 0..nb {
            let b = &*w.cast::<B>().add(i);
            let s =
                lattice_sums_direct::<D, B>(b, a.qs.add(256 * i), a.sums.add(Q8K_SUMS * i + 16));
            acc = tiled_term::<B>(s, b.d()).mul_add(*a.d.add(i), acc);
        }
        acc
    }
}

/// Packed kernel for the lattice types over `matmul::repack`'s lattice layout (each block
/// column the 16 rows' super-blocks, as stored): row by row, each super-block unpacked once for
/// all `NY` tokens. `TILED`: the tiled mat-mul's order, one float per row and token continued
/// through `y` when `add` (so a batch may split rows into column ranges); otherwise `vec_dot`'s
/// (`NY` 1, whole rows, no `add`).
///
/// # Safety
/// The `PackedFn` contract; the features of `D` are enabled.
#[inline(always)]
unsafe fn gemm_lattice<D: Dot, B: Lattice, const NY: usize, const TILED: bool>(
    nb: usize,
    w: *const u8,
    a: ActTile,
    y: *mut f32,
    ys: usize,
    add: bool,
) {
    // SAFETY: the `PackedFn` contract; the features of `D` are enabled.
    unsafe {
        let size = size_of::<B>();
        for r in 0..16 {
            let mut acc = [0.0f32; NY];
            let mut vacc = [VecDotAcc::new(); NY];
            if add {
                for (t, acc) in acc.iter_mut().enumerate() {
                    *acc = *y.add(t * ys + r);
                }
            }
            for i in 0..nb {
                let b = &*w.add((16 * i + r) * size).cast::<B>();
                if r == 0 {
                    super::avx512::prefetch(w.add(16 * i * size), 16 * size);
                }
                let d = b.d();
                // One token: nothing to share, unpack as the sums go.
                let p = if NY > 1 { Some(b.unpack()) } else { None };
                for t in 0..NY {
                    let x = a.qs.add(t * a.qs_stride + 256 * i);
                    let sums = a.sums.add(t * a.sums_stride + Q8K_SUMS * i + 16);
                    let s = match &p {
                        Some(p) => lattice_sums::<D, B>(p, x, sums),
                        None => lattice_sums_direct::<D, B>(b, x, sums),
                    };
                    let dx = *a.d.add(t * a.d_stride + i);
                    if TILED {
                        acc[t] = tiled_term::<B>(s, d).mul_add(dx, acc[t]);
                    } else {
                        vacc[t].add::<B>(s, dx * f16_at(d));
                    }
                }
            }
            for t in 0..NY {
                *y.add(t * ys + r) = if TILED { acc[t] } else { vacc[t].result::<B>() };
            }
        }
    }
}

macro_rules! lattice_fns {
    ($($name:ident, $tiled:ident => $block:ty;)*) => {
        $(
            /// # Safety
            /// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
            #[inline(always)]
            unsafe fn $name<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
                // SAFETY: the caller's contract.
                unsafe { dot_lattice::<D, $block>(w, a, nb) }
            }

            /// # Safety
            /// The `RowsFn` contract: `nb` super-blocks at `w`, a Q8K row of `256·nb` values.
            #[inline(always)]
            unsafe fn $tiled<D: Dot>(w: *const u8, a: ActRow, nb: usize) -> f32 {
                // SAFETY: the caller's contract.
                unsafe { dot_lattice_tiled::<D, $block>(w, a, nb) }
            }
        )*
    };
}

lattice_fns! {
    dot_iq2_xxs, dot_iq2_xxs_tiled => BlockIq2Xxs;
    dot_iq2_xs, dot_iq2_xs_tiled => BlockIq2Xs;
    dot_iq2_s, dot_iq2_s_tiled => BlockIq2S;
    dot_iq3_xxs, dot_iq3_xxs_tiled => BlockIq3Xxs;
    dot_iq3_s, dot_iq3_s_tiled => BlockIq3S;
    dot_iq1_s, dot_iq1_s_tiled => BlockIq1S;
    dot_iq1_m, dot_iq1_m_tiled => BlockIq1M;
}

// ---------------------------------------------------------------------------------------------
// Float weights against f32 activations.

/// # Safety
/// `n` f32 weights at `w` and `n` activations; AVX2 + FMA enabled.
#[inline(always)]
unsafe fn dot_f32(w: *const u8, a: ActRow, n: usize) -> f32 {
    // SAFETY: `n` f32 weights at `w` and `n` activations; AVX2 + FMA enabled.
    unsafe {
        let w = w.cast::<f32>();
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut k = 0;
        while k + 32 <= n {
            for (u, acc) in acc.iter_mut().enumerate() {
                let wv = _mm256_loadu_ps(w.add(k + 8 * u));
                *acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(a.f.add(k + 8 * u)), *acc);
            }
            k += 32;
        }
        let mut s = hsum_ps(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ));
        while k < n {
            s += w.add(k).read_unaligned() * *a.f.add(k);
            k += 1;
        }
        s
    }
}

/// # Safety
/// `n` f16 weights at `w` and `n` activations; AVX2 + FMA + F16C enabled.
#[inline(always)]
unsafe fn dot_f16(w: *const u8, a: ActRow, n: usize) -> f32 {
    // SAFETY: `n` f16 weights at `w` and `n` activations; AVX2 + FMA + F16C enabled.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut k = 0;
        while k + 32 <= n {
            for (u, acc) in acc.iter_mut().enumerate() {
                let wv = _mm256_cvtph_ps(_mm_loadu_si128(w.add(2 * (k + 8 * u)).cast()));
                *acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(a.f.add(k + 8 * u)), *acc);
            }
            k += 32;
        }
        let mut s = hsum_ps(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ));
        while k < n {
            s += f16_at(F16Bytes([*w.add(2 * k), *w.add(2 * k + 1)])) * *a.f.add(k);
            k += 1;
        }
        s
    }
}

/// # Safety
/// `n` bf16 weights at `w` and `n` activations; AVX2 + FMA enabled.
#[inline(always)]
unsafe fn dot_bf16(w: *const u8, a: ActRow, n: usize) -> f32 {
    // SAFETY: `n` bf16 weights at `w` and `n` activations; AVX2 + FMA enabled.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut k = 0;
        while k + 32 <= n {
            for (u, acc) in acc.iter_mut().enumerate() {
                let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(w.add(2 * (k + 8 * u)).cast()));
                let wv = _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h));
                *acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(a.f.add(k + 8 * u)), *acc);
            }
            k += 32;
        }
        let mut s = hsum_ps(_mm256_add_ps(
            _mm256_add_ps(acc[0], acc[1]),
            _mm256_add_ps(acc[2], acc[3]),
        ));
        while k < n {
            let bits = u16::from_le_bytes([*w.add(2 * k), *w.add(2 * k + 1)]);
            s += f32::from_bits(u32::from(bits) << 16) * *a.f.add(k);
            k += 1;
        }
        s
    }
}

// ---------------------------------------------------------------------------------------------
// Activation quantizers (bit-identical to `generic`).

/// Rounds half to even (as ggml's `_mm256_round_ps(_MM_ROUND_NEAREST)`) and converts to i32.
///
/// # Safety
/// AVX is enabled.
#[inline(always)]
unsafe fn round_even(v: __m256) -> __m256i {
    // SAFETY: AVX is enabled.
    unsafe {
        _mm256_cvtps_epi32(_mm256_round_ps::<
            { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
        >(v))
    }
}

/// Packs 32 i32 lanes (four vectors, in order) to 32 i8 with saturation.
///
/// # Safety
/// AVX2 is enabled.
#[inline(always)]
unsafe fn pack32(v: [__m256i; 4]) -> __m256i {
    // SAFETY: AVX2 is enabled.
    unsafe {
        let a = _mm256_packs_epi32(v[0], v[1]);
        let b = _mm256_packs_epi32(v[2], v[3]);
        let p = _mm256_packs_epi16(a, b);
        // The packs interleave 128-bit lanes: restore value order.
        _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
    }
}

/// # Safety
/// `n` (a multiple of 8) values at `x`; AVX2 is enabled.
#[inline(always)]
unsafe fn max_abs(x: *const f32, n: usize) -> f32 {
    // SAFETY: `n` (a multiple of 8) values at `x`; AVX2 is enabled.
    unsafe {
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let mut m = _mm256_setzero_ps();
        for k in (0..n).step_by(8) {
            m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x.add(k)), abs_mask));
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        _mm_cvtss_f32(m)
    }
}

/// llama.cpp's x86 `quantize_row_q8_1` (see `generic::q8_block_runtime`).
///
/// # Safety
/// the `QuantizeActsFn` contract; AVX2 + F16C enabled.
#[inline(always)]
unsafe fn quantize_q8(x: &[f32], qs: *mut i8, d: *mut f32, sums: *mut i16, s: *mut f32) {
    // SAFETY: the `QuantizeActsFn` contract; AVX2 + F16C enabled.
    unsafe {
        for i in 0..x.len() / 32 {
            let xb = x.as_ptr().add(32 * i);
            let amax = max_abs(xb, 32);
            let scale = amax / 127.0;
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let idv = _mm256_set1_ps(id);
            let v = [
                round_even(_mm256_mul_ps(_mm256_loadu_ps(xb), idv)),
                round_even(_mm256_mul_ps(_mm256_loadu_ps(xb.add(8)), idv)),
                round_even(_mm256_mul_ps(_mm256_loadu_ps(xb.add(16)), idv)),
                round_even(_mm256_mul_ps(_mm256_loadu_ps(xb.add(24)), idv)),
            ];
            let q = pack32(v);
            _mm256_storeu_si256(qs.add(32 * i).cast(), q);
            *d.add(i) = f16_at(F16Bytes(f32_to_f16_bits(scale)));
            let total =
                _mm256_add_epi32(_mm256_add_epi32(v[0], v[1]), _mm256_add_epi32(v[2], v[3]));
            let sum = hsum_epi32(total);
            *sums.add(i) = sum as i16;
            *s.add(i) = f16_at(F16Bytes(f32_to_f16_bits(scale * sum as f32)));
        }
    }
}

/// # Safety
/// the `QuantizeActsFn` contract; AVX2 enabled.
#[inline(always)]
unsafe fn quantize_q8k(x: &[f32], qs: *mut i8, d: *mut f32, sums: *mut i16, _s: *mut f32) {
    // SAFETY: the `QuantizeActsFn` contract; AVX2 enabled.
    unsafe {
        for i in 0..x.len() / 256 {
            let xb = x.as_ptr().add(256 * i);
            let amax = max_abs(xb, 256);
            if amax == 0.0 {
                std::ptr::write_bytes(qs.add(256 * i), 0, 256);
                *d.add(i) = 0.0;
                std::ptr::write_bytes(sums.add(Q8K_SUMS * i), 0, Q8K_SUMS);
                continue;
            }
            // The sign of the scale follows the first value of largest magnitude.
            let mut max = amax;
            for k in 0..256 {
                if (*xb.add(k)).abs() == amax {
                    max = *xb.add(k);
                    break;
                }
            }
            let iscale = -127.0 / max;
            let iv = _mm256_set1_ps(iscale);
            for c in 0..8 {
                // Round to nearest even (the default MXCSR mode), as `nearest_int`.
                let mut v = [_mm256_setzero_si256(); 4];
                for (k, v) in v.iter_mut().enumerate() {
                    let p = _mm256_mul_ps(_mm256_loadu_ps(xb.add(32 * c + 8 * k)), iv);
                    *v = _mm256_min_epi32(_mm256_cvtps_epi32(p), _mm256_set1_epi32(127));
                }
                _mm256_storeu_si256(qs.add(256 * i + 32 * c).cast(), pack32(v));
                let s0 = hsum_epi32(_mm256_add_epi32(v[0], v[1]));
                let s1 = hsum_epi32(_mm256_add_epi32(v[2], v[3]));
                *sums.add(Q8K_SUMS * i + 2 * c) = s0 as i16;
                *sums.add(Q8K_SUMS * i + 2 * c + 1) = s1 as i16;
                *sums.add(Q8K_SUMS * i + 16 + c) = (s0 + s1) as i16;
            }
            *d.add(i) = 1.0 / iscale;
        }
    }
}

/// `v` rounded to f16 bits (nearest even), with F16C.
///
/// # Safety
/// F16C is enabled.
#[inline(always)]
unsafe fn f32_to_f16_bits(v: f32) -> [u8; 2] {
    // SAFETY: F16C is enabled.
    unsafe {
        let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(v));
        (_mm_cvtsi128_si32(h) as u16).to_le_bytes()
    }
}

// ---------------------------------------------------------------------------------------------
// Instantiation: one `#[target_feature]` wrapper per type and flavour.

macro_rules! instantiate {
    ($flavour:ident, $features:literal, $mod_name:ident) => {
        pub(crate) mod $mod_name {
            use super::*;

            macro_rules! rows {
                ($name:ident, $dot:ident, $qk:expr) => {
                    #[target_feature(enable = $features)]
                    pub(in super::super) unsafe fn $name(
                        n: usize,
                        w: *const u8,
                        row_bytes: usize,
                        nrows: usize,
                        a: ActRow,
                        y: *mut f32,
                    ) {
                        for r in 0..nrows {
                            // SAFETY: the `RowsFn` contract; the features are enabled here.
                            unsafe {
                                *y.add(r) = $dot::<$flavour>(w.add(r * row_bytes), a, n / $qk)
                            };
                        }
                    }
                };
            }
            macro_rules! rows_float {
                ($name:ident, $dot:ident) => {
                    #[target_feature(enable = $features)]
                    pub(in super::super) unsafe fn $name(
                        n: usize,
                        w: *const u8,
                        row_bytes: usize,
                        nrows: usize,
                        a: ActRow,
                        y: *mut f32,
                    ) {
                        for r in 0..nrows {
                            // SAFETY: the `RowsFn` contract; the features are enabled here.
                            unsafe { *y.add(r) = $dot(w.add(r * row_bytes), a, n) };
                        }
                    }
                };
            }
            rows!(q4_0, dot_q4_0, 32);
            rows!(q4_1, dot_q4_1, 32);
            rows!(q5_0, dot_q5_0, 32);
            rows!(q5_0_ggml, dot_q5_0_ggml, 32);
            rows!(q5_1, dot_q5_1, 32);
            rows!(q8_0, dot_q8_0, 32);
            rows!(iq4_nl, dot_iq4_nl, 32);
            rows!(q2_k, dot_q2_k, 256);
            rows!(q3_k, dot_q3_k, 256);
            rows!(q4_k, dot_q4_k, 256);
            rows!(q5_k, dot_q5_k, 256);
            rows!(q6_k, dot_q6_k, 256);
            rows!(q6_k_vecdot, dot_q6_k_vecdot, 256);
            rows!(q6_k_tiled, dot_q6_k_tiled, 256);
            rows!(q4_k_vecdot, dot_q4_k_vecdot, 256);
            rows!(q4_k_tiled, dot_q4_k_tiled, 256);
            rows!(q4_k_gemv, dot_q4_k_gemv, 256);
            rows!(q4_k_gemm, dot_q4_k_gemm, 256);
            rows!(iq4_xs, dot_iq4_xs, 256);
            rows!(mxfp4, dot_mxfp4, 32);
            rows!(mxfp4_repacked, dot_mxfp4_repacked, 32);
            rows!(iq4_nl_vecdot, dot_iq4_nl_vecdot, 32);
            rows!(iq4_nl_repacked, dot_iq4_nl_repacked, 32);
            rows!(iq2_xxs, dot_iq2_xxs, 256);
            rows!(iq2_xs, dot_iq2_xs, 256);
            rows!(iq2_s, dot_iq2_s, 256);
            rows!(iq3_xxs, dot_iq3_xxs, 256);
            rows!(iq3_s, dot_iq3_s, 256);
            rows!(iq1_s, dot_iq1_s, 256);
            rows!(iq1_m, dot_iq1_m, 256);
            rows!(iq2_xxs_tiled, dot_iq2_xxs_tiled, 256);
            rows!(iq2_xs_tiled, dot_iq2_xs_tiled, 256);
            rows!(iq2_s_tiled, dot_iq2_s_tiled, 256);
            rows!(iq3_xxs_tiled, dot_iq3_xxs_tiled, 256);
            rows!(iq3_s_tiled, dot_iq3_s_tiled, 256);
            rows!(iq1_s_tiled, dot_iq1_s_tiled, 256);
            rows!(iq1_m_tiled, dot_iq1_m_tiled, 256);
            macro_rules! packed_lattice {
                ($name:ident, $block:ty, $tiled:literal) => {
                    /// Packed kernel (see `gemm_lattice`).
                    ///
                    /// # Safety
                    /// The `PackedFn` contract; the features are enabled here.
                    #[target_feature(enable = $features)]
                    pub(in super::super) unsafe fn $name(
                        nb: usize,
                        w: *const u8,
                        gbytes: usize,
                        ngroups: usize,
                        a: ActTile,
                        ny: usize,
                        y: *mut f32,
                        ys: usize,
                        add: bool,
                    ) {
                        macro_rules! call {
                            ($n:literal) => {
                                for g in 0..ngroups {
                                    gemm_lattice::<$flavour, $block, $n, $tiled>(
                                        nb,
                                        w.add(g * gbytes),
                                        a,
                                        y.add(16 * g),
                                        ys,
                                        add,
                                    )
                                }
                            };
                        }
                        // SAFETY: the `PackedFn` contract, with the features enabled here.
                        unsafe {
                            match ny {
                                1 => call!(1),
                                2 => call!(2),
                                3 => call!(3),
                                4 => call!(4),
                                5 => call!(5),
                                6 => call!(6),
                                7 => call!(7),
                                _ => call!(8),
                            }
                        }
                    }
                };
            }
            packed_lattice!(packed_iq2_xxs, BlockIq2Xxs, true);
            packed_lattice!(packed_iq2_xs, BlockIq2Xs, true);
            packed_lattice!(packed_iq2_s, BlockIq2S, true);
            packed_lattice!(packed_iq3_xxs, BlockIq3Xxs, true);
            packed_lattice!(packed_iq3_s, BlockIq3S, true);
            packed_lattice!(packed_iq1_s, BlockIq1S, true);
            packed_lattice!(packed_iq1_m, BlockIq1M, true);
            packed_lattice!(packed_iq2_xxs_vecdot, BlockIq2Xxs, false);
            packed_lattice!(packed_iq2_xs_vecdot, BlockIq2Xs, false);
            packed_lattice!(packed_iq2_s_vecdot, BlockIq2S, false);
            packed_lattice!(packed_iq3_xxs_vecdot, BlockIq3Xxs, false);
            packed_lattice!(packed_iq3_s_vecdot, BlockIq3S, false);
            packed_lattice!(packed_iq1_s_vecdot, BlockIq1S, false);
            packed_lattice!(packed_iq1_m_vecdot, BlockIq1M, false);

            /// The packed kernels of the lattice types (the tiled mat-mul's order) and the most
            /// activation rows per call.
            pub(crate) fn packed_kernel(ty: GgmlType) -> Option<(PackedFn, usize)> {
                use GgmlType as T;
                Some(match ty {
                    T::IQ2_XXS => (packed_iq2_xxs, 8),
                    T::IQ2_XS => (packed_iq2_xs, 8),
                    T::IQ2_S => (packed_iq2_s, 8),
                    T::IQ3_XXS => (packed_iq3_xxs, 8),
                    T::IQ3_S => (packed_iq3_s, 8),
                    T::IQ1_S => (packed_iq1_s, 8),
                    T::IQ1_M => (packed_iq1_m, 8),
                    _ => return None,
                })
            }

            /// The lattice types' packed kernels in the order of llama.cpp's path `path`, the
            /// most activation rows per call and whether rows may be split into column ranges.
            pub(crate) fn packed_kernel_ggml(
                ty: GgmlType,
                path: GgmlPath,
            ) -> Option<(PackedFn, usize, bool)> {
                use GgmlPath as P;
                use GgmlType as T;
                Some(match (ty, path) {
                    (_, P::Tiled) => (packed_kernel(ty)?.0, 8, true),
                    (T::IQ2_XXS, P::VecDot) => (packed_iq2_xxs_vecdot, 1, false),
                    (T::IQ2_XS, P::VecDot) => (packed_iq2_xs_vecdot, 1, false),
                    (T::IQ2_S, P::VecDot) => (packed_iq2_s_vecdot, 1, false),
                    (T::IQ3_XXS, P::VecDot) => (packed_iq3_xxs_vecdot, 1, false),
                    (T::IQ3_S, P::VecDot) => (packed_iq3_s_vecdot, 1, false),
                    (T::IQ1_S, P::VecDot) => (packed_iq1_s_vecdot, 1, false),
                    (T::IQ1_M, P::VecDot) => (packed_iq1_m_vecdot, 1, false),
                    _ => return None,
                })
            }

            rows_float!(f32, dot_f32);
            rows_float!(f16, dot_f16);
            rows_float!(bf16, dot_bf16);

            /// # Safety
            /// the `QuantizeActsFn` contract; the features are enabled here.
            #[target_feature(enable = $features)]
            pub(in super::super) unsafe fn acts_q8(
                x: &[f32],
                qs: *mut i8,
                d: *mut f32,
                sums: *mut i16,
                s: *mut f32,
            ) {
                // SAFETY: the `QuantizeActsFn` contract; the features are enabled here.
                unsafe { quantize_q8(x, qs, d, sums, s) }
            }

            /// # Safety
            /// The `QuantizeActsFn` contract; the features are enabled here.
            #[target_feature(enable = $features)]
            pub(in super::super) unsafe fn acts_q8k(
                x: &[f32],
                qs: *mut i8,
                d: *mut f32,
                sums: *mut i16,
                s: *mut f32,
            ) {
                // SAFETY: as above.
                unsafe { quantize_q8k(x, qs, d, sums, s) }
            }

            pub(crate) fn rows_kernel(ty: GgmlType) -> Option<RowsFn> {
                use GgmlType as T;
                Some(match ty {
                    T::F32 => f32,
                    T::F16 => f16,
                    T::BF16 => bf16,
                    T::Q4_0 => q4_0,
                    T::Q4_1 => q4_1,
                    T::Q5_0 => q5_0,
                    T::Q5_1 => q5_1,
                    T::Q8_0 => q8_0,
                    T::IQ4_NL => iq4_nl,
                    T::Q2_K => q2_k,
                    T::Q3_K => q3_k,
                    T::Q4_K => q4_k,
                    T::Q5_K => q5_k,
                    T::Q6_K => q6_k,
                    T::IQ4_XS => iq4_xs,
                    T::MXFP4 => mxfp4,
                    T::IQ2_XXS => iq2_xxs,
                    T::IQ2_XS => iq2_xs,
                    T::IQ2_S => iq2_s,
                    T::IQ3_XXS => iq3_xxs,
                    T::IQ3_S => iq3_s,
                    T::IQ1_S => iq1_s,
                    T::IQ1_M => iq1_m,
                    _ => return None,
                })
            }

            /// The row kernel for `ty` that sums in the order of llama.cpp's code path `path`,
            /// where there is one.
            pub(crate) fn rows_kernel_ggml(ty: GgmlType, path: GgmlPath) -> Option<RowsFn> {
                use GgmlPath as P;
                use GgmlType as T;
                Some(match (ty, path) {
                    (T::Q4_1, P::VecDot) => q4_1,
                    (T::Q5_0, P::VecDot) => q5_0_ggml,
                    (T::Q5_1, P::VecDot) => q5_1,
                    (T::Q8_0, P::VecDot) => q8_0,
                    (T::Q4_K, P::VecDot) => q4_k_vecdot,
                    (T::Q4_K, P::Tiled) => q4_k_tiled,
                    (T::Q4_K, P::Gemv) => q4_k_gemv,
                    (T::Q4_K, P::Gemm) => q4_k_gemm,
                    (T::Q6_K, P::VecDot) => q6_k_vecdot,
                    (T::Q6_K, P::Tiled) => q6_k_tiled,
                    (T::MXFP4, P::VecDot) => mxfp4,
                    (T::MXFP4, P::Gemv) => mxfp4_repacked,
                    (T::IQ4_NL, P::VecDot) => iq4_nl_vecdot,
                    (T::IQ4_NL, P::Gemv) => iq4_nl_repacked,
                    (T::IQ2_XXS, P::VecDot) => iq2_xxs,
                    (T::IQ2_XS, P::VecDot) => iq2_xs,
                    (T::IQ2_S, P::VecDot) => iq2_s,
                    (T::IQ3_XXS, P::VecDot) => iq3_xxs,
                    (T::IQ3_S, P::VecDot) => iq3_s,
                    (T::IQ1_S, P::VecDot) => iq1_s,
                    (T::IQ1_M, P::VecDot) => iq1_m,
                    (T::IQ2_XXS, P::Tiled) => iq2_xxs_tiled,
                    (T::IQ2_XS, P::Tiled) => iq2_xs_tiled,
                    (T::IQ2_S, P::Tiled) => iq2_s_tiled,
                    (T::IQ3_XXS, P::Tiled) => iq3_xxs_tiled,
                    (T::IQ3_S, P::Tiled) => iq3_s_tiled,
                    (T::IQ1_S, P::Tiled) => iq1_s_tiled,
                    (T::IQ1_M, P::Tiled) => iq1_m_tiled,
                    _ => return None,
                })
            }

            pub(crate) fn quantize_acts_kernel(kind: ActKind) -> Option<QuantizeActsFn> {
                match kind {
                    ActKind::F32 | ActKind::F16 | ActKind::Bf16 => None,
                    ActKind::Q8 => Some(acts_q8),
                    ActKind::Q8K => Some(acts_q8k),
                }
            }
        }
    };
}

instantiate!(Avx2, "avx2,fma,f16c", plain);
instantiate!(
    Vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    vnni
);
