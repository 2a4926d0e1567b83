//! 256-bit kernels over the 16-row packed layouts of `matmul::repack`, for the `Avx2` level
//! (AVX2 machines without AVX-512 VNNI).
//!
//! Each 16-row group is computed as two halves of 8 rows: the first and second 32 bytes of every
//! 64-byte step vector. Products go through `maddubs` (unsigned weight byte × signed activation
//! byte, adjacent pairs summed to i16), which saturates above 32767: the i16 partial sums are
//! widened with `madd` after at most `I16` steps, chosen per format so they cannot overflow.
//! Formats whose packed bytes reach 255 (`Q8_0` and `IQ4_NL`, stored as value + 128) are turned
//! back into signed values and multiplied with the sign trick (`|w|` × `sign(x, w)`).

use super::avx512::prefetch;
use crate::dot::{ActTile, PackedFn, Q8K_SUMS};
use crate::quant::{GgmlType, IQ4_NL_VALUES, MXFP4_VALUES};
use std::arch::x86_64::*;

/// The packed kernel for `ty` at the `Avx2` level and the most activation rows per call.
pub(crate) fn packed_kernel(ty: GgmlType) -> Option<(PackedFn, usize)> {
    use GgmlType as T;
    Some(match ty {
        T::Q4_0 => (packed_q4_0, 4),
        T::Q4_1 => (packed_q4_1, 4),
        T::Q5_0 => (packed_q5_0, 4),
        T::Q5_1 => (packed_q5_1, 4),
        T::Q8_0 => (packed_q8_0, 4),
        T::IQ4_NL => (packed_iq4_nl, 4),
        T::MXFP4 => (packed_mxfp4, 4),
        T::Q4_K => (packed_q4_k, 4),
        T::Q5_K => (packed_q5_k, 4),
        T::Q6_K => (packed_q6_k, 2),
        _ => return None,
    })
}

/// # Safety
/// 32 bytes at `p` (caller).
#[inline(always)]
unsafe fn load256(p: *const u8) -> __m256i {
    // SAFETY: 32 bytes at `p` (caller).
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// Eight f16 (16 bytes at `p`) as f32.
///
/// # Safety
/// 16 bytes at `p` (caller); F16C is enabled.
#[inline(always)]
unsafe fn f16x8(p: *const u8) -> __m256 {
    // SAFETY: 16 bytes at `p` (caller); F16C is enabled.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
}

/// Half `h` of nibble steps at `p`: eight registers of values 0..16 for rows `8h..8h + 8`.
///
/// # Safety
/// 256 bytes at `p` (caller); AVX2 is enabled.
#[inline(always)]
unsafe fn nibble_steps(p: *const u8, h: usize) -> [__m256i; 8] {
    // SAFETY: 256 bytes at `p` (caller); AVX2 is enabled.
    unsafe {
        let m4 = _mm256_set1_epi8(0xF);
        let v = [
            load256(p.add(32 * h)),
            load256(p.add(64 + 32 * h)),
            load256(p.add(128 + 32 * h)),
            load256(p.add(192 + 32 * h)),
        ];
        [
            _mm256_and_si256(v[0], m4),
            _mm256_and_si256(v[1], m4),
            _mm256_and_si256(v[2], m4),
            _mm256_and_si256(v[3], m4),
            _mm256_and_si256(_mm256_srli_epi16::<4>(v[0]), m4),
            _mm256_and_si256(_mm256_srli_epi16::<4>(v[1]), m4),
            _mm256_and_si256(_mm256_srli_epi16::<4>(v[2]), m4),
            _mm256_and_si256(_mm256_srli_epi16::<4>(v[3]), m4),
        ]
    }
}

/// Adds half `h` of the bit plane at `p` as bit 4 of the step registers.
///
/// # Safety
/// 64 bytes at `p` (caller); AVX2 is enabled.
#[inline(always)]
unsafe fn add_bit_plane(q: &mut [__m256i; 8], p: *const u8, h: usize) {
    // SAFETY: 64 bytes at `p` (caller); AVX2 is enabled.
    unsafe {
        let v = load256(p.add(32 * h));
        let m = _mm256_set1_epi8(0x10);
        q[0] = _mm256_or_si256(q[0], _mm256_and_si256(_mm256_slli_epi16::<4>(v), m));
        q[1] = _mm256_or_si256(q[1], _mm256_and_si256(_mm256_slli_epi16::<3>(v), m));
        q[2] = _mm256_or_si256(q[2], _mm256_and_si256(_mm256_slli_epi16::<2>(v), m));
        q[3] = _mm256_or_si256(q[3], _mm256_and_si256(_mm256_slli_epi16::<1>(v), m));
        q[4] = _mm256_or_si256(q[4], _mm256_and_si256(v, m));
        q[5] = _mm256_or_si256(q[5], _mm256_and_si256(_mm256_srli_epi16::<1>(v), m));
        q[6] = _mm256_or_si256(q[6], _mm256_and_si256(_mm256_srli_epi16::<2>(v), m));
        q[7] = _mm256_or_si256(q[7], _mm256_and_si256(_mm256_srli_epi16::<3>(v), m));
    }
}

/// Adds half `h` of the `Q6_K` planes at `p` as bits 4–5 of the step registers.
///
/// # Safety
/// 128 bytes at `p` (caller); AVX2 is enabled.
#[inline(always)]
unsafe fn add_q6_planes(q: &mut [__m256i; 8], p: *const u8, h: usize) {
    // SAFETY: 128 bytes at `p` (caller); AVX2 is enabled.
    unsafe {
        let m = _mm256_set1_epi8(0x30);
        for k in 0..2 {
            let v = load256(p.add(64 * k + 32 * h));
            q[4 * k] = _mm256_or_si256(q[4 * k], _mm256_and_si256(_mm256_slli_epi16::<4>(v), m));
            q[4 * k + 1] =
                _mm256_or_si256(q[4 * k + 1], _mm256_and_si256(_mm256_slli_epi16::<2>(v), m));
            q[4 * k + 2] = _mm256_or_si256(q[4 * k + 2], _mm256_and_si256(v, m));
            q[4 * k + 3] =
                _mm256_or_si256(q[4 * k + 3], _mm256_and_si256(_mm256_srli_epi16::<2>(v), m));
        }
    }
}

/// Σ over steps `from..to` of `q[s]` · (activation bytes of step `s` at `x`), as 8 i32 lanes,
/// widening the i16 `maddubs` sums every `i16_steps` steps.
///
/// # Safety
/// 32 activation bytes at `x` (caller); AVX2 is enabled.
#[inline(always)]
unsafe fn dot_steps(
    q: &[__m256i; 8],
    x: *const i8,
    from: usize,
    to: usize,
    i16_steps: usize,
) -> __m256i {
    // SAFETY: 32 activation bytes at `x` (caller); AVX2 is enabled.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_si256();
        let mut s = from;
        while s < to {
            let end = (s + i16_steps).min(to);
            let mut p16 = _mm256_maddubs_epi16(
                q[s],
                _mm256_set1_epi32(x.add(4 * s).cast::<i32>().read_unaligned()),
            );
            for k in s + 1..end {
                let xk = _mm256_set1_epi32(x.add(4 * k).cast::<i32>().read_unaligned());
                p16 = _mm256_add_epi16(p16, _mm256_maddubs_epi16(q[k], xk));
            }
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p16, ones));
            s = end;
        }
        acc
    }
}

/// Σ over the 8 steps of signed `q[s]` · (activation bytes of step `s` at `x`), as i32 lanes.
///
/// # Safety
/// 32 activation bytes at `x` (caller); AVX2 is enabled.
#[inline(always)]
unsafe fn dot_steps_signed(q: &[__m256i; 8], x: *const i8) -> __m256i {
    // SAFETY: 32 activation bytes at `x` (caller); AVX2 is enabled.
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_si256();
        for (s, q) in q.iter().enumerate() {
            let xs = _mm256_set1_epi32(x.add(4 * s).cast::<i32>().read_unaligned());
            let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(*q, *q), _mm256_sign_epi8(xs, *q));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p16, ones));
        }
        acc
    }
}

trait Legacy {
    const BYTES: usize;
    const OFFSET: i32;
    const MIN: bool;
    /// Whether `steps` returns signed values (multiplied with the sign trick).
    const SIGNED: bool = false;
    /// Steps whose i16 sums cannot overflow: 2·max value·127 per step must fit `I16` times.
    const I16: usize;
    /// # Safety
    /// a whole block column at `p`.
    unsafe fn steps(p: *const u8, h: usize) -> [__m256i; 8];
    /// The block scales `d` of rows `8h..8h + 8` of the block column at `p` (an f16 vector first
    /// in the column, unless the format says otherwise).
    ///
    /// # Safety
    /// A whole block column at `p`; AVX2 and F16C are enabled.
    #[inline(always)]
    unsafe fn d(p: *const u8, h: usize) -> __m256 {
        // SAFETY: the caller's column.
        unsafe { f16x8(p.add(16 * h)) }
    }
}

struct Q4_0;
struct Q4_1;
struct Q5_0;
struct Q5_1;

impl Legacy for Q4_0 {
    const BYTES: usize = 288;
    const OFFSET: i32 = 8;
    const MIN: bool = false;
    const I16: usize = 8;
    /// # Safety
    /// a whole block column at `p`.
    #[inline(always)]
    unsafe fn steps(p: *const u8, h: usize) -> [__m256i; 8] {
        // SAFETY: a whole block column at `p`.
        unsafe { nibble_steps(p.add(32), h) }
    }
}
impl Legacy for Q4_1 {
    const BYTES: usize = 320;
    const OFFSET: i32 = 0;
    const MIN: bool = true;
    const I16: usize = 8;
    /// # Safety
    /// A whole block column at `p`; AVX2 is enabled.
    #[inline(always)]
    unsafe fn steps(p: *const u8, h: usize) -> [__m256i; 8] {
        // SAFETY: as above.
        unsafe { nibble_steps(p.add(64), h) }
    }
}
impl Legacy for Q5_0 {
    const BYTES: usize = 352;
    const OFFSET: i32 = 16;
    const MIN: bool = false;
    const I16: usize = 4;
    /// # Safety
    /// A whole block column at `p`; AVX2 is enabled.
    #[inline(always)]
    unsafe fn steps(p: *const u8, h: usize) -> [__m256i; 8] {
        // SAFETY: as above.
        unsafe {
            let mut q = nibble_steps(p.add(96), h);
            add_bit_plane(&mut q, p.add(32), h);
            q
        }
    }
}
impl Legacy for Q5_1 {
    const BYTES: usize = 384;
    const OFFSET: i32 = 0;
    const MIN: bool = true;
    const I16: usize = 4;
    /// # Safety
    /// A whole block column at `p`; AVX2 is enabled.
    #[inline(always)]
    unsafe fn steps(p: *const u8, h: usize) -> [__m256i; 8] {
        // SAFETY: as above.
        unsafe {
            let mut q = nibble_steps(p.add(128), h);
            add_bit_plane(&mut q, p.add(64), h);
            q
        }
    }
}

struct Q8_0;
struct Iq4Nl;
struct Mxfp4;

impl Legacy for Q8_0 {
    const BYTES: usize = 544;
    const OFFSET: i32 = 0;
    const MIN: bool = false;
    const SIGNED: bool = true;
    const I16: usize = 1;
    /// # Safety
    /// a whole block column at `p`; AVX2 is enabled.
    #[inline(always)]
    unsafe fn steps(p: *const u8, h: usize) -> [__m256i; 8] {
        // SAFETY: a whole block column at `p`; AVX2 is enabled.
        unsafe {
            let flip = _mm256_set1_epi8(i8::MIN);
            let mut q = [_mm256_setzero_si256(); 8];
            for (s, q) in q.iter_mut().enumerate() {
                *q = _mm256_xor_si256(load256(p.add(32 + 64 * s + 32 * h)), flip);
            }
            q
        }
    }
}
impl Legacy for Iq4Nl {
    const BYTES: usize = 288;
    const OFFSET: i32 = 0;
    const MIN: bool = false;
    const SIGNED: bool = true;
    const I16: usize = 1;
    /// # Safety
    /// A whole block column at `p`; AVX2 is enabled.
    #[inline(always)]
    unsafe fn steps(p: *const u8, h: usize) -> [__m256i; 8] {
        // SAFETY: as above.
        unsafe {
            let lut = _mm256_broadcastsi128_si256(_mm_loadu_si128(IQ4_NL_VALUES.as_ptr().cast()));
            let q = nibble_steps(p.add(32), h);
            [
                _mm256_shuffle_epi8(lut, q[0]),
                _mm256_shuffle_epi8(lut, q[1]),
                _mm256_shuffle_epi8(lut, q[2]),
                _mm256_shuffle_epi8(lut, q[3]),
                _mm256_shuffle_epi8(lut, q[4]),
                _mm256_shuffle_epi8(lut, q[5]),
                _mm256_shuffle_epi8(lut, q[6]),
                _mm256_shuffle_epi8(lut, q[7]),
            ]
        }
    }
}

impl Legacy for Mxfp4 {
    const BYTES: usize = 272;
    const OFFSET: i32 = 0;
    const MIN: bool = false;
    const SIGNED: bool = true;
    const I16: usize = 1;
    /// # Safety
    /// A whole block column at `p`; AVX2 is enabled.
    #[inline(always)]
    unsafe fn steps(p: *const u8, h: usize) -> [__m256i; 8] {
        // SAFETY: as above.
        unsafe {
            let lut = _mm256_broadcastsi128_si256(_mm_loadu_si128(MXFP4_VALUES.as_ptr().cast()));
            let mut q = nibble_steps(p.add(16), h);
            for q in q.iter_mut() {
                *q = _mm256_shuffle_epi8(lut, *q);
            }
            q
        }
    }
    /// `2^(e − 128)` of the exponent bytes of rows `8h..8h + 8` (ggml's
    /// `ggml_e8m0_to_fp32_half`).
    ///
    /// # Safety
    /// A whole block column at `p`; AVX2 is enabled.
    #[inline(always)]
    unsafe fn d(p: *const u8, h: usize) -> __m256 {
        // SAFETY: 8 bytes at `p + 8h`; AVX2 is enabled.
        unsafe {
            let e = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.add(8 * h).cast()));
            let normal = _mm256_slli_epi32::<23>(_mm256_sub_epi32(e, _mm256_set1_epi32(1)));
            let tiny = _mm256_sllv_epi32(_mm256_set1_epi32(0x0020_0000), e);
            let small = _mm256_cmpgt_epi32(_mm256_set1_epi32(2), e);
            _mm256_castsi256_ps(_mm256_blendv_epi8(normal, tiny, small))
        }
    }
}

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
        for h in 0..2 {
            let mut acc = [_mm256_setzero_ps(); NY];
            if add {
                for (t, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_loadu_ps(y.add(t * ys + 8 * h));
                }
            }
            for b in 0..nb {
                let p = w.add(b * T::BYTES);
                if h == 0 {
                    prefetch(p, T::BYTES);
                }
                let q = T::steps(p, h);
                for (t, acc) in acc.iter_mut().enumerate() {
                    let x = a.qs.add(t * a.qs_stride + 32 * b);
                    let sum = i32::from(*a.sums.add(t * a.sums_stride + b));
                    let mut isum = if T::SIGNED {
                        dot_steps_signed(&q, x)
                    } else {
                        dot_steps(&q, x, 0, 8, T::I16)
                    };
                    if T::OFFSET != 0 {
                        isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(T::OFFSET * sum));
                    }
                    let dx = *a.d.add(t * a.d_stride + b);
                    let s = _mm256_mul_ps(T::d(p, h), _mm256_set1_ps(dx));
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, *acc);
                    if T::MIN {
                        let sx = *a.s.add(t * a.d_stride + b);
                        *acc = _mm256_fmadd_ps(f16x8(p.add(32 + 16 * h)), _mm256_set1_ps(sx), *acc);
                    }
                }
            }
            for (t, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(y.add(t * ys + 8 * h), *acc);
            }
        }
    }
}

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
        for h in 0..2 {
            let mut acc = [_mm256_setzero_ps(); NY];
            if add {
                for (t, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_loadu_ps(y.add(t * ys + 8 * h));
                }
            }
            for b in 0..nb {
                let p = w.add(b * bytes);
                for (t, acc) in acc.iter_mut().enumerate() {
                    let s32 = a
                        .sums
                        .add(t * a.sums_stride + Q8K_SUMS * b + 16)
                        .cast::<i32>();
                    let mut mins = _mm256_setzero_si256();
                    for k in 0..4 {
                        let mp = _mm256_cvtepu8_epi16(_mm_loadu_si128(
                            p.add(192 + 32 * k + 16 * h).cast(),
                        ));
                        let bs = _mm256_set1_epi32(s32.add(k).read_unaligned());
                        mins = _mm256_add_epi32(mins, _mm256_madd_epi16(mp, bs));
                    }
                    let dx = _mm256_set1_ps(*a.d.add(t * a.d_stride + b));
                    let dmin = _mm256_mul_ps(f16x8(p.add(32 + 16 * h)), dx);
                    *acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), dmin, *acc);
                }
                let mut total = [_mm256_setzero_si256(); NY];
                for j in 0..8 {
                    let g = p.add(320 + sub * j);
                    if h == 0 {
                        prefetch(g, sub);
                    }
                    let mut q = nibble_steps(g, h);
                    if Q5 {
                        add_bit_plane(&mut q, g.add(256), h);
                    }
                    let sc =
                        _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.add(64 + 16 * j + 8 * h).cast()));
                    for (t, total) in total.iter_mut().enumerate() {
                        let x = a.qs.add(t * a.qs_stride + 256 * b + 32 * j);
                        let isum = dot_steps(&q, x, 0, 8, if Q5 { 4 } else { 8 });
                        *total = _mm256_add_epi32(*total, _mm256_mullo_epi32(isum, sc));
                    }
                }
                for (t, acc) in acc.iter_mut().enumerate() {
                    let dx = _mm256_set1_ps(*a.d.add(t * a.d_stride + b));
                    let d = _mm256_mul_ps(f16x8(p.add(16 * h)), dx);
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total[t]), d, *acc);
                }
            }
            for (t, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(y.add(t * ys + 8 * h), *acc);
            }
        }
    }
}

/// # Safety
/// the `PackedFn` contract; the features are enabled by the caller.
#[inline(always)]
unsafe fn gemm_q6k<const NY: usize>(
    nb: usize,
    w: *const u8,
    a: ActTile,
    y: *mut f32,
    ys: usize,
    add: bool,
) {
    // SAFETY: the `PackedFn` contract; the features are enabled by the caller.
    unsafe {
        for h in 0..2 {
            let mut acc = [_mm256_setzero_ps(); NY];
            if add {
                for (t, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm256_loadu_ps(y.add(t * ys + 8 * h));
                }
            }
            for b in 0..nb {
                let p = w.add(b * 3360);
                let mut total = [_mm256_setzero_si256(); NY];
                for j in 0..8 {
                    let g = p.add(288 + 384 * j);
                    if h == 0 {
                        prefetch(g, 384);
                    }
                    let mut q = nibble_steps(g, h);
                    add_q6_planes(&mut q, g.add(256), h);
                    let sc_lo =
                        _mm256_cvtepi8_epi32(_mm_loadl_epi64(p.add(32 + 32 * j + 8 * h).cast()));
                    let sc_hi =
                        _mm256_cvtepi8_epi32(_mm_loadl_epi64(p.add(48 + 32 * j + 8 * h).cast()));
                    for (t, total) in total.iter_mut().enumerate() {
                        let x = a.qs.add(t * a.qs_stride + 256 * b + 32 * j);
                        let s16 = a.sums.add(t * a.sums_stride + Q8K_SUMS * b + 2 * j);
                        let lo = _mm256_sub_epi32(
                            dot_steps(&q, x, 0, 4, 2),
                            _mm256_set1_epi32(32 * i32::from(*s16)),
                        );
                        let hi = _mm256_sub_epi32(
                            dot_steps(&q, x, 4, 8, 2),
                            _mm256_set1_epi32(32 * i32::from(*s16.add(1))),
                        );
                        let v = _mm256_add_epi32(
                            _mm256_mullo_epi32(lo, sc_lo),
                            _mm256_mullo_epi32(hi, sc_hi),
                        );
                        *total = _mm256_add_epi32(*total, v);
                    }
                }
                for (t, acc) in acc.iter_mut().enumerate() {
                    let dx = _mm256_set1_ps(*a.d.add(t * a.d_stride + b));
                    let d = _mm256_mul_ps(f16x8(p.add(16 * h)), dx);
                    *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total[t]), d, *acc);
                }
            }
            for (t, acc) in acc.iter().enumerate() {
                _mm256_storeu_ps(y.add(t * ys + 8 * h), *acc);
            }
        }
    }
}

macro_rules! packed {
    ($name:ident, |$nb:ident, $w:ident, $a:ident, $y:ident, $ys:ident, $add:ident, NY| $body:expr) => {
        #[target_feature(enable = "avx2,fma,f16c")]
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
                    _ => call!(4),
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
packed!(packed_q6_k, |nb, w, a, y, ys, add, NY| gemm_q6k::<NY>(
    nb, w, a, y, ys, add
));
