//! The engine's view of the kernels: the operations the architectures call, over model weights
//! ([`MatRef`]) and plain `f32` rows. This is the one place that knows the `kernels` API, so
//! the architecture files read as recipes.

use std::ops::Range;

use kernels::matmul::{Matrix, MatrixOptions};
use kernels::ops::Ops;
use kernels::ops::attention::{AttentionParams, AttentionScratch};
use kernels::ops::rope::{Rope, RopeMode, RopeParams};
use kernels::pool::ThreadPool;

use crate::kv_cache::KvCache;
use crate::model::{HParams, LoadError, MatRef, Model};
use crate::profile::{self, Op};

pub use kernels::matmul::Scratch as MatmulScratch;

/// The kernel matrix of a weight: the repacked copy, or a view of the mapped file.
enum KernelMatrix<'m> {
    Packed(&'m Matrix<'static>),
    View(Matrix<'m>),
}

impl<'m> std::ops::Deref for KernelMatrix<'m> {
    type Target = Matrix<'m>;

    fn deref(&self) -> &Matrix<'m> {
        match self {
            KernelMatrix::Packed(m) => m,
            KernelMatrix::View(m) => m,
        }
    }
}

fn matrix<'m>(model: &'m Model, w: &'m MatRef) -> Option<KernelMatrix<'m>> {
    if let Some(p) = &w.packed {
        return Some(KernelMatrix::Packed(p));
    }
    let options = MatrixOptions {
        repack: false,
        ..w.options
    };
    // The same construction succeeded when the model was loaded.
    Matrix::with_options(w.ty, w.rows, w.cols, model.mat_data(w), options)
        .ok()
        .map(KernelMatrix::View)
}

/// `y[t][r] = Σ_c W[r][c] · x[t][c]` for `n` rows of `x`.
pub fn matmul(
    pool: &ThreadPool,
    scratch: &mut MatmulScratch,
    model: &Model,
    w: &MatRef,
    x: &[f32],
    n: usize,
    y: &mut [f32],
) {
    matmul_many(pool, scratch, model, &[w], x, n, &mut [y]);
}

/// Several products sharing one input (`ws[i]` writes `ys[i]`), in one pass over the threads.
pub fn matmul_many(
    pool: &ThreadPool,
    scratch: &mut MatmulScratch,
    model: &Model,
    ws: &[&MatRef],
    x: &[f32],
    n: usize,
    ys: &mut [&mut [f32]],
) {
    let _t = profile::scope(Op::Matmul);
    let m = |i: usize| ws.get(i).and_then(|w| matrix(model, w));
    let result = match (m(0), m(1), m(2)) {
        (Some(a), None, None) if ws.len() == 1 => {
            kernels::matmul::matmul_many(pool, &[&a], x, n, ys, scratch)
        }
        (Some(a), Some(b), None) if ws.len() == 2 => {
            kernels::matmul::matmul_many(pool, &[&a, &b], x, n, ys, scratch)
        }
        (Some(a), Some(b), Some(c)) if ws.len() == 3 => {
            kernels::matmul::matmul_many(pool, &[&a, &b, &c], x, n, ys, scratch)
        }
        _ => Err(kernels::quant::KernelError::ShapeMismatch(
            "one to three matrices",
        )),
    };
    debug_assert!(
        result.is_ok(),
        "matmul shapes were checked at load: {result:?}"
    );
}

/// Row `row` of a weight matrix as f32 (the embedding lookup).
pub fn dequantize_row(model: &Model, m: &MatRef, row: usize, out: &mut [f32]) {
    let _t = profile::scope(Op::Embedding);
    // Token ids were checked against the vocabulary, and lookups from this matrix's layout
    // were checked when the model was loaded.
    let result = match &m.packed {
        Some(p) => p.dequantize_row(row, out),
        None => {
            let rb = m.row_bytes();
            let data = model.mat_data(m);
            kernels::quant::dequantize_row(m.ty, &data[row * rb..(row + 1) * rb], out)
        }
    };
    debug_assert!(result.is_ok(), "embedding lookup: {result:?}");
}

/// RMS norm of each row of `x` (rows of `w.len()`), times `w`, into `out`.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let _t = profile::scope(Op::Norm);
    let ops = Ops::detected();
    for (xr, or) in x.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
        ops.rms_norm(or, xr, w, eps);
    }
}

/// RMS norm in place of each row of `buf` (rows of `w.len()`), times `w`.
pub fn rms_norm_rows(buf: &mut [f32], w: &[f32], eps: f32) {
    let _t = profile::scope(Op::Norm);
    let ops = Ops::detected();
    for r in buf.chunks_exact_mut(w.len()) {
        ops.rms_norm_inplace(r, w, eps);
    }
}

/// `x += y`.
pub fn add(x: &mut [f32], y: &[f32]) {
    let _t = profile::scope(Op::Other);
    Ops::detected().add(x, y);
}

/// Adds `bias` to every row of `buf`.
pub fn add_bias(buf: &mut [f32], bias: &[f32]) {
    let _t = profile::scope(Op::Other);
    let ops = Ops::detected();
    for r in buf.chunks_exact_mut(bias.len()) {
        ops.add(r, bias);
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

/// `a = act(a) · b` for rows of `width` values, rounding as ggml's CPU backend does (SiLU in
/// blocks of 16 from each row's start; GELU through ggml's f16 table).
pub fn gated_activation(act: Activation, a: &mut [f32], b: &[f32], width: usize) {
    let _t = profile::scope(Op::Activation);
    let ops = Ops::detected();
    for (ar, br) in a.chunks_exact_mut(width).zip(b.chunks_exact(width)) {
        match act {
            Activation::Silu => ops.swiglu_ggml(ar, br),
            Activation::Gelu => ops.geglu_ggml(ar, br),
        }
    }
}

/// The RoPE of a layer, built once at load from the hyper-parameters.
pub fn make_rope(
    hp: &HParams,
    mode: RopeMode,
    freq_base: f32,
    freq_scale: f32,
    freq_factors: Option<&[f32]>,
) -> Result<Rope, LoadError> {
    let params = RopeParams {
        mode,
        n_rot: hp.n_rot,
        freq_base,
        freq_scale,
        ext_factor: hp.yarn_ext_factor,
        attn_factor: hp.yarn_attn_factor,
        beta_fast: hp.yarn_beta_fast,
        beta_slow: hp.yarn_beta_slow,
        n_ctx_orig: hp.n_ctx_orig,
    };
    Rope::new(params, freq_factors).map_err(|e| LoadError::BadHParam {
        key: "rope".into(),
        reason: e.to_string(),
    })
}

/// Rotates every head of every token of `buf` (`n_tokens × n_heads × head_dim`); token `t` is
/// at `positions[t]`.
pub fn rope(buf: &mut [f32], n_heads: usize, head_dim: usize, positions: &[i32], rope: &Rope) {
    let _t = profile::scope(Op::Rope);
    Ops::detected().rope(rope, buf, n_heads, head_dim, positions);
}

/// Causal self-attention of `n` queries at positions `pos0..pos0+n` over layer `il`'s cache,
/// into `out` (`n × n_head × head_dim_v`), computed as llama.cpp's non-flash path computes it
/// (queries and probabilities rounded to f16). `rows` is scratch for one range per query.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    pool: &ThreadPool,
    q: &[f32],
    kv: &KvCache,
    il: usize,
    hp: &HParams,
    pos0: usize,
    scale: f32,
    window: Option<usize>,
    rows: &mut Vec<Range<usize>>,
    scratch: &mut AttentionScratch,
    out: &mut [f32],
) {
    let _t = profile::scope(Op::Attention);
    let n = q.len() / (hp.n_head * hp.head_dim_k);
    rows.clear();
    rows.extend((pos0..pos0 + n).map(|pos| {
        let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
        first..pos + 1
    }));
    let params = attention_params(hp, scale);
    let cache = kernels::ops::attention::KvCache {
        k: kv.keys(il),
        v: kv.values(il),
        pos_stride: hp.n_embd_k_gqa(),
        head_stride: hp.head_dim_k,
    };
    Ops::detected().attention_ggml(pool, &params, q, &cache, rows, out, scratch);
}

/// The attention parameters of a model.
pub fn attention_params(hp: &HParams, scale: f32) -> AttentionParams {
    AttentionParams {
        n_head: hp.n_head,
        n_head_kv: hp.n_head_kv,
        head_dim: hp.head_dim_k,
        scale,
        softcap: 0.0,
    }
}

/// `x *= s`.
pub fn scale(x: &mut [f32], s: f32) {
    let _t = profile::scope(Op::Other);
    Ops::detected().scale(x, s);
}
