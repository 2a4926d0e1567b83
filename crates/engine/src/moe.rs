//! Mixture of experts, once for every architecture that has it: the weights of one MoE layer
//! ([`Moe`]: the router, the experts' 3-D matrices, optional biases), how its gate works
//! ([`Gating`], [`ExpertAct`]), and the routing arithmetic as llama.cpp's CPU backend does it
//! (`build_moe_ffn` in `src/llama-graph.cpp`), so the results can equal its bit for bit:
//!
//! 1. router logits `ffn_gate_inp · x` in ggml's f32 order (`Ops::dots_f32_ggml`): llamafile's
//!    sgemm (16 FMA lanes, `_mm512_reduce_add_ps`) for a product of 2+ tokens whose width is a
//!    multiple of 16, else `ggml_vec_dot_f32` (64 lanes in four accumulators);
//! 2. probabilities: softmax over all experts (`ggml_soft_max`, [`softmax_ggml`]), sigmoid,
//!    or the logits themselves (gpt-oss); plus `exp_probs_b` for the choice only;
//! 3. the top `n_expert_used` experts by `ggml_argsort` (descending; ties: lower id first);
//! 4. their weights: the chosen probabilities, or (gpt-oss) a softmax over the chosen logits;
//!    optionally divided by their sum (`ggml_sum_rows`, summed in f64, clamped at 2⁻¹⁴) and
//!    multiplied by `expert_weights_scale`;
//! 5. each chosen expert's gated feed-forward block (gate and up from two tensors or from the
//!    two halves of one fused `ffn_gate_up_exps`), each product times its expert's scale where
//!    the file has one (`ffn_{gate,up,down}_exps.scale`), the output times its weight, and the
//!    outputs summed in the order of step 3: `((e₀ + e₁) + e₂) + …`;
//! 6. shared experts ([`SharedExperts`]: a dense gated block every token runs, optionally
//!    times `σ(ffn_gate_inp_shexp · x)`), added last.
//!
//! The CPU backend (`exec::Cpu::moe`) groups the tokens of a batch by expert, so each expert's
//! weights are read once per batch, and runs every expert product as llama.cpp's
//! `mul_mat_id` does: a Q4_K expert (which llama.cpp repacks) one token at a time through the
//! `gemv` kernel, other k-quants through the tiled mat-mul when 8 or more tokens chose the
//! expert and `ggml_vec_dot_*` otherwise.

use kernels::ops::ggml::{expf, tree16};

use crate::arch::blocks::Ffn;
use crate::model::{ExpertMats, MatRef};

/// How router logits become expert probabilities (`{arch}.expert_gating_func`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gating {
    /// Softmax over all experts (Qwen3 MoE, Mixtral).
    Softmax,
    /// Sigmoid of each logit (DeepSeek V3 style, with `exp_probs_b`).
    Sigmoid,
    /// The logits choose; a softmax over the chosen logits weighs (gpt-oss).
    SoftmaxWeight,
}

/// The gated activation of the experts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExpertAct {
    /// `silu(gate) · up`.
    Silu,
    /// `gelu(gate) · up`, GELU as ggml's tanh approximation (Gemma 4).
    Gelu,
    /// gpt-oss: `min(gate, limit) · σ(alpha · min(gate, limit)) · (clamp(up, ±limit) + 1)`.
    SwigluOai { alpha: f32, limit: f32 },
}

/// One mixture-of-experts feed-forward layer.
pub struct Moe {
    /// `[n_expert × n_embd]` router, as a kernel matrix.
    pub router: MatRef,
    /// The same router in f32, row-major, for ggml's exact single-token order.
    pub router_f32: Vec<f32>,
    /// Router bias `[n_expert]` (gpt-oss).
    pub router_bias: Option<Vec<f32>>,
    /// Selection bias `[n_expert]` added to the probabilities for the choice only
    /// (`exp_probs_b`).
    pub probs_bias: Option<Vec<f32>>,
    /// `n_expert × [n_ff_exp × n_embd]`; absent for ungated experts.
    pub gate: Option<ExpertMats>,
    /// `n_expert × [n_ff_exp × n_embd]`
    pub up: ExpertMats,
    /// `gate` and `up` are the first and second halves of each expert's rows of one fused
    /// `ffn_gate_up_exps` tensor (both named after it): its products are one product to the
    /// imatrix observer.
    pub fused_gate_up: bool,
    /// `n_expert × [n_embd × n_ff_exp]`
    pub down: ExpertMats,
    /// Per-expert biases, `[n_expert × width]` row-major (gpt-oss).
    pub gate_bias: Option<Vec<f32>>,
    pub up_bias: Option<Vec<f32>>,
    pub down_bias: Option<Vec<f32>>,
    /// Per-expert scales `[n_expert]` multiplying each product's output, before its bias
    /// (`ffn_{gate,up,down}_exps.scale`; Gemma 4's `per_expert_scale` is the down one).
    pub gate_scale: Option<Vec<f32>>,
    pub up_scale: Option<Vec<f32>>,
    pub down_scale: Option<Vec<f32>>,
    /// Experts every token runs, beside the routed ones (Qwen2-MoE).
    pub shared: Option<SharedExperts>,
    pub gating: Gating,
    /// Divide the chosen weights by their sum.
    pub norm_weights: bool,
    /// Multiply the chosen weights by this (1: none).
    pub weights_scale: f32,
    pub act: ExpertAct,
    pub n_used: usize,
    /// Compute the router in llama.cpp's float order (`Ops::dots_f32_ggml`).
    pub exact: bool,
}

/// Shared experts: a dense gated feed-forward block on the same input as the routed experts,
/// its output added to theirs, as llama.cpp's `ffn_*_shexp` (`n_ff_shexp` wide).
pub struct SharedExperts {
    pub ffn: Ffn,
    pub act: ExpertAct,
    /// `[1 × n_embd]` `ffn_gate_inp_shexp`: when present, each token's output is multiplied by
    /// `σ(gate_inp · x)`, computed as ggml does, `silu(g) / g`.
    pub gate_inp: Option<MatRef>,
    /// The same gate in f32 for ggml's float order (`Ops::dots_f32_ggml`).
    pub gate_inp_f32: Vec<f32>,
}

impl Moe {
    pub fn n_expert(&self) -> usize {
        self.up.experts.len()
    }

    pub fn n_ff(&self) -> usize {
        self.up.rows
    }
}

/// `ggml_soft_max` of one row in place, as ggml-cpu computes it with AVX-512: the maximum,
/// `ggml_v_expf(x − max)` on whole blocks of 16 (each block's sum by `_mm512_reduce_add_ps`
/// added to an f64 total), libm's `expf` on the rest (added one by one), then every value
/// times `(float)(1 / total)`.
pub fn softmax_ggml(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let blocks = x.len() & !15;
    let mut sum = 0.0f64;
    for block in x[..blocks].chunks_exact_mut(16) {
        let mut e = [0.0f32; 16];
        for (o, v) in e.iter_mut().zip(block.iter_mut()) {
            *v = expf(*v - max);
            *o = *v;
        }
        sum += f64::from(tree16(&e));
    }
    for v in &mut x[blocks..] {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let s = (1.0 / sum) as f32;
    x.iter_mut().for_each(|v| *v *= s);
}

/// `ggml_sigmoid` of one value: `1 / (1 + expf(−x))`.
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The chosen experts of one token and their weights, from its router logits (in place:
/// `logits` becomes the probabilities). `sel` and `w` receive `n_used` each, in ggml's order:
/// descending selection score, the lower id first on ties (ggml's `std::sort` is an insertion
/// sort, hence stable, up to 16 experts; beyond that equal scores may come in another order).
pub fn route(m: &Moe, logits: &mut [f32], sel: &mut [u32], w: &mut [f32]) {
    if let Some(b) = &m.router_bias {
        logits.iter_mut().zip(b).for_each(|(l, b)| *l += b);
    }
    match m.gating {
        Gating::Softmax => softmax_ggml(logits),
        Gating::Sigmoid => logits.iter_mut().for_each(|v| *v = sigmoid(*v)),
        Gating::SoftmaxWeight => {}
    }
    let probs: &[f32] = logits;
    let k = sel.len();
    // The top k by insertion into a sorted list (`w` holds the scores meanwhile).
    let mut len = 0;
    for (e, &p) in probs.iter().enumerate() {
        let s = match &m.probs_bias {
            Some(b) => p + b[e],
            None => p,
        };
        let mut pos = len;
        while pos > 0 && w[pos - 1] < s {
            pos -= 1;
        }
        if pos < k {
            let end = len.min(k - 1);
            sel.copy_within(pos..end, pos + 1);
            w.copy_within(pos..end, pos + 1);
            sel[pos] = e as u32;
            w[pos] = s;
            len = (len + 1).min(k);
        }
    }
    for (wi, &e) in w.iter_mut().zip(sel.iter()) {
        *wi = probs[e as usize];
    }
    if m.gating == Gating::SoftmaxWeight {
        softmax_ggml(w);
    }
    if m.norm_weights {
        let sum = w.iter().fold(0.0f64, |s, &v| s + f64::from(v)) as f32;
        let sum = sum.max(6.103_515_6e-5);
        w.iter_mut().for_each(|v| *v /= sum);
    }
    if m.weights_scale != 0.0 && m.weights_scale != 1.0 {
        w.iter_mut().for_each(|v| *v *= m.weights_scale);
    }
}

/// The shared experts' gate of one token from `g = gate_inp · x`: llama.cpp's
/// `ggml_div(ggml_silu(g), g)` — `silu` of a one-value row takes ggml's scalar
/// `g / (1 + expf(−g))`.
pub fn shared_gate(g: f32) -> f32 {
    (g / (1.0 + (-g).exp())) / g
}

/// gpt-oss's gated activation in place of `gate`, as ggml's `swiglu_oai`:
/// `x = min(gate, limit)`, `y = clamp(up, −limit, limit)`, `x / (1 + expf(alpha · −x)) · (y + 1)`.
pub fn swiglu_oai(gate: &mut [f32], up: &[f32], alpha: f32, limit: f32) {
    for (g, &u) in gate.iter_mut().zip(up) {
        let x = g.min(limit);
        let y = u.clamp(-limit, limit);
        let glu = x / (1.0 + (alpha * -x).exp());
        *g = glu * (y + 1.0);
    }
}
