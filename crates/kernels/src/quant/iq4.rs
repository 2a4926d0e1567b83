//! The non-linear 4-bit formats `IQ4_NL` (blocks of 32) and `IQ4_XS` (super-blocks of 256 with
//! 6-bit group scales): quantization as ggml's `quantize_row_iq4_nl_impl` (the reference
//! without importance weights, and the `quantize_iq4_*` chunk functions with or without them)
//! and dequantization.

use super::blocks::{
    BlockIq4Nl, BlockIq4Xs, F16Bytes, IQ4_NL_VALUES, QK_K, QK32, as_blocks, as_blocks_mut,
    iq4xs_scale,
};
use super::kquants::nearest_int;

const GROUP_MAX_EPS: f32 = 1e-15;

/// Index of the grid value nearest to `x` (ties to the upper one), as ggml's `best_index_int8`.
fn best_index(x: f32) -> u8 {
    let v = &IQ4_NL_VALUES;
    if x <= f32::from(v[0]) {
        return 0;
    }
    if x >= f32::from(v[15]) {
        return 15;
    }
    let (mut lo, mut hi) = (0usize, 15usize);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if x < f32::from(v[mid]) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if x - f32::from(v[hi - 1]) < f32::from(v[hi]) - x {
        (hi - 1) as u8
    } else {
        hi as u8
    }
}

/// Best scale for one group of 32, trying `2·ntry + 1` candidate scales; writes the grid
/// indices found with the first guess. Returns 0 (and leaves `l` alone) for an all-zero group.
/// The weights are `qw · sqrt(σ² + x²)` with importance weights `qw`, else `x²`.
fn group_scale(x: &[f32], qw: Option<&[f32]>, sigma2: f32, ntry: i32, l: &mut [u8]) -> f32 {
    let weight: [f32; 32] = std::array::from_fn(|j| match qw {
        Some(q) => q[j] * (sigma2 + x[j] * x[j]).sqrt(),
        None => x[j] * x[j],
    });
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let v0 = f32::from(IQ4_NL_VALUES[0]);
    let mut d = if ntry > 0 { -max / v0 } else { max / v0 };
    let mut id = 1.0 / d;
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for ((li, &xv), &w) in l.iter_mut().zip(x).zip(&weight) {
        let k = best_index(id * xv);
        *li = k;
        let q = f32::from(IQ4_NL_VALUES[usize::from(k)]);
        sumqx += w * q * xv;
        sumq2 += w * q * q;
    }
    d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -ntry..=ntry {
        id = (itry as f32 + v0) / max;
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for (&xv, &w) in x.iter().zip(&weight) {
            let q = f32::from(IQ4_NL_VALUES[usize::from(best_index(id * xv))]);
            sumqx += w * q * xv;
            sumq2 += w * q * q;
        }
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// `Σ x² · 2 / n` over a super-block, as ggml's `quantize_row_iq4_nl_impl` computes it.
fn sigma2(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |a, &v| a + v * v) * (2.0 / x.len() as f32)
}

fn pack(l: &[u8]) -> [u8; 16] {
    std::array::from_fn(|j| l[j] | (l[j + 16] << 4))
}

/// ggml's `quantize_row_iq4_nl_ref`: one try per block, indices from the first guess.
pub(crate) fn quantize_iq4_nl(src: &[f32], dst: &mut [u8]) {
    for (b, x) in as_blocks_mut::<BlockIq4Nl>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK32))
    {
        let mut l = [0u8; 32];
        let d = group_scale(x, None, 0.0, -1, &mut l);
        b.d = F16Bytes::from_f32(d);
        b.qs = pack(&l);
    }
}

/// ggml's `quantize_iq4_nl` (what `ggml_quantize_chunk` and llama-quantize run): 15 tries per
/// block, then every value re-indexed with the chosen scale; importance weights `qw` (one per
/// value of `src`) when given.
pub(crate) fn quantize_iq4_nl_chunk(src: &[f32], qw: Option<&[f32]>, dst: &mut [u8]) {
    for (i, (b, x)) in as_blocks_mut::<BlockIq4Nl>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK32))
        .enumerate()
    {
        let mut l = [0u8; 32];
        let qw = qw.map(|w| &w[QK32 * i..QK32 * i + QK32]);
        let d = group_scale(x, qw, sigma2(x), 7, &mut l);
        b.d = F16Bytes::from_f32(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (lj, &xv) in l.iter_mut().zip(x) {
            *lj = best_index(id * xv);
        }
        b.qs = pack(&l);
    }
}

pub(crate) fn dequantize_iq4_nl(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockIq4Nl>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK32))
    {
        let d = b.d.get();
        for (j, &q) in b.qs.iter().enumerate() {
            y[j] = d * f32::from(IQ4_NL_VALUES[usize::from(q & 0xF)]);
            y[j + 16] = d * f32::from(IQ4_NL_VALUES[usize::from(q >> 4)]);
        }
    }
}

pub(crate) fn quantize_iq4_xs(src: &[f32], dst: &mut [u8]) {
    quantize_iq4_xs_chunk(src, None, dst);
}

/// ggml's `quantize_iq4_xs` (the reference is the same with no importance weights).
pub(crate) fn quantize_iq4_xs_chunk(src: &[f32], qw: Option<&[f32]>, dst: &mut [u8]) {
    for (ib, (b, x)) in as_blocks_mut::<BlockIq4Xs>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
        .enumerate()
    {
        let s2 = sigma2(x);
        let mut l = [0u8; QK_K];
        let mut scales = [0.0f32; 8];
        let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
        for g in 0..8 {
            let r = 32 * g..32 * g + 32;
            let w = qw.map(|w| &w[QK_K * ib + 32 * g..QK_K * ib + 32 * g + 32]);
            scales[g] = group_scale(&x[r.clone()], w, s2, 7, &mut l[r]);
            if scales[g].abs() > amax_scale {
                amax_scale = scales[g].abs();
                max_scale = scales[g];
            }
        }
        let d = -max_scale / 32.0;
        b.d = F16Bytes::from_f32(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut scales_h = 0u16;
        b.scales_l = [0; 4];
        for g in 0..8 {
            let ls = nearest_int(id * scales[g]).clamp(-32, 31);
            let dl = d * ls as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for i in 32 * g..32 * g + 32 {
                l[i] = best_index(idl * x[i]);
            }
            let ls = (ls + 32) as u8;
            b.scales_l[g / 2] |= (ls & 0xF) << (4 * (g % 2));
            scales_h |= u16::from(ls >> 4) << (2 * g);
        }
        b.scales_h = scales_h.to_le_bytes();
        for g in 0..8 {
            b.qs[16 * g..16 * g + 16].copy_from_slice(&pack(&l[32 * g..32 * g + 32]));
        }
    }
}

pub(crate) fn dequantize_iq4_xs(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockIq4Xs>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = b.d.get();
        for g in 0..8 {
            let dl = d * (i32::from(iq4xs_scale(b, g)) - 32) as f32;
            for j in 0..16 {
                let q = b.qs[16 * g + j];
                y[32 * g + j] = dl * f32::from(IQ4_NL_VALUES[usize::from(q & 0xF)]);
                y[32 * g + j + 16] = dl * f32::from(IQ4_NL_VALUES[usize::from(q >> 4)]);
            }
        }
    }
}
