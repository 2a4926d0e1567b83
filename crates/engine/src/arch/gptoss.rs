//! `gpt-oss`: OpenAI's gpt-oss (20B, 120B) — a pre-norm decoder whose attention has biases on
//! the q/k/v and output projections and a learned sink logit per head (`attn_sinks`), slides
//! over `attention.sliding_window` positions in every other layer (the even ones, llama.cpp's
//! pattern 2), and rotates by "neox" RoPE with YaRN; every feed-forward block is a mixture of
//! experts chosen by the router logits (plus bias), weighed by a softmax over the chosen
//! logits alone, with biased experts and the `swiglu_oai` activation (α 1.702, limit 7).

use kernels::ops::rope::{Rope, RopeMode};

use super::blocks::{
    self, Attention, AttentionConfig, AttentionExtras, AttentionParts, MoeParts, Shared,
};
use crate::exec::{Backend, Buf};
use crate::model::{Binder, HParams, Keys, LoadError, MatRef};
use crate::moe::{ExpertAct, Gating, Moe};

/// Layers `il` with `il % SWA_PATTERN < SWA_PATTERN − 1` use the sliding window.
pub const SWA_PATTERN: usize = 2;

/// llama.cpp's constants of `LLM_FFN_SWIGLU_OAI_MOE`.
pub const SWIGLU_ALPHA: f32 = 1.702;
pub const SWIGLU_LIMIT: f32 = 7.0;

pub struct Layer {
    /// `[n_embd]`
    pub attn_norm: Vec<f32>,
    pub attn: Attention,
    /// `[n_embd]`
    pub attn_out_bias: Vec<f32>,
    /// `[n_head]`
    pub sinks: Vec<f32>,
    /// The norm before the experts (`post_attention_norm` in the file), `[n_embd]`.
    pub ffn_norm: Vec<f32>,
    pub moe: Moe,
    /// Whether this layer attends within the sliding window only.
    pub is_swa: bool,
}

pub struct Weights {
    /// `[n_vocab × n_embd]`
    pub tok_embd: MatRef,
    pub layers: Vec<Layer>,
    /// `[n_embd]`
    pub output_norm: Vec<f32>,
    /// `[n_vocab × n_embd]`
    pub output: MatRef,
    pub rope: Rope,
}

impl Weights {
    pub fn bind(
        hp: &HParams,
        b: &Binder<'_, '_>,
        keys: &Keys<'_, '_>,
    ) -> Result<Weights, LoadError> {
        let parts = MoeParts {
            gating: Gating::SoftmaxWeight,
            norm_weights: false,
            weights_scale: keys.opt_f32("expert_weights_scale")?.unwrap_or(0.0),
            act: ExpertAct::SwigluOai {
                alpha: SWIGLU_ALPHA,
                limit: SWIGLU_LIMIT,
            },
            gated: true,
            biases: true,
            probs_bias: false,
            shared: Shared::None,
        };
        let threads = crate::context::default_threads();
        let (tok_embd, layers) = b.join(
            || b.embedding("token_embd.weight", hp.n_vocab, hp.n_embd),
            || {
                b.par_map(hp.n_layer, threads, |il| {
                    let n = |t: &str| format!("blk.{il}.{t}");
                    Ok(Layer {
                        attn_norm: b.vec(&n("attn_norm.weight"), hp.n_embd)?,
                        attn: Attention::bind(
                            b,
                            il,
                            hp,
                            AttentionParts {
                                bias: true,
                                qk_norm: false,
                            },
                        )?,
                        attn_out_bias: b.vec(&n("attn_output.bias"), hp.n_embd)?,
                        sinks: b.vec(&n("attn_sinks.weight"), hp.n_head)?,
                        ffn_norm: b.vec(&n("post_attention_norm.weight"), hp.n_embd)?,
                        moe: blocks::bind_moe(b, il, hp, parts)?,
                        is_swa: hp.sliding_window.is_some() && il % SWA_PATTERN < SWA_PATTERN - 1,
                    })
                })
            },
        )?;
        Ok(Weights {
            tok_embd,
            layers,
            output_norm: b.vec("output_norm.weight", hp.n_embd)?,
            output: b.mat("output.weight", hp.n_vocab, hp.n_embd)?,
            rope: blocks::make_rope(
                hp,
                RopeMode::Neox,
                hp.rope_freq_base,
                hp.rope_freq_scale,
                None,
            )?,
        })
    }
}

pub fn forward(hp: &HParams, w: &Weights, x: &mut dyn Backend) {
    x.embed(&w.tok_embd, 1.0);
    for (il, l) in w.layers.iter().enumerate() {
        let cfg = AttentionConfig {
            rope: &w.rope,
            q_scale: 1.0,
            kq_scale: 1.0 / (hp.n_rot as f32).sqrt(),
            window: if l.is_swa { hp.sliding_window } else { None },
        };
        let extras = AttentionExtras {
            sinks: &l.sinks,
            out_bias: Some(&l.attn_out_bias),
            ..AttentionExtras::default()
        };
        x.rms_norm(Buf::X, &l.attn_norm, Buf::H);
        blocks::self_attention_with(hp, x, il, &l.attn, &cfg, extras);
        x.add(Buf::X, Buf::H);

        x.rms_norm(Buf::X, &l.ffn_norm, Buf::H);
        x.moe(&l.moe, Buf::H, Buf::H);
        x.add(Buf::X, Buf::H);
    }
}
