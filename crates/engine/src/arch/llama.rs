//! `llama`: Llama 2/3, Mistral, SmolLM2 — pre-norm decoder with grouped-query attention,
//! RoPE in the "normal" (adjacent pairs) layout with optional per-dimension frequency factors
//! (`rope_freqs`, Llama 3.1), and a SwiGLU feed-forward block.
//!
//! Qwen2, Qwen3, Qwen3 MoE, SmolLM3 and Ministral 3 are this decoder with other attention
//! parts, RoPE layout or feed-forward block (a mixture of experts); their files reuse
//! [`Weights::bind_decoder`] and [`forward_decoder`].

use super::blocks::{
    self, Attention, AttentionConfig, AttentionExtras, AttentionParts, Ffn, MoeParts,
};
use kernels::ops::rope::{Rope, RopeMode};

use crate::exec::{Activation, AttnTemperature, Backend, Buf};
use crate::model::{Binder, HParams, LoadError, MatRef};
use crate::moe::Moe;

pub struct Layer {
    /// `[n_embd]`
    pub attn_norm: Vec<f32>,
    pub attn: Attention,
    /// `[n_embd]`
    pub ffn_norm: Vec<f32>,
    pub ffn: FeedForward,
}

/// A layer's feed-forward block. (Built once per layer at load, so the variants' sizes do not
/// matter.)
#[allow(clippy::large_enum_variant)]
pub enum FeedForward {
    Dense(Ffn),
    Experts(Moe),
}

/// Which parts a decoder has.
#[derive(Clone, Copy)]
pub struct DecoderParts {
    pub attn: AttentionParts,
    pub rope_mode: RopeMode,
    /// A mixture of experts in every layer instead of the dense feed-forward block.
    pub moe: Option<MoeParts>,
    /// See [`Weights::no_rope_step`].
    pub no_rope_step: usize,
    pub temperature: Option<AttnTemperature>,
}

pub struct Weights {
    /// `[n_vocab × n_embd]`
    pub tok_embd: MatRef,
    pub layers: Vec<Layer>,
    /// `[n_embd]`
    pub output_norm: Vec<f32>,
    /// `[n_vocab × n_embd]`; the token embedding when the model ties them.
    pub output: MatRef,
    /// RoPE with the model's base, scaling and (Llama 3.1) `rope_freqs` divisors.
    pub rope: Rope,
    /// Layers `il` with `(il + 1) % no_rope_step == 0` skip RoPE (SmolLM3: 4); 0: none skip.
    pub no_rope_step: usize,
    /// Query temperature by position (Ministral 3).
    pub temperature: Option<AttnTemperature>,
}

impl Weights {
    pub fn bind(hp: &HParams, b: &Binder<'_, '_>) -> Result<Weights, LoadError> {
        Weights::bind_with(
            hp,
            b,
            AttentionParts {
                bias: false,
                qk_norm: false,
            },
            RopeMode::Normal,
        )
    }

    /// Binds the decoder with the given optional attention parts.
    pub fn bind_with(
        hp: &HParams,
        b: &Binder<'_, '_>,
        parts: AttentionParts,
        rope_mode: RopeMode,
    ) -> Result<Weights, LoadError> {
        Weights::bind_decoder(
            hp,
            b,
            DecoderParts {
                attn: parts,
                rope_mode,
                moe: None,
                no_rope_step: 0,
                temperature: None,
            },
        )
    }

    /// Binds the decoder with the given parts.
    pub fn bind_decoder(
        hp: &HParams,
        b: &Binder<'_, '_>,
        parts: DecoderParts,
    ) -> Result<Weights, LoadError> {
        let rope_mode = parts.rope_mode;
        let threads = crate::context::default_threads();
        let (tok_embd, layers) = b.join(
            || b.embedding("token_embd.weight", hp.n_vocab, hp.n_embd),
            || {
                b.par_map(hp.n_layer, threads, |il| {
                    Ok(Layer {
                        attn_norm: b.vec(&format!("blk.{il}.attn_norm.weight"), hp.n_embd)?,
                        attn: Attention::bind(b, il, hp, parts.attn)?,
                        ffn_norm: b.vec(&format!("blk.{il}.ffn_norm.weight"), hp.n_embd)?,
                        ffn: match parts.moe {
                            None => FeedForward::Dense(Ffn::bind(b, il, hp)?),
                            Some(m) => FeedForward::Experts(blocks::bind_moe(b, il, hp, m)?),
                        },
                    })
                })
            },
        )?;
        let output = b.opt_mat("output.weight", hp.n_vocab, hp.n_embd)?;
        Ok(Weights {
            output: output.unwrap_or_else(|| tok_embd.clone()),
            tok_embd,
            layers,
            output_norm: b.vec("output_norm.weight", hp.n_embd)?,
            rope: blocks::make_rope(
                hp,
                rope_mode,
                hp.rope_freq_base,
                hp.rope_freq_scale,
                b.opt_vec("rope_freqs.weight", hp.n_rot / 2)?.as_deref(),
            )?,
            no_rope_step: parts.no_rope_step,
            temperature: parts.temperature,
        })
    }
}

impl Weights {
    /// Whether layer `il` rotates its queries and keys (see [`Weights::no_rope_step`]).
    pub fn has_rope(&self, il: usize) -> bool {
        self.no_rope_step == 0 || !(il + 1).is_multiple_of(self.no_rope_step)
    }
}

pub fn forward(hp: &HParams, w: &Weights, x: &mut dyn Backend) {
    let cfg = AttentionConfig {
        rope: &w.rope,
        q_scale: 1.0,
        kq_scale: 1.0 / (hp.head_dim_k as f32).sqrt(),
        window: None,
    };
    forward_decoder(hp, w, x, &cfg);
}

/// The pre-norm decoder: embed; per layer `x += attn(norm(x))`, `x += ffn(norm(x))`.
pub fn forward_decoder(hp: &HParams, w: &Weights, x: &mut dyn Backend, cfg: &AttentionConfig<'_>) {
    x.embed(&w.tok_embd, 1.0);
    for (il, l) in w.layers.iter().enumerate() {
        x.rms_norm(Buf::X, &l.attn_norm, Buf::H);
        let extras = AttentionExtras {
            rope: w.has_rope(il),
            temperature: w.temperature,
            ..AttentionExtras::default()
        };
        blocks::self_attention_with(hp, x, il, &l.attn, cfg, extras);
        x.add(Buf::X, Buf::H);

        x.rms_norm(Buf::X, &l.ffn_norm, Buf::H);
        match &l.ffn {
            FeedForward::Dense(f) => blocks::feed_forward(x, f, Activation::Silu),
            FeedForward::Experts(m) => x.moe(m, Buf::H, Buf::H),
        }
        x.add(Buf::X, Buf::H);
    }
}
