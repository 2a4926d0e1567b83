//! The 32-value formats `Q4_0`, `Q4_1`, `Q5_0`, `Q5_1`, `Q8_0`, `Q8_1`: reference quantization
//! (round to nearest, as ggml's `quantize_row_*_ref`) and dequantization.
//!
//! The arithmetic follows ggml step by step (`f32` throughout, the same operation order), so
//! results match ggml and the Python `gguf` package bit for bit.

use super::blocks::{
    BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, F16Bytes, QK32, as_blocks,
    as_blocks_mut,
};
use super::kquants::{make_qkx3_quants, make_qx_quants};

/// The value of largest magnitude (the first one on ties), as ggml picks it.
fn signed_absmax(x: &[f32]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

/// Packs 32 four-bit values: byte `j` gets value `j` (low nibble) and `j + 16` (high nibble).
fn pack_nibbles(q: &[u8; 32]) -> [u8; 16] {
    std::array::from_fn(|j| (q[j] & 0xF) | ((q[j + 16] & 0xF) << 4))
}

/// Bit 4 of each of 32 values, as a little-endian u32.
fn high_bits(q: &[u8; 32]) -> [u8; 4] {
    let mut h = 0u32;
    for (j, &v) in q.iter().enumerate() {
        h |= u32::from((v >> 4) & 1) << j;
    }
    h.to_le_bytes()
}

/// The 32 four-bit values of a nibble-packed block.
#[inline(always)]
pub(crate) fn unpack_nibbles(qs: &[u8; 16]) -> [u8; 32] {
    std::array::from_fn(|j| if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 })
}

/// The 32 five-bit values of a `Q5_0`/`Q5_1` block.
#[inline(always)]
pub(crate) fn unpack_q5(qh: [u8; 4], qs: &[u8; 16]) -> [u8; 32] {
    let h = u32::from_le_bytes(qh);
    let low = unpack_nibbles(qs);
    std::array::from_fn(|j| low[j] | ((((h >> j) & 1) as u8) << 4))
}

pub(crate) fn quantize_q4_0(src: &[f32], dst: &mut [u8]) {
    for (b, x) in as_blocks_mut::<BlockQ4_0>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK32))
    {
        let d = signed_absmax(x) / -8.0;
        let id = inverse(d);
        let q: [u8; 32] = std::array::from_fn(|j| ((x[j] * id + 8.5) as i32).clamp(0, 15) as u8);
        b.d = F16Bytes::from_f32(d);
        b.qs = pack_nibbles(&q);
    }
}

pub(crate) fn dequantize_q4_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockQ4_0>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK32))
    {
        let d = b.d.get();
        for (o, q) in y.iter_mut().zip(unpack_nibbles(&b.qs)) {
            *o = d * (i32::from(q) - 8) as f32;
        }
    }
}

pub(crate) fn quantize_q4_1(src: &[f32], dst: &mut [u8]) {
    for (b, x) in as_blocks_mut::<BlockQ4_1>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK32))
    {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        let q: [u8; 32] =
            std::array::from_fn(|j| (((x[j] - min) * id + 0.5) as i32).clamp(0, 15) as u8);
        b.d = F16Bytes::from_f32(d);
        b.m = F16Bytes::from_f32(min);
        b.qs = pack_nibbles(&q);
    }
}

pub(crate) fn dequantize_q4_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockQ4_1>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK32))
    {
        let (d, m) = (b.d.get(), b.m.get());
        for (o, q) in y.iter_mut().zip(unpack_nibbles(&b.qs)) {
            *o = d * f32::from(q) + m;
        }
    }
}

pub(crate) fn quantize_q5_0(src: &[f32], dst: &mut [u8]) {
    for (b, x) in as_blocks_mut::<BlockQ5_0>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK32))
    {
        let d = signed_absmax(x) / -16.0;
        let id = inverse(d);
        let q: [u8; 32] = std::array::from_fn(|j| ((x[j] * id + 16.5) as i32).clamp(0, 31) as u8);
        b.d = F16Bytes::from_f32(d);
        b.qh = high_bits(&q);
        b.qs = pack_nibbles(&q);
    }
}

pub(crate) fn dequantize_q5_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockQ5_0>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK32))
    {
        let d = b.d.get();
        for (o, q) in y.iter_mut().zip(unpack_q5(b.qh, &b.qs)) {
            *o = d * (i32::from(q) - 16) as f32;
        }
    }
}

pub(crate) fn quantize_q5_1(src: &[f32], dst: &mut [u8]) {
    for (b, x) in as_blocks_mut::<BlockQ5_1>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK32))
    {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        let q: [u8; 32] =
            std::array::from_fn(|j| (((x[j] - min) * id + 0.5) as i32).clamp(0, 31) as u8);
        b.d = F16Bytes::from_f32(d);
        b.m = F16Bytes::from_f32(min);
        b.qh = high_bits(&q);
        b.qs = pack_nibbles(&q);
    }
}

pub(crate) fn dequantize_q5_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockQ5_1>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK32))
    {
        let (d, m) = (b.d.get(), b.m.get());
        for (o, q) in y.iter_mut().zip(unpack_q5(b.qh, &b.qs)) {
            *o = d * f32::from(q) + m;
        }
    }
}

/// Quantizes 32 values to 8 bits as `quantize_row_q8_0_ref`: returns the unrounded scale
/// `d = amax / 127` and `round(x / d)` (ties away from zero). Callers store `d` as f16.
/// (Matmul activations use llama.cpp's run-time x86 formula instead — `x · 127/amax`, ties to
/// even — in `dot::generic::q8_block_runtime`; the two differ in a few values per row.)
#[inline(always)]
fn q8_block(x: &[f32]) -> (f32, [i8; 32]) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    let q = std::array::from_fn(|j| (x[j] * id).round() as i8);
    (d, q)
}

pub(crate) fn quantize_q8_0(src: &[f32], dst: &mut [u8]) {
    for (b, x) in as_blocks_mut::<BlockQ8_0>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK32))
    {
        let (d, q) = q8_block(x);
        b.d = F16Bytes::from_f32(d);
        b.qs = q;
    }
}

pub(crate) fn dequantize_q8_0(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockQ8_0>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK32))
    {
        let d = b.d.get();
        for (o, &q) in y.iter_mut().zip(&b.qs) {
            *o = f32::from(q) * d;
        }
    }
}

pub(crate) fn quantize_q8_1(src: &[f32], dst: &mut [u8]) {
    for (b, x) in as_blocks_mut::<BlockQ8_1>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK32))
    {
        let (d, q) = q8_block(x);
        let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
        b.d = F16Bytes::from_f32(d);
        b.s = F16Bytes::from_f32(sum as f32 * d);
        b.qs = q;
    }
}

pub(crate) fn dequantize_q8_1(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockQ8_1>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK32))
    {
        let d = b.d.get();
        for (o, &q) in y.iter_mut().zip(&b.qs) {
            *o = f32::from(q) * d;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Importance-weighted quantization (ggml's `quantize_row_q{4,5}_{0,1}_impl`): one row of
// `n_per_row` values with one weight per column in `qw`; the weights are
// `qw · sqrt(σ² + x²)`, σ² the mean square of the whole row.

/// The per-value weights of one block, given the row's mean square `sigma2`.
fn block_weights(x: &[f32], qw: &[f32], sigma2: f32) -> [f32; 32] {
    std::array::from_fn(|j| qw[j] * (sigma2 + x[j] * x[j]).sqrt())
}

fn row_sigma2(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |a, &v| a + v * v) / x.len() as f32
}

pub(crate) fn quantize_q4_0_imatrix(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let sigma2 = row_sigma2(src);
    for ((b, x), qw) in as_blocks_mut::<BlockQ4_0>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK32))
        .zip(qw.chunks_exact(QK32))
    {
        let w = block_weights(x, qw, sigma2);
        let mut l = [0i8; 32];
        let d = make_qx_quants(8, x, &mut l, Some(&w));
        b.d = F16Bytes::from_f32(d);
        b.qs = pack_nibbles(&l.map(|v| v as u8));
    }
}

pub(crate) fn quantize_q4_1_imatrix(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let sigma2 = row_sigma2(src);
    for ((b, x), qw) in as_blocks_mut::<BlockQ4_1>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK32))
        .zip(qw.chunks_exact(QK32))
    {
        let w = block_weights(x, qw, sigma2);
        let mut l = [0u8; 32];
        let (d, min) = make_qkx3_quants(15, x, Some(&w), &mut l, -0.9, 0.05, 36, false);
        b.d = F16Bytes::from_f32(d);
        b.m = F16Bytes::from_f32(-min);
        b.qs = pack_nibbles(&l);
    }
}

pub(crate) fn quantize_q5_0_imatrix(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let sigma2 = row_sigma2(src);
    for ((b, x), qw) in as_blocks_mut::<BlockQ5_0>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK32))
        .zip(qw.chunks_exact(QK32))
    {
        let w = block_weights(x, qw, sigma2);
        let mut l = [0i8; 32];
        let d = make_qx_quants(16, x, &mut l, Some(&w));
        let q = l.map(|v| v as u8);
        b.d = F16Bytes::from_f32(d);
        b.qh = high_bits(&q);
        b.qs = pack_nibbles(&q);
    }
}

pub(crate) fn quantize_q5_1_imatrix(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    let sigma2 = row_sigma2(src);
    for ((b, x), qw) in as_blocks_mut::<BlockQ5_1>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK32))
        .zip(qw.chunks_exact(QK32))
    {
        let w = block_weights(x, qw, sigma2);
        let mut l = [0u8; 32];
        let (d, min) = make_qkx3_quants(31, x, Some(&w), &mut l, -0.9, 0.05, 36, false);
        b.d = F16Bytes::from_f32(d);
        b.m = F16Bytes::from_f32(-min);
        b.qh = high_bits(&l);
        b.qs = pack_nibbles(&l);
    }
}
