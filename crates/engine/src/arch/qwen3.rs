//! `qwen3`: Qwen3 (dense) — the llama decoder with per-head RMS norms of queries and keys
//! before RoPE, RoPE in the "neox" (split halves) layout, and no projection biases.

use super::blocks::{AttentionConfig, AttentionParts};
use super::llama;
use crate::compute::RopeParams;
use crate::context::{Batch, State};
use crate::model::{Binder, HParams, LoadError, Model};

pub type Weights = llama::Weights;

pub fn bind(hp: &HParams, b: &Binder<'_, '_>) -> Result<Weights, LoadError> {
    llama::Weights::bind_with(hp, b, AttentionParts { bias: false, qk_norm: true })
}

pub fn forward(model: &Model, w: &Weights, st: &mut State, batch: &Batch<'_>) {
    let hp = &model.hparams;
    let cfg = AttentionConfig {
        rope: RopeParams::neox(hp, hp.rope_freq_base, hp.rope_freq_scale),
        kq_scale: 1.0 / (hp.head_dim_k as f32).sqrt(),
        window: None,
    };
    llama::forward_decoder(model, w, st, batch, &cfg);
}
