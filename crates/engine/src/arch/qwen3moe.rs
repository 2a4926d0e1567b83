//! `qwen3moe`: Qwen3 MoE (Qwen3-30B-A3B, Qwen3-Coder-30B-A3B, Qwen3-235B-A22B) — the Qwen3
//! decoder (per-head QK RMS norms, "neox" RoPE) whose every feed-forward block is a mixture of
//! experts: softmax over all experts, the top `expert_used_count`, their probabilities
//! renormalised to sum to 1 (llama.cpp always renormalises for this architecture), SwiGLU
//! experts.

use kernels::ops::rope::RopeMode;

use super::blocks::{AttentionParts, MoeParts, Shared};
use super::llama::{self, DecoderParts};
use crate::model::{Binder, HParams, Keys, LoadError};
use crate::moe::{ExpertAct, Gating};

/// The llama decoder's weights with experts; `forward` is [`llama::forward`].
pub type Weights = llama::Weights;

pub fn bind(hp: &HParams, b: &Binder<'_, '_>, keys: &Keys<'_, '_>) -> Result<Weights, LoadError> {
    llama::Weights::bind_decoder(
        hp,
        b,
        DecoderParts {
            attn: AttentionParts {
                bias: false,
                qk_norm: true,
            },
            rope_mode: RopeMode::Neox,
            moe: Some(MoeParts {
                gating: Gating::Softmax,
                norm_weights: true,
                weights_scale: keys.opt_f32("expert_weights_scale")?.unwrap_or(0.0),
                act: ExpertAct::Silu,
                gated: true,
                biases: false,
                probs_bias: false,
                shared: Shared::None,
            }),
            no_rope_step: 0,
            temperature: None,
        },
    )
}
