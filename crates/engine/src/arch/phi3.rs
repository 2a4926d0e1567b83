//! `phi3`: Phi-3, Phi-3.5 and Phi-4-mini — the llama decoder with fused projections (`attn_qkv`,
//! and `ffn_up` holding the gate in its first half), RoPE in the "neox" layout over the first
//! `rope.dimension_count` dimensions of each head, queries scaled by `1/√head_dim` after RoPE,
//! and LongRoPE: two sets of per-dimension frequency divisors, the long ones used when the
//! context is longer than the training context (`rope.scaling.original_context_length`), the
//! choice made once per context ([`PerContext`]). A sliding window in the file is ignored, as
//! llama.cpp ignores it for this architecture.

use kernels::ops::rope::{Rope, RopeMode};

use super::PerContext;
use super::blocks::{self, AttentionConfig, AttentionParts};
use super::llama::{self, DecoderParts};
use crate::exec::Backend;
use crate::model::{Binder, HParams, LoadError};

pub struct Weights {
    /// The decoder, its `rope` with the short factors (or none, without LongRoPE).
    pub decoder: llama::Weights,
    /// RoPE with the long factors (`rope_factors_long`), when the file has them.
    pub rope_long: Option<Rope>,
}

impl Weights {
    pub fn bind(hp: &HParams, b: &Binder<'_, '_>) -> Result<Weights, LoadError> {
        let mut decoder = llama::Weights::bind_decoder(
            hp,
            b,
            DecoderParts {
                attn: AttentionParts {
                    bias: false,
                    qk_norm: false,
                },
                rope_mode: RopeMode::Neox,
                moe: None,
                no_rope_step: 0,
                temperature: None,
            },
        )?;
        let half = hp.n_rot / 2;
        let rope = |factors: Option<&[f32]>| {
            blocks::make_rope(
                hp,
                RopeMode::Neox,
                hp.rope_freq_base,
                hp.rope_freq_scale,
                factors,
            )
        };
        let long = b.opt_vec("rope_factors_long.weight", half)?;
        let short = b.opt_vec("rope_factors_short.weight", half)?;
        if long.is_some() != short.is_some() {
            return Err(LoadError::MissingTensor(
                if long.is_some() {
                    "rope_factors_short.weight"
                } else {
                    "rope_factors_long.weight"
                }
                .into(),
            ));
        }
        // `rope_freqs` (bound by the decoder) takes precedence, as in llama.cpp.
        if !b.has("rope_freqs.weight") {
            decoder.rope = rope(short.as_deref())?;
        }
        let rope_long = match long {
            Some(f) if !b.has("rope_freqs.weight") => Some(rope(Some(&f))?),
            _ => None,
        };
        Ok(Weights { decoder, rope_long })
    }

    /// The RoPE this context rotates with.
    pub fn rope(&self, c: &PerContext) -> &Rope {
        match &self.rope_long {
            Some(long) if c.long_rope => long,
            _ => &self.decoder.rope,
        }
    }
}

pub fn forward(hp: &HParams, w: &Weights, c: &PerContext, x: &mut dyn Backend) {
    let cfg = AttentionConfig {
        rope: w.rope(c),
        // As llama.cpp: queries scaled after RoPE, then attention with scale 1.
        q_scale: 1.0 / (hp.head_dim_k as f32).sqrt(),
        kq_scale: 1.0,
        window: None,
    };
    llama::forward_decoder(hp, &w.decoder, x, &cfg);
}
