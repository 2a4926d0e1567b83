//! `qwen2moe`: Qwen1.5-MoE-A2.7B, Qwen2-57B-A14B — the Qwen2 decoder (biases on the query, key
//! and value projections, "neox" RoPE) whose every feed-forward block is a mixture of experts:
//! softmax over all experts, the top `expert_used_count` weighed by their probabilities as they
//! are (not renormalised), SwiGLU experts, plus a shared SwiGLU expert (`ffn_*_shexp`,
//! `expert_shared_feed_forward_length` wide) scaled per token by `σ(ffn_gate_inp_shexp · x)`.

use kernels::ops::rope::RopeMode;

use super::blocks::{AttentionParts, MoeParts, Shared};
use super::llama::{self, DecoderParts};
use crate::model::{Binder, HParams, LoadError};
use crate::moe::{ExpertAct, Gating};

/// The llama decoder's weights with experts; `forward` is [`llama::forward`].
pub type Weights = llama::Weights;

pub fn bind(hp: &HParams, b: &Binder<'_, '_>) -> Result<Weights, LoadError> {
    llama::Weights::bind_decoder(
        hp,
        b,
        DecoderParts {
            attn: AttentionParts {
                bias: true,
                qk_norm: false,
            },
            rope_mode: RopeMode::Neox,
            moe: Some(MoeParts {
                gating: Gating::Softmax,
                norm_weights: false,
                // llama.cpp reads no `expert_weights_scale` for this architecture.
                weights_scale: 0.0,
                act: ExpertAct::Silu,
                gated: true,
                biases: false,
                probs_bias: false,
                shared: Shared::SigmoidGated,
            }),
            no_rope_step: 0,
            temperature: None,
        },
    )
}
