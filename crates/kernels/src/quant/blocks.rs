//! The ggml block formats as `#[repr(C)]` structs, byte for byte as they sit in a GGUF file.
//!
//! Every struct has alignment 1 (half floats are stored as `[u8; 2]`, see [`F16Bytes`]), so a
//! byte slice of any alignment — an mmap'd tensor, a `Vec<u8>` — can be viewed as blocks with
//! [`as_blocks`]. Each layout comment lists byte offsets and how the values are laid out;
//! the sizes are checked at compile time against ggml's.

use gguf::GgmlType;

/// A little-endian IEEE half float stored as two bytes (keeps every block at alignment 1).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct F16Bytes(pub [u8; 2]);

impl F16Bytes {
    /// The value as `f32` (exact).
    #[inline(always)]
    pub fn get(self) -> f32 {
        half::f16::from_bits(u16::from_le_bytes(self.0)).to_f32()
    }

    /// `v` rounded to the nearest half (ties to even), as ggml's `GGML_FP32_TO_FP16`.
    #[inline(always)]
    pub fn from_f32(v: f32) -> F16Bytes {
        F16Bytes(half::f16::from_f32(v).to_bits().to_le_bytes())
    }
}

/// A quantization block: plain bytes, alignment 1, every bit pattern valid.
///
/// # Safety
/// Implementors must be `#[repr(C)]` structs of `u8`/`i8` arrays (alignment 1, no padding), so
/// that any byte slice of the right length is a valid value.
pub unsafe trait Block: Copy + 'static {
    /// The ggml type stored in these blocks.
    const TYPE: GgmlType;
    /// Values per block.
    const QK: usize;
}

/// Views `bytes` as blocks; trailing bytes that do not fill a whole block are left out.
#[inline(always)]
pub fn as_blocks<B: Block>(bytes: &[u8]) -> &[B] {
    let n = bytes.len() / size_of::<B>();
    // SAFETY: `B` has alignment 1 and accepts every bit pattern (the `Block` contract), and
    // `n * size_of::<B>()` bytes lie inside `bytes`.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), n) }
}

/// Views `bytes` as mutable blocks; trailing bytes that do not fill a whole block are left out.
#[inline(always)]
pub fn as_blocks_mut<B: Block>(bytes: &mut [u8]) -> &mut [B] {
    let n = bytes.len() / size_of::<B>();
    // SAFETY: as in `as_blocks`; the exclusive borrow of `bytes` is carried over.
    unsafe { std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), n) }
}

/// Values per block of the 32-value formats.
pub const QK32: usize = 32;
/// Values per super-block of the k-quants (`QK_K`).
pub const QK_K: usize = 256;

macro_rules! block {
    ($(#[$doc:meta])* $name:ident, $ty:ident, $qk:expr, $size:literal { $($field:ident : $fty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug)]
        pub struct $name {
            $(#[allow(missing_docs)] pub $field: $fty,)*
        }
        const _: () = assert!(size_of::<$name>() == $size);
        const _: () = assert!(align_of::<$name>() == 1);
        // SAFETY: a repr(C) struct of byte arrays: alignment 1 (asserted above), no padding.
        unsafe impl Block for $name {
            const TYPE: GgmlType = GgmlType::$ty;
            const QK: usize = $qk;
        }
    };
}

block! {
    /// `Q4_0`, 32 values `d·(q − 8)`, `q` in 0..16.
    ///
    /// Bytes 0–1 `d` (f16); 2–17 `qs`: byte `j` holds value `j` in its low nibble and value
    /// `j + 16` in its high nibble.
    BlockQ4_0, Q4_0, QK32, 18 { d: F16Bytes, qs: [u8; 16] }
}
block! {
    /// `Q4_1`, 32 values `d·q + m`, `q` in 0..16.
    ///
    /// Bytes 0–1 `d` (f16); 2–3 `m` (f16); 4–19 `qs` as in [`BlockQ4_0`].
    BlockQ4_1, Q4_1, QK32, 20 { d: F16Bytes, m: F16Bytes, qs: [u8; 16] }
}
block! {
    /// `Q5_0`, 32 values `d·(q − 16)`, `q` in 0..32.
    ///
    /// Bytes 0–1 `d` (f16); 2–5 `qh`: little-endian u32 whose bit `i` is bit 4 of value `i`;
    /// 6–21 `qs`: the low four bits, packed as in [`BlockQ4_0`].
    BlockQ5_0, Q5_0, QK32, 22 { d: F16Bytes, qh: [u8; 4], qs: [u8; 16] }
}
block! {
    /// `Q5_1`, 32 values `d·q + m`, `q` in 0..32.
    ///
    /// Bytes 0–1 `d` (f16); 2–3 `m` (f16); 4–7 `qh` and 8–23 `qs` as in [`BlockQ5_0`].
    BlockQ5_1, Q5_1, QK32, 24 { d: F16Bytes, m: F16Bytes, qh: [u8; 4], qs: [u8; 16] }
}
block! {
    /// `Q8_0`, 32 values `d·q`, `q` an i8.
    ///
    /// Bytes 0–1 `d` (f16); 2–33 `qs`, one value per byte.
    BlockQ8_0, Q8_0, QK32, 34 { d: F16Bytes, qs: [i8; 32] }
}
block! {
    /// `Q8_1`, 32 values `d·q` plus their sum: the activation format of `Q4_1`/`Q5_1` in ggml.
    ///
    /// Bytes 0–1 `d` (f16); 2–3 `s` = `d·Σq` (f16); 4–35 `qs`.
    BlockQ8_1, Q8_1, QK32, 36 { d: F16Bytes, s: F16Bytes, qs: [i8; 32] }
}
block! {
    /// `Q2_K`, 256 values in 16 groups of 16: `d·sc·q − dmin·m`, `q` in 0..4, `sc`, `m` 4-bit.
    ///
    /// Bytes 0–15 `scales`: group `g` has `sc` in the low and `m` in the high nibble of byte
    /// `g`; 16–79 `qs`: value `128·h + 32·j + l` (h < 2, j < 4, l < 32) is bits `2j..2j+2` of
    /// byte `32·h + l`, in group `8·h + 2·j + l/16`; 80–81 `d` (f16); 82–83 `dmin` (f16).
    BlockQ2K, Q2_K, QK_K, 84 { scales: [u8; 16], qs: [u8; 64], d: F16Bytes, dmin: F16Bytes }
}
block! {
    /// `Q3_K`, 256 values in 16 groups of 16: `d·(sc − 32)·q`, `q` in −4..4, `sc` 6-bit.
    ///
    /// Bytes 0–31 `hmask`: value `128·h + 32·j + l` has its high bit in bit `4·h + j` of byte
    /// `l` (a set bit means `q ≥ 0`, a clear one subtracts 4); 32–95 `qs`: the low two bits,
    /// placed as in [`BlockQ2K`]; 96–107 `scales`: group `g < 8` has its low four bits in the
    /// low nibble of byte `g`, group `g ≥ 8` in the high nibble of byte `g − 8`, and its top two
    /// bits at bits `2·(g/4)` of byte `8 + g % 4`; 108–109 `d` (f16).
    BlockQ3K, Q3_K, QK_K, 110 { hmask: [u8; 32], qs: [u8; 64], scales: [u8; 12], d: F16Bytes }
}
block! {
    /// `Q4_K`, 256 values in 8 groups of 32: `d·sc·q − dmin·m`, `q` in 0..16, `sc`, `m` 6-bit.
    ///
    /// Bytes 0–1 `d` (f16); 2–3 `dmin` (f16); 4–15 `scales`: for group `g < 4`, `sc` is the
    /// low 6 bits of byte `g` and `m` of byte `g + 4`; for `g ≥ 4`, `sc` is the low nibble of
    /// byte `g + 4` plus the top two bits of byte `g − 4` as bits 4–5, and `m` the high nibble
    /// of byte `g + 4` plus the top two bits of byte `g`; 16–143 `qs`: value `64·j + l`
    /// (l < 32) is the low nibble of byte `32·j + l`, value `64·j + 32 + l` its high nibble.
    BlockQ4K, Q4_K, QK_K, 144 { d: F16Bytes, dmin: F16Bytes, scales: [u8; 12], qs: [u8; 128] }
}
block! {
    /// `Q5_K`, 256 values in 8 groups of 32: `d·sc·q − dmin·m`, `q` in 0..32.
    ///
    /// Bytes 0–1 `d`; 2–3 `dmin`; 4–15 `scales` as in [`BlockQ4K`]; 16–47 `qh`: value
    /// `64·j + l` has bit 4 in bit `2·j` of byte `l`, value `64·j + 32 + l` in bit `2·j + 1`;
    /// 48–175 `qs`: the low four bits, placed as in [`BlockQ4K`].
    BlockQ5K, Q5_K, QK_K, 176 { d: F16Bytes, dmin: F16Bytes, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128] }
}
block! {
    /// `Q6_K`, 256 values in 16 groups of 16: `d·sc·(q − 32)`, `q` in 0..64, `sc` an i8.
    ///
    /// Bytes 0–127 `ql` (low four bits), 128–191 `qh` (top two bits), 192–207 `scales`,
    /// 208–209 `d` (f16). For half `h < 2` and `l < 32`, with `L = ql[64h..]`, `H = qh[32h..]`:
    /// value `128h + l` = low nibble of `L[l]` | bits 0–1 of `H[l]`; `+32`: low nibble of
    /// `L[l + 32]` | bits 2–3; `+64`: high nibble of `L[l]` | bits 4–5; `+96`: high nibble of
    /// `L[l + 32]` | bits 6–7. Value `i` is in group `i / 16`.
    BlockQ6K, Q6_K, QK_K, 210 { ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d: F16Bytes }
}
block! {
    /// `Q8_K`, 256 values `d·q`: the activation format of the k-quants.
    ///
    /// Bytes 0–3 `d` (f32, little-endian); 4–259 `qs`; 260–291 `bsums`: 16 little-endian i16,
    /// the sums of each 16 consecutive `qs`.
    BlockQ8K, Q8_K, QK_K, 292 { d: [u8; 4], qs: [i8; 256], bsums: [[u8; 2]; 16] }
}
block! {
    /// `IQ4_NL`, 32 values `d·K[q]` with the non-linear table [`IQ4_NL_VALUES`].
    ///
    /// Bytes 0–1 `d` (f16); 2–17 `qs` (table indices) packed as in [`BlockQ4_0`].
    BlockIq4Nl, IQ4_NL, QK32, 18 { d: F16Bytes, qs: [u8; 16] }
}
block! {
    /// `IQ4_XS`, 256 values in 8 groups of 32: `d·(sc − 32)·K[q]`, `sc` 6-bit.
    ///
    /// Bytes 0–1 `d` (f16); 2–3 `scales_h`: little-endian u16, bits `2g..2g+2` are the top two
    /// bits of `sc` of group `g`; 4–7 `scales_l`: the low four bits of `sc`, group `2i` in the low
    /// and `2i + 1` in the high nibble of byte `i`; 8–135 `qs`: group `g` in bytes `16g..16g+16`
    /// packed as in [`BlockIq4Nl`].
    BlockIq4Xs, IQ4_XS, QK_K, 136 { d: F16Bytes, scales_h: [u8; 2], scales_l: [u8; 4], qs: [u8; 128] }
}

block! {
    /// `MXFP4` (OCP microscaling FP4), 32 values `2^(e − 127) · v`, `v` an e2m1 value.
    ///
    /// Byte 0 `e`: the E8M0 scale exponent; 1–16 `qs`: indices into [`MXFP4_VALUES`] (which
    /// holds the e2m1 values doubled, so the scale applied is `2^(e − 128)`), packed as in
    /// [`BlockQ4_0`].
    BlockMxfp4, MXFP4, QK32, 17 { e: u8, qs: [u8; 16] }
}
block! {
    /// `IQ2_XXS`, 256 values in 8 groups of 32, each 4 grid points of 8 from `IQ2XXS_GRID`:
    /// `d·(0.5 + s)/4 · ±grid`, `s` 4-bit.
    ///
    /// Bytes 0–1 `d` (f16); 2–65 `qs`: per group `g`, two little-endian u32 at `8g`: the first
    /// holds the four grid indices (a byte each), the second four 7-bit sign indices (bits
    /// `7l..7l+7`, see `iq::sign_byte`) and `s` in bits 28–31.
    BlockIq2Xxs, IQ2_XXS, QK_K, 66 { d: F16Bytes, qs: [u8; 64] }
}
block! {
    /// `IQ2_XS`, 256 values in 32 grid points of 8 from `IQ2XS_GRID`, 16-value groups with
    /// 4-bit scales: `d·(0.5 + s)/4 · ±grid`.
    ///
    /// Bytes 0–1 `d` (f16); 2–65 `qs`: 32 little-endian u16, a 9-bit grid index and a 7-bit sign
    /// index in bits 9–15; 66–73 `scales`: byte `g` holds the scale of values `32g..32g+16` in
    /// its low nibble and of `32g+16..32g+32` in its high one.
    BlockIq2Xs, IQ2_XS, QK_K, 74 { d: F16Bytes, qs: [u8; 64], scales: [u8; 8] }
}
block! {
    /// `IQ2_S`, 256 values in 32 grid points of 8 from `IQ2S_GRID` with explicit signs,
    /// 16-value groups with 4-bit scales: `d·(0.5 + s)/4 · ±grid`.
    ///
    /// Bytes 0–1 `d` (f16); 2–33 `qs[0..32]`: the low 8 bits of each 10-bit grid index;
    /// 34–65 `qs[32..64]`: one sign byte per grid point (bit `j` set: value `j` negative);
    /// 66–73 `qh`: byte `g` holds bits 8–9 of the indices of points `4g..4g+4`, two bits each;
    /// 74–81 `scales` as in [`BlockIq2Xs`].
    BlockIq2S, IQ2_S, QK_K, 82 { d: F16Bytes, qs: [u8; 64], qh: [u8; 8], scales: [u8; 8] }
}
block! {
    /// `IQ3_XXS`, 256 values in 8 groups of 32, each 8 grid points of 4 from `IQ3XXS_GRID`:
    /// `d·(0.5 + s)/2 · ±grid`, `s` 4-bit.
    ///
    /// Bytes 0–1 `d` (f16); 2–65 `qs[0..64]`: grid indices, 8 per group; 66–97 `qs[64..96]`:
    /// per group a little-endian u32 with four 7-bit sign indices (each for 8 values) and `s`
    /// in bits 28–31, as the second word of [`BlockIq2Xxs`].
    BlockIq3Xxs, IQ3_XXS, QK_K, 98 { d: F16Bytes, qs: [u8; 96] }
}
block! {
    /// `IQ3_S`, 256 values in 64 grid points of 4 from `IQ3S_GRID` with explicit signs, 32-value
    /// groups with 4-bit scales: `d·(1 + 2s) · ±grid`.
    ///
    /// Bytes 0–1 `d` (f16); 2–65 `qs`: the low 8 bits of each 9-bit grid index; 66–73 `qh`:
    /// bit `k` of byte `g` is bit 8 of index `8g + k`; 74–105 `signs`: one bit per value
    /// (byte `4g + l`, bit `j` for value `32g + 8l + j`); 106–109 `scales`: byte `k` holds group
    /// `2k`'s scale in its low nibble and `2k + 1`'s in its high one.
    BlockIq3S, IQ3_S, QK_K, 110 { d: F16Bytes, qs: [u8; 64], qh: [u8; 8], signs: [u8; 32], scales: [u8; 4] }
}
block! {
    /// `IQ1_S`, 256 values in 32 grid points of 8 from `IQ1S_GRID` (values −1, 0, 1), 32-value
    /// groups: `d·(2s + 1)·(grid ± 1/8)`, `s` 3-bit.
    ///
    /// Bytes 0–1 `d` (f16); 2–33 `qs`: the low 8 bits of each 11-bit grid index; 34–49 `qh`:
    /// 8 little-endian u16, one per group: bits `3l..3l+3` are the top bits of point `l`'s index,
    /// bits 12–14 `s`, bit 15 the sign of the 1/8 shift (set: −1/8).
    BlockIq1S, IQ1_S, QK_K, 50 { d: F16Bytes, qs: [u8; 32], qh: [u8; 16] }
}
block! {
    /// `IQ1_M`, 256 values in 32 grid points of 8 from `IQ1S_GRID`, 16-value groups:
    /// `d·(2s + 1)·(grid ± 1/8)`, `s` 3-bit, the shift's sign per grid point.
    ///
    /// Bytes 0–31 `qs`: the low 8 bits of each 11-bit grid index; 32–47 `qh`: one nibble per
    /// point (low nibble of byte `k` for point `2k`): bits 0–2 the index's top bits, bit 3 the
    /// shift's sign; 48–55 `scales`: four little-endian u16, whose bits 0–11 hold the 3-bit
    /// scales of groups `4k..4k+4` and whose top nibbles together are `d`'s f16 bits (the first
    /// u16 bits 0–3 of `d`).
    BlockIq1M, IQ1_M, QK_K, 56 { qs: [u8; 32], qh: [u8; 16], scales: [u8; 8] }
}

/// The e2m1 values of `MXFP4`, doubled (ggml's `kvalues_mxfp4`).
pub const MXFP4_VALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Half the E8M0 scale `e` as f32, `2^(e − 128)` (ggml's `ggml_e8m0_to_fp32_half`; 255 gives
/// 2¹²⁷, not NaN).
#[inline(always)]
pub fn e8m0_half(e: u8) -> f32 {
    f32::from_bits(if e < 2 {
        0x0020_0000 << e
    } else {
        u32::from(e - 1) << 23
    })
}

/// The 16 values of the `IQ4_NL`/`IQ4_XS` non-linear grid (ggml's `kvalues_iq4nl`).
pub const IQ4_NL_VALUES: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

impl BlockQ8K {
    /// The scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    /// The sum of values `16·g..16·g + 16`.
    #[inline(always)]
    pub fn bsum(&self, g: usize) -> i16 {
        i16::from_le_bytes(self.bsums[g])
    }
}

/// `sc` and `m` of group `g` (< 8) from the 12 packed scale bytes of `Q4_K`/`Q5_K`.
#[inline(always)]
pub fn scale_min_k4(g: usize, s: &[u8; 12]) -> (u8, u8) {
    if g < 4 {
        (s[g] & 63, s[g + 4] & 63)
    } else {
        (
            (s[g + 4] & 0xF) | ((s[g - 4] >> 6) << 4),
            (s[g + 4] >> 4) | ((s[g] >> 6) << 4),
        )
    }
}

/// The 16 six-bit scales of `Q3_K` (0..64, before subtracting 32), from its 12 packed bytes.
#[inline(always)]
pub fn q3k_scales(s: &[u8; 12]) -> [u8; 16] {
    std::array::from_fn(|g| {
        let low = if g < 8 { s[g] & 0xF } else { s[g - 8] >> 4 };
        let high = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
        low | (high << 4)
    })
}

/// The 6-bit scale (0..64, before subtracting 32) of group `g` of an `IQ4_XS` block.
#[inline(always)]
pub fn iq4xs_scale(b: &BlockIq4Xs, g: usize) -> u8 {
    let h = u16::from_le_bytes(b.scales_h);
    ((b.scales_l[g / 2] >> (4 * (g % 2))) & 0xF) | ((((h >> (2 * g)) & 3) as u8) << 4)
}
