//! The reference forward pass: every architecture written out plainly in f64 — loops for the
//! matrix products, the formulas for RMS norm, RoPE (both layouts, linear scaling, frequency
//! factors), causal softmax attention with GQA and a sliding window, SwiGLU and tanh-GeGLU.
//! Nothing here shares code with the engine or the kernels.
//!
//! [`Fault`] switches one detail to a plausible mistake, so the tests can show that their
//! tolerance catches that mistake (a tolerance that a wrong model also meets proves nothing).

use super::{Config, Weights};

/// A deliberate mistake in the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Pairs `(2k, 2k+1)` where the model wants `(k, k+n_rot/2)`, and the other way round.
    RopeLayout,
    /// RoPE ignores the linear scaling factor.
    RopeUnscaled,
    /// RoPE ignores `rope_freqs`.
    RopeNoFreqFactors,
    /// Sliding-window layers use the global RoPE base.
    RopeLocalBase,
    /// The q/k/v biases are left out.
    NoBias,
    /// The per-head q/k norms are left out.
    NoQkNorm,
    /// The post-attention and post-feed-forward norms are left out.
    NoPostNorms,
    /// The window lets one key more in.
    WindowOffByOne,
    /// Every layer attends to the whole prefix.
    NoWindow,
    /// The global layers use the sliding window too.
    WindowEverywhere,
    /// The embedding is not multiplied by √n_embd.
    NoEmbdScale,
    /// Attention scores scaled by 1/√n_embd instead of 1/√head_dim.
    KqScale,
    /// SiLU where the model wants GELU, and the other way round.
    Activation,
    /// GQA maps query head `h` to kv head `h % n_head_kv` instead of `h / group`.
    GqaInterleaved,
    /// The chosen experts' weights are not renormalised to sum to 1.
    MoeNoNorm,
    /// One expert fewer per token.
    MoeTopKShort,
    /// Sigmoid of the router logits instead of their softmax.
    MoeSigmoid,
    /// RoPE in every layer (SmolLM3 leaves every fourth out).
    RopeEveryLayer,
    /// The query temperature is left out.
    NoTemperature,
    /// The attention sinks are left out.
    NoSinks,
    /// gpt-oss's weights: the chosen experts' probabilities from a softmax over all experts
    /// instead of a softmax over the chosen logits.
    MoeSoftmaxAll,
    /// gpt-oss's activation as plain SwiGLU.
    PlainSwiglu,
    /// The experts' biases are left out.
    NoExpertBias,
    /// The shared expert is left out.
    MoeNoShared,
    /// The shared expert's output is not multiplied by its sigmoid gate.
    MoeSharedUngated,
}

fn rms_norm(x: &[f64], w: &[f32], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + eps).sqrt();
    x.iter()
        .zip(w)
        .map(|(v, &g)| v * inv * f64::from(g))
        .collect()
}

/// `W · x` for a row-major `[n_out][x.len()]` matrix.
fn matvec(w: &[f32], x: &[f64]) -> Vec<f64> {
    w.chunks_exact(x.len())
        .map(|row| row.iter().zip(x).map(|(&a, b)| f64::from(a) * b).sum())
        .collect()
}

fn add_into(x: &mut [f64], y: &[f64]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn gelu_tanh(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh())
}

/// Rotates the first `n_rot` values of one head at `pos`.
fn rope(
    head: &mut [f64],
    pos: usize,
    n_rot: usize,
    base: f64,
    scale: f64,
    ff: Option<&[f32]>,
    neox: bool,
) {
    for k in 0..n_rot / 2 {
        let inv_freq = base.powf(-2.0 * k as f64 / n_rot as f64);
        let divisor = ff.map_or(1.0, |f| f64::from(f[k]));
        let angle = pos as f64 * scale * inv_freq / divisor;
        let (i, j) = if neox {
            (k, k + n_rot / 2)
        } else {
            (2 * k, 2 * k + 1)
        };
        let (a, b) = (head[i], head[j]);
        head[i] = a * angle.cos() - b * angle.sin();
        head[j] = a * angle.sin() + b * angle.cos();
    }
}

/// Options of [`forward`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub fault: Option<Fault>,
    /// Round as the engine (and llama.cpp's CPU backend) does: keys and values to f16 in the
    /// KV cache, queries and attention probabilities to f16, GELU through f16.
    pub f16_kv: bool,
}

/// Logits at every position of `tokens` (fed from position 0).
pub fn forward(cfg: &Config, w: &Weights, tokens: &[u32], opt: Options) -> Vec<Vec<f64>> {
    forward_tapped(cfg, w, tokens, opt, &mut |_, _| {})
}

/// [`forward`], showing `tap` the input vector of every product with a layer's weight matrix
/// (named as in the GGUF file), position by position.
pub fn forward_tapped(
    cfg: &Config,
    w: &Weights,
    tokens: &[u32],
    opt: Options,
    tap: &mut dyn FnMut(&str, &[f64]),
) -> Vec<Vec<f64>> {
    let fault = |f: Fault| opt.fault == Some(f);
    let eps = f64::from(cfg.rms_eps);
    let (d, hd, n_head, n_kv) = (cfg.n_embd, cfg.head_dim, cfg.n_head, cfg.n_head_kv);
    let group = n_head / n_kv;
    let gemma = cfg.arch.is_gemma();
    let neox = cfg.arch.rope_neox() != fault(Fault::RopeLayout);
    let round = |v: f64| {
        if opt.f16_kv {
            f64::from(half::f16::from_f64(v).to_f32())
        } else {
            v
        }
    };

    let embd_scale = if gemma && !fault(Fault::NoEmbdScale) {
        (d as f64).sqrt()
    } else {
        1.0
    };
    let mut x: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&t| {
            let row = &w.tok_embd[t as usize * d..(t as usize + 1) * d];
            row.iter().map(|&v| f64::from(v) * embd_scale).collect()
        })
        .collect();

    for (il, l) in w.layers.iter().enumerate() {
        let (mut base, mut scale) = cfg.rope_of_layer(il);
        if fault(Fault::RopeLocalBase) && cfg.is_swa(il) {
            base = f64::from(cfg.rope_base);
        }
        if fault(Fault::RopeUnscaled) {
            scale = 1.0;
        }
        let ff = w
            .rope_freqs
            .as_deref()
            .filter(|_| !fault(Fault::RopeNoFreqFactors));
        let window = match cfg.sliding_window {
            Some(win) if cfg.is_swa(il) && !fault(Fault::NoWindow) => {
                Some(win + usize::from(fault(Fault::WindowOffByOne)))
            }
            Some(win) if fault(Fault::WindowEverywhere) => Some(win),
            _ => None,
        };

        let rotate = match cfg.arch.no_rope_step() {
            Some(step) => !(il + 1).is_multiple_of(step) || fault(Fault::RopeEveryLayer),
            None => true,
        };
        let temperature = |pos: usize| match cfg.temperature {
            Some((t, floor)) if !fault(Fault::NoTemperature) => {
                1.0 + f64::from(t) * ((pos / floor) as f64 + 1.0).ln()
            }
            _ => 1.0,
        };

        // Queries, keys, values of every position.
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, xp) in x.iter().enumerate() {
            let h = rms_norm(xp, &l.attn_norm, eps);
            for m in ["attn_q", "attn_k", "attn_v"] {
                tap(&format!("blk.{il}.{m}.weight"), &h);
            }
            let mut q = matvec(&l.wq, &h);
            let mut k = matvec(&l.wk, &h);
            let mut v = matvec(&l.wv, &h);
            if let Some([bq, bk, bv]) = l.bias.as_ref().filter(|_| !fault(Fault::NoBias)) {
                for (out, b) in [(&mut q, bq), (&mut k, bk), (&mut v, bv)] {
                    out.iter_mut()
                        .zip(b)
                        .for_each(|(o, &bb)| *o += f64::from(bb));
                }
            }
            for (buf, norm) in [(&mut q, 0), (&mut k, 1)] {
                for head in buf.chunks_exact_mut(hd) {
                    if let Some(n) = l.qk_norm.as_ref().filter(|_| !fault(Fault::NoQkNorm)) {
                        let normed = rms_norm(head, &n[norm], eps);
                        head.copy_from_slice(&normed);
                    }
                    if rotate {
                        rope(head, pos, cfg.n_rot, base, scale, ff, neox);
                    }
                }
            }
            q.iter_mut().for_each(|v| *v *= temperature(pos));
            qs.push(q);
            ks.push(k.into_iter().map(round).collect::<Vec<_>>());
            vs.push(v.into_iter().map(round).collect::<Vec<_>>());
        }

        // Causal attention, each query head reading its group's kv head.
        let kq_scale = if fault(Fault::KqScale) {
            1.0 / (d as f64).sqrt()
        } else {
            1.0 / (hd as f64).sqrt()
        };
        for (pos, xp) in x.iter_mut().enumerate() {
            let first = window.map_or(0, |win| (pos + 1).saturating_sub(win));
            let mut att = vec![0.0; n_head * hd];
            for h in 0..n_head {
                let kvh = if fault(Fault::GqaInterleaved) {
                    h % n_kv
                } else {
                    h / group
                };
                // Gemma scales the queries before attention (so before their f16 rounding).
                let (q_scale, s_scale) = if gemma {
                    (kq_scale, 1.0)
                } else {
                    (1.0, kq_scale)
                };
                let q: Vec<f64> = qs[pos][h * hd..(h + 1) * hd]
                    .iter()
                    .map(|&v| round(v * q_scale))
                    .collect();
                let kv = |m: &Vec<f64>| m[kvh * hd..(kvh + 1) * hd].to_vec();
                let scores: Vec<f64> = (first..=pos)
                    .map(|j| q.iter().zip(kv(&ks[j])).map(|(a, b)| a * b).sum::<f64>() * s_scale)
                    .collect();
                let sink = l
                    .sinks
                    .as_ref()
                    .filter(|_| !fault(Fault::NoSinks))
                    .map(|s| f64::from(s[h]));
                let max = scores
                    .iter()
                    .copied()
                    .chain(sink)
                    .fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = exps.iter().sum::<f64>() + sink.map_or(0.0, |s| (s - max).exp());
                let out = &mut att[h * hd..(h + 1) * hd];
                for (j, e) in (first..=pos).zip(&exps) {
                    for (o, v) in out.iter_mut().zip(kv(&vs[j])) {
                        *o += round(e / sum) * v;
                    }
                }
            }
            tap(&format!("blk.{il}.attn_output.weight"), &att);
            let mut o = matvec(&l.wo, &att);
            if let Some(ob) = &l.out_bias {
                o.iter_mut().zip(ob).for_each(|(v, &b)| *v += f64::from(b));
            }
            if let Some(pn) = l
                .post_attn_norm
                .as_ref()
                .filter(|_| !fault(Fault::NoPostNorms))
            {
                o = rms_norm(&o, pn, eps);
            }
            add_into(xp, &o);
        }

        // Mixture of experts.
        if let Some(e) = &l.experts {
            for xp in &mut x {
                let h = rms_norm(xp, &l.ffn_norm, eps);
                let o = if cfg.arch.is_gpt_oss() {
                    experts_oai(e, &h, cfg.experts.n_used, opt.fault)
                } else {
                    // Qwen2-MoE weighs the chosen experts by their probabilities as they are.
                    let renormalise = cfg.arch != super::Arch::Qwen2Moe;
                    experts(e, &h, cfg.experts.n_used, renormalise, opt.fault)
                };
                add_into(xp, &o);
            }
            continue;
        }

        // Gated feed-forward.
        let gelu = gemma != fault(Fault::Activation);
        for xp in &mut x {
            let h = rms_norm(xp, &l.ffn_norm, eps);
            tap(&format!("blk.{il}.ffn_gate.weight"), &h);
            tap(&format!("blk.{il}.ffn_up.weight"), &h);
            let g = matvec(&l.gate, &h);
            let u = matvec(&l.up, &h);
            let a: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(&g, &u)| if gelu { round(gelu_tanh(round(g))) } else { silu(g) } * u)
                .collect();
            tap(&format!("blk.{il}.ffn_down.weight"), &a);
            let mut o = matvec(&l.down, &a);
            if let Some(pn) = l
                .post_ffw_norm
                .as_ref()
                .filter(|_| !fault(Fault::NoPostNorms))
            {
                o = rms_norm(&o, pn, eps);
            }
            add_into(xp, &o);
        }
    }

    let head = w.output.as_deref().unwrap_or(&w.tok_embd);
    x.iter()
        .map(|xp| matvec(head, &rms_norm(xp, &w.output_norm, eps)))
        .collect()
}

/// Qwen3 MoE's block: softmax over the router logits, the `k` most probable experts (lower id
/// first on ties), their probabilities renormalised (unless `renormalise` is off: Qwen2-MoE),
/// `Σ w · down(silu(gate·h) · up·h)`; plus, with a shared expert (Qwen2-MoE),
/// `σ(gate_inp·h) · down(silu(gate·h) · up·h)` of its own matrices.
fn experts(
    e: &super::Experts,
    h: &[f64],
    k: usize,
    renormalise: bool,
    fault: Option<Fault>,
) -> Vec<f64> {
    let logits = matvec(&e.router, h);
    let probs: Vec<f64> = if fault == Some(Fault::MoeSigmoid) {
        logits.iter().map(|l| 1.0 / (1.0 + (-l).exp())).collect()
    } else {
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = exps.iter().sum();
        exps.iter().map(|v| v / sum).collect()
    };
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let k = if fault == Some(Fault::MoeTopKShort) {
        k - 1
    } else {
        k
    };
    let chosen = &order[..k];
    let sum: f64 = chosen.iter().map(|&i| probs[i]).sum();
    let mut out = vec![0.0; h.len()];
    for &i in chosen {
        // the fault swaps the two weightings
        let w = if renormalise != (fault == Some(Fault::MoeNoNorm)) {
            probs[i] / sum
        } else {
            probs[i]
        };
        let g = matvec(&e.gate[i], h);
        let u = matvec(&e.up[i], h);
        let a: Vec<f64> = g.iter().zip(&u).map(|(&g, &u)| silu(g) * u).collect();
        let y = matvec(&e.down[i], &a);
        out.iter_mut().zip(&y).for_each(|(o, v)| *o += w * v);
    }
    if let Some(s) = e
        .shared
        .as_ref()
        .filter(|_| fault != Some(Fault::MoeNoShared))
    {
        let g = matvec(&s.gate, h);
        let u = matvec(&s.up, h);
        let a: Vec<f64> = g.iter().zip(&u).map(|(&g, &u)| silu(g) * u).collect();
        let y = matvec(&s.down, &a);
        let gate = if fault == Some(Fault::MoeSharedUngated) {
            1.0
        } else {
            let z = matvec(&s.gate_inp, h)[0];
            1.0 / (1.0 + (-z).exp())
        };
        out.iter_mut().zip(&y).for_each(|(o, v)| *o += gate * v);
    }
    out
}

/// gpt-oss's block: router logits plus bias, the `k` largest, weights a softmax over those
/// `k` logits, each expert `down(swiglu_oai(gate·h + bg, up·h + bu)) + bd`.
fn experts_oai(e: &super::Experts, h: &[f64], k: usize, fault: Option<Fault>) -> Vec<f64> {
    let fault = |f: Fault| fault == Some(f);
    let b = e.biases.as_ref().unwrap();
    let bias = |v: &mut Vec<f64>, b: &[f32]| {
        if !fault(Fault::NoExpertBias) {
            v.iter_mut().zip(b).for_each(|(x, &y)| *x += f64::from(y));
        }
    };
    let mut logits = matvec(&e.router, h);
    bias(&mut logits, &b.router);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &c| logits[c].total_cmp(&logits[a]));
    let chosen = &order[..k];
    let softmax = |xs: &[f64]| -> Vec<f64> {
        let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = xs.iter().map(|x| (x - max).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    };
    let weights: Vec<f64> = if fault(Fault::MoeSoftmaxAll) {
        let all = softmax(&logits);
        chosen.iter().map(|&i| all[i]).collect()
    } else {
        softmax(&chosen.iter().map(|&i| logits[i]).collect::<Vec<_>>())
    };
    let (alpha, limit) = (1.702, 7.0);
    let mut out = vec![0.0; h.len()];
    for (&i, w) in chosen.iter().zip(weights) {
        let mut g = matvec(&e.gate[i], h);
        bias(&mut g, &b.gate[i]);
        let mut u = matvec(&e.up[i], h);
        bias(&mut u, &b.up[i]);
        let a: Vec<f64> = g
            .iter()
            .zip(&u)
            .map(|(&g, &u)| {
                if fault(Fault::PlainSwiglu) {
                    silu(g) * u
                } else {
                    let x = g.min(limit);
                    let y = u.clamp(-limit, limit);
                    x / (1.0 + (-alpha * x).exp()) * (y + 1.0)
                }
            })
            .collect();
        let mut y = matvec(&e.down[i], &a);
        bias(&mut y, &b.down[i]);
        out.iter_mut().zip(&y).for_each(|(o, v)| *o += w * v);
    }
    out
}

/// The error measure of these tests: the largest `max |Δ| / max |reference logit|` over
/// positions.
pub fn worst_rel_error(got: &[Vec<f32>], want: &[Vec<f64>]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| {
            let max_abs = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let max_diff = g
                .iter()
                .zip(w)
                .fold(0.0f64, |m, (&a, b)| m.max((f64::from(a) - b).abs()));
            max_diff / max_abs
        })
        .fold(0.0, f64::max)
}
