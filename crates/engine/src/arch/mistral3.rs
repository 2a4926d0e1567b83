//! `mistral3`: Ministral 3 (3B, 8B, 14B) — the llama decoder ("normal" RoPE with YaRN scaling,
//! optional `rope_freqs`, SwiGLU) whose queries are multiplied after RoPE by Llama 4's
//! attention temperature `1 + attention.temperature_scale · ln(⌊p / n_ctx_orig⌋ + 1)`, where
//! `n_ctx_orig` is `rope.scaling.original_context_length`. A file with experts has a mixture
//! of experts in every layer (softmax gating, renormalised, as llama.cpp builds it).

use kernels::ops::rope::RopeMode;

use super::blocks::{AttentionParts, MoeParts, Shared};
use super::llama::{self, DecoderParts};
use crate::exec::AttnTemperature;
use crate::model::{Binder, HParams, Keys, LoadError};
use crate::moe::{ExpertAct, Gating};

/// The llama decoder's weights; `forward` is [`llama::forward`].
pub type Weights = llama::Weights;

pub fn bind(hp: &HParams, b: &Binder<'_, '_>, keys: &Keys<'_, '_>) -> Result<Weights, LoadError> {
    if hp.n_ff_shexp > 0 {
        return Err(LoadError::BadHParam {
            key: "mistral3.expert_shared_feed_forward_length".into(),
            reason: "shared experts (Granite MoE) are not supported yet".into(),
        });
    }
    let temperature = match keys.opt_f32("attention.temperature_scale")? {
        Some(scale) if scale != 0.0 => Some(AttnTemperature {
            scale,
            floor: hp.n_ctx_orig,
            offset: 0.0,
        }),
        _ => None,
    };
    let moe = (hp.n_expert > 0)
        .then(|| -> Result<MoeParts, LoadError> {
            Ok(MoeParts {
                gating: Gating::Softmax,
                norm_weights: true,
                weights_scale: keys.opt_f32("expert_weights_scale")?.unwrap_or(0.0),
                act: ExpertAct::Silu,
                gated: true,
                biases: false,
                probs_bias: false,
                shared: Shared::None,
            })
        })
        .transpose()?;
    llama::Weights::bind_decoder(
        hp,
        b,
        DecoderParts {
            attn: AttentionParts {
                bias: false,
                qk_norm: false,
            },
            rope_mode: RopeMode::Normal,
            moe,
            no_rope_step: 0,
            temperature,
        },
    )
}
