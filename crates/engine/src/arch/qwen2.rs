//! `qwen2`: Qwen2 / Qwen2.5 — the llama decoder with biases on the query, key and value
//! projections and RoPE in the "neox" (split halves) layout.

use kernels::ops::rope::RopeMode;

use super::blocks::AttentionParts;
use super::llama;
use crate::model::{Binder, HParams, LoadError};

/// The llama decoder's weights; `forward` is [`llama::forward`].
pub type Weights = llama::Weights;

pub fn bind(hp: &HParams, b: &Binder<'_, '_>) -> Result<Weights, LoadError> {
    llama::Weights::bind_with(
        hp,
        b,
        AttentionParts {
            bias: true,
            qk_norm: false,
        },
        RopeMode::Neox,
    )
}
