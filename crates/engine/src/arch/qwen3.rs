//! `qwen3`: Qwen3 (dense) — the llama decoder with per-head RMS norms of queries and keys
//! before RoPE, RoPE in the "neox" (split halves) layout, and no projection biases.

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
            bias: false,
            qk_norm: true,
        },
        RopeMode::Neox,
    )
}
