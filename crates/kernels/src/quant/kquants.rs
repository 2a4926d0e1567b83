//! The k-quants `Q2_K`…`Q6_K` and their activation format `Q8_K`: reference quantization
//! (ggml's `quantize_row_*_ref`, the same search for scales and mins) and dequantization.
//!
//! Dequantization follows ggml's operation order (`(d·sc)·q − dmin·m` in `f32`), so it matches
//! ggml and the Python `gguf` package bit for bit. The `unpack_*` helpers expose the integer
//! values of a block for the scalar dot products in `dot::generic`.

use super::blocks::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, F16Bytes, QK_K, as_blocks,
    as_blocks_mut, q3k_scales, scale_min_k4,
};

/// Below this magnitude a group counts as all zeros (ggml's `GROUP_MAX_EPS`).
const GROUP_MAX_EPS: f32 = 1e-15;

/// Round to nearest, ties to even: ggml's `nearest_int` (exact for the magnitudes it sees).
#[inline(always)]
pub(crate) fn nearest_int(v: f32) -> i32 {
    v.round_ties_even() as i32
}

/// The value of largest magnitude (first on ties) and that magnitude.
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

/// Symmetric quantization of `x` to `-nmax..nmax`, trying 18 scales around `nmax / max` and
/// keeping the best weighted fit (ggml's `make_qx_quants`, `rmse_type` 1): the weights are
/// `qw` when given (importance weights), else `x²`. Writes `L[i] + nmax` and returns the scale.
pub(crate) fn make_qx_quants(nmax: i32, x: &[f32], out: &mut [i8], qw: Option<&[f32]>) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        out.fill(0);
        return 0.0;
    }
    let weight = |i: usize| match qw {
        Some(w) => w[i],
        None => x[i] * x[i],
    };
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for (i, &v) in x.iter().enumerate() {
            let l = quant(iscale, v) as f32;
            let w = weight(i);
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (quant(iscale, v) + nmax) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = (quant(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Symmetric 3-bit quantization with a few rounds of coordinate descent on the weighted error
/// (ggml's `make_q3_quants` with `do_rmse`). Writes `L[i] + nmax`, returns the scale.
fn make_q3_quants(nmax: i32, x: &[f32], out: &mut [i8]) -> f32 {
    let (max, amax) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        out.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    let mut l = [0i32; 16];
    for (li, &v) in l.iter_mut().zip(x) {
        *li = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        let w = v * v;
        sumlx += w * v * *li as f32;
        suml2 += w * *li as f32 * *li as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (li, &v) in l.iter_mut().zip(x) {
            let w = v * v;
            let mut slx = sumlx - w * v * *li as f32;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * *li as f32 * *li as f32;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *li {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *li = new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (o, li) in out.iter_mut().zip(l) {
        *o = (li + nmax) as i8;
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// Asymmetric quantization `x ≈ scale·L − min` with `L` in `0..=nmax`, searching `nstep + 1`
/// scales for the smallest weighted error (ggml's `make_qkx2_quants`). Returns `(scale, min)`.
#[allow(clippy::too_many_arguments)]
fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        out.fill(0);
        return (0.0, -min);
    }
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        out[i] = l as u8;
        best_error += weights[i] * err(scale * l as f32 + min - x[i]);
    }
    let mut aux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let (w, lf) = (weights[i], l as f32);
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..n {
                cur_error += weights[i] * err(this_scale * aux[i] as f32 + this_min - x[i]);
            }
            if cur_error < best_error {
                out[..n].copy_from_slice(&aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Packs 256 two-bit values as `Q2_K`/`Q3_K` store them.
fn pack_2bit(l: &[u8; QK_K]) -> [u8; 64] {
    std::array::from_fn(|i| {
        let (h, k) = (i / 32, i % 32);
        let base = 128 * h + k;
        l[base] | (l[base + 32] << 2) | (l[base + 64] << 4) | (l[base + 96] << 6)
    })
}

/// The 256 two-bit values of `Q2_K`/`Q3_K` `qs`, in value order.
#[inline(always)]
fn unpack_2bit(qs: &[u8; 64]) -> [u8; QK_K] {
    std::array::from_fn(|i| {
        let (h, j, l) = (i / 128, (i % 128) / 32, i % 32);
        (qs[32 * h + l] >> (2 * j)) & 3
    })
}

pub(crate) fn quantize_q2_k(src: &[f32], dst: &mut [u8]) {
    const Q4SCALE: f32 = 15.0;
    for (b, x) in as_blocks_mut::<BlockQ2K>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
    {
        let mut l = [0u8; QK_K];
        let mut scales = [0.0f32; 16];
        let mut mins = [0.0f32; 16];
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for j in 0..16 {
            let xs = &x[16 * j..16 * j + 16];
            let w: [f32; 16] = std::array::from_fn(|i| xs[i].abs());
            let (s, m) =
                make_qkx2_quants(3, xs, &w, &mut l[16 * j..16 * j + 16], -0.5, 0.1, 15, true);
            scales[j] = s;
            mins[j] = m;
            max_scale = max_scale.max(s);
            max_min = max_min.max(m);
        }
        b.scales = [0; 16];
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for j in 0..16 {
                b.scales[j] = nearest_int(iscale * scales[j]) as u8;
            }
            b.d = F16Bytes::from_f32(max_scale / Q4SCALE);
        } else {
            b.d = F16Bytes::from_f32(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for j in 0..16 {
                b.scales[j] |= (nearest_int(iscale * mins[j]) as u8) << 4;
            }
            b.dmin = F16Bytes::from_f32(max_min / Q4SCALE);
        } else {
            b.dmin = F16Bytes::from_f32(0.0);
        }
        for j in 0..16 {
            let d = b.d.get() * f32::from(b.scales[j] & 0xF);
            if d == 0.0 {
                continue;
            }
            let dm = b.dmin.get() * f32::from(b.scales[j] >> 4);
            for i in 0..16 {
                l[16 * j + i] = nearest_int((x[16 * j + i] + dm) / d).clamp(0, 3) as u8;
            }
        }
        b.qs = pack_2bit(&l);
    }
}

/// The 256 values (0..4) of a `Q2_K` block.
#[inline(always)]
pub(crate) fn unpack_q2k(b: &BlockQ2K) -> [u8; QK_K] {
    unpack_2bit(&b.qs)
}

pub(crate) fn dequantize_q2_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockQ2K>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let (d, dmin) = (b.d.get(), b.dmin.get());
        let q = unpack_q2k(b);
        for g in 0..16 {
            let dl = d * f32::from(b.scales[g] & 0xF);
            let ml = dmin * f32::from(b.scales[g] >> 4);
            for i in 16 * g..16 * g + 16 {
                y[i] = dl * f32::from(q[i]) - ml;
            }
        }
    }
}

pub(crate) fn quantize_q3_k(src: &[f32], dst: &mut [u8]) {
    for (b, x) in as_blocks_mut::<BlockQ3K>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
    {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; 16];
        let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
        for j in 0..16 {
            scales[j] = make_q3_quants(4, &x[16 * j..16 * j + 16], &mut l[16 * j..16 * j + 16]);
            if scales[j].abs() > amax {
                amax = scales[j].abs();
                max_scale = scales[j];
            }
        }
        b.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for j in 0..16 {
                let ls = (nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32;
                let ls = ls as u8;
                if j < 8 {
                    b.scales[j] = ls & 0xF;
                } else {
                    b.scales[j - 8] |= (ls & 0xF) << 4;
                }
                b.scales[8 + j % 4] |= (ls >> 4) << (2 * (j / 4));
            }
            b.d = F16Bytes::from_f32(1.0 / iscale);
        } else {
            b.d = F16Bytes::from_f32(0.0);
        }
        let sc = q3k_scales(&b.scales);
        for j in 0..16 {
            let d = b.d.get() * f32::from(sc[j] as i8 - 32);
            if d == 0.0 {
                continue;
            }
            for i in 0..16 {
                l[16 * j + i] = (nearest_int(x[16 * j + i] / d).clamp(-4, 3) + 4) as i8;
            }
        }
        b.hmask = [0; 32];
        let mut low = [0u8; QK_K];
        for (i, (&li, lo)) in l.iter().zip(low.iter_mut()).enumerate() {
            let mut v = li as u8;
            if v > 3 {
                b.hmask[i % 32] |= 1 << (i / 32);
                v -= 4;
            }
            *lo = v;
        }
        b.qs = pack_2bit(&low);
    }
}

/// The 256 values (−4..4) of a `Q3_K` block.
#[inline(always)]
pub(crate) fn unpack_q3k(b: &BlockQ3K) -> [i8; QK_K] {
    let low = unpack_2bit(&b.qs);
    std::array::from_fn(|i| {
        let high = (b.hmask[i % 32] >> (i / 32)) & 1;
        low[i] as i8 - if high != 0 { 0 } else { 4 }
    })
}

pub(crate) fn dequantize_q3_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockQ3K>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = b.d.get();
        let sc = q3k_scales(&b.scales);
        let q = unpack_q3k(b);
        for g in 0..16 {
            let dl = d * f32::from(sc[g] as i8 - 32);
            for i in 16 * g..16 * g + 16 {
                y[i] = dl * f32::from(q[i]);
            }
        }
    }
}

/// Shared by `Q4_K` and `Q5_K`: per group of 32, the weighted asymmetric fit, then 6-bit
/// scales and mins under two f16 super-scales, then the values re-quantized with the stored
/// scales. Returns `(d, dmin, packed scales, values)`.
fn quantize_k_32(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> (F16Bytes, F16Bytes, [u8; 12], [u8; QK_K]) {
    let mut l = [0u8; QK_K];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * j + 32];
        let sum_x2: f32 = xs.iter().fold(0.0, |a, v| a + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let w: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let (s, m) = make_qkx2_quants(
            nmax,
            xs,
            &w,
            &mut l[32 * j..32 * j + 32],
            rmin,
            0.1,
            nstep,
            false,
        );
        scales[j] = s;
        mins[j] = m;
        max_scale = max_scale.max(s);
        max_min = max_min.max(m);
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut packed = [0u8; 12];
    for j in 0..8 {
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = F16Bytes::from_f32(max_scale / 63.0);
    let dmin = F16Bytes::from_f32(max_min / 63.0);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        let dj = d.get() * f32::from(sc);
        if dj == 0.0 {
            continue;
        }
        let dm = dmin.get() * f32::from(m);
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

pub(crate) fn quantize_q4_k(src: &[f32], dst: &mut [u8]) {
    for (b, x) in as_blocks_mut::<BlockQ4K>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
    {
        let (d, dmin, scales, l) = quantize_k_32(x, 15, -1.0, 20);
        b.d = d;
        b.dmin = dmin;
        b.scales = scales;
        b.qs = std::array::from_fn(|i| {
            let (j, k) = (i / 32, i % 32);
            l[64 * j + k] | (l[64 * j + 32 + k] << 4)
        });
    }
}

/// The 256 values (0..16) of a `Q4_K` block.
#[inline(always)]
pub(crate) fn unpack_q4k(b: &BlockQ4K) -> [u8; QK_K] {
    std::array::from_fn(|i| {
        let (j, h, k) = (i / 64, (i % 64) / 32, i % 32);
        (b.qs[32 * j + k] >> (4 * h)) & 0xF
    })
}

pub(crate) fn dequantize_q4_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockQ4K>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let (d, dmin) = (b.d.get(), b.dmin.get());
        let q = unpack_q4k(b);
        for g in 0..8 {
            let (sc, m) = scale_min_k4(g, &b.scales);
            let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
            for i in 32 * g..32 * g + 32 {
                y[i] = d1 * f32::from(q[i]) - m1;
            }
        }
    }
}

pub(crate) fn quantize_q5_k(src: &[f32], dst: &mut [u8]) {
    for (b, x) in as_blocks_mut::<BlockQ5K>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
    {
        let (d, dmin, scales, l) = quantize_k_32(x, 31, -0.5, 15);
        b.d = d;
        b.dmin = dmin;
        b.scales = scales;
        b.qh = std::array::from_fn(|k| {
            (0..8).fold(0u8, |h, bit| {
                let i = 64 * (bit / 2) + 32 * (bit % 2) + k;
                h | (((l[i] >> 4) & 1) << bit)
            })
        });
        b.qs = std::array::from_fn(|i| {
            let (j, k) = (i / 32, i % 32);
            (l[64 * j + k] & 0xF) | ((l[64 * j + 32 + k] & 0xF) << 4)
        });
    }
}

/// The 256 values (0..32) of a `Q5_K` block.
#[inline(always)]
pub(crate) fn unpack_q5k(b: &BlockQ5K) -> [u8; QK_K] {
    std::array::from_fn(|i| {
        let (j, h, k) = (i / 64, (i % 64) / 32, i % 32);
        let low = (b.qs[32 * j + k] >> (4 * h)) & 0xF;
        let high = (b.qh[k] >> (2 * j + h)) & 1;
        low | (high << 4)
    })
}

pub(crate) fn dequantize_q5_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockQ5K>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let (d, dmin) = (b.d.get(), b.dmin.get());
        let q = unpack_q5k(b);
        for g in 0..8 {
            let (sc, m) = scale_min_k4(g, &b.scales);
            let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
            for i in 32 * g..32 * g + 32 {
                y[i] = d1 * f32::from(q[i]) - m1;
            }
        }
    }
}

pub(crate) fn quantize_q6_k(src: &[f32], dst: &mut [u8]) {
    for (b, x) in as_blocks_mut::<BlockQ6K>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
    {
        q6_k_block(x, None, b);
    }
}

/// One `Q6_K` block; with importance weights `qw` (256 of them) as `quantize_row_q6_K_impl`,
/// without as `quantize_row_q6_K_ref`.
fn q6_k_block(x: &[f32], qw: Option<&[f32]>, b: &mut BlockQ6K) {
    let mut l = [0i8; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
    for g in 0..16 {
        let r = 16 * g..16 * g + 16;
        let s = make_qx_quants(32, &x[r.clone()], &mut l[r.clone()], qw.map(|w| &w[r]));
        scales[g] = s;
        if s.abs() > max_abs_scale {
            max_abs_scale = s.abs();
            max_scale = s;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        b.ql = [0; 128];
        b.qh = [0; 64];
        b.scales = [0; 16];
        b.d = F16Bytes::from_f32(0.0);
        return;
    }
    let iscale = -128.0 / max_scale;
    b.d = F16Bytes::from_f32(1.0 / iscale);
    for g in 0..16 {
        b.scales[g] = nearest_int(iscale * scales[g]).min(127) as i8;
    }
    for g in 0..16 {
        let d = b.d.get() * f32::from(b.scales[g]);
        if d == 0.0 {
            continue;
        }
        for i in 16 * g..16 * g + 16 {
            l[i] = (nearest_int(x[i] / d).clamp(-32, 31) + 32) as i8;
        }
    }
    for h in 0..2 {
        for k in 0..32 {
            let v = |o: usize| l[128 * h + k + o] as u8;
            b.ql[64 * h + k] = (v(0) & 0xF) | ((v(64) & 0xF) << 4);
            b.ql[64 * h + k + 32] = (v(32) & 0xF) | ((v(96) & 0xF) << 4);
            b.qh[32 * h + k] =
                (v(0) >> 4) | ((v(32) >> 4) << 2) | ((v(64) >> 4) << 4) | ((v(96) >> 4) << 6);
        }
    }
}

/// The 256 values (−32..32) of a `Q6_K` block.
#[inline(always)]
pub(crate) fn unpack_q6k(b: &BlockQ6K) -> [i8; QK_K] {
    std::array::from_fn(|i| {
        let (h, part, k) = (i / 128, (i % 128) / 32, i % 32);
        let lbyte = b.ql[64 * h + k + 32 * (part % 2)];
        let low = if part < 2 { lbyte & 0xF } else { lbyte >> 4 };
        let high = (b.qh[32 * h + k] >> (2 * part)) & 3;
        (low | (high << 4)) as i8 - 32
    })
}

pub(crate) fn dequantize_q6_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockQ6K>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = b.d.get();
        let q = unpack_q6k(b);
        for g in 0..16 {
            let dl = d * f32::from(b.scales[g]);
            for i in 16 * g..16 * g + 16 {
                y[i] = dl * f32::from(q[i]);
            }
        }
    }
}

/// Quantizes 256 values as `quantize_row_q8_K_ref`: returns `(d, qs, bsums)`.
#[inline(always)]
pub(crate) fn q8k_block(x: &[f32]) -> (f32, [i8; QK_K], [i16; 16]) {
    let (max, amax) = signed_absmax(x);
    if amax == 0.0 {
        return (0.0, [0; QK_K], [0; 16]);
    }
    let iscale = -127.0 / max;
    let q: [i8; QK_K] = std::array::from_fn(|j| nearest_int(iscale * x[j]).min(127) as i8);
    let bsums = std::array::from_fn(|g| q[16 * g..16 * g + 16].iter().map(|&v| i16::from(v)).sum());
    (1.0 / iscale, q, bsums)
}

pub(crate) fn quantize_q8_k(src: &[f32], dst: &mut [u8]) {
    for (b, x) in as_blocks_mut::<BlockQ8K>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
    {
        let (d, q, bsums) = q8k_block(x);
        b.d = d.to_le_bytes();
        b.qs = q;
        b.bsums = bsums.map(i16::to_le_bytes);
    }
}

pub(crate) fn dequantize_q8_k(src: &[u8], dst: &mut [f32]) {
    for (b, y) in as_blocks::<BlockQ8K>(src)
        .iter()
        .zip(dst.chunks_exact_mut(QK_K))
    {
        let d = b.d();
        for (o, &q) in y.iter_mut().zip(&b.qs) {
            *o = d * f32::from(q);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Importance-weighted quantization: ggml's `quantize_row_*_impl`, what `ggml_quantize_chunk`
// (and so llama-quantize) runs when it is given an importance matrix. `qw` holds one weight per
// column of the row (`n_per_row` values); each function quantizes one row.

/// Like [`make_qkx2_quants`] but the weights default to `x²` and the search is ggml's
/// `make_qkx3_quants` (`max <= min` for the flat case). Returns `(scale, the_min)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_qkx3_quants(
    nmax: i32,
    x: &[f32],
    weights: Option<&[f32]>,
    out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let w = |i: usize| match weights {
        Some(w) => w[i],
        None => x[i] * x[i],
    };
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = w(0);
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let wi = w(i);
        sum_w += wi;
        sum_x += wi * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max <= min {
        out[..n].fill(0);
        return (0.0, -min);
    }
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_mad = 0.0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        out[i] = l as u8;
        best_mad += w(i) * err(scale * l as f32 + min - x[i]);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    let mut aux = [0u8; 32];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            aux[i] = l as u8;
            let (wi, lf) = (w(i), l as f32);
            sum_l += wi * lf;
            sum_l2 += wi * lf * lf;
            sum_xl += wi * lf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut mad = 0.0f32;
            for i in 0..n {
                mad += w(i) * err(this_scale * aux[i] as f32 + this_min - x[i]);
            }
            if mad < best_mad {
                out[..n].copy_from_slice(&aux[..n]);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Quantizes the non-negative `x` (a block's group scales or mins) to `0..=nmax` under one
/// scale, minimising the `quant_weights`-weighted error (ggml's `make_qp_quants`). `L` takes
/// ggml's `uint8_t` wrap-around for the (never seen) negative inputs. Returns the scale.
pub(crate) fn make_qp_quants(nmax: i32, x: &[f32], l_out: &mut [u8], quant_weights: &[f32]) -> f32 {
    let n = x.len();
    let mut max = 0.0f32;
    for &v in x {
        max = max.max(v);
    }
    if max < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let mut iscale = nmax as f32 / max;
    for i in 0..n {
        l_out[i] = nearest_int(iscale * x[i]) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..n {
        let diff = x[i] - scale * f32::from(l_out[i]);
        best_mse += quant_weights[i] * diff * diff;
    }
    for is in -4..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1 * is as f32 + nmax as f32) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0.0f32;
        for i in 0..n {
            let l = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * l as f32;
            mse += quant_weights[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).min(nmax);
        l_out[i] = l as u8;
        let w = quant_weights[i];
        sumlx += w * x[i] * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for i in 0..n {
            let w = quant_weights[i];
            let li = f32::from(l_out[i]);
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != i32::from(l_out[i]) {
                    slx += w * x[i] * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l_out[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// `Σ x²` over one super-block, summed in order as ggml does.
fn sum_sq(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |a, &v| a + v * v)
}

/// One row of `Q2_K` with importance weights (`quantize_row_q2_K_impl`).
pub(crate) fn quantize_q2_k_imatrix(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((b, x), qw) in as_blocks_mut::<BlockQ2K>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
        .zip(qw.chunks_exact(QK_K))
    {
        let sigma2 = sum_sq(x) / QK_K as f32;
        let mut l = [0u8; QK_K];
        let mut scales = [0.0f32; 16];
        let mut mins = [0.0f32; 16];
        let mut sw = [0.0f32; 16];
        for j in 0..16 {
            let r = 16 * j..16 * j + 16;
            let xs = &x[r.clone()];
            let w: [f32; 16] =
                std::array::from_fn(|i| qw[16 * j + i] * (sigma2 + xs[i] * xs[i]).sqrt());
            sw[j] = w.iter().fold(0.0f32, |a, &v| a + v);
            let (s, m) = make_qkx3_quants(3, xs, Some(&w), &mut l[r], -0.9, 0.05, 36, false);
            scales[j] = s;
            mins[j] = m;
        }
        let mut ls = [0u8; 16];
        let mut lm = [0u8; 16];
        let dm = make_qp_quants(15, &scales, &mut ls, &sw);
        let mm = make_qp_quants(15, &mins, &mut lm, &sw);
        b.d = F16Bytes::from_f32(dm);
        b.dmin = F16Bytes::from_f32(mm);
        let (dm, mm) = (b.d.get(), b.dmin.get());
        for j in 0..16 {
            b.scales[j] = ls[j] | (lm[j] << 4);
        }
        for j in 0..16 {
            let d = dm * f32::from(b.scales[j] & 0xF);
            if d == 0.0 {
                continue;
            }
            let m = mm * f32::from(b.scales[j] >> 4);
            for i in 16 * j..16 * j + 16 {
                l[i] = nearest_int((x[i] + m) / d).clamp(0, 3) as u8;
            }
        }
        b.qs = pack_2bit(&l);
    }
}

/// One row of `Q3_K` with importance weights (`quantize_row_q3_K_impl`).
pub(crate) fn quantize_q3_k_imatrix(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((b, x), qw) in as_blocks_mut::<BlockQ3K>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
        .zip(qw.chunks_exact(QK_K))
    {
        let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; 16];
        let mut sw = [0.0f32; 16];
        for j in 0..16 {
            let r = 16 * j..16 * j + 16;
            let xs = &x[r.clone()];
            let w: [f32; 16] =
                std::array::from_fn(|i| qw[16 * j + i] * (sigma2 + xs[i] * xs[i]).sqrt());
            sw[j] = w.iter().fold(0.0f32, |a, &v| a + v);
            scales[j] = make_qx_quants(4, xs, &mut l[r], Some(&w));
        }
        let mut ls = [0i8; 16];
        let d_block = make_qx_quants(32, &scales, &mut ls, Some(&sw));
        b.scales = [0; 12];
        for j in 0..16 {
            let lj = ls[j] as u8;
            if j < 8 {
                b.scales[j] = lj & 0xF;
            } else {
                b.scales[j - 8] |= (lj & 0xF) << 4;
            }
            b.scales[8 + j % 4] |= (lj >> 4) << (2 * (j / 4));
        }
        b.d = F16Bytes::from_f32(d_block);
        let sc = q3k_scales(&b.scales);
        for j in 0..16 {
            let d = b.d.get() * f32::from(sc[j] as i8 - 32);
            if d == 0.0 {
                continue;
            }
            for i in 16 * j..16 * j + 16 {
                l[i] = (nearest_int(x[i] / d).clamp(-4, 3) + 4) as i8;
            }
        }
        b.hmask = [0; 32];
        let mut low = [0u8; QK_K];
        for (i, (&li, lo)) in l.iter().zip(low.iter_mut()).enumerate() {
            let mut v = li as u8;
            if v > 3 {
                b.hmask[i % 32] |= 1 << (i / 32);
                v -= 4;
            }
            *lo = v;
        }
        b.qs = pack_2bit(&low);
    }
}

/// Shared by `Q4_K` and `Q5_K` with importance weights (`quantize_row_q{4,5}_K_impl`): the
/// group fits, the 6-bit scales and mins by [`make_qp_quants`], the values re-quantized.
/// `Q5_K` clamps the 6-bit scales to 63 before packing, `Q4_K` does not (ggml's two copies
/// differ there; it matters only for negative group scales, which wrap).
fn quantize_k_32_imatrix(
    x: &[f32],
    qw: &[f32],
    nmax: i32,
) -> (F16Bytes, F16Bytes, [u8; 12], [u8; QK_K]) {
    let clamp63 = nmax == 31;
    let sigma2 = 2.0 * sum_sq(x) / QK_K as f32;
    let mut l = [0u8; QK_K];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let mut sw = [0.0f32; 8];
    for j in 0..8 {
        let r = 32 * j..32 * j + 32;
        let xs = &x[r.clone()];
        let w: [f32; 32] =
            std::array::from_fn(|i| qw[32 * j + i] * (sigma2 + xs[i] * xs[i]).sqrt());
        sw[j] = w.iter().fold(0.0f32, |a, &v| a + v);
        let (s, m) = make_qkx3_quants(nmax, xs, Some(&w), &mut l[r], -0.9, 0.05, 36, false);
        scales[j] = s;
        mins[j] = m;
    }
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
    let mut packed = [0u8; 12];
    for j in 0..8 {
        let (lsj, lmj) = if clamp63 {
            (ls[j].min(63), lm[j].min(63))
        } else {
            (ls[j], lm[j])
        };
        if j < 4 {
            packed[j] = lsj;
            packed[j + 4] = lmj;
        } else {
            packed[j + 4] = (lsj & 0xF) | ((lmj & 0xF) << 4);
            packed[j - 4] |= (lsj >> 4) << 6;
            packed[j] |= (lmj >> 4) << 6;
        }
    }
    let d = F16Bytes::from_f32(d_block);
    let dmin = F16Bytes::from_f32(m_block);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        let dj = d.get() * f32::from(sc);
        if dj == 0.0 {
            continue;
        }
        let dm = dmin.get() * f32::from(m);
        for i in 32 * j..32 * j + 32 {
            l[i] = nearest_int((x[i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

/// One row of `Q4_K` with importance weights (`quantize_row_q4_K_impl`).
pub(crate) fn quantize_q4_k_imatrix(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((b, x), qw) in as_blocks_mut::<BlockQ4K>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
        .zip(qw.chunks_exact(QK_K))
    {
        let (d, dmin, scales, l) = quantize_k_32_imatrix(x, qw, 15);
        b.d = d;
        b.dmin = dmin;
        b.scales = scales;
        b.qs = std::array::from_fn(|i| {
            let (j, k) = (i / 32, i % 32);
            l[64 * j + k] | (l[64 * j + 32 + k] << 4)
        });
    }
}

/// One row of `Q5_K` with importance weights (`quantize_row_q5_K_impl`).
pub(crate) fn quantize_q5_k_imatrix(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((b, x), qw) in as_blocks_mut::<BlockQ5K>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
        .zip(qw.chunks_exact(QK_K))
    {
        let (d, dmin, scales, l) = quantize_k_32_imatrix(x, qw, 31);
        b.d = d;
        b.dmin = dmin;
        b.scales = scales;
        b.qh = std::array::from_fn(|k| {
            (0..8).fold(0u8, |h, bit| {
                let i = 64 * (bit / 2) + 32 * (bit % 2) + k;
                h | (((l[i] >> 4) & 1) << bit)
            })
        });
        b.qs = std::array::from_fn(|i| {
            let (j, k) = (i / 32, i % 32);
            (l[64 * j + k] & 0xF) | ((l[64 * j + 32 + k] & 0xF) << 4)
        });
    }
}

/// One row of `Q6_K` with importance weights (`quantize_row_q6_K_impl`: the weights are the
/// importance values themselves).
pub(crate) fn quantize_q6_k_imatrix(src: &[f32], qw: &[f32], dst: &mut [u8]) {
    for ((b, x), qw) in as_blocks_mut::<BlockQ6K>(dst)
        .iter_mut()
        .zip(src.chunks_exact(QK_K))
        .zip(qw.chunks_exact(QK_K))
    {
        q6_k_block(x, Some(qw), b);
    }
}
