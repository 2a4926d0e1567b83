//! The low-bit lattice formats `IQ2_XXS`, `IQ2_XS`, `IQ2_S`, `IQ3_XXS`, `IQ3_S`, `IQ1_S`,
//! `IQ1_M` (super-blocks of 256 whose values are points of fixed grids, `iq_grids`) and the
//! 32-value `MXFP4`: dequantization as ggml's `dequantize_row_*`, `MXFP4` reference quantization
//! (`quantize_row_mxfp4_ref`), and per-block unpacking to signed integers plus group scales,
//! which the scalar dot kernels share.
//!
//! Their quantizers (ggml's grid searches) are in `iq_quant`.

use super::blocks::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, BlockMxfp4,
    F16Bytes, MXFP4_VALUES, QK_K, QK32, as_blocks, as_blocks_mut, e8m0_half,
};
use super::iq_grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID};

/// The shift of the `IQ1_S`/`IQ1_M` grids, `±1/8` (ggml's `IQ1S_DELTA`).
pub(crate) const IQ1_DELTA: f32 = 0.125;

/// The sign byte of 7-bit sign index `k`: bit `j` set means value `j` of 8 is negative; bit 7
/// makes the number of negatives even (ggml's `ksigns_iq2xs[k]`).
#[inline(always)]
pub(crate) const fn sign_byte(k: u32) -> u8 {
    let k = (k & 127) as u8;
    k | (((k.count_ones() & 1) as u8) << 7)
}

/// The 128 sign patterns of [`sign_byte`] as 8 bytes of ±1 each (ggml's x86
/// `keven_signs_q2xs`), for `_mm256_sign_epi8`.
pub(crate) static SIGNS_PM1: [u64; 128] = {
    let mut t = [0u64; 128];
    let mut k = 0;
    while k < 128 {
        let s = sign_byte(k as u32);
        let mut v = 0u64;
        let mut j = 0;
        while j < 8 {
            let byte: u64 = if s & (1 << j) != 0 { 0xff } else { 0x01 };
            v |= byte << (8 * j);
            j += 1;
        }
        t[k] = v;
        k += 1;
    }
    t
};

/// The 8 bytes of a grid point, signed by sign byte `s`.
#[inline(always)]
fn signed8(point: u64, s: u8) -> [i8; 8] {
    let g = point.to_le_bytes();
    std::array::from_fn(|j| {
        let v = g[j] as i8;
        if s & (1 << j) != 0 { -v } else { v }
    })
}

#[inline(always)]
fn u32_at(b: &[u8], k: usize) -> u32 {
    u32::from_le_bytes([b[k], b[k + 1], b[k + 2], b[k + 3]])
}

#[inline(always)]
fn u16_at(b: &[u8], k: usize) -> u16 {
    u16::from_le_bytes([b[k], b[k + 1]])
}

/// `IQ2_XXS`: the 256 signed grid values and the 4-bit scale of each group of 32.
#[inline(always)]
pub(crate) fn unpack_iq2xxs(b: &BlockIq2Xxs) -> ([i8; QK_K], [u8; 8]) {
    let mut q = [0i8; QK_K];
    let mut sc = [0u8; 8];
    for g in 0..8 {
        let (idx, aux) = (u32_at(&b.qs, 8 * g), u32_at(&b.qs, 8 * g + 4));
        sc[g] = (aux >> 28) as u8;
        for l in 0..4 {
            let point = IQ2XXS_GRID[((idx >> (8 * l)) & 0xff) as usize];
            let v = signed8(point, sign_byte(aux >> (7 * l)));
            q[32 * g + 8 * l..32 * g + 8 * l + 8].copy_from_slice(&v);
        }
    }
    (q, sc)
}

/// `IQ2_XS`: the 256 signed grid values and the 4-bit scale of each group of 16.
#[inline(always)]
pub(crate) fn unpack_iq2xs(b: &BlockIq2Xs) -> ([i8; QK_K], [u8; 16]) {
    let mut q = [0i8; QK_K];
    for p in 0..32 {
        let v = u16_at(&b.qs, 2 * p);
        let point = IQ2XS_GRID[usize::from(v & 511)];
        q[8 * p..8 * p + 8].copy_from_slice(&signed8(point, sign_byte(u32::from(v >> 9))));
    }
    (
        q,
        std::array::from_fn(|g| (b.scales[g / 2] >> (4 * (g % 2))) & 0xf),
    )
}

/// `IQ2_S`: the 256 signed grid values and the 4-bit scale of each group of 16.
#[inline(always)]
pub(crate) fn unpack_iq2s(b: &BlockIq2S) -> ([i8; QK_K], [u8; 16]) {
    let mut q = [0i8; QK_K];
    for p in 0..32 {
        let high = (usize::from(b.qh[p / 4]) >> (2 * (p % 4))) & 3;
        let point = IQ2S_GRID[usize::from(b.qs[p]) | (high << 8)];
        q[8 * p..8 * p + 8].copy_from_slice(&signed8(point, b.qs[32 + p]));
    }
    (
        q,
        std::array::from_fn(|g| (b.scales[g / 2] >> (4 * (g % 2))) & 0xf),
    )
}

/// `IQ3_XXS`: the 256 signed grid values and the 4-bit scale of each group of 32.
#[inline(always)]
pub(crate) fn unpack_iq3xxs(b: &BlockIq3Xxs) -> ([i8; QK_K], [u8; 8]) {
    let mut q = [0i8; QK_K];
    let mut sc = [0u8; 8];
    for g in 0..8 {
        let aux = u32_at(&b.qs, 64 + 4 * g);
        sc[g] = (aux >> 28) as u8;
        for l in 0..4 {
            let lo = u64::from(IQ3XXS_GRID[usize::from(b.qs[8 * g + 2 * l])]);
            let hi = u64::from(IQ3XXS_GRID[usize::from(b.qs[8 * g + 2 * l + 1])]);
            let v = signed8(lo | (hi << 32), sign_byte(aux >> (7 * l)));
            q[32 * g + 8 * l..32 * g + 8 * l + 8].copy_from_slice(&v);
        }
    }
    (q, sc)
}

/// `IQ3_S`: the 256 signed grid values and the 4-bit scale of each group of 32.
#[inline(always)]
pub(crate) fn unpack_iq3s(b: &BlockIq3S) -> ([i8; QK_K], [u8; 8]) {
    let mut q = [0i8; QK_K];
    for p in 0..32 {
        let (g, l) = (p / 4, p % 4);
        let index = |k: usize| {
            let i = 8 * g + 2 * l + k;
            usize::from(b.qs[i]) | ((usize::from(b.qh[g]) >> (2 * l + k)) & 1) << 8
        };
        let point = u64::from(IQ3S_GRID[index(0)]) | (u64::from(IQ3S_GRID[index(1)]) << 32);
        q[8 * p..8 * p + 8].copy_from_slice(&signed8(point, b.signs[p]));
    }
    (
        q,
        std::array::from_fn(|g| (b.scales[g / 2] >> (4 * (g % 2))) & 0xf),
    )
}

/// `IQ1_S`: the 256 grid values (−1, 0, 1), the 3-bit scale of each group of 32 and the sign
/// of its 1/8 shift (±1).
#[inline(always)]
pub(crate) fn unpack_iq1s(b: &BlockIq1S) -> ([i8; QK_K], [u8; 8], [i8; 8]) {
    let mut q = [0i8; QK_K];
    let mut sc = [0u8; 8];
    let mut delta = [0i8; 8];
    for g in 0..8 {
        let h = u16_at(&b.qh, 2 * g);
        sc[g] = ((h >> 12) & 7) as u8;
        delta[g] = if h & 0x8000 != 0 { -1 } else { 1 };
        for l in 0..4 {
            let index = usize::from(b.qs[4 * g + l]) | (usize::from((h >> (3 * l)) & 7) << 8);
            let v = IQ1S_GRID[index].to_le_bytes().map(|v| v as i8);
            q[32 * g + 8 * l..32 * g + 8 * l + 8].copy_from_slice(&v);
        }
    }
    (q, sc, delta)
}

/// `IQ1_M`: the 256 grid values (−1, 0, 1), the 3-bit scale of each group of 16, the sign of
/// the 1/8 shift of each grid point of 8 (±1) and the super-block scale.
#[inline(always)]
pub(crate) fn unpack_iq1m(b: &BlockIq1M) -> ([i8; QK_K], [u8; 16], [i8; 32], F16Bytes) {
    let mut q = [0i8; QK_K];
    let mut delta = [0i8; 32];
    for p in 0..32 {
        let nibble = (b.qh[p / 2] >> (4 * (p % 2))) & 0xf;
        let index = usize::from(b.qs[p]) | (usize::from(nibble & 7) << 8);
        q[8 * p..8 * p + 8].copy_from_slice(&IQ1S_GRID[index].to_le_bytes().map(|v| v as i8));
        delta[p] = if nibble & 8 != 0 { -1 } else { 1 };
    }
    let sc: [u16; 4] = std::array::from_fn(|k| u16_at(&b.scales, 2 * k));
    let scales = std::array::from_fn(|g| ((sc[g / 4] >> (3 * (g % 4))) & 7) as u8);
    let d = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
    (q, scales, delta, F16Bytes(d.to_le_bytes()))
}

/// Writes `db · q` for each value of a 32- or 16-value group.
#[inline(always)]
fn scaled(y: &mut [f32], q: &[i8], db: f32) {
    for (y, &q) in y.iter_mut().zip(q) {
        *y = db * f32::from(q);
    }
}

pub(crate) fn dequantize_iq2_xxs(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockIq2Xxs>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = b.d.get();
        let (q, sc) = unpack_iq2xxs(b);
        for g in 0..8 {
            let db = d * (0.5 + f32::from(sc[g])) * 0.25;
            scaled(&mut y[32 * g..32 * g + 32], &q[32 * g..32 * g + 32], db);
        }
    }
}

/// `IQ2_XS` and `IQ2_S`: 16-value groups, `d·(0.5 + s)/4`.
#[inline(always)]
fn dequantize_iq2_16(d: f32, q: &[i8; QK_K], sc: &[u8; 16], y: &mut [f32]) {
    for g in 0..16 {
        let db = d * (0.5 + f32::from(sc[g])) * 0.25;
        scaled(&mut y[16 * g..16 * g + 16], &q[16 * g..16 * g + 16], db);
    }
}

pub(crate) fn dequantize_iq2_xs(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockIq2Xs>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let (q, sc) = unpack_iq2xs(b);
        dequantize_iq2_16(b.d.get(), &q, &sc, y);
    }
}

pub(crate) fn dequantize_iq2_s(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockIq2S>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let (q, sc) = unpack_iq2s(b);
        dequantize_iq2_16(b.d.get(), &q, &sc, y);
    }
}

pub(crate) fn dequantize_iq3_xxs(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockIq3Xxs>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = b.d.get();
        let (q, sc) = unpack_iq3xxs(b);
        for g in 0..8 {
            let db = d * (0.5 + f32::from(sc[g])) * 0.5;
            scaled(&mut y[32 * g..32 * g + 32], &q[32 * g..32 * g + 32], db);
        }
    }
}

pub(crate) fn dequantize_iq3_s(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockIq3S>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = b.d.get();
        let (q, sc) = unpack_iq3s(b);
        for g in 0..8 {
            let db = d * f32::from(1 + 2 * sc[g]);
            scaled(&mut y[32 * g..32 * g + 32], &q[32 * g..32 * g + 32], db);
        }
    }
}

pub(crate) fn dequantize_iq1_s(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockIq1S>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = b.d.get();
        let (q, sc, delta) = unpack_iq1s(b);
        for g in 0..8 {
            let dl = d * f32::from(2 * sc[g] + 1);
            let shift = IQ1_DELTA * f32::from(delta[g]);
            for j in 32 * g..32 * g + 32 {
                y[j] = dl * (f32::from(q[j]) + shift);
            }
        }
    }
}

pub(crate) fn dequantize_iq1_m(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockIq1M>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let (q, sc, delta, d) = unpack_iq1m(b);
        let d = d.get();
        for j in 0..QK_K {
            let dl = d * f32::from(2 * sc[j / 16] + 1);
            y[j] = dl * (f32::from(q[j]) + IQ1_DELTA * f32::from(delta[j / 8]));
        }
    }
}

pub(crate) fn dequantize_mxfp4(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockMxfp4>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK32))
    {
        let d = e8m0_half(b.e);
        for (j, &q) in b.qs.iter().enumerate() {
            y[j] = f32::from(MXFP4_VALUES[usize::from(q & 0xf)]) * d;
            y[j + 16] = f32::from(MXFP4_VALUES[usize::from(q >> 4)]) * d;
        }
    }
}

/// The index of the e2m1 value nearest to `x / d` (ggml's `best_index_mxfp4`: the first
/// nearest, in table order, so ties go to the smaller magnitude and `0` to index 0).
fn best_index_mxfp4(x: f32, d: f32) -> u8 {
    let (mut best, mut best_err) = (0u8, f32::INFINITY);
    for (k, &v) in MXFP4_VALUES.iter().enumerate() {
        let err = (f32::from(v) * d - x).abs();
        if err < best_err {
            best = k as u8;
            best_err = err;
        }
    }
    best
}

pub(crate) fn quantize_mxfp4(src: &[f32], dst: &mut [u8]) {
    for (b, x) in as_blocks_mut::<BlockMxfp4>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK32))
    {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        // floor(log2(amax)) − 2 + 127 as ggml computes it on x86: the float truncated to an
        // int, then its low byte (a subnormal `amax` wraps, as it does there).
        b.e = if amax > 0.0 {
            (amax.log2().floor() - 2.0 + 127.0) as i32 as u8
        } else {
            0
        };
        let d = e8m0_half(b.e);
        for j in 0..16 {
            b.qs[j] = best_index_mxfp4(x[j], d) | (best_index_mxfp4(x[j + 16], d) << 4);
        }
    }
}
