//! The engine's view of the kernels: the operations the architectures call, over model weights
//! ([`MatRef`]) and plain `f32` rows. This is the one place that knows the `kernels` API, so
//! the architecture files read as recipes.

use half::f16;
use kernels::pool::ThreadPool;

use crate::kv_cache::KvCache;
use crate::model::{HParams, MatRef, Model};

/// Scratch space of the matrix products (quantized activations), sized once per context.
pub struct MatmulScratch {
    row: Vec<f32>,
}

impl MatmulScratch {
    /// Room for `n_rows` activation rows of up to `max_cols` values.
    pub fn new(_n_rows: usize, max_cols: usize) -> MatmulScratch {
        MatmulScratch { row: vec![0.0; max_cols] }
    }
}

/// `y[t][r] = Σ_c W[r][c] · x[t][c]` for `n` rows of `x`.
pub fn matmul(
    _pool: &ThreadPool,
    scratch: &mut MatmulScratch,
    model: &Model,
    w: &MatRef,
    x: &[f32],
    n: usize,
    y: &mut [f32],
) {
    let data = model.mat_data(w);
    let rb = w.row_bytes();
    let row = &mut scratch.row[..w.cols];
    for r in 0..w.rows {
        let _ = kernels::quant::dequantize_row(w.ty, &data[r * rb..(r + 1) * rb], row);
        for t in 0..n {
            let xr = &x[t * w.cols..(t + 1) * w.cols];
            y[t * w.rows + r] = row.iter().zip(xr).map(|(a, b)| a * b).sum();
        }
    }
}

/// Several products sharing one input (`ws[i]` writes `ys[i]`).
pub fn matmul_many(
    pool: &ThreadPool,
    scratch: &mut MatmulScratch,
    model: &Model,
    ws: &[&MatRef],
    x: &[f32],
    n: usize,
    ys: &mut [&mut [f32]],
) {
    for (w, y) in ws.iter().zip(ys.iter_mut()) {
        matmul(pool, scratch, model, w, x, n, y);
    }
}

/// Row `row` of a weight matrix as f32 (the embedding lookup).
pub fn dequantize_row(model: &Model, m: &MatRef, row: usize, out: &mut [f32]) {
    let rb = m.row_bytes();
    let data = model.mat_data(m);
    let _ = kernels::quant::dequantize_row(m.ty, &data[row * rb..(row + 1) * rb], out);
}

/// RMS norm of each row of `x` (rows of `w.len()`), times `w`, into `out`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    for (xr, or) in x.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
        let ms = xr.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>() / w.len() as f64;
        let s = (1.0 / (ms + f64::from(eps)).sqrt()) as f32;
        for ((o, v), g) in or.iter_mut().zip(xr).zip(w) {
            *o = v * s * g;
        }
    }
}

/// RMS norm in place of each row of `buf` (rows of `w.len()`), times `w`.
pub fn rms_norm_rows(buf: &mut [f32], w: &[f32], eps: f32) {
    for r in buf.chunks_exact_mut(w.len()) {
        let ms = r.iter().map(|v| f64::from(*v) * f64::from(*v)).sum::<f64>() / w.len() as f64;
        let s = (1.0 / (ms + f64::from(eps)).sqrt()) as f32;
        for (v, g) in r.iter_mut().zip(w) {
            *v = *v * s * g;
        }
    }
}

/// `x += y`.
pub fn add(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// Adds `bias` to every row of `buf`.
pub fn add_bias(buf: &mut [f32], bias: &[f32]) {
    for r in buf.chunks_exact_mut(bias.len()) {
        add(r, bias);
    }
}

/// The activation of a gated feed-forward block.
#[derive(Clone, Copy, Debug)]
pub enum Activation {
    /// SwiGLU: `silu(gate) · up`.
    Silu,
    /// GeGLU with ggml's tanh-approximated GELU.
    Gelu,
}

/// `a = act(a) · b`.
pub fn gated_activation(act: Activation, a: &mut [f32], b: &[f32]) {
    match act {
        Activation::Silu => {
            for (g, u) in a.iter_mut().zip(b) {
                *g = *g / (1.0 + (-*g).exp()) * u;
            }
        }
        Activation::Gelu => {
            const SQRT_2_OVER_PI: f32 = 0.797_884_6;
            for (g, u) in a.iter_mut().zip(b) {
                let x = *g;
                *g = 0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + 0.044_715 * x * x)).tanh()) * u;
            }
        }
    }
}

/// RoPE settings of one layer.
#[derive(Clone, Debug)]
pub struct RopeParams<'a> {
    pub n_rot: usize,
    /// "neox" layout (rotate halves) rather than adjacent pairs.
    pub neox: bool,
    pub freq_base: f32,
    pub freq_scale: f32,
    pub ext_factor: f32,
    pub attn_factor: f32,
    pub beta_fast: f32,
    pub beta_slow: f32,
    pub n_ctx_orig: usize,
    /// Per-pair frequency divisors.
    pub freq_factors: Option<&'a [f32]>,
}

impl<'a> RopeParams<'a> {
    fn new(hp: &HParams, neox: bool, base: f32, scale: f32, ff: Option<&'a [f32]>) -> Self {
        RopeParams {
            n_rot: hp.n_rot,
            neox,
            freq_base: base,
            freq_scale: scale,
            ext_factor: hp.yarn_ext_factor,
            attn_factor: hp.yarn_attn_factor,
            beta_fast: hp.yarn_beta_fast,
            beta_slow: hp.yarn_beta_slow,
            n_ctx_orig: hp.n_ctx_orig,
            freq_factors: ff,
        }
    }

    /// The "normal" layout: dimension pairs (2i, 2i+1).
    pub fn normal(hp: &HParams, base: f32, scale: f32, ff: Option<&'a [f32]>) -> Self {
        RopeParams::new(hp, false, base, scale, ff)
    }

    /// The "neox" layout: dimension pairs (i, i + n_rot/2).
    pub fn neox(hp: &HParams, base: f32, scale: f32) -> Self {
        RopeParams::new(hp, true, base, scale, None)
    }
}

/// Rotates every head of every token of `buf` (`n_tokens × n_heads × head_dim`); token `t` is at
/// position `pos0 + t`.
pub fn rope(buf: &mut [f32], n_heads: usize, head_dim: usize, pos0: usize, p: &RopeParams<'_>) {
    let n_rot = p.n_rot;
    let theta_scale = p.freq_base.powf(-2.0 / n_rot as f32);
    let corr = yarn_corr_dims(n_rot, p.n_ctx_orig, p.freq_base, p.beta_fast, p.beta_slow);
    let mut cache = vec![0.0f32; n_rot];
    for (t, tok) in buf.chunks_exact_mut(n_heads * head_dim).enumerate() {
        let mut theta = (pos0 + t) as f32;
        for i0 in (0..n_rot).step_by(2) {
            let ff = p.freq_factors.map_or(1.0, |f| f[i0 / 2]);
            let (c, s) = rope_yarn(theta / ff, p, corr, i0);
            cache[i0] = c;
            cache[i0 + 1] = s;
            theta *= theta_scale;
        }
        for head in tok.chunks_exact_mut(head_dim) {
            for i0 in (0..n_rot).step_by(2) {
                let (c, s) = (cache[i0], cache[i0 + 1]);
                let (a, b) = if p.neox { (i0 / 2, i0 / 2 + n_rot / 2) } else { (i0, i0 + 1) };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * c - x1 * s;
                head[b] = x0 * s + x1 * c;
            }
        }
    }
}

fn yarn_corr_dims(n_dims: usize, n_ctx_orig: usize, base: f32, fast: f32, slow: f32) -> [f32; 2] {
    let dim = |n_rot: f32| {
        n_dims as f32 * (n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln()
            / (2.0 * base.ln())
    };
    [dim(fast).floor().max(0.0), dim(slow).ceil().min(n_dims as f32 - 1.0)]
}

fn rope_yarn(theta_extrap: f32, p: &RopeParams<'_>, corr: [f32; 2], i0: usize) -> (f32, f32) {
    let theta_interp = p.freq_scale * theta_extrap;
    let mut theta = theta_interp;
    let mut mscale = p.attn_factor;
    if p.ext_factor != 0.0 {
        let y = ((i0 / 2) as f32 - corr[0]) / (corr[1] - corr[0]).max(0.001);
        let ramp_mix = (1.0 - y.clamp(0.0, 1.0)) * p.ext_factor;
        theta = theta_interp * (1.0 - ramp_mix) + theta_extrap * ramp_mix;
        mscale *= 1.0 + 0.1 * (1.0 / p.freq_scale).ln();
    }
    (theta.cos() * mscale, theta.sin() * mscale)
}

/// Causal self-attention of `n` queries at positions `pos0..pos0+n` over layer `il`'s cache,
/// into `out` (`n × n_head × head_dim_v`).
#[allow(clippy::too_many_arguments)]
pub fn attention(
    _pool: &ThreadPool,
    q: &[f32],
    kv: &KvCache,
    il: usize,
    hp: &HParams,
    pos0: usize,
    n: usize,
    scale: f32,
    window: Option<usize>,
    out: &mut [f32],
) {
    let (hd, hdv) = (hp.head_dim_k, hp.head_dim_v);
    let group = hp.n_head / hp.n_head_kv;
    let (kw, vw) = (hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
    let keys = kv.keys(il);
    let values = kv.values(il);
    let mut scores = vec![0.0f32; pos0 + n];
    for t in 0..n {
        let pos = pos0 + t;
        let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
        for h in 0..hp.n_head {
            let kvh = h / group;
            let qh = &q[(t * hp.n_head + h) * hd..][..hd];
            let mut max = f32::NEG_INFINITY;
            for j in first..=pos {
                let kr = &keys[j * kw + kvh * hd..][..hd];
                let s: f32 = qh.iter().zip(kr).map(|(a, b)| a * f16::to_f32(*b)).sum::<f32>() * scale;
                scores[j] = s;
                max = max.max(s);
            }
            let mut sum = 0.0f32;
            for s in &mut scores[first..=pos] {
                *s = (*s - max).exp();
                sum += *s;
            }
            let o = &mut out[(t * hp.n_head + h) * hdv..][..hdv];
            o.fill(0.0);
            for j in first..=pos {
                let w = scores[j] / sum;
                let vr = &values[j * vw + kvh * hdv..][..hdv];
                for (a, b) in o.iter_mut().zip(vr) {
                    *a += w * f16::to_f32(*b);
                }
            }
        }
    }
}
