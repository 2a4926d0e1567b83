//! 512-bit kernels for the `Avx512` level (F/BW/VL/DQ + VNNI): float row kernels, and the
//! *packed* kernels over the 16-row interleaved layouts of `matmul::repack`.
//!
//! A packed kernel computes one group of 16 weight rows against `NY` activation rows (1 to 8):
//! each 32-value step of the 16 rows is unpacked once into eight registers (one per 4 values)
//! and then multiplied with every activation row by `vpdpbusd` with the 4 activation bytes
//! broadcast — so the unpacking is shared by `NY` tokens and each instruction does 64
//! multiply-adds. Results come out as one 16-lane vector per token (16 adjacent outputs). The
//! value offsets of the formats (`q − 8`, `q + 128` for signed bytes, …) are folded in through
//! the activation block sums, never applied per value.
//!
//! For `MatrixOptions::ggml_order` the same unpacking also feeds kernels with llama.cpp's float
//! summation orders (`dot::GgmlPath`): `gemm_legacy_ggml` (eight accumulators per row and
//! token, one per 4-value step, offsets folded in per step), `gemm_q4k_ggml` (repacked `Q4_K`:
//! separate scale and min accumulators, per super-block or per 64 values), `gemv_q6k_vecdot`
//! (eight lanes per row) and `gemm_q6k` with `TILED` (one scaled sum per super-block).

use crate::dot::{ActRow, ActTile, GgmlPath, PackedFn, Q8K_SUMS, RowsFn, STEP_OFFS, TileFn};
use crate::quant::{GgmlType, IQ4_NL_VALUES, MXFP4_VALUES};
use std::arch::x86_64::*;

/// The 512-bit row kernel for `ty`, where one exists (else the 256-bit VNNI one is used).
pub(crate) fn rows_kernel(ty: GgmlType) -> Option<RowsFn> {
    Some(match ty {
        GgmlType::F32 => rows_f32,
        GgmlType::F16 => rows_f16,
        GgmlType::BF16 => rows_bf16,
        _ => return None,
    })
}

/// The 4×4 float tile kernel for `ty`.
pub(crate) fn tile_kernel(ty: GgmlType) -> Option<TileFn> {
    Some(match ty {
        GgmlType::F32 => tile_f32,
        GgmlType::F16 => tile_f16,
        GgmlType::BF16 => tile_bf16,
        _ => return None,
    })
}

/// The packed kernel for `ty` and the most activation rows it takes per call.
pub(crate) fn packed_kernel(ty: GgmlType) -> Option<(PackedFn, usize)> {
    use GgmlType as T;
    Some(match ty {
        T::Q4_0 => (packed_q4_0, 8),
        T::Q4_1 => (packed_q4_1, 8),
        T::Q5_0 => (packed_q5_0, 8),
        T::Q5_1 => (packed_q5_1, 8),
        T::Q8_0 => (packed_q8_0, 8),
        T::IQ4_NL => (packed_iq4_nl, 8),
        T::MXFP4 => (packed_mxfp4, 8),
        T::Q4_K => (packed_q4_k, 8),
        T::Q5_K => (packed_q5_k, 8),
        T::Q6_K => (packed_q6_k, 8),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Float rows.

/// `R` weight rows × `T` activation rows of a float type: one 16-lane accumulator per pair,
/// `fma` over 16-value chunks in order (the last chunk masked), then one horizontal sum. Row
/// and tile kernels are both this, so a token's result does not depend on the batch it came in.
///
/// # Safety
/// The `TileFn` contract for `R` rows and `T` tokens; AVX-512F is enabled.
#[inline(always)]
unsafe fn float_block<F: FloatWeights, const R: usize, const T: usize>(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    x: *const f32,
    xs: usize,
    y: *mut f32,
    ys: usize,
) {
    // SAFETY: forwarded contract.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); T]; R];
        let mut k = 0;
        while k < n {
            let full = k + 16 <= n;
            let m: __mmask16 = if full {
                u16::MAX
            } else {
                ((1u32 << (n - k)) - 1) as u16
            };
            let mut xv = [_mm512_setzero_ps(); T];
            for (t, xv) in xv.iter_mut().enumerate() {
                *xv = if full {
                    _mm512_loadu_ps(x.add(t * xs + k))
                } else {
                    _mm512_maskz_loadu_ps(m, x.add(t * xs + k))
                };
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let p = w.add(r * row_bytes + F::ELEM * k);
                let wv = if full { F::load(p) } else { F::tail(p, m) };
                for (t, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_fmadd_ps(wv, xv[t], *acc);
                }
            }
            k += 16;
        }
        for (r, acc) in acc.iter().enumerate() {
            for (t, acc) in acc.iter().enumerate() {
                *y.add(t * ys + r) = _mm512_reduce_add_ps(*acc);
            }
        }
    }
}

/// A float weight format: bytes per value, 16 values as f32, and the same under a mask.
trait FloatWeights {
    const ELEM: usize;
    /// # Safety
    /// 16 values at `p`; AVX-512F (and F16C) enabled.
    unsafe fn load(p: *const u8) -> __m512;
    /// # Safety
    /// The lanes set in `m` lie at `p`; AVX-512BW enabled.
    unsafe fn tail(p: *const u8, m: __mmask16) -> __m512;
}

struct F32;
struct F16;
struct Bf16;

impl FloatWeights for F32 {
    const ELEM: usize = 4;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m512 {
        // SAFETY: forwarded contract.
        unsafe { load_f32(p) }
    }
    #[inline(always)]
    unsafe fn tail(p: *const u8, m: __mmask16) -> __m512 {
        // SAFETY: forwarded contract.
        unsafe { tail_f32(p, m) }
    }
}
impl FloatWeights for F16 {
    const ELEM: usize = 2;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m512 {
        // SAFETY: forwarded contract.
        unsafe { load_f16(p) }
    }
    #[inline(always)]
    unsafe fn tail(p: *const u8, m: __mmask16) -> __m512 {
        // SAFETY: forwarded contract.
        unsafe { tail_f16(p, m) }
    }
}
impl FloatWeights for Bf16 {
    const ELEM: usize = 2;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> __m512 {
        // SAFETY: forwarded contract.
        unsafe { load_bf16(p) }
    }
    #[inline(always)]
    unsafe fn tail(p: *const u8, m: __mmask16) -> __m512 {
        // SAFETY: forwarded contract.
        unsafe { tail_bf16(p, m) }
    }
}

macro_rules! float_kernels {
    ($rows:ident, $tile:ident, $f:ident) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
        unsafe fn $rows(
            n: usize,
            w: *const u8,
            row_bytes: usize,
            nrows: usize,
            a: ActRow,
            y: *mut f32,
        ) {
            // SAFETY: the `RowsFn` contract; the features are enabled.
            unsafe {
                let mut r = 0;
                while r + 4 <= nrows {
                    let wr = w.add(r * row_bytes);
                    float_block::<$f, 4, 1>(n, wr, row_bytes, a.f, 0, y.add(r), 0);
                    r += 4;
                }
                while r < nrows {
                    let wr = w.add(r * row_bytes);
                    float_block::<$f, 1, 1>(n, wr, row_bytes, a.f, 0, y.add(r), 0);
                    r += 1;
                }
            }
        }

        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
        unsafe fn $tile(
            n: usize,
            w: *const u8,
            row_bytes: usize,
            x: *const f32,
            xs: usize,
            y: *mut f32,
            ys: usize,
        ) {
            // SAFETY: the `TileFn` contract; the features are enabled.
            unsafe { float_block::<$f, 4, 4>(n, w, row_bytes, x, xs, y, ys) }
        }
    };
}

/// # Safety
/// 64 bytes at `p` (caller).
#[inline(always)]
unsafe fn load_f32(p: *const u8) -> __m512 {
    // SAFETY: 64 bytes at `p` (caller).
    unsafe { _mm512_loadu_ps(p.cast()) }
}
/// # Safety
/// 32 bytes at `p` (caller).
#[inline(always)]
unsafe fn load_f16(p: *const u8) -> __m512 {
    // SAFETY: 32 bytes at `p` (caller).
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
}
/// # Safety
/// 32 bytes at `p` (caller).
#[inline(always)]
unsafe fn load_bf16(p: *const u8) -> __m512 {
    // SAFETY: 32 bytes at `p` (caller).
    unsafe {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
            _mm256_loadu_si256(p.cast()),
        )))
    }
}
/// # Safety
/// the masked lanes lie inside the row (caller).
#[inline(always)]
unsafe fn tail_f32(p: *const u8, m: __mmask16) -> __m512 {
    // SAFETY: the masked lanes lie inside the row (caller).
    unsafe { _mm512_maskz_loadu_ps(m, p.cast()) }
}
/// # Safety
/// The masked lanes lie inside the row; AVX-512 is enabled.
#[inline(always)]
unsafe fn tail_f16(p: *const u8, m: __mmask16) -> __m512 {
    // SAFETY: as above.
    unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p.cast())) }
}
/// # Safety
/// The masked lanes lie inside the row; AVX-512 is enabled.
#[inline(always)]
unsafe fn tail_bf16(p: *const u8, m: __mmask16) -> __m512 {
    // SAFETY: as above.
    unsafe {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
            _mm256_maskz_loadu_epi16(m, p.cast()),
        )))
    }
}

float_kernels!(rows_f32, tile_f32, F32);
float_kernels!(rows_f16, tile_f16, F16);
float_kernels!(rows_bf16, tile_bf16, Bf16);

// ---------------------------------------------------------------------------------------------
// Packed helpers.

/// # Safety
/// 64 bytes at `p` (caller).
#[inline(always)]
unsafe fn load512(p: *const u8) -> __m512i {
    // SAFETY: 64 bytes at `p` (caller).
    unsafe { _mm512_loadu_si512(p.cast()) }
}

/// The 16 f16 of an f16 vector as f32.
///
/// # Safety
/// 32 bytes at `p` (caller).
#[inline(always)]
unsafe fn f16x16(p: *const u8) -> __m512 {
    // SAFETY: 32 bytes at `p` (caller).
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
}

/// How far ahead of the block being computed the weights are prefetched, into L2: decode
/// streams the weights from DRAM, and the hardware prefetcher alone left 10–25 % of the
/// bandwidth unused on the development machine. 1536 bytes into L1 measured best while weights
/// sat on 4 KiB pages; on huge pages (`matmul::buf`) 6144 bytes into L2 does (an L2 prefetch
/// does not hold one of L1's few fill buffers, so more lines can be in flight): tg128 at 2
/// threads against 3072 into L1, alternating, Gemma 3 +15–24 %, the synthetic MoE +3–8 %,
/// SmolLM2 (in L3) −1 to −5 %, prompts unchanged; 12288 and 3072 into L2 lost on Gemma 3, into
/// L1 without caching (`NTA`) lost 60 %. It costs nothing measurable when the weights sit in
/// L2.
pub(super) const PREFETCH_AHEAD: usize = 6144;

/// Prefetches the `len` bytes `PREFETCH_AHEAD` past `p` into L2 (addresses past the end of the
/// buffer are harmless: prefetches never fault).
///
/// # Safety
/// SSE is enabled (always, on x86-64).
#[inline(always)]
pub(super) unsafe fn prefetch(p: *const u8, len: usize) {
    let mut o = 0;
    while o < len {
        // SAFETY: a prefetch is a hint; any address is allowed.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(PREFETCH_AHEAD + o).cast()) };
        o += 64;
    }
}

/// The four activation bytes of step `s` broadcast to every lane.
///
/// # Safety
/// 4 bytes at `x + 4s` (caller).
#[inline(always)]
unsafe fn bcast4(x: *const i8, s: usize) -> __m512i {
    // SAFETY: 4 bytes at `x + 4s` (caller).
    unsafe { _mm512_set1_epi32(x.add(4 * s).cast::<i32>().read_unaligned()) }
}

/// Nibble steps: the eight step registers (values 0..16).
///
/// # Safety
/// 256 bytes at `p` (caller).
#[inline(always)]
unsafe fn nibble_steps(p: *const u8) -> [__m512i; 8] {
    // SAFETY: 256 bytes at `p` (caller).
    unsafe {
        let m4 = _mm512_set1_epi8(0xF);
        let v = [
            load512(p),
            load512(p.add(64)),
            load512(p.add(128)),
            load512(p.add(192)),
        ];
        [
            _mm512_and_si512(v[0], m4),
            _mm512_and_si512(v[1], m4),
            _mm512_and_si512(v[2], m4),
            _mm512_and_si512(v[3], m4),
            _mm512_and_si512(_mm512_srli_epi16::<4>(v[0]), m4),
            _mm512_and_si512(_mm512_srli_epi16::<4>(v[1]), m4),
            _mm512_and_si512(_mm512_srli_epi16::<4>(v[2]), m4),
            _mm512_and_si512(_mm512_srli_epi16::<4>(v[3]), m4),
        ]
    }
}

/// `a | (b & c)` in one instruction.
///
/// # Safety
/// AVX-512F is enabled.
#[inline(always)]
unsafe fn or_and(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
    // SAFETY: AVX-512F is enabled.
    unsafe { _mm512_ternarylogic_epi32::<0xF8>(a, b, c) }
}

/// Adds bit plane `h` (at `p`) as bit 4 of the eight step registers.
///
/// # Safety
/// 64 bytes at `p` (caller); AVX-512BW is enabled.
#[inline(always)]
unsafe fn add_bit_plane(q: &mut [__m512i; 8], p: *const u8) {
    // SAFETY: 64 bytes at `p` (caller); AVX-512BW is enabled.
    unsafe {
        let h = load512(p);
        let m = _mm512_set1_epi8(0x10);
        q[0] = or_and(q[0], _mm512_slli_epi16::<4>(h), m);
        q[1] = or_and(q[1], _mm512_slli_epi16::<3>(h), m);
        q[2] = or_and(q[2], _mm512_slli_epi16::<2>(h), m);
        q[3] = or_and(q[3], _mm512_slli_epi16::<1>(h), m);
        q[4] = or_and(q[4], h, m);
        q[5] = or_and(q[5], _mm512_srli_epi16::<1>(h), m);
        q[6] = or_and(q[6], _mm512_srli_epi16::<2>(h), m);
        q[7] = or_and(q[7], _mm512_srli_epi16::<3>(h), m);
    }
}

/// The Q6_K planes `H0`, `H1` (at `p`) as bits 4–5 of the eight step registers.
///
/// # Safety
/// 128 bytes at `p` (caller); AVX-512BW is enabled.
#[inline(always)]
unsafe fn add_q6_planes(q: &mut [__m512i; 8], p: *const u8) {
    // SAFETY: 128 bytes at `p` (caller); AVX-512BW is enabled.
    unsafe {
        let m = _mm512_set1_epi8(0x30);
        for h in 0..2 {
            let v = load512(p.add(64 * h));
            q[4 * h] = or_and(q[4 * h], _mm512_slli_epi16::<4>(v), m);
            q[4 * h + 1] = or_and(q[4 * h + 1], _mm512_slli_epi16::<2>(v), m);
            q[4 * h + 2] = or_and(q[4 * h + 2], v, m);
            q[4 * h + 3] = or_and(q[4 * h + 3], _mm512_srli_epi16::<2>(v), m);
        }
    }
}

/// Σ over the steps `from..to` of `q[s]` · (activation bytes of step `s` at `x`), added to `acc`.
///
/// # Safety
/// 32 activation bytes at `x` (caller); VNNI is enabled.
#[inline(always)]
unsafe fn dp_steps(
    mut acc: __m512i,
    q: &[__m512i; 8],
    x: *const i8,
    from: usize,
    to: usize,
) -> __m512i {
    // SAFETY: 32 activation bytes at `x` (caller); VNNI is enabled.
    unsafe {
        for s in from..to {
            acc = _mm512_dpbusd_epi32(acc, q[s], bcast4(x, s));
        }
        acc
    }
}

// ---------------------------------------------------------------------------------------------
// 32-value formats.

/// What distinguishes the 32-value packed formats.
trait Legacy {
    /// Bytes per block column.
    const BYTES: usize;
    /// The value offset folded in through the block sum (`q − OFFSET` is the true value).
    const OFFSET: i32;
    /// Whether an f16 `m` vector follows `d` (`d·q + m` formats).
    const MIN: bool;
    /// The eight step registers (unsigned values) of the block column at `p`.
    ///
    /// # Safety
    /// a whole block column at `p`.
    unsafe fn steps(p: *const u8) -> [__m512i; 8];
    /// The 16 rows' block scales `d` of the block column at `p` (an f16 vector first in the
    /// column, unless the format says otherwise).
    ///
    /// # Safety
    /// A whole block column at `p`; AVX-512 is enabled.
    #[inline(always)]
    unsafe fn d(p: *const u8) -> __m512 {
        // SAFETY: the caller's column.
        unsafe { f16x16(p) }
    }
}

struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;
struct Q8_0;
struct Iq4Nl;
struct Mxfp4;

impl Legacy for Q4_0 {
    const BYTES: usize = 288;
    const OFFSET: i32 = 8;
    const MIN: bool = false;
    /// # Safety
    /// a whole block column at `p`.
    #[inline(always)]
    unsafe fn steps(p: *const u8) -> [__m512i; 8] {
        // SAFETY: a whole block column at `p`.
        unsafe { nibble_steps(p.add(32)) }
    }
}
impl Legacy for Q4_1 {
    const BYTES: usize = 320;
    const OFFSET: i32 = 0;
    const MIN: bool = true;
    /// # Safety
    /// A whole block column at `p`; AVX-512 is enabled.
    #[inline(always)]
    unsafe fn steps(p: *const u8) -> [__m512i; 8] {
        // SAFETY: as above.
        unsafe { nibble_steps(p.add(64)) }
    }
}
impl Legacy for Q5_0 {
    const BYTES: usize = 352;
    const OFFSET: i32 = 16;
    const MIN: bool = false;
    /// # Safety
    /// A whole block column at `p`; AVX-512 is enabled.
    #[inline(always)]
    unsafe fn steps(p: *const u8) -> [__m512i; 8] {
        // SAFETY: as above.
        unsafe {
            let mut q = nibble_steps(p.add(96));
            add_bit_plane(&mut q, p.add(32));
            q
        }
    }
}
impl Legacy for Q5_1 {
    const BYTES: usize = 384;
    const OFFSET: i32 = 0;
    const MIN: bool = true;
    /// # Safety
    /// A whole block column at `p`; AVX-512 is enabled.
    #[inline(always)]
    unsafe fn steps(p: *const u8) -> [__m512i; 8] {
        // SAFETY: as above.
        unsafe {
            let mut q = nibble_steps(p.add(128));
            add_bit_plane(&mut q, p.add(64));
            q
        }
    }
}
impl Legacy for Q8_0 {
    const BYTES: usize = 544;
    const OFFSET: i32 = 128;
    const MIN: bool = false;
    /// # Safety
    /// A whole block column at `p`; AVX-512 is enabled.
    #[inline(always)]
    unsafe fn steps(p: *const u8) -> [__m512i; 8] {
        // SAFETY: as above.
        unsafe {
            let p = p.add(32);
            [
                load512(p),
                load512(p.add(64)),
                load512(p.add(128)),
                load512(p.add(192)),
                load512(p.add(256)),
                load512(p.add(320)),
                load512(p.add(384)),
                load512(p.add(448)),
            ]
        }
    }
}
impl Legacy for Iq4Nl {
    const BYTES: usize = 288;
    const OFFSET: i32 = 128;
    const MIN: bool = false;
    /// # Safety
    /// A whole block column at `p`; AVX-512 is enabled.
    #[inline(always)]
    unsafe fn steps(p: *const u8) -> [__m512i; 8] {
        // SAFETY: as above.
        unsafe {
            // The grid plus 128, as unsigned bytes, in every 128-bit lane.
            let biased: [u8; 16] = IQ4_NL_VALUES.map(|v| (i16::from(v) + 128) as u8);
            let lut = _mm512_broadcast_i32x4(_mm_loadu_si128(biased.as_ptr().cast()));
            let q = nibble_steps(p.add(32));
            [
                _mm512_shuffle_epi8(lut, q[0]),
                _mm512_shuffle_epi8(lut, q[1]),
                _mm512_shuffle_epi8(lut, q[2]),
                _mm512_shuffle_epi8(lut, q[3]),
                _mm512_shuffle_epi8(lut, q[4]),
                _mm512_shuffle_epi8(lut, q[5]),
                _mm512_shuffle_epi8(lut, q[6]),
                _mm512_shuffle_epi8(lut, q[7]),
            ]
        }
    }
}

/// 16 bytes of a 16-value lookup table plus 128, as unsigned bytes, in every 128-bit lane.
///
/// # Safety
/// AVX-512 BW is enabled.
#[inline(always)]
unsafe fn biased_lut(values: &[i8; 16]) -> __m512i {
    let biased: [u8; 16] = values.map(|v| (i16::from(v) + 128) as u8);
    // SAFETY: 16 bytes read from a 16-byte array; AVX-512 is enabled.
    unsafe { _mm512_broadcast_i32x4(_mm_loadu_si128(biased.as_ptr().cast())) }
}

impl Legacy for Mxfp4 {
    const BYTES: usize = 272;
    const OFFSET: i32 = 128;
    const MIN: bool = false;
    /// # Safety
    /// A whole block column at `p`; AVX-512 is enabled.
    #[inline(always)]
    unsafe fn steps(p: *const u8) -> [__m512i; 8] {
        // SAFETY: as above.
        unsafe {
            let lut = biased_lut(&MXFP4_VALUES);
            let mut q = nibble_steps(p.add(16));
            for q in q.iter_mut() {
                *q = _mm512_shuffle_epi8(lut, *q);
            }
            q
        }
    }
    /// `2^(e − 128)` of the 16 exponent bytes (ggml's `ggml_e8m0_to_fp32_half`).
    ///
    /// # Safety
    /// A whole block column at `p`; AVX-512 is enabled.
    #[inline(always)]
    unsafe fn d(p: *const u8) -> __m512 {
        // SAFETY: 16 bytes at `p`; AVX-512 is enabled.
        unsafe {
            let e = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.cast()));
            let normal = _mm512_slli_epi32::<23>(_mm512_sub_epi32(e, _mm512_set1_epi32(1)));
            let tiny = _mm512_sllv_epi32(_mm512_set1_epi32(0x0020_0000), e);
            let small = _mm512_cmplt_epu32_mask(e, _mm512_set1_epi32(2));
            _mm512_castsi512_ps(_mm512_mask_blend_epi32(small, normal, tiny))
        }
    }
}

/// 16 rows × `NY` tokens over `nb` block columns of a 32-value format.
///
/// # Safety
/// the `PackedFn` contract; the features are enabled by the caller.
#[inline(always)]
unsafe fn gemm_legacy<T: Legacy, const NY: usize>(
    nb: usize,
    w: *const u8,
    a: ActTile,
    y: *mut f32,
    ys: usize,
    add: bool,
) {
    // SAFETY: the `PackedFn` contract; the features are enabled by the caller.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); NY];
        if add {
            for (t, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_loadu_ps(y.add(t * ys));
            }
        }
        for b in 0..nb {
            let p = w.add(b * T::BYTES);
            let dw = T::d(p);
            let mw = if T::MIN {
                f16x16(p.add(32))
            } else {
                _mm512_setzero_ps()
            };
            prefetch(p, T::BYTES);
            let q = T::steps(p);
            for (t, acc) in acc.iter_mut().enumerate() {
                let x = a.qs.add(t * a.qs_stride + 32 * b);
                let sum = i32::from(*a.sums.add(t * a.sums_stride + b));
                let init = if T::OFFSET != 0 {
                    _mm512_set1_epi32(-T::OFFSET * sum)
                } else {
                    _mm512_setzero_si512()
                };
                let isum = dp_steps(init, &q, x, 0, 8);
                let dx = *a.d.add(t * a.d_stride + b);
                *acc = _mm512_fmadd_ps(
                    _mm512_cvtepi32_ps(isum),
                    _mm512_mul_ps(dw, _mm512_set1_ps(dx)),
                    *acc,
                );
                if T::MIN {
                    let sx = *a.s.add(t * a.d_stride + b);
                    *acc = _mm512_fmadd_ps(mw, _mm512_set1_ps(sx), *acc);
                }
            }
        }
        for (t, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(y.add(t * ys), *acc);
        }
    }
}

/// [`gemm_legacy`] with ggml's float summation order (`ggml_vec_dot_q4_1_q8_1` and its
/// siblings in `ggml-cpu/arch/x86/quants.c`, llamafile's `tinyBLAS_Q0_AVX`): per row and
/// token, eight accumulators — one per 4-value step, i.e. per lane of ggml's 256-bit
/// accumulator — each taking `fma(d_w·d_x, float(step sum), acc)` block by block; the min terms
/// `m·s` summed on their own (ggml's scalar `summs`); at the end ggml's `hsum_float_8` tree,
/// `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`, plus the mins. With equal inputs the
/// results equal llama.cpp's bit for bit. About three times the float work of [`gemm_legacy`]
/// per token, so it takes at most two tokens at a time (three and four go through
/// [`gemm_legacy_ggml_halves`]); rows are never split into column ranges (the running state
/// is eight accumulators, not one sum).
///
/// # Safety
/// the `PackedFn` contract (without `add`); the features are enabled by the caller.
#[inline(always)]
unsafe fn gemm_legacy_ggml<T: Legacy, const NY: usize>(
    nb: usize,
    w: *const u8,
    a: ActTile,
    y: *mut f32,
    ys: usize,
) {
    // SAFETY: the `PackedFn` contract; the features are enabled by the caller.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 8]; NY];
        let mut mins = [_mm512_setzero_ps(); NY];
        for b in 0..nb {
            let p = w.add(b * T::BYTES);
            let dw = T::d(p);
            let mw = if T::MIN {
                f16x16(p.add(32))
            } else {
                _mm512_setzero_ps()
            };
            prefetch(p, T::BYTES);
            let q = T::steps(p);
            for (t, acc) in acc.iter_mut().enumerate() {
                let x = a.qs.add(t * a.qs_stride + 32 * b);
                let dd = _mm512_mul_ps(dw, _mm512_set1_ps(*a.d.add(t * a.d_stride + b)));
                let offs = step_offs_at::<T>(a, t, b);
                for (s, acc) in acc.iter_mut().enumerate() {
                    let isum = _mm512_dpbusd_epi32(offset_init::<T>(offs, s), q[s], bcast4(x, s));
                    *acc = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(isum), *acc);
                }
                if T::MIN {
                    let sx = _mm512_set1_ps(*a.s.add(t * a.d_stride + b));
                    mins[t] = _mm512_add_ps(mins[t], _mm512_mul_ps(mw, sx));
                }
            }
        }
        for (t, acc) in acc.iter().enumerate() {
            let mut r = _mm512_add_ps(
                _mm512_add_ps(_mm512_add_ps(acc[0], acc[4]), _mm512_add_ps(acc[2], acc[6])),
                _mm512_add_ps(_mm512_add_ps(acc[1], acc[5]), _mm512_add_ps(acc[3], acc[7])),
            );
            if T::MIN {
                r = _mm512_add_ps(r, mins[t]);
            }
            _mm512_storeu_ps(y.add(t * ys), r);
        }
    }
}

/// Where token `t`'s step offsets for block `b` and `T`'s value offset start in the tile's
/// table ([`ActTile::offs`]: eight for an offset of 16, then eight for 128).
#[inline(always)]
fn step_offs_at<T: Legacy>(a: ActTile, t: usize, b: usize) -> *const i32 {
    debug_assert!(T::OFFSET == 0 || T::OFFSET == 16 || T::OFFSET == 128);
    let half = if T::OFFSET == 128 { 8 } else { 0 };
    a.offs
        .wrapping_add(t * a.d_stride * STEP_OFFS + b * STEP_OFFS + half)
}

/// The starting sum of step `s`'s `vpdpbusd`: `−OFFSET · Σ x` of the step's four activation
/// bytes, broadcast by one load from the table at `offs` (zero for formats without an offset).
///
/// # Safety
/// With an offset, eight `i32` at `offs` (the tile's table); AVX-512F is enabled.
#[inline(always)]
unsafe fn offset_init<T: Legacy>(offs: *const i32, s: usize) -> __m512i {
    // SAFETY: step `s < 8` of the caller's table; AVX-512F is enabled.
    unsafe {
        if T::OFFSET == 0 {
            return _mm512_setzero_si512();
        }
        _mm512_set1_epi32(*offs.add(s))
    }
}

/// Half `H` of [`gemm_legacy_ggml_halves`]: the accumulators of steps `4H..4H + 4` (ggml's
/// lanes `4H..4H + 4`) of every row and token over all `nb` blocks, each summed exactly as in
/// [`gemm_legacy_ggml`]; with `H == 0` also the min terms into `mins`.
///
/// # Safety
/// As [`gemm_legacy_ggml`].
#[inline(always)]
unsafe fn legacy_ggml_half<T: Legacy, const NY: usize, const H: usize>(
    nb: usize,
    w: *const u8,
    a: ActTile,
    mins: &mut [__m512; NY],
) -> [[__m512; 4]; NY] {
    // SAFETY: the `PackedFn` contract; the features are enabled by the caller.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 4]; NY];
        for b in 0..nb {
            let p = w.add(b * T::BYTES);
            let dw = T::d(p);
            let mw = if T::MIN && H == 0 {
                f16x16(p.add(32))
            } else {
                _mm512_setzero_ps()
            };
            // The first pass asks for the blocks `PREFETCH_AHEAD` on (its requests stall once
            // the miss buffers are full), the second for those twice as far, so memory keeps
            // streaming while it computes from L1 instead of idling until the next group's
            // first pass (a 1536 × 576 Q4_1 matrix from memory, 2 threads: 4 tokens −4 %, 8
            // tokens −4 %; batched decode +2–7 %).
            if H == 0 {
                prefetch(p, T::BYTES);
            } else {
                prefetch(p.wrapping_add(PREFETCH_AHEAD), T::BYTES);
            }
            // Only this half's four steps are kept (the others' unpacking is dead code).
            let all = T::steps(p);
            let q = [all[4 * H], all[4 * H + 1], all[4 * H + 2], all[4 * H + 3]];
            for (t, acc) in acc.iter_mut().enumerate() {
                let x = a.qs.add(t * a.qs_stride + 32 * b);
                let dd = _mm512_mul_ps(dw, _mm512_set1_ps(*a.d.add(t * a.d_stride + b)));
                let offs = step_offs_at::<T>(a, t, b);
                for (s, acc) in acc.iter_mut().enumerate() {
                    let isum = _mm512_dpbusd_epi32(
                        offset_init::<T>(offs, 4 * H + s),
                        q[s],
                        bcast4(x, 4 * H + s),
                    );
                    *acc = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(isum), *acc);
                }
                if T::MIN && H == 0 {
                    let sx = _mm512_set1_ps(*a.s.add(t * a.d_stride + b));
                    mins[t] = _mm512_add_ps(mins[t], _mm512_mul_ps(mw, sx));
                }
            }
        }
        acc
    }
}

/// [`gemm_legacy_ggml`] for three or four tokens, with the same results bit for bit: the eight
/// accumulators of a row and token are independent until ggml's final tree, so the kernel
/// walks the weights twice, once for steps 0–3 and once for steps 4–7 (16 accumulators for
/// four tokens instead of 32, which would not fit the register file), then adds the tree.
/// Each weight block is unpacked once per four tokens (each pass unpacks its half), where two
/// calls of the two-token kernel would unpack it twice.
///
/// # Safety
/// As [`gemm_legacy_ggml`].
#[inline(always)]
unsafe fn gemm_legacy_ggml_halves<T: Legacy, const NY: usize>(
    nb: usize,
    w: *const u8,
    a: ActTile,
    y: *mut f32,
    ys: usize,
) {
    // SAFETY: the `PackedFn` contract; the features are enabled by the caller.
    unsafe {
        let mut mins = [_mm512_setzero_ps(); NY];
        let lo = legacy_ggml_half::<T, NY, 0>(nb, w, a, &mut mins);
        let hi = legacy_ggml_half::<T, NY, 1>(nb, w, a, &mut mins);
        for t in 0..NY {
            let (l, h) = (&lo[t], &hi[t]);
            let mut r = _mm512_add_ps(
                _mm512_add_ps(_mm512_add_ps(l[0], h[0]), _mm512_add_ps(l[2], h[2])),
                _mm512_add_ps(_mm512_add_ps(l[1], h[1]), _mm512_add_ps(l[3], h[3])),
            );
            if T::MIN {
                r = _mm512_add_ps(r, mins[t]);
            }
            _mm512_storeu_ps(y.add(t * ys), r);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// k-quants.

/// `Q4_K` (`Q5 = false`) and `Q5_K` (`Q5 = true`).
///
/// # Safety
/// the `PackedFn` contract; the features are enabled by the caller.
#[inline(always)]
unsafe fn gemm_q45k<const Q5: bool, const NY: usize>(
    nb: usize,
    w: *const u8,
    a: ActTile,
    y: *mut f32,
    ys: usize,
    add: bool,
) {
    // SAFETY: the `PackedFn` contract; the features are enabled by the caller.
    unsafe {
        let bytes = if Q5 { 2880 } else { 2368 };
        let sub = if Q5 { 320 } else { 256 };
        let mut acc = [_mm512_setzero_ps(); NY];
        if add {
            for (t, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_loadu_ps(y.add(t * ys));
            }
        }
        for b in 0..nb {
            let p = w.add(b * bytes);
            let dw = f16x16(p);
            let dminw = f16x16(p.add(32));
            // Mins: Σ_j m_j · (sum of the 32 activations of group j), per row, in i16 pairs.
            let mp = [
                _mm512_cvtepu8_epi16(_mm256_loadu_si256(p.add(192).cast())),
                _mm512_cvtepu8_epi16(_mm256_loadu_si256(p.add(224).cast())),
                _mm512_cvtepu8_epi16(_mm256_loadu_si256(p.add(256).cast())),
                _mm512_cvtepu8_epi16(_mm256_loadu_si256(p.add(288).cast())),
            ];
            for (t, acc) in acc.iter_mut().enumerate() {
                let s32 = a
                    .sums
                    .add(t * a.sums_stride + Q8K_SUMS * b + 16)
                    .cast::<i32>();
                let mut mins = _mm512_setzero_si512();
                for (k, mp) in mp.iter().enumerate() {
                    mins = _mm512_dpwssd_epi32(
                        mins,
                        *mp,
                        _mm512_set1_epi32(s32.add(k).read_unaligned()),
                    );
                }
                let dx = _mm512_set1_ps(*a.d.add(t * a.d_stride + b));
                *acc = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mins), _mm512_mul_ps(dminw, dx), *acc);
            }
            let mut total = [_mm512_setzero_si512(); NY];
            for j in 0..8 {
                let g = p.add(320 + sub * j);
                prefetch(g, sub);
                let mut q = nibble_steps(g);
                if Q5 {
                    add_bit_plane(&mut q, g.add(256));
                }
                let sc = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(64 + 16 * j).cast()));
                for (t, total) in total.iter_mut().enumerate() {
                    let x = a.qs.add(t * a.qs_stride + 256 * b + 32 * j);
                    let isum = dp_steps(_mm512_setzero_si512(), &q, x, 0, 8);
                    *total = _mm512_add_epi32(*total, _mm512_mullo_epi32(isum, sc));
                }
            }
            for (t, acc) in acc.iter_mut().enumerate() {
                let dx = _mm512_set1_ps(*a.d.add(t * a.d_stride + b));
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total[t]), _mm512_mul_ps(dw, dx), *acc);
            }
        }
        for (t, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(y.add(t * ys), *acc);
        }
    }
}

/// `Q6_K`. With `TILED`, each super-block's sum is scaled as llama.cpp's tiled k-quant mat-mul
/// does (`acc = fma(float(S)·d_w, d_x, acc)`, `GgmlPath::Tiled`); otherwise as
/// `fma(float(S), d_w·d_x, acc)`.
///
/// # Safety
/// the `PackedFn` contract; the features are enabled by the caller.
#[inline(always)]
unsafe fn gemm_q6k<const NY: usize, const TILED: bool>(
    nb: usize,
    w: *const u8,
    a: ActTile,
    y: *mut f32,
    ys: usize,
    add: bool,
) {
    // SAFETY: the `PackedFn` contract; the features are enabled by the caller.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); NY];
        if add {
            for (t, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_loadu_ps(y.add(t * ys));
            }
        }
        for b in 0..nb {
            let p = w.add(b * 3360);
            let dw = f16x16(p);
            let mut total = [_mm512_setzero_si512(); NY];
            for j in 0..8 {
                let g = p.add(288 + 384 * j);
                prefetch(g, 384);
                let mut q = nibble_steps(g);
                add_q6_planes(&mut q, g.add(256));
                let sc_lo = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(32 + 32 * j).cast()));
                let sc_hi = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(48 + 32 * j).cast()));
                for (t, total) in total.iter_mut().enumerate() {
                    let x = a.qs.add(t * a.qs_stride + 256 * b + 32 * j);
                    let s16 = a.sums.add(t * a.sums_stride + Q8K_SUMS * b + 2 * j);
                    // Values are stored as q + 32: start each 16-value group at −32·Σx.
                    let lo = dp_steps(_mm512_set1_epi32(-32 * i32::from(*s16)), &q, x, 0, 4);
                    let hi = dp_steps(_mm512_set1_epi32(-32 * i32::from(*s16.add(1))), &q, x, 4, 8);
                    let v = _mm512_add_epi32(
                        _mm512_mullo_epi32(lo, sc_lo),
                        _mm512_mullo_epi32(hi, sc_hi),
                    );
                    *total = _mm512_add_epi32(*total, v);
                }
            }
            for (t, acc) in acc.iter_mut().enumerate() {
                let dx = _mm512_set1_ps(*a.d.add(t * a.d_stride + b));
                *acc = if TILED {
                    _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(total[t]), dw), dx, *acc)
                } else {
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(total[t]), _mm512_mul_ps(dw, dx), *acc)
                };
            }
        }
        for (t, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(y.add(t * ys), *acc);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// K-quants in llama.cpp's float orders (`MatrixOptions::ggml_order`; see `dot::GgmlPath`).

/// Repacked `Q4_K` as llama.cpp's `ggml_gemv_q4_K_8x8_q8_K` (`GEMM = false`) and
/// `ggml_gemm_q4_K_8x8_q8_K` (`GEMM = true`) sum it: per row and token two accumulators,
/// `acc += float(S)·(d_w·d_x)` and `acc_m += float(M)·(dmin·d_x)` (each one `fma`), where `S`
/// and `M = Σ m·bsum32` are the integer sums of a whole super-block (gemv) or of each 64-value
/// chunk (gemm); the output is `acc − acc_m`. Rows are never split into column ranges.
///
/// # Safety
/// the `PackedFn` contract (without `add`); the features are enabled by the caller.
#[inline(always)]
unsafe fn gemm_q4k_ggml<const NY: usize, const GEMM: bool>(
    nb: usize,
    w: *const u8,
    a: ActTile,
    y: *mut f32,
    ys: usize,
) {
    // SAFETY: the `PackedFn` contract; the features are enabled by the caller.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); NY];
        let mut acc_m = [_mm512_setzero_ps(); NY];
        for b in 0..nb {
            let p = w.add(b * 2368);
            let dw = f16x16(p);
            let dminw = f16x16(p.add(32));
            let mut s_blk = [_mm512_setzero_si512(); NY];
            let mut m_blk = [_mm512_setzero_si512(); NY];
            for k in 0..4 {
                let mut s = [_mm512_setzero_si512(); NY];
                for j in [2 * k, 2 * k + 1] {
                    let g = p.add(320 + 256 * j);
                    prefetch(g, 256);
                    let q = nibble_steps(g);
                    let sc = _mm512_cvtepu8_epi32(_mm_loadu_si128(p.add(64 + 16 * j).cast()));
                    for (t, s) in s.iter_mut().enumerate() {
                        let x = a.qs.add(t * a.qs_stride + 256 * b + 32 * j);
                        let isum = dp_steps(_mm512_setzero_si512(), &q, x, 0, 8);
                        *s = _mm512_add_epi32(*s, _mm512_mullo_epi32(isum, sc));
                    }
                }
                // The mins of groups 2k, 2k + 1 as i16 pairs per row, against the pair of
                // 32-value activation sums.
                let mp = _mm512_cvtepu8_epi16(_mm256_loadu_si256(p.add(192 + 32 * k).cast()));
                for t in 0..NY {
                    let s32 = a.sums.add(t * a.sums_stride + Q8K_SUMS * b + 16 + 2 * k);
                    let pair = _mm512_set1_epi32(s32.cast::<i32>().read_unaligned());
                    let m = _mm512_dpwssd_epi32(_mm512_setzero_si512(), mp, pair);
                    if GEMM {
                        let dx = _mm512_set1_ps(*a.d.add(t * a.d_stride + b));
                        acc[t] = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(s[t]),
                            _mm512_mul_ps(dw, dx),
                            acc[t],
                        );
                        acc_m[t] = _mm512_fmadd_ps(
                            _mm512_cvtepi32_ps(m),
                            _mm512_mul_ps(dminw, dx),
                            acc_m[t],
                        );
                    } else {
                        s_blk[t] = _mm512_add_epi32(s_blk[t], s[t]);
                        m_blk[t] = _mm512_add_epi32(m_blk[t], m);
                    }
                }
            }
            if !GEMM {
                for t in 0..NY {
                    let dx = _mm512_set1_ps(*a.d.add(t * a.d_stride + b));
                    acc[t] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(s_blk[t]),
                        _mm512_mul_ps(dw, dx),
                        acc[t],
                    );
                    acc_m[t] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(m_blk[t]),
                        _mm512_mul_ps(dminw, dx),
                        acc_m[t],
                    );
                }
            }
        }
        for t in 0..NY {
            _mm512_storeu_ps(y.add(t * ys), _mm512_sub_ps(acc[t], acc_m[t]));
        }
    }
}

/// `Q6_K` as llama.cpp's `ggml_vec_dot_q6_K_q8_K` sums it, for one token: per row eight lanes,
/// lane `m` the scaled integer sum of values `4m..4m + 4` of every 32-value group less
/// `32·(sc[2m]·bsum[2m] + sc[2m+1]·bsum[2m+1])`, each summed over the super-blocks as
/// `fma(d_x·d_w, float(lane), acc)`; at the end ggml's `hsum_float_8` tree.
///
/// # Safety
/// the `PackedFn` contract (one token, without `add`); the features are enabled by the caller.
#[inline(always)]
unsafe fn gemv_q6k_vecdot(nb: usize, w: *const u8, a: ActTile, y: *mut f32) {
    // SAFETY: the `PackedFn` contract; the features are enabled by the caller.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); 8];
        for b in 0..nb {
            let p = w.add(b * 3360);
            let sums = a.sums.add(Q8K_SUMS * b);
            let scale = |g: usize| _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(32 + 16 * g).cast()));
            let mut lanes = [_mm512_setzero_si512(); 8];
            for (m, lane) in lanes.iter_mut().enumerate() {
                let off = _mm512_add_epi32(
                    _mm512_mullo_epi32(
                        scale(2 * m),
                        _mm512_set1_epi32(i32::from(*sums.add(2 * m))),
                    ),
                    _mm512_mullo_epi32(
                        scale(2 * m + 1),
                        _mm512_set1_epi32(i32::from(*sums.add(2 * m + 1))),
                    ),
                );
                *lane = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32::<5>(off));
            }
            for j in 0..8 {
                let g = p.add(288 + 384 * j);
                prefetch(g, 384);
                let mut q = nibble_steps(g);
                add_q6_planes(&mut q, g.add(256));
                let sc = [scale(2 * j), scale(2 * j + 1)];
                let x = a.qs.add(256 * b + 32 * j);
                for (m, lane) in lanes.iter_mut().enumerate() {
                    let d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[m], bcast4(x, m));
                    *lane = _mm512_add_epi32(*lane, _mm512_mullo_epi32(d, sc[m / 4]));
                }
            }
            let dd = _mm512_mul_ps(_mm512_set1_ps(*a.d.add(b)), f16x16(p));
            for (acc, lane) in acc.iter_mut().zip(&lanes) {
                *acc = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(*lane), *acc);
            }
        }
        let r = _mm512_add_ps(
            _mm512_add_ps(_mm512_add_ps(acc[0], acc[4]), _mm512_add_ps(acc[2], acc[6])),
            _mm512_add_ps(_mm512_add_ps(acc[1], acc[5]), _mm512_add_ps(acc[3], acc[7])),
        );
        _mm512_storeu_ps(y, r);
    }
}

// ---------------------------------------------------------------------------------------------
// Instantiation: one `#[target_feature]` entry point per type, dispatching on the token count.

macro_rules! packed {
    ($name:ident, |$nb:ident, $w:ident, $a:ident, $y:ident, $ys:ident, $add:ident, NY| $body:expr) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name(
            $nb: usize,
            w0: *const u8,
            gbytes: usize,
            ngroups: usize,
            $a: ActTile,
            ny: usize,
            y0: *mut f32,
            $ys: usize,
            $add: bool,
        ) {
            macro_rules! call {
                ($n:literal) => {{
                    const NY: usize = $n;
                    for g in 0..ngroups {
                        let ($w, $y) = (w0.add(g * gbytes), y0.add(16 * g));
                        $body
                    }
                }};
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

packed!(packed_q4_0, |nb, w, a, y, ys, add, NY| gemm_legacy::<
    Q4_0,
    NY,
>(
    nb, w, a, y, ys, add
));
packed!(packed_q4_1, |nb, w, a, y, ys, add, NY| gemm_legacy::<
    Q4_1,
    NY,
>(
    nb, w, a, y, ys, add
));
packed!(packed_q5_0, |nb, w, a, y, ys, add, NY| gemm_legacy::<
    Q5_0,
    NY,
>(
    nb, w, a, y, ys, add
));
packed!(packed_q5_1, |nb, w, a, y, ys, add, NY| gemm_legacy::<
    Q5_1,
    NY,
>(
    nb, w, a, y, ys, add
));
packed!(packed_q8_0, |nb, w, a, y, ys, add, NY| gemm_legacy::<
    Q8_0,
    NY,
>(
    nb, w, a, y, ys, add
));
packed!(packed_iq4_nl, |nb, w, a, y, ys, add, NY| gemm_legacy::<
    Iq4Nl,
    NY,
>(
    nb, w, a, y, ys, add
));
packed!(packed_mxfp4, |nb, w, a, y, ys, add, NY| gemm_legacy::<
    Mxfp4,
    NY,
>(
    nb, w, a, y, ys, add
));
packed!(
    packed_q4_k,
    |nb, w, a, y, ys, add, NY| gemm_q45k::<false, NY>(nb, w, a, y, ys, add)
);
packed!(
    packed_q5_k,
    |nb, w, a, y, ys, add, NY| gemm_q45k::<true, NY>(nb, w, a, y, ys, add)
);
packed!(
    packed_q6_k,
    |nb, w, a, y, ys, add, NY| gemm_q6k::<NY, false>(nb, w, a, y, ys, add)
);
packed!(packed_q6_k_tiled, |nb, w, a, y, ys, add, NY| gemm_q6k::<
    NY,
    true,
>(
    nb, w, a, y, ys, add
));

/// One `#[target_feature]` entry point of a ggml-order kernel, for up to four tokens.
macro_rules! packed_ggml {
    ($name:ident, $ty:ty) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name(
            nb: usize,
            w0: *const u8,
            gbytes: usize,
            ngroups: usize,
            a: ActTile,
            ny: usize,
            y0: *mut f32,
            ys: usize,
            add: bool,
        ) {
            debug_assert!(!add, "ggml-order kernels take whole rows");
            for g in 0..ngroups {
                let (w, y) = (w0.wrapping_add(g * gbytes), y0.wrapping_add(16 * g));
                // SAFETY: the `PackedFn` contract, with the features enabled here.
                unsafe {
                    match ny {
                        1 => gemm_legacy_ggml::<$ty, 1>(nb, w, a, y, ys),
                        2 => gemm_legacy_ggml::<$ty, 2>(nb, w, a, y, ys),
                        3 => gemm_legacy_ggml_halves::<$ty, 3>(nb, w, a, y, ys),
                        _ => gemm_legacy_ggml_halves::<$ty, 4>(nb, w, a, y, ys),
                    }
                }
            }
        }
    };
}

packed_ggml!(packed_ggml_q4_1, Q4_1);
packed_ggml!(packed_ggml_q5_0, Q5_0);
packed_ggml!(packed_ggml_q5_1, Q5_1);
packed_ggml!(packed_ggml_q8_0, Q8_0);

/// One `#[target_feature]` entry point of a ggml-order `Q4_K` kernel (`GEMM`: gemm, else gemv),
/// for up to four tokens.
macro_rules! packed_ggml_q4k {
    ($name:ident, $gemm:literal) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name(
            nb: usize,
            w0: *const u8,
            gbytes: usize,
            ngroups: usize,
            a: ActTile,
            ny: usize,
            y0: *mut f32,
            ys: usize,
            add: bool,
        ) {
            debug_assert!(!add, "ggml-order Q4_K kernels take whole rows");
            for g in 0..ngroups {
                let (w, y) = (w0.wrapping_add(g * gbytes), y0.wrapping_add(16 * g));
                // SAFETY: the `PackedFn` contract, with the features enabled here.
                unsafe {
                    match ny {
                        1 => gemm_q4k_ggml::<1, $gemm>(nb, w, a, y, ys),
                        2 => gemm_q4k_ggml::<2, $gemm>(nb, w, a, y, ys),
                        3 => gemm_q4k_ggml::<3, $gemm>(nb, w, a, y, ys),
                        _ => gemm_q4k_ggml::<4, $gemm>(nb, w, a, y, ys),
                    }
                }
            }
        }
    };
}

packed_ggml_q4k!(packed_ggml_q4_k_gemv, false);
packed_ggml_q4k!(packed_ggml_q4_k_gemm, true);

/// The `Q6_K` kernel of `GgmlPath::VecDot`: one token per call.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
unsafe fn packed_ggml_q6_k_vecdot(
    nb: usize,
    w0: *const u8,
    gbytes: usize,
    ngroups: usize,
    a: ActTile,
    ny: usize,
    y0: *mut f32,
    _ys: usize,
    add: bool,
) {
    debug_assert!(!add && ny == 1, "one token, whole rows");
    for g in 0..ngroups {
        // SAFETY: the `PackedFn` contract, with the features enabled here.
        unsafe { gemv_q6k_vecdot(nb, w0.wrapping_add(g * gbytes), a, y0.wrapping_add(16 * g)) };
    }
}

/// The packed kernel for `ty` that sums in the order of llama.cpp's code path `path`, the most
/// tokens it takes per call, and whether rows may be split into column ranges: `Q4_1`, `Q5_1`
/// (`ggml_vec_dot_*_q8_1`), `Q5_0`, `Q8_0` (`tinyBLAS_Q0_AVX` and `ggml_vec_dot_*_q8_0`) through
/// [`gemm_legacy_ggml`]; `Q4_K` repacked ([`gemm_q4k_ggml`]); `Q6_K` ([`gemv_q6k_vecdot`],
/// [`gemm_q6k`] with `TILED`). (`Q4_K` in llama.cpp's ggml layout has row kernels only.)
pub(crate) fn packed_kernel_ggml(ty: GgmlType, path: GgmlPath) -> Option<(PackedFn, usize, bool)> {
    use GgmlPath as P;
    use GgmlType as T;
    Some(match (ty, path) {
        (T::Q4_1, P::VecDot) => (packed_ggml_q4_1, GGML_MAX_NY, false),
        (T::Q5_0, P::VecDot) => (packed_ggml_q5_0, GGML_MAX_NY, false),
        (T::Q5_1, P::VecDot) => (packed_ggml_q5_1, GGML_MAX_NY, false),
        (T::Q8_0, P::VecDot) => (packed_ggml_q8_0, GGML_MAX_NY, false),
        (T::Q4_K, P::Gemv) => (packed_ggml_q4_k_gemv, 4, false),
        (T::Q4_K, P::Gemm) => (packed_ggml_q4_k_gemm, 4, false),
        (T::Q6_K, P::VecDot) => (packed_ggml_q6_k_vecdot, 1, false),
        (T::Q6_K, P::Tiled) => (packed_q6_k_tiled, 8, true),
        // Per block `fma(float(S), d_w·d_x, acc)`, as llama.cpp's repacked MXFP4 and IQ4_NL
        // gemv and gemm (one template).
        (T::MXFP4, P::Gemv) => (packed_mxfp4, 8, true),
        (T::IQ4_NL, P::Gemv) => (packed_iq4_nl, 8, true),
        _ => return None,
    })
}

/// Tokens per call of the ggml-order kernels (three and four in two half passes, see
/// [`gemm_legacy_ggml_halves`]).
const GGML_MAX_NY: usize = 4;
