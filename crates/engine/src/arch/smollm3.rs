//! `smollm3`: SmolLM3 — the llama decoder (grouped-query attention, "normal" RoPE, SwiGLU)
//! without RoPE in every fourth layer (`(il + 1) % 4 == 0`, fixed in llama.cpp as in
//! transformers' `no_rope_layer_interval`).

use kernels::ops::rope::RopeMode;

use super::blocks::AttentionParts;
use super::llama::{self, DecoderParts};
use crate::model::{Binder, HParams, LoadError};

/// The llama decoder's weights; `forward` is [`llama::forward`].
pub type Weights = llama::Weights;

/// RoPE is left out of layers `il` with `(il + 1) % NO_ROPE_STEP == 0`.
pub const NO_ROPE_STEP: usize = 4;

pub fn bind(hp: &HParams, b: &Binder<'_, '_>) -> Result<Weights, LoadError> {
    llama::Weights::bind_decoder(
        hp,
        b,
        DecoderParts {
            attn: AttentionParts {
                bias: false,
                qk_norm: false,
            },
            rope_mode: RopeMode::Normal,
            moe: None,
            no_rope_step: NO_ROPE_STEP,
            temperature: None,
        },
    )
}
