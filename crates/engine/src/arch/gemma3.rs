//! `gemma3`: Gemma 3 (text) — embeddings scaled by √n_embd, per-head QK-norm, norms both
//! before and after attention and the feed-forward block, GeGLU (tanh GELU), and interleaved
//! sliding-window and global attention layers with their own RoPE bases; the LM head is the
//! token embedding.

use super::blocks::{self, Attention, AttentionConfig, AttentionParts, Ffn};
use kernels::ops::rope::{Rope, RopeMode};

use crate::exec::{Activation, Backend, Buf};
use crate::model::{Binder, HParams, Keys, LoadError, MatRef};

/// Every `SWA_PATTERN`-th layer is global; the others use the sliding window (llama.cpp's
/// `set_swa_pattern(6)` for Gemma 3).
const SWA_PATTERN: usize = 6;
/// RoPE base of the sliding-window layers when the file does not say.
const DEFAULT_FREQ_BASE_SWA: f32 = 10_000.0;

pub struct Layer {
    /// `[n_embd]`
    pub attn_norm: Vec<f32>,
    pub attn: Attention,
    /// `[n_embd]`, applied to the attention output before the residual add.
    pub post_attention_norm: Vec<f32>,
    /// `[n_embd]`
    pub ffn_norm: Vec<f32>,
    pub ffn: Ffn,
    /// `[n_embd]`, applied to the feed-forward output before the residual add.
    pub post_ffw_norm: Vec<f32>,
    /// Whether this layer attends within the sliding window only.
    pub is_swa: bool,
}

pub struct Weights {
    /// `[n_vocab × n_embd]`, also the LM head unless `output.weight` exists.
    pub tok_embd: MatRef,
    pub layers: Vec<Layer>,
    /// `[n_embd]`
    pub output_norm: Vec<f32>,
    pub output: MatRef,
    /// RoPE of the global layers (the model's base and scaling).
    pub rope_global: Rope,
    /// RoPE of the sliding-window layers (their own base, unscaled).
    pub rope_local: Rope,
    /// Scale applied to queries (`f_attention_scale`).
    pub attention_scale: f32,
}

impl Weights {
    pub fn bind(
        hp: &HParams,
        b: &Binder<'_, '_>,
        keys: &Keys<'_, '_>,
    ) -> Result<Weights, LoadError> {
        let parts = AttentionParts {
            bias: false,
            qk_norm: true,
        };
        let threads = crate::context::default_threads();
        let (tok_embd, layers) = b.join(
            || b.embedding("token_embd.weight", hp.n_vocab, hp.n_embd),
            || {
                b.par_map(hp.n_layer, threads, |il| {
                    let n = |t: &str| format!("blk.{il}.{t}");
                    Ok(Layer {
                        attn_norm: b.vec(&n("attn_norm.weight"), hp.n_embd)?,
                        attn: Attention::bind(b, il, hp, parts)?,
                        post_attention_norm: b.vec(&n("post_attention_norm.weight"), hp.n_embd)?,
                        ffn_norm: b.vec(&n("ffn_norm.weight"), hp.n_embd)?,
                        ffn: Ffn::bind(b, il, hp)?,
                        post_ffw_norm: b.vec(&n("post_ffw_norm.weight"), hp.n_embd)?,
                        is_swa: hp.sliding_window.is_some() && il % SWA_PATTERN < SWA_PATTERN - 1,
                    })
                })
            },
        )?;
        let freq_base_swa = keys
            .opt_f32("rope.freq_base_swa")?
            .unwrap_or(DEFAULT_FREQ_BASE_SWA);
        if !(freq_base_swa.is_finite() && freq_base_swa > 0.0) {
            return Err(LoadError::BadHParam {
                key: "gemma3.rope.freq_base_swa".into(),
                reason: format!("{freq_base_swa} is not a positive number"),
            });
        }
        // Gemma 3 27B scales queries by its model width per head; the others by the head size.
        let attention_scale = if hp.n_layer == 62 {
            1.0 / ((hp.n_embd / hp.n_head) as f32).sqrt()
        } else {
            1.0 / (hp.head_dim_k as f32).sqrt()
        };
        Ok(Weights {
            output: b
                .opt_mat("output.weight", hp.n_vocab, hp.n_embd)?
                .unwrap_or_else(|| tok_embd.clone()),
            tok_embd,
            layers,
            output_norm: b.vec("output_norm.weight", hp.n_embd)?,
            rope_global: blocks::make_rope(
                hp,
                RopeMode::Neox,
                hp.rope_freq_base,
                hp.rope_freq_scale,
                None,
            )?,
            rope_local: blocks::make_rope(hp, RopeMode::Neox, freq_base_swa, 1.0, None)?,
            attention_scale,
        })
    }
}

pub fn forward(hp: &HParams, w: &Weights, x: &mut dyn Backend) {
    let global = AttentionConfig {
        rope: &w.rope_global,
        // As llama.cpp: queries scaled after RoPE, then attention with scale 1.
        q_scale: w.attention_scale,
        kq_scale: 1.0,
        window: None,
    };
    let local = AttentionConfig {
        rope: &w.rope_local,
        window: hp.sliding_window,
        ..global
    };
    x.embed(&w.tok_embd, (hp.n_embd as f32).sqrt());
    for (il, l) in w.layers.iter().enumerate() {
        let cfg = if l.is_swa { &local } else { &global };
        x.rms_norm(Buf::X, &l.attn_norm, Buf::H);
        blocks::self_attention(hp, x, il, &l.attn, cfg);
        x.rms_norm_rows(Buf::H, &l.post_attention_norm);
        x.add(Buf::X, Buf::H);

        x.rms_norm(Buf::X, &l.ffn_norm, Buf::H);
        blocks::feed_forward(x, &l.ffn, Activation::Gelu);
        x.rms_norm_rows(Buf::H, &l.post_ffw_norm);
        x.add(Buf::X, Buf::H);
    }
}

impl Weights {
    /// The RoPE of layer `il`'s keys (for re-rotating cached keys after a position shift).
    pub fn layer_rope(&self, il: usize) -> &Rope {
        match self.layers.get(il) {
            Some(l) if l.is_swa => &self.rope_local,
            _ => &self.rope_global,
        }
    }
}
