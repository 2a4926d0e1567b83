//! `gemma4`: Gemma 4 (text) — Gemma 3's block (√n_embd-scaled embeddings, norms before and
//! after attention and the feed-forward block, GeGLU, per-head QK-norm) with layers that
//! differ: sliding-window layers and full-attention layers have their own head size, KV heads
//! and RoPE ([`LayerShape`], set per layer with [`Backend::set_layer`]). On top of Gemma 3:
//!
//! - values are RMS-normed (without a weight), and a layer without `attn_v` uses its keys,
//!   before their norm and RoPE, as values (`attention_k_eq_v`);
//! - no query scaling (`f_attention_scale` = 1);
//! - full-attention layers rotate with `rope_freqs` as frequency divisors ("proportional"
//!   RoPE: the pairs past the rotated fraction get a huge divisor and stay put);
//! - the last `attention.shared_kv_layers` layers compute only queries and attend over the
//!   cache of the last earlier layer of their kind ([`LayerShape::kv_layer`]);
//! - the E models' per-layer embeddings: a second token table of `n_embd_per_layer` values per
//!   layer, mixed with a projection of the token embedding, gates a small residual branch at
//!   the end of every layer;
//! - each layer's output is multiplied by its `layer_output_scale`, and the logits are
//!   soft-capped (`final_logit_softcapping`) — see [`Weights::logit_softcap`];
//! - the 26B-A4B's layers run a mixture of experts beside the dense MLP ([`Experts`]): GeGLU
//!   experts (a fused `ffn_gate_up_exps` or separate gate and up), softmax over all experts,
//!   the top `expert_used_count` renormalised, each expert's output times its
//!   `ffn_down_exps.scale`. The router reads the attention output's weightless RMS norm times
//!   `1/√n_embd` times `ffn_gate_inp.scale`, the experts its norm by `pre_ffw_norm_2`; each
//!   branch has its own output norm before the two are added.
//!
//! The order of every operation is llama.cpp's `src/models/gemma4.cpp`.

use super::blocks::{self, Ffn, MoeParts, Shared};
use kernels::ops::rope::{Rope, RopeMode};

use crate::exec::{Activation, Backend, Buf};
use crate::model::{Binder, HParams, Keys, LayerShape, LoadError, MatRef};
use crate::moe::{ExpertAct, Gating, Moe};

/// RoPE base of the sliding-window layers when the file does not say.
const DEFAULT_FREQ_BASE_SWA: f32 = 10_000.0;

/// The key and value projections of a layer with a KV cache of its own.
pub struct KvProj {
    /// `[n_embd → n_head_kv·head_dim]`
    pub wk: MatRef,
    /// `[n_embd → n_head_kv·head_dim]`; `None`: the keys are the values.
    pub wv: Option<MatRef>,
    /// `[head_dim]`
    pub k_norm: Vec<f32>,
}

/// One layer's per-layer-embedding branch.
pub struct PerLayer {
    /// `[n_embd → n_embd_per_layer]`
    pub inp_gate: MatRef,
    /// `[n_embd_per_layer → n_embd]`
    pub proj: MatRef,
    /// `[n_embd]`
    pub post_norm: Vec<f32>,
}

/// The mixture of experts of a 26B-A4B layer, beside its dense MLP.
pub struct Experts {
    /// `ffn_gate_inp.scale`: multiplies the router's input, `[n_embd]`.
    pub router_scale: Vec<f32>,
    /// The dense MLP's output norm (`post_ffw_norm_1`), `[n_embd]`.
    pub post_norm_1: Vec<f32>,
    /// The experts' input norm (`pre_ffw_norm_2`), `[n_embd]`.
    pub pre_norm_2: Vec<f32>,
    /// The experts' output norm (`post_ffw_norm_2`), `[n_embd]`.
    pub post_norm_2: Vec<f32>,
    pub moe: Moe,
}

pub struct Layer {
    /// `[n_embd]`
    pub attn_norm: Vec<f32>,
    /// `[n_embd → n_head·head_dim]`
    pub wq: MatRef,
    /// `[head_dim]`
    pub q_norm: Vec<f32>,
    /// `None` on shared-KV layers.
    pub kv: Option<KvProj>,
    /// `[n_head·head_dim → n_embd]`
    pub wo: MatRef,
    /// `[n_embd]`
    pub post_attention_norm: Vec<f32>,
    /// `[n_embd]`
    pub ffn_norm: Vec<f32>,
    pub ffn: Ffn,
    /// 26B-A4B: experts beside `ffn`.
    pub experts: Option<Experts>,
    /// `[n_embd]`
    pub post_ffw_norm: Vec<f32>,
    pub per_layer: Option<PerLayer>,
    /// `layer_output_scale`, when present.
    pub out_scale: Option<f32>,
    /// Sliding-window or full attention, head size, KV heads, the cache it reads.
    pub shape: LayerShape,
    pub rope: Rope,
}

/// The per-layer embedding tables of the E models.
pub struct PerLayerInput {
    /// `[n_vocab × n_layer·n_embd_per_layer]`
    pub tok_embd: MatRef,
    /// `[n_embd → n_layer·n_embd_per_layer]`
    pub model_proj: MatRef,
    /// `[n_embd_per_layer]`
    pub proj_norm: Vec<f32>,
}

pub struct Weights {
    /// `[n_vocab × n_embd]`, also the LM head unless `output.weight` exists.
    pub tok_embd: MatRef,
    pub per_layer_input: Option<PerLayerInput>,
    pub layers: Vec<Layer>,
    /// `[n_embd]`
    pub output_norm: Vec<f32>,
    pub output: MatRef,
    /// `final_logit_softcapping` (0: none).
    pub final_softcap: f32,
    /// Weight of the RMS norms without one (values, the router's input): ones
    /// (`[max(head_dim, n_embd)]`).
    ones: Vec<f32>,
}

impl Weights {
    pub fn bind(
        hp: &HParams,
        b: &Binder<'_, '_>,
        keys: &Keys<'_, '_>,
    ) -> Result<Weights, LoadError> {
        let freq_base_swa = keys
            .opt_f32("rope.freq_base_swa")?
            .unwrap_or(DEFAULT_FREQ_BASE_SWA);
        if !(freq_base_swa.is_finite() && freq_base_swa > 0.0) {
            return Err(LoadError::BadHParam {
                key: "gemma4.rope.freq_base_swa".into(),
                reason: format!("{freq_base_swa} is not a positive number"),
            });
        }
        let final_softcap = keys.opt_f32("final_logit_softcapping")?.unwrap_or(0.0);
        if !(final_softcap.is_finite() && final_softcap >= 0.0) {
            return Err(LoadError::BadHParam {
                key: "gemma4.final_logit_softcapping".into(),
                reason: format!("{final_softcap} is not a non-negative number"),
            });
        }
        let ple = hp.n_embd_per_layer;
        // The full-attention layers' frequency divisors (one tensor for all of them).
        let full_head = hp.layers.iter().find(|l| !l.is_swa).map(|l| l.head_dim);
        let rope_freqs = match full_head {
            Some(hd) => Some(b.vec("rope_freqs.weight", hd / 2)?),
            None => None,
        };
        let threads = crate::context::default_threads();
        let (tok_embd, layers) = b.join(
            || b.embedding("token_embd.weight", hp.n_vocab, hp.n_embd),
            || {
                b.par_map(hp.n_layer, threads, |il| {
                    bind_layer(hp, b, il, freq_base_swa, rope_freqs.as_deref())
                })
            },
        )?;
        let per_layer_input = if ple > 0 {
            Some(PerLayerInput {
                tok_embd: b.lookup_table(
                    "per_layer_token_embd.weight",
                    hp.n_vocab,
                    hp.n_layer * ple,
                )?,
                model_proj: b.mat("per_layer_model_proj.weight", hp.n_layer * ple, hp.n_embd)?,
                proj_norm: b.vec("per_layer_proj_norm.weight", ple)?,
            })
        } else {
            None
        };
        Ok(Weights {
            output: b
                .opt_mat("output.weight", hp.n_vocab, hp.n_embd)?
                .unwrap_or_else(|| tok_embd.clone()),
            tok_embd,
            per_layer_input,
            layers,
            output_norm: b.vec("output_norm.weight", hp.n_embd)?,
            final_softcap,
            ones: vec![1.0; hp.head_dim_k.max(hp.n_embd)],
        })
    }

    /// The RoPE of layer `il`'s keys (for re-rotating cached keys after a position shift).
    pub fn layer_rope(&self, il: usize) -> &Rope {
        &self.layers[il.min(self.layers.len() - 1)].rope
    }

    /// The final logit soft-cap, when the model has one.
    pub fn logit_softcap(&self) -> Option<f32> {
        (self.final_softcap > 0.0).then_some(self.final_softcap)
    }
}

fn bind_layer(
    hp: &HParams,
    b: &Binder<'_, '_>,
    il: usize,
    freq_base_swa: f32,
    rope_freqs: Option<&[f32]>,
) -> Result<Layer, LoadError> {
    let n = |t: &str| format!("blk.{il}.{t}");
    let l = hp.layer(il);
    let (q_w, kv_w) = (l.n_embd_q(hp.n_head), l.n_embd_kv());
    if b.has(&n("attn_qkv.weight")) {
        return Err(LoadError::BadHParam {
            key: n("attn_qkv.weight"),
            reason: "fused QKV projections are not supported yet".into(),
        });
    }
    let experts = if b.has(&n("ffn_gate_inp.weight")) {
        let parts = MoeParts {
            gating: Gating::Softmax,
            norm_weights: true,
            weights_scale: 1.0,
            act: ExpertAct::Gelu,
            gated: true,
            biases: false,
            probs_bias: false,
            shared: Shared::None,
        };
        Some(Experts {
            router_scale: b.vec(&n("ffn_gate_inp.scale"), hp.n_embd)?,
            post_norm_1: b.vec(&n("post_ffw_norm_1.weight"), hp.n_embd)?,
            pre_norm_2: b.vec(&n("pre_ffw_norm_2.weight"), hp.n_embd)?,
            post_norm_2: b.vec(&n("post_ffw_norm_2.weight"), hp.n_embd)?,
            moe: blocks::bind_moe(b, il, hp, parts)?,
        })
    } else {
        None
    };
    let kv = if l.has_kv(il) {
        Some(KvProj {
            wk: b.mat(&n("attn_k.weight"), kv_w, hp.n_embd)?,
            wv: b.opt_mat(&n("attn_v.weight"), kv_w, hp.n_embd)?,
            k_norm: b.vec(&n("attn_k_norm.weight"), l.head_dim)?,
        })
    } else {
        None
    };
    let per_layer = if hp.n_embd_per_layer > 0 {
        Some(PerLayer {
            inp_gate: b.mat(&n("inp_gate.weight"), hp.n_embd_per_layer, hp.n_embd)?,
            proj: b.mat(&n("proj.weight"), hp.n_embd, hp.n_embd_per_layer)?,
            post_norm: b.vec(&n("post_norm.weight"), hp.n_embd)?,
        })
    } else {
        None
    };
    let (base, scale, factors) = if l.is_swa {
        (freq_base_swa, 1.0, None)
    } else {
        (hp.rope_freq_base, hp.rope_freq_scale, rope_freqs)
    };
    Ok(Layer {
        attn_norm: b.vec(&n("attn_norm.weight"), hp.n_embd)?,
        wq: b.mat(&n("attn_q.weight"), q_w, hp.n_embd)?,
        q_norm: b.vec(&n("attn_q_norm.weight"), l.head_dim)?,
        kv,
        wo: b.mat(&n("attn_output.weight"), hp.n_embd, q_w)?,
        post_attention_norm: b.vec(&n("post_attention_norm.weight"), hp.n_embd)?,
        ffn_norm: b.vec(&n("ffn_norm.weight"), hp.n_embd)?,
        ffn: Ffn {
            gate: b.mat(&n("ffn_gate.weight"), l.n_ff, hp.n_embd)?,
            up: b.mat(&n("ffn_up.weight"), l.n_ff, hp.n_embd)?,
            down: b.mat(&n("ffn_down.weight"), hp.n_embd, l.n_ff)?,
        },
        experts,
        post_ffw_norm: b.vec(&n("post_ffw_norm.weight"), hp.n_embd)?,
        per_layer,
        out_scale: b.opt_vec(&n("layer_output_scale.weight"), 1)?.map(|v| v[0]),
        shape: l,
        rope: blocks::make_rope_n(hp, l.n_rot, RopeMode::Neox, base, scale, factors)?,
    })
}

pub fn forward(hp: &HParams, w: &Weights, x: &mut dyn Backend) {
    let ple = hp.n_embd_per_layer;
    x.embed(&w.tok_embd, (hp.n_embd as f32).sqrt());
    if let Some(p) = &w.per_layer_input {
        // llama.cpp's project_per_layer_inputs: (norm(proj(x) / √n_embd) + table · √ple) / √2
        x.embed_to(&p.tok_embd, (ple as f32).sqrt(), Buf::Ple);
        x.matmul(&p.model_proj, Buf::X, Buf::PleProj);
        x.scale(Buf::PleProj, 1.0 / (hp.n_embd as f32).sqrt());
        x.rms_norm_rows(Buf::PleProj, &p.proj_norm);
        x.add(Buf::PleProj, Buf::Ple);
        x.scale(Buf::PleProj, 1.0 / 2.0f32.sqrt());
    }
    for (il, l) in w.layers.iter().enumerate() {
        x.set_layer(il);
        let s = &l.shape;
        x.rms_norm(Buf::X, &l.attn_norm, Buf::H);

        // attention
        let window = if s.is_swa { hp.sliding_window } else { None };
        match &l.kv {
            Some(kv) => {
                match &kv.wv {
                    Some(wv) => {
                        x.matmul_many(Buf::H, &[(&l.wq, Buf::Q), (&kv.wk, Buf::K), (wv, Buf::V)])
                    }
                    None => {
                        x.matmul_many(Buf::H, &[(&l.wq, Buf::Q), (&kv.wk, Buf::K)]);
                        x.copy(Buf::V, Buf::K);
                    }
                }
                x.rms_norm_rows(Buf::Q, &l.q_norm);
                x.rope(Buf::Q, hp.n_head, &l.rope);
                x.rms_norm_rows(Buf::K, &kv.k_norm);
                x.rms_norm_rows(Buf::V, &w.ones[..s.head_dim]);
                x.rope(Buf::K, s.n_head_kv, &l.rope);
                x.attention(il, 1.0, window);
            }
            None => {
                x.matmul(&l.wq, Buf::H, Buf::Q);
                x.rms_norm_rows(Buf::Q, &l.q_norm);
                x.rope(Buf::Q, hp.n_head, &l.rope);
                x.attention_shared(s.kv_layer, 1.0, window);
            }
        }
        x.matmul(&l.wo, Buf::Att, Buf::H);
        x.rms_norm_rows(Buf::H, &l.post_attention_norm);
        x.add(Buf::X, Buf::H);

        // feed-forward: the dense MLP, and (26B-A4B) the experts beside it
        x.rms_norm(Buf::X, &l.ffn_norm, Buf::H);
        blocks::feed_forward(x, &l.ffn, Activation::Gelu);
        if let Some(e) = &l.experts {
            x.rms_norm_rows(Buf::H, &e.post_norm_1);
            x.rms_norm(Buf::X, &e.pre_norm_2, Buf::Experts);
            // the router's input: rms_norm(x) / √n_embd · ffn_gate_inp.scale
            x.rms_norm(Buf::X, &w.ones[..hp.n_embd], Buf::Router);
            x.scale(Buf::Router, 1.0 / (hp.n_embd as f32).sqrt());
            x.mul_row(Buf::Router, &e.router_scale);
            x.moe(&e.moe, Buf::Experts, Buf::Router);
            x.rms_norm_rows(Buf::Experts, &e.post_norm_2);
            x.add(Buf::H, Buf::Experts);
        }
        x.rms_norm_rows(Buf::H, &l.post_ffw_norm);
        x.add(Buf::X, Buf::H);

        // per-layer embedding branch
        if let Some(p) = &l.per_layer {
            x.matmul(&p.inp_gate, Buf::X, Buf::PleH);
            x.gelu(Buf::PleH);
            x.mul_slice(Buf::PleH, Buf::PleProj, il * ple);
            x.matmul(&p.proj, Buf::PleH, Buf::H);
            x.rms_norm_rows(Buf::H, &p.post_norm);
            x.add(Buf::X, Buf::H);
        }
        if let Some(s) = l.out_scale {
            x.scale(Buf::X, s);
        }
    }
}
