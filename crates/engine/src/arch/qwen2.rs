//! `qwen2`: Qwen2 / Qwen2.5 — the llama decoder with biases on the query, key and value
//! projections and RoPE in the "neox" (split halves) layout.

use super::blocks::{AttentionConfig, AttentionParts};
use super::llama;
use crate::compute::RopeParams;
use crate::context::{Batch, State};
use crate::model::{Binder, HParams, LoadError, Model};

pub type Weights = llama::Weights;

pub fn bind(hp: &HParams, b: &Binder<'_, '_>) -> Result<Weights, LoadError> {
    llama::Weights::bind_with(hp, b, AttentionParts { bias: true, qk_norm: false })
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
