//! 512-bit packed kernels for the IQ lattice types, in the order of llama.cpp's tiled mat-mul
//! (`dot::GgmlPath::Tiled`: one float per row and token, `fma(S·d_w·K, d_x, acc)` per
//! super-block, `S` the super-block's whole integer sum).
//!
//! The matrices keep `matmul::repack`'s lattice layout (each block column the 16 rows'
//! super-blocks as stored). For each 32-value chunk of a block column the 16 rows are unpacked
//! once into eight registers, register `m` lane `r` holding values `4m..4m + 4` of row `r` —
//! the grid points fetched for 8 rows at a time by one gather, their signs applied with a byte
//! mask — and then every token takes the chunk with eight `vpdpbusd` against its activation
//! bytes broadcast four at a time, 64 multiply-adds each. `vpdpbusd` multiplies unsigned by
//! signed bytes, so the weights are stored as `64 + w` (the signed grid values lie in
//! `−62..=62`) and the offset comes back out through the activations' sums of 32 (or 16), which
//! start the accumulator at `−64·Σx`. The chunk's integer sum is then exact, scaled by its
//! `2s + 1` (an integer multiply) and added to the super-block's `S`: the same integer
//! the 256-bit kernels (`avx2::gemm_lattice` with `TILED`) and llama.cpp get by other routes, so
//! from `S` on the float arithmetic is theirs and the results equal theirs bit for bit.
//!
//! A single token shares nothing, so one-token calls go to the 256-bit kernel, which unpacks
//! each row as it sums it.

use super::avx2::vnni;
use super::avx512::prefetch;
use crate::dot::{ActTile, PackedFn, Q8K_SUMS};
use crate::quant::{GgmlType, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID};
use std::arch::x86_64::*;

/// The 512-bit tiled packed kernel for `ty` and the most activation rows it takes per call.
pub(crate) fn packed_kernel(ty: GgmlType) -> Option<(PackedFn, usize)> {
    use GgmlType as T;
    Some(match ty {
        T::IQ2_XXS => (packed_iq2_xxs, 8),
        T::IQ2_XS => (packed_iq2_xs, 8),
        T::IQ2_S => (packed_iq2_s, 8),
        T::IQ3_XXS => (packed_iq3_xxs, 8),
        T::IQ3_S => (packed_iq3_s, 8),
        _ => return None,
    })
}

/// The offset added to every signed weight byte so `vpdpbusd` can take it as unsigned.
const OFFSET: i8 = 64;

/// One chunk (32 values) of the 16 rows of a block column, unpacked: `w[m]` lane `r` holds
/// `64 + w` of values `4m..4m + 4` of row `r`; `sc` the lanes' integer scales (`sc[0]` for
/// values 0..16, `sc[1]` for 16..32; equal unless the type's `SPLIT`).
struct Chunk {
    w: [__m512i; 8],
    sc: [__m512i; 2],
}

/// A chunk's per-type part, decoded for the 16 rows: `idx[p]` the grid index of each row's
/// point `p` (32-bit lanes; points of 8 values: `p < 4`, of 4 values: `p < 8`), `signs` the
/// rows' sign bytes (lane `r` byte `l`: the signs of point `l`, as [`sign_bytes`] makes them;
/// for 4-value points one byte per pair of points, low nibble first), `sc` the scales as in
/// [`Chunk`].
struct Decoded {
    idx: [__m512i; 8],
    signs: __m512i,
    sc: [__m512i; 2],
}

/// A lattice type as the 512-bit tile takes it: its constants, its grid and how a chunk's
/// indices, signs and scales are read ([`Tile512::decode`]); the rest — gathering the points,
/// signing and offsetting them ([`chunk`]), the tile loop ([`gemm_tile`]) — is written once.
trait Tile512 {
    /// Bytes per super-block.
    const SIZE: usize;
    /// The grid's common factor (ggml's `0.125f`, …).
    const K: f32;
    /// Whether the scales are per 16 values (else per 32).
    const SPLIT: bool;
    /// Values per grid point: 8 (a `u64` grid entry) or 4 (a `u32`).
    const POINT: usize;
    /// The grid (`POINT` bytes per entry).
    fn grid() -> *const u8;
    /// The indices, signs and scales of chunk `c` (< 8) of the block column at `col`.
    ///
    /// # Safety
    /// A whole block column (16 super-blocks) at `col`; AVX-512 F/BW/VL/DQ are enabled.
    unsafe fn decode(col: *const u8, c: usize) -> Decoded;
}

/// Chunk `c` (< 8) of the block column at `col`, unpacked (see [`Chunk`]): the grid points of
/// [`Tile512::decode`]'s indices gathered, signed and offset — 8-value points by two gathers
/// of 8 rows each, their signs as byte masks; 4-value points by one gather of the 16 rows.
///
/// # Safety
/// A whole block column (16 super-blocks) at `col`; AVX-512 F/BW/VL/DQ are enabled.
#[inline(always)]
unsafe fn chunk<B: Tile512>(col: *const u8, c: usize) -> Chunk {
    // SAFETY: the caller's bounds and features; the decoded indices lie within the grid.
    unsafe {
        let d = B::decode(col, c);
        let mut w = [_mm512_setzero_si512(); 8];
        if B::POINT == 8 {
            let masks = point_masks(d.signs);
            let grid = B::grid().cast::<i64>();
            for l in 0..4 {
                let g = d.idx[l];
                let a = _mm512_i32gather_epi64::<8>(_mm512_castsi512_si256(g), grid);
                let b = _mm512_i32gather_epi64::<8>(_mm512_extracti64x4_epi64::<1>(g), grid);
                let a = offset_signed(a, masks[2 * l]);
                let b = offset_signed(b, masks[2 * l + 1]);
                w[2 * l] = halves::<false>(a, b);
                w[2 * l + 1] = halves::<true>(a, b);
            }
        } else {
            let grid = B::grid().cast::<i32>();
            for m in 0..8 {
                w[m] = points4_32(grid, d.idx[m], d.signs, m);
            }
        }
        Chunk { w, sc: d.sc }
    }
}

/// Byte `k` (< 4) of each dword lane of `words`.
///
/// # Safety
/// AVX-512F is enabled.
#[inline(always)]
unsafe fn byte_lanes(words: __m512i, k: usize) -> __m512i {
    // SAFETY: AVX-512F is enabled.
    unsafe {
        _mm512_and_si512(
            _mm512_srlv_epi32(words, _mm512_set1_epi32(8 * k as i32)),
            _mm512_set1_epi32(0xff),
        )
    }
}

/// Bytes 0..4 of each dword lane of `words` ([`byte_lanes`]), then those of `more`.
///
/// # Safety
/// AVX-512F is enabled.
#[inline(always)]
unsafe fn byte_lanes8(words: __m512i, more: __m512i) -> [__m512i; 8] {
    // SAFETY: AVX-512F is enabled.
    unsafe {
        [
            byte_lanes(words, 0),
            byte_lanes(words, 1),
            byte_lanes(words, 2),
            byte_lanes(words, 3),
            byte_lanes(more, 0),
            byte_lanes(more, 1),
            byte_lanes(more, 2),
            byte_lanes(more, 3),
        ]
    }
}

/// `low | high << 8` in each dword lane: a grid index from its low byte and high bits.
///
/// # Safety
/// AVX-512F is enabled.
#[inline(always)]
unsafe fn ten_bit(low: __m512i, high: __m512i) -> __m512i {
    // SAFETY: AVX-512F is enabled.
    unsafe { _mm512_or_si512(low, _mm512_slli_epi32::<8>(high)) }
}

/// `bits` wide field of each dword lane of `words` at bit `shift`.
///
/// # Safety
/// AVX-512F is enabled.
#[inline(always)]
unsafe fn field_lanes(words: __m512i, shift: usize, bits: u32) -> __m512i {
    // SAFETY: AVX-512F is enabled.
    unsafe {
        _mm512_and_si512(
            _mm512_srlv_epi32(words, _mm512_set1_epi32(shift as i32)),
            _mm512_set1_epi32((1 << bits) - 1),
        )
    }
}

/// The byte offsets of rows `0..8` of a block column plus `k`.
///
/// # Safety
/// AVX2 is enabled.
#[inline(always)]
unsafe fn row_offsets<B: Tile512>(k: usize) -> __m256i {
    // SAFETY: AVX2 is enabled.
    unsafe {
        let s = B::SIZE as i32;
        let k = k as i32;
        _mm256_setr_epi32(
            k,
            s + k,
            2 * s + k,
            3 * s + k,
            4 * s + k,
            5 * s + k,
            6 * s + k,
            7 * s + k,
        )
    }
}

/// The little-endian u64 at byte `k` of each of the 16 super-blocks of `col`, rows `0..8` and
/// `8..16`.
///
/// # Safety
/// 8 bytes at `k` of each super-block; AVX-512F is enabled.
#[inline(always)]
unsafe fn gather_words<B: Tile512>(col: *const u8, k: usize) -> (__m512i, __m512i) {
    // SAFETY: the caller's bounds; AVX-512F is enabled.
    unsafe {
        let lo = row_offsets::<B>(k);
        let hi = _mm256_add_epi32(lo, _mm256_set1_epi32(8 * B::SIZE as i32));
        (
            _mm512_i32gather_epi64::<1>(lo, col.cast()),
            _mm512_i32gather_epi64::<1>(hi, col.cast()),
        )
    }
}

/// The little-endian u32 at byte `k` of each of the 16 super-blocks of `col`.
///
/// # Safety
/// 4 bytes at `k` of each super-block; AVX-512F is enabled.
#[inline(always)]
unsafe fn gather_dwords<B: Tile512>(col: *const u8, k: usize) -> __m512i {
    // SAFETY: the caller's bounds; AVX-512F is enabled.
    unsafe {
        let lo = row_offsets::<B>(k);
        let hi = _mm256_add_epi32(lo, _mm256_set1_epi32(8 * B::SIZE as i32));
        let offs = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
        _mm512_i32gather_epi32::<1>(offs, col.cast())
    }
}

/// The even (`ODD` false) or odd dwords of `a` then `b`: the low or high halves of 16 u64.
///
/// # Safety
/// AVX-512F is enabled.
#[inline(always)]
unsafe fn halves<const ODD: bool>(a: __m512i, b: __m512i) -> __m512i {
    // SAFETY: AVX-512F is enabled.
    unsafe {
        let o = i32::from(ODD);
        let idx = _mm512_setr_epi32(
            o,
            2 + o,
            4 + o,
            6 + o,
            8 + o,
            10 + o,
            12 + o,
            14 + o,
            16 + o,
            18 + o,
            20 + o,
            22 + o,
            24 + o,
            26 + o,
            28 + o,
            30 + o,
        );
        _mm512_permutex2var_epi32(a, idx, b)
    }
}

/// ggml's `ksigns_iq2xs` for 16 lanes: each lane's four 7-bit sign indices (bits `7l..7l + 7`)
/// as four sign bytes (byte `l`; bit `j` set: value `j` of point `l` negative), the eighth bit
/// making the number of set bits even.
///
/// # Safety
/// AVX-512 F/BW are enabled.
#[inline(always)]
unsafe fn sign_bytes(aux: __m512i) -> __m512i {
    // SAFETY: AVX-512 F/BW are enabled.
    unsafe {
        let f = _mm512_or_si512(
            _mm512_or_si512(
                _mm512_and_si512(aux, _mm512_set1_epi32(0x7f)),
                _mm512_and_si512(_mm512_slli_epi32::<1>(aux), _mm512_set1_epi32(0x7f00)),
            ),
            _mm512_or_si512(
                _mm512_and_si512(_mm512_slli_epi32::<2>(aux), _mm512_set1_epi32(0x7f_0000)),
                _mm512_and_si512(_mm512_slli_epi32::<3>(aux), _mm512_set1_epi32(0x7f00_0000)),
            ),
        );
        with_parity(f)
    }
}

/// Each byte (bit 7 clear) with bit 7 set where its other bits are odd in number: a 7-bit sign
/// index as ggml's `ksigns_iq2xs` sign byte.
///
/// # Safety
/// AVX-512 F/BW are enabled.
#[inline(always)]
unsafe fn with_parity(f: __m512i) -> __m512i {
    // SAFETY: AVX-512 F/BW are enabled.
    unsafe {
        let p = 0x80u8 as i8;
        let parity = _mm512_broadcast_i32x4(_mm_setr_epi8(
            0, p, p, 0, p, 0, 0, p, p, 0, 0, p, 0, p, p, 0,
        ));
        let m4 = _mm512_set1_epi8(0xf);
        let lo = _mm512_shuffle_epi8(parity, _mm512_and_si512(f, m4));
        let hi = _mm512_shuffle_epi8(parity, _mm512_and_si512(_mm512_srli_epi16::<4>(f), m4));
        _mm512_or_si512(f, _mm512_xor_si512(lo, hi))
    }
}

/// The scales of 16-value halves from scale byte `c` (< 8) of the 16 rows, the bytes at `k`
/// of each super-block: `2·(low nibble) + 1` for values 0..16, `2·(high nibble) + 1` for
/// 16..32.
///
/// # Safety
/// 8 bytes at `k` of each super-block; AVX-512F is enabled.
#[inline(always)]
unsafe fn half_scales<B: Tile512>(col: *const u8, k: usize, c: usize) -> [__m512i; 2] {
    // SAFETY: the caller's bounds; AVX-512F is enabled.
    unsafe {
        let b = _mm512_srlv_epi32(
            gather_dwords::<B>(col, k + 4 * (c / 4)),
            _mm512_set1_epi32(8 * (c % 4) as i32),
        );
        let m4 = _mm512_set1_epi32(0xf);
        let one = _mm512_set1_epi32(1);
        let lo = _mm512_and_si512(b, m4);
        let hi = _mm512_and_si512(_mm512_srli_epi32::<4>(b), m4);
        [
            _mm512_add_epi32(_mm512_slli_epi32::<1>(lo), one),
            _mm512_add_epi32(_mm512_slli_epi32::<1>(hi), one),
        ]
    }
}

/// Four-value grid points from the u32 `grid` table for the 16 rows (`idx`), signed by the
/// nibble `m % 2` of sign byte `m / 2` of each row's `signs` lane.
///
/// # Safety
/// Every index is within `grid`; AVX-512 F/BW are enabled.
#[inline(always)]
unsafe fn points4_32(grid: *const i32, idx: __m512i, signs: __m512i, m: usize) -> __m512i {
    // SAFETY: the caller's bounds and features.
    unsafe {
        let u = _mm512_i32gather_epi32::<4>(idx, grid);
        let l = (m / 2) as i8;
        let sel = _mm512_broadcast_i32x4(_mm_setr_epi8(
            l,
            l,
            l,
            l,
            4 + l,
            4 + l,
            4 + l,
            4 + l,
            8 + l,
            8 + l,
            8 + l,
            8 + l,
            12 + l,
            12 + l,
            12 + l,
            12 + l,
        ));
        let bits = _mm512_shuffle_epi8(signs, sel);
        let sh = 4 * (m % 2) as u32;
        let pattern = (1u32 << sh) | (2 << (sh + 8)) | (4 << (sh + 16)) | (8 << (sh + 24));
        let neg = _mm512_test_epi8_mask(bits, _mm512_set1_epi32(pattern as i32));
        offset_signed(u, neg)
    }
}

/// The 64-bit byte masks of four 8-value sign bytes per row (`signs` lane `r` byte `l`, as
/// [`sign_bytes`] makes them): `[2l + h]` holds the sign bytes of point `l` of rows
/// `8h..8h + 8`, row `8h + i` in byte `i` — the mask of the u64 gathered for those rows.
///
/// # Safety
/// AVX-512 F/BW are enabled.
#[inline(always)]
unsafe fn point_masks(signs: __m512i) -> [u64; 8] {
    // SAFETY: AVX-512 F/BW are enabled.
    unsafe {
        // In each 128-bit lane (rows 4k..4k + 4), byte 4l + i ← byte l of row 4k + i.
        let t = _mm512_broadcast_i32x4(_mm_setr_epi8(
            0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
        ));
        let s = _mm512_shuffle_epi8(signs, t);
        // Dword 4k + l now holds point l of rows 4k..4k + 4; pair the lanes of each 8 rows.
        let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let s = _mm512_permutexvar_epi32(idx, s);
        let mut out = [0u64; 8];
        _mm512_storeu_si512(out.as_mut_ptr().cast(), s);
        out
    }
}

/// `64 + g` where mask bit clear, `64 − g` where set, bytewise.
///
/// # Safety
/// AVX-512 F/BW are enabled.
#[inline(always)]
unsafe fn offset_signed(g: __m512i, neg: u64) -> __m512i {
    // SAFETY: AVX-512 F/BW are enabled.
    unsafe {
        let o = _mm512_set1_epi8(OFFSET);
        _mm512_mask_sub_epi8(_mm512_add_epi8(o, g), neg, o, g)
    }
}

/// The scale `2s + 1` of each lane, `s` in bits 28–31.
///
/// # Safety
/// AVX-512F is enabled.
#[inline(always)]
unsafe fn top_nibble_scale(aux: __m512i) -> __m512i {
    // SAFETY: AVX-512F is enabled.
    unsafe {
        _mm512_add_epi32(
            _mm512_slli_epi32::<1>(_mm512_srli_epi32::<28>(aux)),
            _mm512_set1_epi32(1),
        )
    }
}

impl Tile512 for crate::quant::BlockIq2Xxs {
    const SIZE: usize = 66;
    const K: f32 = 0.125;
    const SPLIT: bool = false;
    const POINT: usize = 8;
    fn grid() -> *const u8 {
        IQ2XXS_GRID.as_ptr().cast()
    }
    #[inline(always)]
    unsafe fn decode(col: *const u8, c: usize) -> Decoded {
        // SAFETY: the block column's bytes (`qs` at 2, 8 bytes per chunk: four index bytes,
        // then four 7-bit sign indices and the scale); the features are enabled.
        unsafe {
            let (lo, hi) = gather_words::<Self>(col, 2 + 8 * c);
            let idx = halves::<false>(lo, hi);
            let aux = halves::<true>(lo, hi);
            let sc = top_nibble_scale(aux);
            Decoded {
                idx: byte_lanes8(idx, _mm512_setzero_si512()),
                signs: sign_bytes(aux),
                sc: [sc, sc],
            }
        }
    }
}

impl Tile512 for crate::quant::BlockIq3Xxs {
    const SIZE: usize = 98;
    const K: f32 = 0.25;
    const SPLIT: bool = false;
    const POINT: usize = 4;
    fn grid() -> *const u8 {
        IQ3XXS_GRID.as_ptr().cast()
    }
    #[inline(always)]
    unsafe fn decode(col: *const u8, c: usize) -> Decoded {
        // SAFETY: the block column's bytes (grid indices at 2 + 8c, sign words at 66 + 4c);
        // the features are enabled.
        unsafe {
            let (lo, hi) = gather_words::<Self>(col, 2 + 8 * c);
            let aux = gather_dwords::<Self>(col, 66 + 4 * c);
            let ilo = halves::<false>(lo, hi);
            let ihi = halves::<true>(lo, hi);
            let sc = top_nibble_scale(aux);
            Decoded {
                idx: byte_lanes8(ilo, ihi),
                signs: sign_bytes(aux),
                sc: [sc, sc],
            }
        }
    }
}

impl Tile512 for crate::quant::BlockIq2Xs {
    const SIZE: usize = 74;
    const K: f32 = 0.125;
    const SPLIT: bool = true;
    const POINT: usize = 8;
    fn grid() -> *const u8 {
        IQ2XS_GRID.as_ptr().cast()
    }
    #[inline(always)]
    unsafe fn decode(col: *const u8, c: usize) -> Decoded {
        // SAFETY: the block column's bytes (`qs` at 2, 8 bytes per chunk; `scales` at 66);
        // the features are enabled.
        unsafe {
            // Four u16 per row: a 9-bit grid index, a 7-bit sign index in bits 9..16.
            let (lo, hi) = gather_words::<Self>(col, 2 + 8 * c);
            let signs = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(_mm512_cvtepi16_epi8(with_parity(_mm512_srli_epi16::<9>(
                    lo,
                )))),
                _mm512_cvtepi16_epi8(with_parity(_mm512_srli_epi16::<9>(hi))),
            );
            // Points 0, 1 in the even dwords of the rows' words, points 2, 3 in the odd ones.
            let p01 = halves::<false>(lo, hi);
            let p23 = halves::<true>(lo, hi);
            let z = _mm512_setzero_si512();
            Decoded {
                idx: [
                    field_lanes(p01, 0, 9),
                    field_lanes(p01, 16, 9),
                    field_lanes(p23, 0, 9),
                    field_lanes(p23, 16, 9),
                    z,
                    z,
                    z,
                    z,
                ],
                signs,
                sc: half_scales::<Self>(col, 66, c),
            }
        }
    }
}

impl Tile512 for crate::quant::BlockIq2S {
    const SIZE: usize = 82;
    const K: f32 = 0.125;
    const SPLIT: bool = true;
    const POINT: usize = 8;
    fn grid() -> *const u8 {
        IQ2S_GRID.as_ptr().cast()
    }
    #[inline(always)]
    unsafe fn decode(col: *const u8, c: usize) -> Decoded {
        // SAFETY: the block column's bytes (index bytes at 2 + 4c, sign bytes at 34 + 4c,
        // `qh` at 66 + c — a dword ending inside the block for c ≤ 7 — `scales` at 74); the
        // features are enabled.
        unsafe {
            let idx = gather_dwords::<Self>(col, 2 + 4 * c);
            let qh = gather_dwords::<Self>(col, 66 + c);
            // Point l: index byte l, two high bits from bits 2l..2l + 2 of qh.
            let mut idx = byte_lanes8(idx, _mm512_setzero_si512());
            for l in 0..4 {
                idx[l] = ten_bit(idx[l], field_lanes(qh, 2 * l, 2));
            }
            Decoded {
                idx,
                signs: gather_dwords::<Self>(col, 34 + 4 * c),
                sc: half_scales::<Self>(col, 74, c),
            }
        }
    }
}

impl Tile512 for crate::quant::BlockIq3S {
    const SIZE: usize = 110;
    const K: f32 = 1.0;
    const SPLIT: bool = false;
    const POINT: usize = 4;
    fn grid() -> *const u8 {
        IQ3S_GRID.as_ptr().cast()
    }
    #[inline(always)]
    unsafe fn decode(col: *const u8, c: usize) -> Decoded {
        // SAFETY: the block column's bytes (index bytes at 2 + 8c, `qh` at 66 + c, sign bytes
        // at 74 + 4c, `scales` at 106..110); the features are enabled.
        unsafe {
            let (lo, hi) = gather_words::<Self>(col, 2 + 8 * c);
            let ilo = halves::<false>(lo, hi);
            let ihi = halves::<true>(lo, hi);
            // Point m: index byte m % 4 of its half, the high bit from bit m of qh.
            let qh = gather_dwords::<Self>(col, 66 + c);
            let mut idx = byte_lanes8(ilo, ihi);
            for (m, idx) in idx.iter_mut().enumerate() {
                *idx = ten_bit(*idx, field_lanes(qh, m, 1));
            }

            let sc = field_lanes(gather_dwords::<Self>(col, 106), 4 * c, 4);
            let sc = _mm512_add_epi32(_mm512_slli_epi32::<1>(sc), _mm512_set1_epi32(1));
            Decoded {
                idx,
                signs: gather_dwords::<Self>(col, 74 + 4 * c),
                sc: [sc, sc],
            }
        }
    }
}

/// The four activation bytes at `x + 4m` in every lane.
///
/// # Safety
/// 4 bytes at `x + 4m`; AVX-512F is enabled.
#[inline(always)]
unsafe fn bcast4(x: *const i8, m: usize) -> __m512i {
    // SAFETY: the caller's bounds.
    unsafe { _mm512_set1_epi32(x.add(4 * m).cast::<i32>().read_unaligned()) }
}

/// The integer sum of `ch`'s values `4m..4m + 4` for `m` in `ms` against the activation bytes
/// at `x` (the chunk's 32), whose sum over those values is `xsum`.
///
/// # Safety
/// 32 bytes at `x`; AVX-512 F + VNNI are enabled.
#[inline(always)]
unsafe fn chunk_dot(ch: &Chunk, x: *const i8, ms: std::ops::Range<usize>, xsum: i32) -> __m512i {
    // SAFETY: the caller's bounds and features.
    unsafe {
        let mut acc = _mm512_set1_epi32(-i32::from(OFFSET) * xsum);
        for m in ms {
            acc = _mm512_dpbusd_epi32(acc, ch.w[m], bcast4(x, m));
        }
        acc
    }
}

/// One group of 16 rows against `NY` tokens (see the module documentation); with `add` the
/// running sums continue from `y`.
///
/// # Safety
/// The `PackedFn` contract for one group; AVX-512 F/BW/VL/DQ + VNNI, AVX2, FMA and F16C are
/// enabled.
#[inline(always)]
unsafe fn gemm_tile<B: Tile512, const NY: usize>(
    nb: usize,
    w: *const u8,
    a: ActTile,
    y: *mut f32,
    ys: usize,
    add: bool,
) {
    // SAFETY: the `PackedFn` contract; the features are enabled.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); NY];
        if add {
            for (t, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_loadu_ps(y.add(t * ys));
            }
        }
        let col_bytes = 16 * B::SIZE;
        for i in 0..nb {
            let col = w.add(i * col_bytes);
            prefetch(col, col_bytes);
            // The 16 rows' d (f16 at byte 0 of each super-block) times K.
            let d16 = _mm512_cvtepi32_epi16(gather_dwords::<B>(col, 0));
            let dk = _mm512_mul_ps(_mm512_cvtph_ps(d16), _mm512_set1_ps(B::K));
            let mut total = [_mm512_setzero_si512(); NY];
            for c in 0..8 {
                let ch = chunk::<B>(col, c);
                for t in 0..NY {
                    let x = a.qs.add(t * a.qs_stride + 256 * i + 32 * c);
                    let sums = a.sums.add(t * a.sums_stride + Q8K_SUMS * i);
                    let s = if B::SPLIT {
                        let s0 = chunk_dot(&ch, x, 0..4, i32::from(*sums.add(2 * c)));
                        let s1 = chunk_dot(&ch, x, 4..8, i32::from(*sums.add(2 * c + 1)));
                        _mm512_add_epi32(
                            _mm512_mullo_epi32(s0, ch.sc[0]),
                            _mm512_mullo_epi32(s1, ch.sc[1]),
                        )
                    } else {
                        let s = chunk_dot(&ch, x, 0..8, i32::from(*sums.add(16 + c)));
                        _mm512_mullo_epi32(s, ch.sc[0])
                    };
                    total[t] = _mm512_add_epi32(total[t], s);
                }
            }
            for t in 0..NY {
                // llama.cpp's tiled term: float(S) · (d_w·K), then fma with d_x.
                let r = _mm512_mul_ps(_mm512_cvtepi32_ps(total[t]), dk);
                let dx = _mm512_set1_ps(*a.d.add(t * a.d_stride + i));
                acc[t] = _mm512_fmadd_ps(r, dx, acc[t]);
            }
        }
        for (t, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(y.add(t * ys), *acc);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// `IQ2_S` one token at a time: a row's 64 values per step.

/// The eight integer lanes of ggml's `vec_dot` for one `IQ2_S` super-block (lane `m`: values
/// `4m..4m + 4` of every 32-value chunk times their scales) against the 256 activation bytes
/// at `x`: per two chunks one gather of the eight grid points, the explicit sign bits as a
/// mask negating the activations, one `vpdpbusd`, the scales multiplied in per lane; then the
/// even chunks' lanes added to the odd ones'.
///
/// # Safety
/// A whole `IQ2_S` super-block at `b`, 256 bytes at `x`; AVX-512 F/BW/VL/DQ + VNNI are
/// enabled.
#[inline(always)]
unsafe fn iq2_s_lanes(b: *const u8, x: *const i8) -> __m256i {
    // SAFETY: the caller's bounds and features.
    unsafe {
        let grid = IQ2S_GRID.as_ptr().cast::<i64>();
        let qh_shift = _mm512_setr_epi64(0, 2, 4, 6, 8, 10, 12, 14);
        let sc_shift = _mm512_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12);
        let mut acc = _mm512_setzero_si512();
        for k in 0..4 {
            // Points 8k..8k + 8 (chunks 2k, 2k + 1): low index bytes, two bits each from qh.
            let lo = _mm512_cvtepu8_epi64(_mm_loadl_epi64(b.add(2 + 8 * k).cast()));
            let qh = u16::from_le_bytes([*b.add(66 + 2 * k), *b.add(67 + 2 * k)]);
            let hi = _mm512_and_si512(
                _mm512_srlv_epi64(_mm512_set1_epi64(i64::from(qh)), qh_shift),
                _mm512_set1_epi64(3),
            );
            let idx = _mm512_or_si512(lo, _mm512_slli_epi64::<8>(hi));
            let u = _mm512_i64gather_epi64::<8>(idx, grid);
            let neg = b.add(34 + 8 * k).cast::<u64>().read_unaligned();
            let xv = _mm512_loadu_si512(x.add(64 * k).cast());
            let xs = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
            let dp = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, xs);
            let scb = u16::from_le_bytes([*b.add(74 + 2 * k), *b.add(75 + 2 * k)]);
            let sc = _mm512_and_si512(
                _mm512_srlv_epi32(_mm512_set1_epi32(i32::from(scb)), sc_shift),
                _mm512_set1_epi32(0xf),
            );
            let sc = _mm512_add_epi32(_mm512_slli_epi32::<1>(sc), _mm512_set1_epi32(1));
            acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(dp, sc));
        }
        _mm256_add_epi32(
            _mm512_castsi512_si256(acc),
            _mm512_extracti64x4_epi64::<1>(acc),
        )
    }
}

/// One token against `ngroups` groups of packed `IQ2_S` rows, row by row: with `TILED` the
/// tiled mat-mul's order (`fma(S·d_w/8, d_x, acc)` per super-block, continued through `y` when
/// `add`), else `vec_dot`'s (eight float lanes per row, `fma(d_w·d_x, lanes, acc)`, then
/// `hsum_float_8` times 1/8; whole rows, no `add`).
///
/// # Safety
/// The `PackedFn` contract with one token; the features are enabled.
#[inline(always)]
unsafe fn gemv_iq2_s<const TILED: bool>(
    nb: usize,
    w: *const u8,
    gbytes: usize,
    ngroups: usize,
    a: ActTile,
    y: *mut f32,
    add: bool,
) {
    // SAFETY: the `PackedFn` contract; the features are enabled.
    unsafe {
        const SIZE: usize = 82;
        for g in 0..ngroups {
            let w = w.add(g * gbytes);
            for r in 0..16 {
                let out = y.add(16 * g + r);
                let mut acc = if add { *out } else { 0.0 };
                let mut lanes = _mm256_setzero_ps();
                for i in 0..nb {
                    let col = w.add(16 * i * SIZE);
                    if r == 0 {
                        prefetch(col, 16 * SIZE);
                    }
                    let b = col.add(r * SIZE);
                    let s = iq2_s_lanes(b, a.qs.add(256 * i));
                    let d = super::f16_at(crate::quant::F16Bytes([*b, *b.add(1)]));
                    let dx = *a.d.add(i);
                    if TILED {
                        let r = super::hsum_epi32(s) as f32 * (d * 0.125);
                        acc = r.mul_add(dx, acc);
                    } else {
                        let dd = _mm256_set1_ps(dx * d);
                        lanes = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), lanes);
                    }
                }
                *out = if TILED {
                    acc
                } else {
                    0.125 * super::hsum_ps(lanes)
                };
            }
        }
    }
}

/// `IQ2_S` one token at a time in `vec_dot`'s order (see [`gemv_iq2_s`]).
///
/// # Safety
/// The `PackedFn` contract (`ny` is 1); the features are enabled here.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
unsafe fn packed_iq2_s_vecdot(
    nb: usize,
    w: *const u8,
    gbytes: usize,
    ngroups: usize,
    a: ActTile,
    _ny: usize,
    y: *mut f32,
    _ys: usize,
    _add: bool,
) {
    // SAFETY: the `PackedFn` contract, with the features enabled here.
    unsafe { gemv_iq2_s::<false>(nb, w, gbytes, ngroups, a, y, false) }
}

/// `IQ2_S`, one token in the tiled order (see [`gemv_iq2_s`]).
///
/// # Safety
/// The `PackedFn` contract with `ny` 1; the features are enabled (caller).
#[inline(always)]
unsafe fn gemv_iq2_s_tiled(
    nb: usize,
    w: *const u8,
    gbytes: usize,
    ngroups: usize,
    a: ActTile,
    _ny: usize,
    y: *mut f32,
    _ys: usize,
    add: bool,
) {
    // SAFETY: the caller's contract and features.
    unsafe { gemv_iq2_s::<true>(nb, w, gbytes, ngroups, a, y, add) }
}

/// The 512-bit kernels in `vec_dot`'s order (llama.cpp's path for fewer than 8 tokens), the
/// most tokens per call and whether rows may be split: `IQ2_S` only (the other lattice types
/// keep the 256-bit ones).
pub(crate) fn packed_kernel_vecdot(ty: GgmlType) -> Option<(PackedFn, usize, bool)> {
    match ty {
        GgmlType::IQ2_S => Some((packed_iq2_s_vecdot, 1, false)),
        _ => None,
    }
}

macro_rules! packed_tile {
    ($name:ident, $block:ty, $one:path) => {
        /// Packed kernel (see `gemm_tile`); one token goes to the 256-bit kernel.
        ///
        /// # Safety
        /// The `PackedFn` contract; the features are enabled here.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")]
        unsafe fn $name(
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
                        gemm_tile::<$block, $n>(nb, w.add(g * gbytes), a, y.add(16 * g), ys, add)
                    }
                };
            }
            // SAFETY: the `PackedFn` contract, with the features enabled here.
            unsafe {
                match ny {
                    1 => $one(nb, w, gbytes, ngroups, a, ny, y, ys, add),
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

packed_tile!(
    packed_iq2_xxs,
    crate::quant::BlockIq2Xxs,
    vnni::packed_iq2_xxs
);
packed_tile!(
    packed_iq3_xxs,
    crate::quant::BlockIq3Xxs,
    vnni::packed_iq3_xxs
);
packed_tile!(packed_iq2_xs, crate::quant::BlockIq2Xs, vnni::packed_iq2_xs);
packed_tile!(packed_iq2_s, crate::quant::BlockIq2S, gemv_iq2_s_tiled);
packed_tile!(packed_iq3_s, crate::quant::BlockIq3S, vnni::packed_iq3_s);
