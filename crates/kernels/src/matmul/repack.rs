//! Interleaved weight layouts: 16 rows repacked together so one 512-bit register holds the same
//! four values of 16 rows, ready for `vpdpbusd` against four broadcast activation bytes.
//!
//! A packed matrix is a sequence of *groups* (16 consecutive rows); a group is a sequence of
//! *block columns* (the 16 rows' blocks `b`), each `bytes_per_column(ty)` long, so a group
//! takes exactly as many bytes as its 16 rows did (a little more for the k-quants, whose
//! scales are stored unpacked). Rows past the last whole group stay in ggml layout.
//!
//! Shared pieces (offsets are within a block column; `r` is the row in the group, `i < 4`):
//! - *f16 vector*: 16 half floats, row `r` at bytes `2r..2r+2` (one `vcvtph2ps`).
//! - *nibble steps* (256 bytes) for 32 four-bit values `v`: four 64-byte vectors; vector `L`
//!   byte `4r + i` holds `v[4L + i]` in its low and `v[16 + 4L + i]` in its high nibble, so the
//!   low nibbles of vector `L` are *step* `L` (values `4L..4L+4` of each row) and the high ones
//!   step `L + 4`.
//! - *bit plane* (64 bytes): byte `4r + i` bit `s` is bit 4 of value `4s + i` (the fifth bit of
//!   step `s`).
//! - *byte steps* (512 bytes): vector `s` byte `4r + i` is value `4s + i` (plus 128, unsigned).
//!
//! Layouts (per block column):
//! - `Q4_0`, `IQ4_NL`: `d` f16 vector (32) · nibble steps (256).
//! - The IQ lattice types (`IQ2_XXS` … `IQ1_M`): the 16 rows' super-blocks as stored (their
//!   kernels unpack each once per row for all tokens; the grids leave nothing to interleave).
//! - `MXFP4`: the 16 rows' E8M0 exponents `e` (16, row `r` at byte `r`) · nibble steps (256).
//! - `Q4_1`: `d` (32) · `m` (32) · nibble steps (256).
//! - `Q5_0`: `d` (32) · bit plane (64) · nibble steps (256).
//! - `Q5_1`: `d` (32) · `m` (32) · bit plane (64) · nibble steps (256).
//! - `Q8_0`: `d` (32) · byte steps (512).
//! - `Q4_K` (256 values): `d` (32) · `dmin` (32) · scales `[8][16]` u8 (128) · mins as pairs
//!   `[4][16][2]` u8 (128: group `p`, row `r`: `m[2p]`, `m[2p+1]`) · per 32-value group `j`:
//!   nibble steps (256).
//! - `Q5_K`: as `Q4_K`, each 32-value group followed by its bit plane (64).
//! - `Q6_K`: `d` (32) · scales `[16][16]` i8 (256) · per 32-value group `j`: nibble steps of
//!   the low four bits (256) · two 64-byte planes `H0`, `H1`: `Hh` byte `4r + i` bits
//!   `2t..2t+2` are the top two bits of value `4(4h + t) + i`.

use crate::quant::{
    BlockIq4Nl, BlockMxfp4, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0, BlockQ5_1, BlockQ5K,
    BlockQ6K, BlockQ8_0, F16Bytes, GgmlType, as_blocks, scale_min_k4, unpack_q4k, unpack_q5k,
    unpack_q6k,
};

/// Rows per group.
pub(crate) const GROUP: usize = 16;

/// Whether the packed layout of `ty` keeps each row's blocks as stored (the IQ lattice types:
/// a block column is the group's 16 blocks in row order).
pub(crate) fn keeps_blocks(ty: GgmlType) -> bool {
    use GgmlType as T;
    matches!(
        ty,
        T::IQ2_XXS | T::IQ2_XS | T::IQ2_S | T::IQ3_XXS | T::IQ3_S | T::IQ1_S | T::IQ1_M
    )
}

/// Bytes of one packed block column of `ty` (16 rows), or `None` when `ty` has no packed
/// layout.
pub(crate) fn bytes_per_column(ty: GgmlType) -> Option<usize> {
    use GgmlType as T;
    Some(match ty {
        T::Q4_0 | T::IQ4_NL => 32 + 256,
        T::MXFP4 => 16 + 256,
        _ if keeps_blocks(ty) => GROUP * ty.type_size() as usize,
        T::Q4_1 => 64 + 256,
        T::Q5_0 => 32 + 64 + 256,
        T::Q5_1 => 64 + 64 + 256,
        T::Q8_0 => 32 + 512,
        T::Q4_K => 64 + 128 + 128 + 8 * 256,
        T::Q5_K => 64 + 128 + 128 + 8 * (256 + 64),
        T::Q6_K => 32 + 256 + 8 * (256 + 128),
        _ => return None,
    })
}

fn put_f16s(out: &mut [u8], f: impl Fn(usize) -> F16Bytes) {
    for r in 0..GROUP {
        out[2 * r..2 * r + 2].copy_from_slice(&f(r).0);
    }
}

/// Nibble steps of the 32 four-bit values `v(r, k)` of each row.
fn put_nibble_steps(out: &mut [u8], v: impl Fn(usize, usize) -> u8) {
    for l in 0..4 {
        for r in 0..GROUP {
            for i in 0..4 {
                out[64 * l + 4 * r + i] =
                    (v(r, 4 * l + i) & 0xF) | ((v(r, 16 + 4 * l + i) & 0xF) << 4);
            }
        }
    }
}

/// Nibble steps straight from each row's 16 packed `qs` bytes (ggml's nibble order).
fn put_qs_steps<'q>(out: &mut [u8], qs: impl Fn(usize) -> &'q [u8; 16]) {
    for r in 0..GROUP {
        let q = qs(r);
        for l in 0..4 {
            out[64 * l + 4 * r..64 * l + 4 * r + 4].copy_from_slice(&q[4 * l..4 * l + 4]);
        }
    }
}

/// Bit plane from each row's 32 fifth bits (bit `k` of `qh(r)` for value `k`).
fn put_qh_plane(out: &mut [u8], qh: impl Fn(usize) -> u32) {
    for r in 0..GROUP {
        let h = qh(r);
        for i in 0..4 {
            out[4 * r + i] =
                (0..8).fold(0u8, |acc, s| acc | ((((h >> (4 * s + i)) & 1) as u8) << s));
        }
    }
}

/// Bit plane of bit 4 of the values `v(r, k)`.
fn put_bit_plane(out: &mut [u8], v: impl Fn(usize, usize) -> u8) {
    for r in 0..GROUP {
        for i in 0..4 {
            out[4 * r + i] = (0..8).fold(0u8, |acc, s| acc | (((v(r, 4 * s + i) >> 4) & 1) << s));
        }
    }
}

/// Repacks the 16 rows `rows` (each `nb` blocks of `ty` in ggml layout) into `out`
/// (`nb · bytes_per_column(ty)` bytes).
pub(crate) fn repack_group(ty: GgmlType, rows: &[&[u8]], nb: usize, out: &mut [u8]) {
    let Some(col) = bytes_per_column(ty) else {
        return;
    };
    for (b, out) in out.chunks_exact_mut(col).take(nb).enumerate() {
        repack_column(ty, rows, b, out);
    }
}

fn repack_column(ty: GgmlType, rows: &[&[u8]], b: usize, out: &mut [u8]) {
    use GgmlType as T;
    let blk = |r: usize| -> &[u8] {
        let size = ty.type_size() as usize;
        &rows[r][b * size..(b + 1) * size]
    };
    match ty {
        // The 32-value formats: the nibble steps are the blocks' own `qs` bytes, regrouped four at
        // a time (byte `j` already pairs value `j` with value `j + 16`).
        T::Q4_0 => {
            let blocks: [&BlockQ4_0; GROUP] =
                std::array::from_fn(|r| &as_blocks::<BlockQ4_0>(blk(r))[0]);
            put_f16s(&mut out[..32], |r| blocks[r].d);
            put_qs_steps(&mut out[32..288], |r| &blocks[r].qs);
        }
        T::IQ4_NL => {
            let blocks: [&BlockIq4Nl; GROUP] =
                std::array::from_fn(|r| &as_blocks::<BlockIq4Nl>(blk(r))[0]);
            put_f16s(&mut out[..32], |r| blocks[r].d);
            put_qs_steps(&mut out[32..288], |r| &blocks[r].qs);
        }
        _ if keeps_blocks(ty) => {
            for (r, out) in out.chunks_exact_mut(ty.type_size() as usize).enumerate() {
                out.copy_from_slice(blk(r));
            }
        }
        T::MXFP4 => {
            let blocks: [&BlockMxfp4; GROUP] =
                std::array::from_fn(|r| &as_blocks::<BlockMxfp4>(blk(r))[0]);
            for (r, b) in blocks.iter().enumerate() {
                out[r] = b.e;
            }
            put_qs_steps(&mut out[16..272], |r| &blocks[r].qs);
        }
        T::Q4_1 => {
            let blocks: [&BlockQ4_1; GROUP] =
                std::array::from_fn(|r| &as_blocks::<BlockQ4_1>(blk(r))[0]);
            put_f16s(&mut out[..32], |r| blocks[r].d);
            put_f16s(&mut out[32..64], |r| blocks[r].m);
            put_qs_steps(&mut out[64..320], |r| &blocks[r].qs);
        }
        T::Q5_0 => {
            let blocks: [&BlockQ5_0; GROUP] =
                std::array::from_fn(|r| &as_blocks::<BlockQ5_0>(blk(r))[0]);
            put_f16s(&mut out[..32], |r| blocks[r].d);
            put_qh_plane(&mut out[32..96], |r| u32::from_le_bytes(blocks[r].qh));
            put_qs_steps(&mut out[96..352], |r| &blocks[r].qs);
        }
        T::Q5_1 => {
            let blocks: [&BlockQ5_1; GROUP] =
                std::array::from_fn(|r| &as_blocks::<BlockQ5_1>(blk(r))[0]);
            put_f16s(&mut out[..32], |r| blocks[r].d);
            put_f16s(&mut out[32..64], |r| blocks[r].m);
            put_qh_plane(&mut out[64..128], |r| u32::from_le_bytes(blocks[r].qh));
            put_qs_steps(&mut out[128..384], |r| &blocks[r].qs);
        }
        T::Q8_0 => {
            let blocks: [&BlockQ8_0; GROUP] =
                std::array::from_fn(|r| &as_blocks::<BlockQ8_0>(blk(r))[0]);
            put_f16s(&mut out[..32], |r| blocks[r].d);
            for (s, step) in out[32..544].chunks_exact_mut(64).enumerate() {
                for (r, lane) in step.chunks_exact_mut(4).enumerate() {
                    let q = &blocks[r].qs[4 * s..4 * s + 4];
                    let v = u32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]);
                    lane.copy_from_slice(&(v ^ 0x8080_8080).to_le_bytes());
                }
            }
        }
        T::Q4_K | T::Q5_K => {
            // Header fields and values of each row's super-block, for both formats.
            let unpacked: [(F16Bytes, F16Bytes, [u8; 12], [u8; 256]); GROUP] =
                std::array::from_fn(|r| {
                    if ty == T::Q4_K {
                        let x = &as_blocks::<BlockQ4K>(blk(r))[0];
                        (x.d, x.dmin, x.scales, unpack_q4k(x))
                    } else {
                        let x = &as_blocks::<BlockQ5K>(blk(r))[0];
                        (x.d, x.dmin, x.scales, unpack_q5k(x))
                    }
                });
            let d = unpacked.map(|u| u.0);
            let dmin = unpacked.map(|u| u.1);
            let scales = unpacked.map(|u| u.2);
            let vals = unpacked.map(|u| u.3);
            put_f16s(&mut out[..32], |r| d[r]);
            put_f16s(&mut out[32..64], |r| dmin[r]);
            for r in 0..GROUP {
                for j in 0..8 {
                    let (sc, m) = scale_min_k4(j, &scales[r]);
                    out[64 + 16 * j + r] = sc;
                    out[192 + 32 * (j / 2) + 2 * r + j % 2] = m;
                }
            }
            let sub = if ty == T::Q4_K { 256 } else { 320 };
            for j in 0..8 {
                let o = 320 + sub * j;
                put_nibble_steps(&mut out[o..o + 256], |r, k| vals[r][32 * j + k]);
                if ty == T::Q5_K {
                    put_bit_plane(&mut out[o + 256..o + 320], |r, k| vals[r][32 * j + k]);
                }
            }
        }
        T::Q6_K => {
            let bl: [&BlockQ6K; GROUP] = std::array::from_fn(|r| &as_blocks::<BlockQ6K>(blk(r))[0]);
            // Values as stored: q + 32, 0..64.
            let vals: [[u8; 256]; GROUP] = bl.map(|x| unpack_q6k(x).map(|v| (v + 32) as u8));
            put_f16s(&mut out[..32], |r| bl[r].d);
            for g in 0..16 {
                for r in 0..GROUP {
                    out[32 + 16 * g + r] = bl[r].scales[g] as u8;
                }
            }
            for j in 0..8 {
                let o = 288 + 384 * j;
                put_nibble_steps(&mut out[o..o + 256], |r, k| vals[r][32 * j + k]);
                for h in 0..2 {
                    for r in 0..GROUP {
                        for i in 0..4 {
                            out[o + 256 + 64 * h + 4 * r + i] = (0..4).fold(0u8, |acc, t| {
                                acc | ((vals[r][32 * j + 4 * (4 * h + t) + i] >> 4) << (2 * t))
                            });
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// Row `r` of a packed `Q8_0` block column, back in ggml's block layout (the inverse of
/// [`repack_group`] for that type).
pub(crate) fn q8_0_block_of_row(col: &[u8], r: usize) -> BlockQ8_0 {
    let d = F16Bytes([col[2 * r], col[2 * r + 1]]);
    let qs = std::array::from_fn(|k| {
        let (s, i) = (k / 4, k % 4);
        (col[32 + 64 * s + 4 * r + i] ^ 0x80) as i8
    });
    BlockQ8_0 { d, qs }
}
