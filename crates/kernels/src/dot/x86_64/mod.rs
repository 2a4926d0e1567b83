//! x86-64 kernels: `avx2` (256-bit row kernels for every type, and the IQ lattice types' packed
//! kernels, compiled for AVX2 and for AVX-512 VL + VNNI), `avx2_packed` (256-bit kernels over the packed layouts) and `avx512`
//! (512-bit float kernels and packed kernels), `avx512_iq` (512-bit tiles for the IQ lattice
//! types in llama.cpp's tiled order, and `IQ2_S`'s one-token kernel; `IQ1_S`/`IQ1_M` and the
//! other types' one-token calls use `avx2`'s).
//!
//! The `Avx512` level needs VNNI (`vpdpbusd`) for its 8-bit dot products; a CPU with AVX-512
//! but without VNNI (Skylake-X) runs the AVX2 kernels. The choice among these modules is made in
//! `dot`'s resolvers, by their match on `Isa::dispatch`.

pub(crate) mod avx2;
pub(crate) mod avx2_packed;
pub(crate) mod avx512;
pub(crate) mod avx512_iq;
pub(crate) mod float_ggml;

use crate::quant::F16Bytes;
use std::arch::x86_64::*;

/// An f16 as f32, with F16C (inlined into kernels that enable it).
///
/// # Safety
/// F16C is enabled in every caller.
#[inline(always)]
pub(super) unsafe fn f16_at(h: F16Bytes) -> f32 {
    // SAFETY: F16C is enabled in every caller.
    unsafe {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(
            u16::from_le_bytes(h.0),
        ))))
    }
}

/// Sum of 8 f32 lanes.
///
/// # Safety
/// AVX is enabled in every caller.
#[inline(always)]
pub(super) unsafe fn hsum_ps(v: __m256) -> f32 {
    // SAFETY: AVX is enabled in every caller.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// Sum of 8 i32 lanes (wrapping).
///
/// # Safety
/// AVX2 is enabled in every caller.
#[inline(always)]
pub(super) unsafe fn hsum_epi32(v: __m256i) -> i32 {
    // SAFETY: AVX2 is enabled in every caller.
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }
}
