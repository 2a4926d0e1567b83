//! Blocks shared by the decoder architectures, as plain functions over the preallocated
//! [`State`]: token embedding, self-attention with RoPE and the KV cache, the gated
//! feed-forward block, and the output head.
//!
//! Data flow convention: a block reads its input from `st.h` (the normed residual stream,
//! `n_tokens × n_embd`) and writes its output back to `st.h`; the caller adds it to `st.x`.

use kernels::ops::rope::Rope;

use crate::compute::{self, Activation};
use crate::context::{Batch, State};
use crate::model::{Binder, HParams, LoadError, MatRef, Model};

/// The weights of one self-attention block.
pub struct Attention {
    /// `[n_embd → n_head·head_dim]`
    pub wq: MatRef,
    /// `[n_embd → n_head_kv·head_dim]`
    pub wk: MatRef,
    /// `[n_embd → n_head_kv·head_dim_v]`
    pub wv: MatRef,
    /// `[n_head·head_dim_v → n_embd]`
    pub wo: MatRef,
    /// Projection biases (Qwen2).
    pub bias: Option<QkvBias>,
    /// Per-head RMS norms of queries and keys before RoPE (Qwen3, Gemma 3), `[head_dim]` each.
    pub qk_norm: Option<(Vec<f32>, Vec<f32>)>,
}

/// Biases of the query, key and value projections.
pub struct QkvBias {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

/// Which optional parts an architecture's attention has.
#[derive(Clone, Copy)]
pub struct AttentionParts {
    pub bias: bool,
    pub qk_norm: bool,
}

impl Attention {
    pub fn bind(
        b: &Binder<'_, '_>,
        il: usize,
        hp: &HParams,
        parts: AttentionParts,
    ) -> Result<Attention, LoadError> {
        let n = |t: &str| format!("blk.{il}.{t}");
        let (q_w, k_w, v_w) = (hp.n_embd_q(), hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
        let bias = if parts.bias {
            Some(QkvBias {
                q: b.vec(&n("attn_q.bias"), q_w)?,
                k: b.vec(&n("attn_k.bias"), k_w)?,
                v: b.vec(&n("attn_v.bias"), v_w)?,
            })
        } else {
            None
        };
        let qk_norm = if parts.qk_norm {
            Some((
                b.vec(&n("attn_q_norm.weight"), hp.head_dim_k)?,
                b.vec(&n("attn_k_norm.weight"), hp.head_dim_k)?,
            ))
        } else {
            None
        };
        Ok(Attention {
            wq: b.mat(&n("attn_q.weight"), q_w, hp.n_embd)?,
            wk: b.mat(&n("attn_k.weight"), k_w, hp.n_embd)?,
            wv: b.mat(&n("attn_v.weight"), v_w, hp.n_embd)?,
            wo: b.mat(
                &n("attn_output.weight"),
                hp.n_embd,
                hp.n_head * hp.head_dim_v,
            )?,
            bias,
            qk_norm,
        })
    }
}

/// How one layer's attention is computed.
pub struct AttentionConfig<'a> {
    pub rope: &'a Rope,
    /// Multiplies the queries after RoPE (Gemma 3's `f_attention_scale`), or 1.
    pub q_scale: f32,
    /// Multiplies `q·k` before the softmax.
    pub kq_scale: f32,
    /// Sliding window: a query at position p sees keys at positions > p − window.
    pub window: Option<usize>,
}

/// Self-attention of layer `il`: projections, optional bias and QK-norm, RoPE, KV-cache write,
/// attention over the cache, output projection. Input and output in `st.h`.
pub fn self_attention(
    model: &Model,
    st: &mut State,
    il: usize,
    a: &Attention,
    cfg: &AttentionConfig<'_>,
    batch: &Batch<'_>,
) {
    let hp = &model.hparams;
    let n = batch.tokens.len();
    let (q_w, k_w, v_w) = (hp.n_embd_q(), hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
    let q = &mut st.q[..n * q_w];
    let k = &mut st.k[..n * k_w];
    let v = &mut st.v[..n * v_w];
    compute::matmul_many(
        &st.pool,
        &mut st.scratch,
        model,
        &[&a.wq, &a.wk, &a.wv],
        &st.h[..n * hp.n_embd],
        n,
        &mut [&mut *q, &mut *k, &mut *v],
    );
    if let Some(bias) = &a.bias {
        compute::add_bias(q, &bias.q);
        compute::add_bias(k, &bias.k);
        compute::add_bias(v, &bias.v);
    }
    if let Some((qn, kn)) = &a.qk_norm {
        compute::rms_norm_rows(q, qn, hp.rms_eps);
        compute::rms_norm_rows(k, kn, hp.rms_eps);
    }
    let positions = &st.positions[..n];
    compute::rope(q, hp.n_head, hp.head_dim_k, positions, cfg.rope);
    compute::rope(k, hp.n_head_kv, hp.head_dim_k, positions, cfg.rope);
    if cfg.q_scale != 1.0 {
        compute::scale(q, cfg.q_scale);
    }
    st.kv.store(il, batch.pos0, k, v);
    let att = &mut st.att[..n * hp.n_head * hp.head_dim_v];
    compute::attention(
        &st.pool,
        q,
        &st.kv,
        il,
        hp,
        batch.pos0,
        cfg.kq_scale,
        cfg.window,
        &mut st.attn_rows,
        &mut st.attn_scratch,
        att,
    );
    compute::matmul(
        &st.pool,
        &mut st.scratch,
        model,
        &a.wo,
        att,
        n,
        &mut st.h[..n * hp.n_embd],
    );
}

/// The gated feed-forward block: `down(act(gate(x)) · up(x))`.
pub struct Ffn {
    /// `[n_embd → n_ff]`
    pub gate: MatRef,
    /// `[n_embd → n_ff]`
    pub up: MatRef,
    /// `[n_ff → n_embd]`
    pub down: MatRef,
}

impl Ffn {
    pub fn bind(b: &Binder<'_, '_>, il: usize, hp: &HParams) -> Result<Ffn, LoadError> {
        let n = |t: &str| format!("blk.{il}.{t}");
        Ok(Ffn {
            gate: b.mat(&n("ffn_gate.weight"), hp.n_ff, hp.n_embd)?,
            up: b.mat(&n("ffn_up.weight"), hp.n_ff, hp.n_embd)?,
            down: b.mat(&n("ffn_down.weight"), hp.n_embd, hp.n_ff)?,
        })
    }
}

/// Feed-forward block; input and output in `st.h`.
pub fn feed_forward(model: &Model, st: &mut State, f: &Ffn, act: Activation, n: usize) {
    let hp = &model.hparams;
    let a = &mut st.ff_a[..n * hp.n_ff];
    let b = &mut st.ff_b[..n * hp.n_ff];
    compute::matmul_many(
        &st.pool,
        &mut st.scratch,
        model,
        &[&f.gate, &f.up],
        &st.h[..n * hp.n_embd],
        n,
        &mut [&mut *a, &mut *b],
    );
    compute::gated_activation(act, a, b, hp.n_ff);
    compute::matmul(
        &st.pool,
        &mut st.scratch,
        model,
        &f.down,
        a,
        n,
        &mut st.h[..n * hp.n_embd],
    );
}

/// Looks up the embeddings of the batch's tokens into `st.x`, times `scale`.
pub fn embed(model: &Model, st: &mut State, tok_embd: &MatRef, batch: &Batch<'_>, scale: f32) {
    let d = model.hparams.n_embd;
    for (row, &t) in st.x.chunks_exact_mut(d).zip(batch.tokens) {
        compute::dequantize_row(model, tok_embd, t as usize, row);
        if scale != 1.0 {
            row.iter_mut().for_each(|v| *v *= scale);
        }
    }
}
