//! Blocks shared by the decoder architectures, as plain functions over a [`Backend`]:
//! self-attention with RoPE and the KV cache, the gated feed-forward block, and RoPE
//! construction.
//!
//! Data flow convention: a block reads its input from `H` (the normed residual stream) and
//! writes its output back to `H`; the caller adds it to `X`.

use kernels::ops::rope::{Rope, RopeMode, RopeParams};

use crate::exec::{Activation, AttnTemperature, Backend, Buf};
use crate::model::{Binder, HParams, LoadError, MatRef};
use crate::moe::{ExpertAct, Gating, Moe, SharedExperts};

/// The weights of one self-attention block.
pub struct Attention {
    /// `[n_embd → n_head·head_dim]`
    pub wq: MatRef,
    /// `[n_embd → n_head_kv·head_dim]`
    pub wk: MatRef,
    /// `[n_embd → n_head_kv·head_dim_v]`
    pub wv: MatRef,
    /// `[n_head·head_dim_v → n_embd]`
    pub wo: MatRef,
    /// Projection biases (Qwen2).
    pub bias: Option<QkvBias>,
    /// Per-head RMS norms of queries and keys before RoPE (Qwen3, Gemma 3), `[head_dim]` each.
    pub qk_norm: Option<(Vec<f32>, Vec<f32>)>,
}

/// Biases of the query, key and value projections.
pub struct QkvBias {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

/// Which optional parts an architecture's attention has.
#[derive(Clone, Copy)]
pub struct AttentionParts {
    pub bias: bool,
    pub qk_norm: bool,
}

impl Attention {
    pub fn bind(
        b: &Binder<'_, '_>,
        il: usize,
        hp: &HParams,
        parts: AttentionParts,
    ) -> Result<Attention, LoadError> {
        let n = |t: &str| format!("blk.{il}.{t}");
        let (q_w, k_w, v_w) = (hp.n_embd_q(), hp.n_embd_k_gqa(), hp.n_embd_v_gqa());
        let bias = if parts.bias {
            Some(QkvBias {
                q: b.vec(&n("attn_q.bias"), q_w)?,
                k: b.vec(&n("attn_k.bias"), k_w)?,
                v: b.vec(&n("attn_v.bias"), v_w)?,
            })
        } else {
            None
        };
        let qk_norm = if parts.qk_norm {
            Some((
                b.vec(&n("attn_q_norm.weight"), hp.head_dim_k)?,
                b.vec(&n("attn_k_norm.weight"), hp.head_dim_k)?,
            ))
        } else {
            None
        };
        // One fused `attn_qkv` (Phi-3) or three matrices, as llama.cpp accepts either.
        let qkv = n("attn_qkv.weight");
        let (wq, wk, wv) = if b.has(&qkv) {
            let [q, k, v] = b.mat_parts(&qkv, [q_w, k_w, v_w], hp.n_embd)?;
            (q, k, v)
        } else {
            (
                b.mat(&n("attn_q.weight"), q_w, hp.n_embd)?,
                b.mat(&n("attn_k.weight"), k_w, hp.n_embd)?,
                b.mat(&n("attn_v.weight"), v_w, hp.n_embd)?,
            )
        };
        Ok(Attention {
            wq,
            wk,
            wv,
            wo: b.mat(
                &n("attn_output.weight"),
                hp.n_embd,
                hp.n_head * hp.head_dim_v,
            )?,
            bias,
            qk_norm,
        })
    }
}

/// How one layer's attention is computed.
pub struct AttentionConfig<'a> {
    pub rope: &'a Rope,
    /// Multiplies the queries after RoPE (Gemma 3's `f_attention_scale`), or 1.
    pub q_scale: f32,
    /// Multiplies `q·k` before the softmax.
    pub kq_scale: f32,
    /// Sliding window: a query at position p sees keys at positions > p − window.
    pub window: Option<usize>,
}

/// Self-attention of layer `il`: projections, optional bias and QK-norm, RoPE, KV-cache write,
/// attention over the cache, output projection. Input and output in `H`.
pub fn self_attention(
    hp: &HParams,
    x: &mut dyn Backend,
    il: usize,
    a: &Attention,
    cfg: &AttentionConfig<'_>,
) {
    self_attention_with(hp, x, il, a, cfg, AttentionExtras::default());
}

/// Per-layer variations of [`self_attention`].
#[derive(Clone, Copy, Debug)]
pub struct AttentionExtras<'a> {
    /// Rotate queries and keys (SmolLM3 leaves RoPE out of every fourth layer).
    pub rope: bool,
    /// Llama 4 / Ministral 3 query temperature by position, after RoPE.
    pub temperature: Option<AttnTemperature>,
    /// A sink logit per query head (gpt-oss), or empty.
    pub sinks: &'a [f32],
    /// Bias of the output projection (gpt-oss).
    pub out_bias: Option<&'a [f32]>,
}

impl Default for AttentionExtras<'_> {
    fn default() -> Self {
        AttentionExtras {
            rope: true,
            temperature: None,
            sinks: &[],
            out_bias: None,
        }
    }
}

/// [`self_attention`] with [`AttentionExtras`].
pub fn self_attention_with(
    hp: &HParams,
    x: &mut dyn Backend,
    il: usize,
    a: &Attention,
    cfg: &AttentionConfig<'_>,
    extras: AttentionExtras<'_>,
) {
    x.matmul_many(Buf::H, &[(&a.wq, Buf::Q), (&a.wk, Buf::K), (&a.wv, Buf::V)]);
    if let Some(bias) = &a.bias {
        x.add_bias(Buf::Q, &bias.q);
        x.add_bias(Buf::K, &bias.k);
        x.add_bias(Buf::V, &bias.v);
    }
    if let Some((qn, kn)) = &a.qk_norm {
        x.rms_norm_rows(Buf::Q, qn);
        x.rms_norm_rows(Buf::K, kn);
    }
    if extras.rope {
        x.rope(Buf::Q, hp.n_head, cfg.rope);
        x.rope(Buf::K, hp.n_head_kv, cfg.rope);
    }
    if let Some(t) = extras.temperature {
        x.scale_by_position(Buf::Q, t);
    }
    if cfg.q_scale != 1.0 {
        x.scale(Buf::Q, cfg.q_scale);
    }
    if extras.sinks.is_empty() {
        x.attention(il, cfg.kq_scale, cfg.window);
    } else {
        x.attention_sinks(il, cfg.kq_scale, cfg.window, extras.sinks);
    }
    x.matmul(&a.wo, Buf::Att, Buf::H);
    if let Some(b) = extras.out_bias {
        x.add_bias(Buf::H, b);
    }
}

/// The gated feed-forward block: `down(act(gate(x)) · up(x))`.
pub struct Ffn {
    /// `[n_embd → n_ff]`
    pub gate: MatRef,
    /// `[n_embd → n_ff]`
    pub up: MatRef,
    /// `[n_ff → n_embd]`
    pub down: MatRef,
}

impl Ffn {
    pub fn bind(b: &Binder<'_, '_>, il: usize, hp: &HParams) -> Result<Ffn, LoadError> {
        let n = |t: &str| format!("blk.{il}.{t}");
        let (gate, up) = (n("ffn_gate.weight"), n("ffn_up.weight"));
        if !b.has(&gate) && b.has(&up) {
            // Phi-3 keeps the gate in the first half of an `ffn_up` twice as tall; any other
            // `ffn_up` means the gate is missing.
            let [gate_part, up_part] =
                b.mat_parts(&up, [hp.n_ff, hp.n_ff], hp.n_embd)
                    .map_err(|e| match e {
                        LoadError::TensorShape { .. } => LoadError::MissingTensor(gate),
                        e => e,
                    })?;
            return Ok(Ffn {
                gate: gate_part,
                up: up_part,
                down: b.mat(&n("ffn_down.weight"), hp.n_embd, hp.n_ff)?,
            });
        }
        Ok(Ffn {
            gate: b.mat(&n("ffn_gate.weight"), hp.n_ff, hp.n_embd)?,
            up: b.mat(&n("ffn_up.weight"), hp.n_ff, hp.n_embd)?,
            down: b.mat(&n("ffn_down.weight"), hp.n_embd, hp.n_ff)?,
        })
    }
}

/// Feed-forward block; input and output in `H`.
pub fn feed_forward(x: &mut dyn Backend, f: &Ffn, act: Activation) {
    x.matmul_many(Buf::H, &[(&f.gate, Buf::FfA), (&f.up, Buf::FfB)]);
    x.gated_activation(act);
    x.matmul(&f.down, Buf::FfA, Buf::H);
}

/// The RoPE of a layer, built once at load from the hyper-parameters.
pub fn make_rope(
    hp: &HParams,
    mode: RopeMode,
    freq_base: f32,
    freq_scale: f32,
    freq_factors: Option<&[f32]>,
) -> Result<Rope, LoadError> {
    make_rope_n(hp, hp.n_rot, mode, freq_base, freq_scale, freq_factors)
}

/// [`make_rope`] rotating `n_rot` dimensions of each head (layers that differ).
pub fn make_rope_n(
    hp: &HParams,
    n_rot: usize,
    mode: RopeMode,
    freq_base: f32,
    freq_scale: f32,
    freq_factors: Option<&[f32]>,
) -> Result<Rope, LoadError> {
    let params = RopeParams {
        mode,
        n_rot,
        freq_base,
        freq_scale,
        ext_factor: hp.yarn_ext_factor,
        attn_factor: hp.yarn_attn_factor,
        beta_fast: hp.yarn_beta_fast,
        beta_slow: hp.yarn_beta_slow,
        n_ctx_orig: hp.n_ctx_orig,
    };
    Rope::new(params, freq_factors).map_err(|e| LoadError::BadHParam {
        key: "rope".into(),
        reason: e.to_string(),
    })
}

/// What an architecture's mixture-of-experts layers look like beyond their tensors.
#[derive(Clone, Copy)]
pub struct MoeParts {
    pub gating: Gating,
    pub norm_weights: bool,
    pub weights_scale: f32,
    pub act: ExpertAct,
    /// Whether the experts have `ffn_gate_exps` (otherwise `act(up)` alone).
    pub gated: bool,
    /// Per-expert biases and a router bias (gpt-oss).
    pub biases: bool,
    /// A selection bias `exp_probs_b`.
    pub probs_bias: bool,
    /// Shared experts `ffn_{gate,up,down}_shexp` (`n_ff_shexp` wide, else `n_ff`), with the
    /// same activation as the routed ones.
    pub shared: Shared,
}

/// Whether an architecture's MoE layers have shared experts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shared {
    None,
    /// Shared experts whose output is added as it is.
    Plain,
    /// Shared experts times `σ(ffn_gate_inp_shexp · x)` (Qwen2-MoE).
    SigmoidGated,
}

/// Binds layer `il`'s mixture of experts: router `ffn_gate_inp`, experts
/// `ffn_{gate,up,down}_exps` (and their biases when `parts.biases`), shared experts as
/// `parts.shared` says. As llama.cpp, a gated layer takes a fused `ffn_gate_up_exps` when the
/// file has one, and per-expert scales `ffn_{gate,up,down}_exps.scale` wherever present.
pub fn bind_moe(
    b: &Binder<'_, '_>,
    il: usize,
    hp: &HParams,
    parts: MoeParts,
) -> Result<Moe, LoadError> {
    let n = |t: &str| format!("blk.{il}.{t}");
    let (d, ne, f) = (hp.n_embd, hp.n_expert, hp.layer(il).n_ff_exp);
    if ne == 0 || hp.n_expert_used == 0 || f == 0 {
        return Err(LoadError::BadHParam {
            key: "expert_count".into(),
            reason: format!(
                "a mixture-of-experts layer needs expert_count, expert_used_count and \
                 expert_feed_forward_length (found {ne}, {}, {f} for layer {il})",
                hp.n_expert_used
            ),
        });
    }
    let vec2 = |t: &str, w: usize| -> Result<Option<Vec<f32>>, LoadError> {
        if parts.biases {
            Ok(Some(b.dense_f32(&n(t), ne, w)?))
        } else {
            Ok(None)
        }
    };
    let fused = parts.gated && b.has(&n("ffn_gate_up_exps.weight"));
    // A fused gate_up's per-expert biases: one `ffn_gate_up_exps.bias` of `2·f` per expert (the
    // gate's `f`, then the up's), added to the fused product before it is split — llama.cpp's
    // `gate_up_exps_b` in `build_moe_ffn` (the same sums as separate gate and up biases).
    let fused_bias = if fused && parts.biases {
        let both = b.dense_f32(&n("ffn_gate_up_exps.bias"), ne, 2 * f)?;
        let half = |h: usize| -> Vec<f32> {
            both.chunks_exact(2 * f)
                .flat_map(|e| e[h * f..(h + 1) * f].iter().copied())
                .collect()
        };
        Some((half(0), half(1)))
    } else {
        None
    };
    let (gate, up) = if fused {
        let [g, u] = b.experts_halves(&n("ffn_gate_up_exps.weight"), ne, f, d)?;
        (Some(g), u)
    } else {
        let gate = if parts.gated {
            Some(b.experts(&n("ffn_gate_exps.weight"), ne, f, d)?)
        } else {
            None
        };
        (gate, b.experts(&n("ffn_up_exps.weight"), ne, f, d)?)
    };
    let shared = match parts.shared {
        Shared::None => None,
        Shared::Plain | Shared::SigmoidGated => {
            let fs = if hp.n_ff_shexp > 0 {
                hp.n_ff_shexp
            } else {
                hp.n_ff
            };
            let gated = parts.shared == Shared::SigmoidGated;
            Some(SharedExperts {
                ffn: Ffn {
                    gate: b.mat(&n("ffn_gate_shexp.weight"), fs, d)?,
                    up: b.mat(&n("ffn_up_shexp.weight"), fs, d)?,
                    down: b.mat(&n("ffn_down_shexp.weight"), d, fs)?,
                },
                act: parts.act,
                gate_inp: if gated {
                    Some(b.mat(&n("ffn_gate_inp_shexp.weight"), 1, d)?)
                } else {
                    None
                },
                gate_inp_f32: if gated {
                    b.dense_f32(&n("ffn_gate_inp_shexp.weight"), 1, d)?
                } else {
                    Vec::new()
                },
            })
        }
    };
    let scale = |t: &str| b.opt_vec(&n(t), ne);
    Ok(Moe {
        router: b.mat(&n("ffn_gate_inp.weight"), ne, d)?,
        router_f32: b.dense_f32(&n("ffn_gate_inp.weight"), ne, d)?,
        router_bias: if parts.biases {
            Some(b.vec(&n("ffn_gate_inp.bias"), ne)?)
        } else {
            None
        },
        probs_bias: if parts.probs_bias {
            Some(b.vec(&n("exp_probs_b.bias"), ne)?)
        } else {
            None
        },
        gate,
        up,
        fused_gate_up: fused,
        down: b.experts(&n("ffn_down_exps.weight"), ne, d, f)?,
        gate_bias: match &fused_bias {
            Some((g, _)) => Some(g.clone()),
            None if parts.gated => vec2("ffn_gate_exps.bias", f)?,
            None => None,
        },
        up_bias: match fused_bias {
            Some((_, u)) => Some(u),
            None => vec2("ffn_up_exps.bias", f)?,
        },
        down_bias: vec2("ffn_down_exps.bias", d)?,
        // llama.cpp loads no scale for a fused gate_up (its `ffn_up_exps.scale` belongs to a
        // separate up tensor).
        gate_scale: if fused {
            None
        } else {
            scale("ffn_gate_exps.scale")?
        },
        up_scale: if fused {
            None
        } else {
            scale("ffn_up_exps.scale")?
        },
        down_scale: scale("ffn_down_exps.scale")?,
        shared,
        gating: parts.gating,
        norm_weights: parts.norm_weights,
        weights_scale: parts.weights_scale,
        act: parts.act,
        n_used: hp.n_expert_used,
        exact: b.ggml_order(),
    })
}
