//! Gemma 4's new blocks on a synthetic model written by our GGUF writer, against a plain f64
//! forward pass written here from the model's definition (transformers' `modeling_gemma4`):
//! sliding and full layers with their own head sizes and KV heads, V = K on the full layers, the
//! values' RMS norm, proportional RoPE through `rope_freqs`, two shared-KV layers, per-layer
//! embeddings, double-wide feed-forward blocks on the shared layers, layer output scales and the
//! logit soft-cap. Logits at every position, in one batch and in small ones. A second model adds
//! the 26B-A4B's experts beside every dense MLP (fused or separate gate/up).
//!
//! Every [`Fault`] — one plausible mistake in one of those blocks — must move the reference
//! far outside the tolerance, so none of them could pass.

use std::sync::Arc;

use engine::{Context, ContextParams, Model, Outputs};
use gguf::{Array, Builder, Value, ValueType};

use crate::synth::{self, Rng, add_f32};

const N_EMBD: usize = 32;
const N_HEAD: usize = 4;
const N_LAYER: usize = 6;
/// Sliding, full, sliding, full; the last two share the caches of layers 2 and 3.
const IS_SWA: [bool; N_LAYER] = [true, false, true, false, true, false];
const N_SHARED: usize = 2;
const HEAD_SWA: usize = 8;
const HEAD_FULL: usize = 16;
const KV_SWA: usize = 2;
const KV_FULL: usize = 1;
const N_FF: [usize; N_LAYER] = [48, 48, 48, 48, 96, 96];
const PLE: usize = 8;
const WINDOW: usize = 3;
/// Of the full layers' 8 pairs, 2 rotate (partial rotary factor 0.25).
const N_ROT_PAIRS_FULL: usize = 2;
const BASE_FULL: f32 = 1_000_000.0;
const BASE_SWA: f32 = 10_000.0;
const SOFTCAP: f32 = 15.0;
const EPS: f32 = 1e-6;
const N_EXPERT: usize = 6;
const N_USED: usize = 2;
const N_FF_EXP: usize = 16;

/// `synthetic_arch`'s measure. The reference rounds as the engine does (K, V, queries and
/// attention probabilities to f16, GELU through f16); what is left is where an f16 rounding
/// flips between the f32 and f64 paths. Measured 2.1e-3 at worst since the F32 products sum
/// in llama.cpp's order (1.3e-3 in hearth's own; 1.9e-5 at the first position, where attention
/// has one key): more than `synthetic_arch`'s 5e-4 because six layers of unit-RMS values (the
/// value norm) compound it. Every fault moves the logits by 0.16 or more.
const TOL: f64 = 3e-3;
const FAULT_MIN: f64 = 1e-2;

fn head_dim(il: usize) -> usize {
    if IS_SWA[il] { HEAD_SWA } else { HEAD_FULL }
}

fn n_kv(il: usize) -> usize {
    if IS_SWA[il] { KV_SWA } else { KV_FULL }
}

/// The layer whose cache `il` reads (llama.cpp's rule).
fn kv_layer(il: usize) -> usize {
    let first_shared = N_LAYER - N_SHARED;
    if il < first_shared {
        il
    } else {
        first_shared - if IS_SWA[il] { 2 } else { 1 }
    }
}

/// A layer's own key and value projections: `wk`, `wv` (none on full layers: V = K), `k_norm`.
type KvWeights = (Vec<f32>, Option<Vec<f32>>, Vec<f32>);
/// One layer's stored keys and values, per position.
type Cache = (Vec<Vec<f64>>, Vec<Vec<f64>>);

struct Layer {
    attn_norm: Vec<f32>,
    wq: Vec<f32>,
    q_norm: Vec<f32>,
    /// None on shared layers.
    kv: Option<KvWeights>,
    wo: Vec<f32>,
    post_attn_norm: Vec<f32>,
    ffn_norm: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    down: Vec<f32>,
    post_ffw_norm: Vec<f32>,
    inp_gate: Vec<f32>,
    proj: Vec<f32>,
    post_norm: Vec<f32>,
    out_scale: f32,
    experts: Option<Experts>,
}

/// The 26B-A4B's experts beside a layer's dense MLP.
struct Experts {
    /// `[N_EXPERT][N_EMBD]`
    router: Vec<f32>,
    /// `ffn_gate_inp.scale`, `[N_EMBD]`
    router_scale: Vec<f32>,
    pre_norm_2: Vec<f32>,
    post_norm_1: Vec<f32>,
    post_norm_2: Vec<f32>,
    /// Per expert `[N_FF_EXP][N_EMBD]` gate and up, `[N_EMBD][N_FF_EXP]` down.
    gate: Vec<Vec<f32>>,
    up: Vec<Vec<f32>>,
    down: Vec<Vec<f32>>,
    /// `ffn_down_exps.scale`, `[N_EXPERT]`
    down_scale: Vec<f32>,
}

/// How the experts' gate and up are stored.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GateUp {
    /// One `ffn_gate_up_exps` per layer: each expert's gate rows, then its up rows.
    Fused,
    Separate,
}

struct Weights {
    tok_embd: Vec<f32>,
    ple_embd: Vec<f32>,
    ple_proj: Vec<f32>,
    ple_norm: Vec<f32>,
    layers: Vec<Layer>,
    output_norm: Vec<f32>,
    rope_freqs: Vec<f32>,
}

fn n_vocab() -> usize {
    synth::Vocab::Spm.n_vocab()
}

fn random_weights(seed: u64) -> Weights {
    random_weights_with(seed, false)
}

/// With `experts`, every layer also has a mixture of experts.
fn random_weights_with(seed: u64, experts: bool) -> Weights {
    let mut r = Rng::new(seed);
    let d = N_EMBD;
    let layers = (0..N_LAYER)
        .map(|il| {
            let (hd, kv) = (head_dim(il), n_kv(il));
            Layer {
                attn_norm: r.norm(d),
                wq: r.mat(N_HEAD * hd, d),
                q_norm: r.norm(hd),
                kv: (kv_layer(il) == il).then(|| {
                    (
                        r.mat(kv * hd, d),
                        IS_SWA[il].then(|| r.mat(kv * hd, d)),
                        r.norm(hd),
                    )
                }),
                wo: r.mat(d, N_HEAD * hd),
                post_attn_norm: r.norm(d),
                ffn_norm: r.norm(d),
                gate: r.mat(N_FF[il], d),
                up: r.mat(N_FF[il], d),
                down: r.mat(d, N_FF[il]),
                post_ffw_norm: r.norm(d),
                inp_gate: r.mat(PLE, d),
                proj: r.mat(d, PLE),
                post_norm: r.norm(d),
                out_scale: r.uniform(0.5, 1.5),
                experts: experts.then(|| Experts {
                    // router logits of a few units (its input has RMS 1/√d), far from ties
                    router: r.vec(N_EXPERT * d, -4.0, 4.0),
                    router_scale: r.norm(d),
                    pre_norm_2: r.norm(d),
                    post_norm_1: r.norm(d),
                    post_norm_2: r.norm(d),
                    gate: (0..N_EXPERT).map(|_| r.mat(N_FF_EXP, d)).collect(),
                    up: (0..N_EXPERT).map(|_| r.mat(N_FF_EXP, d)).collect(),
                    down: (0..N_EXPERT).map(|_| r.mat(d, N_FF_EXP)).collect(),
                    down_scale: r.vec(N_EXPERT, 0.5, 1.5),
                }),
            }
        })
        .collect();
    let mut rope_freqs = vec![1e30f32; HEAD_FULL / 2];
    rope_freqs[..N_ROT_PAIRS_FULL].fill(1.0);
    Weights {
        tok_embd: r.vec(n_vocab() * d, -1.0, 1.0),
        ple_embd: r.vec(n_vocab() * N_LAYER * PLE, -1.0, 1.0),
        ple_proj: r.mat(N_LAYER * PLE, d),
        ple_norm: r.norm(PLE),
        layers,
        output_norm: r.norm(d),
        rope_freqs,
    }
}

fn build(w: &Weights) -> Builder<'static> {
    build_with(w, GateUp::Fused)
}

fn build_with(w: &Weights, gate_up: GateUp) -> Builder<'static> {
    let mut b = Builder::new();
    synth::spm_vocab(&mut b);
    let key = |k: &str| format!("gemma4.{k}");
    let u32_of = |v: usize| Value::U32(v as u32);
    let i32s = |f: &dyn Fn(usize) -> usize| {
        Value::Array(Array::from_i32s(
            &(0..N_LAYER).map(|il| f(il) as i32).collect::<Vec<_>>(),
        ))
    };
    b.set("general.architecture", Value::string("gemma4"))
        .unwrap();
    for (k, v) in [
        ("context_length", u32_of(256)),
        ("embedding_length", u32_of(N_EMBD)),
        ("block_count", u32_of(N_LAYER)),
        ("feed_forward_length", i32s(&|il| N_FF[il])),
        ("attention.head_count", u32_of(N_HEAD)),
        ("attention.head_count_kv", i32s(&n_kv)),
        ("attention.key_length", u32_of(HEAD_FULL)),
        ("attention.value_length", u32_of(HEAD_FULL)),
        ("attention.key_length_swa", u32_of(HEAD_SWA)),
        ("attention.value_length_swa", u32_of(HEAD_SWA)),
        ("rope.dimension_count", u32_of(HEAD_FULL)),
        ("rope.dimension_count_swa", u32_of(HEAD_SWA)),
        ("rope.freq_base", Value::F32(BASE_FULL)),
        ("rope.freq_base_swa", Value::F32(BASE_SWA)),
        ("attention.layer_norm_rms_epsilon", Value::F32(EPS)),
        ("attention.sliding_window", u32_of(WINDOW)),
        (
            "attention.sliding_window_pattern",
            Value::Array(Array::Numbers {
                ty: ValueType::Bool,
                bytes: IS_SWA.iter().map(|&s| u8::from(s)).collect(),
            }),
        ),
        ("attention.shared_kv_layers", u32_of(N_SHARED)),
        ("embedding_length_per_layer_input", u32_of(PLE)),
        ("final_logit_softcapping", Value::F32(SOFTCAP)),
    ] {
        b.set(key(k), v).unwrap();
    }
    let (d, nv, ple) = (N_EMBD as u64, n_vocab() as u64, PLE as u64);
    let nl = N_LAYER as u64;
    add_f32(&mut b, "token_embd.weight", &[d, nv], &w.tok_embd);
    add_f32(
        &mut b,
        "per_layer_token_embd.weight",
        &[nl * ple, nv],
        &w.ple_embd,
    );
    add_f32(
        &mut b,
        "per_layer_model_proj.weight",
        &[d, nl * ple],
        &w.ple_proj,
    );
    add_f32(&mut b, "per_layer_proj_norm.weight", &[ple], &w.ple_norm);
    add_f32(&mut b, "output_norm.weight", &[d], &w.output_norm);
    add_f32(
        &mut b,
        "rope_freqs.weight",
        &[w.rope_freqs.len() as u64],
        &w.rope_freqs,
    );
    for (il, l) in w.layers.iter().enumerate() {
        let n = |t: &str| format!("blk.{il}.{t}");
        let (hd, q_w, kv_w, ff) = (
            head_dim(il) as u64,
            (N_HEAD * head_dim(il)) as u64,
            (n_kv(il) * head_dim(il)) as u64,
            N_FF[il] as u64,
        );
        add_f32(&mut b, &n("attn_norm.weight"), &[d], &l.attn_norm);
        add_f32(&mut b, &n("attn_q.weight"), &[d, q_w], &l.wq);
        add_f32(&mut b, &n("attn_q_norm.weight"), &[hd], &l.q_norm);
        if let Some((wk, wv, kn)) = &l.kv {
            add_f32(&mut b, &n("attn_k.weight"), &[d, kv_w], wk);
            if let Some(wv) = wv {
                add_f32(&mut b, &n("attn_v.weight"), &[d, kv_w], wv);
            }
            add_f32(&mut b, &n("attn_k_norm.weight"), &[hd], kn);
        }
        add_f32(&mut b, &n("attn_output.weight"), &[q_w, d], &l.wo);
        add_f32(
            &mut b,
            &n("post_attention_norm.weight"),
            &[d],
            &l.post_attn_norm,
        );
        add_f32(&mut b, &n("ffn_norm.weight"), &[d], &l.ffn_norm);
        add_f32(&mut b, &n("ffn_gate.weight"), &[d, ff], &l.gate);
        add_f32(&mut b, &n("ffn_up.weight"), &[d, ff], &l.up);
        add_f32(&mut b, &n("ffn_down.weight"), &[ff, d], &l.down);
        add_f32(&mut b, &n("post_ffw_norm.weight"), &[d], &l.post_ffw_norm);
        add_f32(&mut b, &n("inp_gate.weight"), &[d, ple], &l.inp_gate);
        add_f32(&mut b, &n("proj.weight"), &[ple, d], &l.proj);
        add_f32(&mut b, &n("post_norm.weight"), &[d], &l.post_norm);
        add_f32(
            &mut b,
            &n("layer_output_scale.weight"),
            &[1],
            &[l.out_scale],
        );
        if let Some(e) = &l.experts {
            let (ne, f) = (N_EXPERT as u64, N_FF_EXP as u64);
            add_f32(&mut b, &n("ffn_gate_inp.weight"), &[d, ne], &e.router);
            add_f32(&mut b, &n("ffn_gate_inp.scale"), &[d], &e.router_scale);
            add_f32(&mut b, &n("pre_ffw_norm_2.weight"), &[d], &e.pre_norm_2);
            add_f32(&mut b, &n("post_ffw_norm_1.weight"), &[d], &e.post_norm_1);
            add_f32(&mut b, &n("post_ffw_norm_2.weight"), &[d], &e.post_norm_2);
            match gate_up {
                GateUp::Fused => {
                    let fused: Vec<f32> = (0..N_EXPERT)
                        .flat_map(|x| e.gate[x].iter().chain(&e.up[x]).copied())
                        .collect();
                    add_f32(
                        &mut b,
                        &n("ffn_gate_up_exps.weight"),
                        &[d, 2 * f, ne],
                        &fused,
                    );
                }
                GateUp::Separate => {
                    add_f32(
                        &mut b,
                        &n("ffn_gate_exps.weight"),
                        &[d, f, ne],
                        &e.gate.concat(),
                    );
                    add_f32(
                        &mut b,
                        &n("ffn_up_exps.weight"),
                        &[d, f, ne],
                        &e.up.concat(),
                    );
                }
            }
            add_f32(
                &mut b,
                &n("ffn_down_exps.weight"),
                &[f, d, ne],
                &e.down.concat(),
            );
            add_f32(&mut b, &n("ffn_down_exps.scale"), &[ne], &e.down_scale);
        }
    }
    if w.layers.iter().any(|l| l.experts.is_some()) {
        for (k, v) in [
            ("expert_count", N_EXPERT),
            ("expert_used_count", N_USED),
            ("expert_feed_forward_length", N_FF_EXP),
        ] {
            b.set(key(k), u32_of(v)).unwrap();
        }
    }
    b
}

/// A deliberate mistake in the reference, one per new block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The values are not RMS-normed.
    NoVNorm,
    /// V = K taken after the keys' norm and RoPE instead of before.
    VAfterKNorm,
    /// Queries scaled by 1/√head_dim (Gemma 3's habit; Gemma 4 scales by 1).
    QScaled,
    /// Full layers rotate every pair (`rope_freqs` ignored).
    NoFreqFactors,
    /// Shared layers read the last layer before them with a cache, whatever its kind.
    SharedWrongLayer,
    /// The per-layer embedding branch is left out.
    NoPerLayer,
    /// The per-layer inputs lack the projection of the token embedding.
    PerLayerNoProj,
    /// `layer_output_scale` is ignored.
    NoOutScale,
    /// No final soft-cap.
    NoSoftcap,
    /// The sliding-window layers see the whole prefix.
    NoWindow,
    /// The router reads the experts' input instead of its own scaled norm.
    RouterOnExpertInput,
    /// `ffn_gate_inp.scale` is ignored.
    NoRouterScale,
    /// `ffn_down_exps.scale` is ignored.
    NoExpertScale,
    /// The two branches' output norms (`post_ffw_norm_1`, `_2`) are left out.
    NoBranchNorms,
    /// Gate and up taken from the other halves.
    GateUpSwapped,
    /// The dense MLP is left out of the experts' layers.
    NoDenseBeside,
}

const FAULTS: [Fault; 10] = [
    Fault::NoVNorm,
    Fault::VAfterKNorm,
    Fault::QScaled,
    Fault::NoFreqFactors,
    Fault::SharedWrongLayer,
    Fault::NoPerLayer,
    Fault::PerLayerNoProj,
    Fault::NoOutScale,
    Fault::NoSoftcap,
    Fault::NoWindow,
];

// (Leaving out the renormalisation of the chosen weights is no fault that can show: it scales a
// token's expert sum by one factor, which `post_ffw_norm_2` normalises away.)
const MOE_FAULTS: [Fault; 6] = [
    Fault::RouterOnExpertInput,
    Fault::NoRouterScale,
    Fault::NoExpertScale,
    Fault::NoBranchNorms,
    Fault::GateUpSwapped,
    Fault::NoDenseBeside,
];

fn f16r(v: f64) -> f64 {
    f64::from(half::f16::from_f64(v).to_f32())
}

fn rms_norm(x: &[f64], w: Option<&[f32]>) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + f64::from(EPS)).sqrt();
    x.iter()
        .enumerate()
        .map(|(i, v)| v * inv * w.map_or(1.0, |w| f64::from(w[i])))
        .collect()
}

fn matvec(w: &[f32], x: &[f64]) -> Vec<f64> {
    w.chunks_exact(x.len())
        .map(|row| row.iter().zip(x).map(|(&a, b)| f64::from(a) * b).sum())
        .collect()
}

/// tanh GELU through ggml's f16 table.
fn gelu(x: f64) -> f64 {
    let x = f16r(x);
    let c = (2.0 / std::f64::consts::PI).sqrt();
    f16r(0.5 * x * (1.0 + (c * (x + 0.044_715 * x * x * x)).tanh()))
}

/// NeoX RoPE of one head.
fn rope(head: &mut [f64], pos: usize, base: f64, ff: Option<&[f32]>) {
    let n = head.len();
    for k in 0..n / 2 {
        let divisor = ff.map_or(1.0, |f| f64::from(f[k]));
        let angle = pos as f64 * base.powf(-2.0 * k as f64 / n as f64) / divisor;
        let (a, b) = (head[k], head[k + n / 2]);
        head[k] = a * angle.cos() - b * angle.sin();
        head[k + n / 2] = a * angle.sin() + b * angle.cos();
    }
}

/// Logits at every position, rounding K, V, queries and probabilities to f16 as the engine
/// does.
fn reference(w: &Weights, tokens: &[u32], fault: Option<Fault>) -> Vec<Vec<f64>> {
    let is = |f: Fault| fault == Some(f);
    let d = N_EMBD;
    let mut x: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&t| {
            let row = &w.tok_embd[t as usize * d..(t as usize + 1) * d];
            row.iter()
                .map(|&v| f64::from(v) * (d as f64).sqrt())
                .collect()
        })
        .collect();
    // Per-layer inputs: (norm(proj(x) / √d) + table · √ple) / √2, per layer slice.
    let per_layer: Vec<Vec<f64>> = tokens
        .iter()
        .zip(&x)
        .map(|(&t, xp)| {
            let w_all = N_LAYER * PLE;
            let table = &w.ple_embd[t as usize * w_all..(t as usize + 1) * w_all];
            let proj: Vec<f64> = matvec(&w.ple_proj, xp)
                .into_iter()
                .map(|v| v / (d as f64).sqrt())
                .collect();
            let mut out = Vec::with_capacity(w_all);
            for (chunk, tchunk) in proj.chunks_exact(PLE).zip(table.chunks_exact(PLE)) {
                let normed = rms_norm(chunk, Some(&w.ple_norm));
                for (n, &tv) in normed.iter().zip(tchunk) {
                    let p = if is(Fault::PerLayerNoProj) { 0.0 } else { *n };
                    out.push((p + f64::from(tv) * (PLE as f64).sqrt()) / 2f64.sqrt());
                }
            }
            out
        })
        .collect();
    // Each layer's stored keys and values (rounded), by layer.
    let mut caches: Vec<Option<Cache>> = vec![None; N_LAYER];
    for (il, l) in w.layers.iter().enumerate() {
        let (hd, kvh) = (head_dim(il), n_kv(il));
        let swa = IS_SWA[il];
        let base = f64::from(if swa { BASE_SWA } else { BASE_FULL });
        let ff = (!swa && !is(Fault::NoFreqFactors)).then_some(&w.rope_freqs[..]);
        let mut qs = Vec::new();
        let (mut ks, mut vs) = (Vec::new(), Vec::new());
        for (pos, xp) in x.iter().enumerate() {
            let h = rms_norm(xp, Some(&l.attn_norm));
            let mut q = matvec(&l.wq, &h);
            for head in q.chunks_exact_mut(hd) {
                let normed = rms_norm(head, Some(&l.q_norm));
                head.copy_from_slice(&normed);
                rope(head, pos, base, ff);
            }
            if is(Fault::QScaled) {
                q.iter_mut().for_each(|v| *v /= (hd as f64).sqrt());
            }
            qs.push(q);
            if let Some((wk, wv, kn)) = &l.kv {
                let mut k = matvec(wk, &h);
                let v_raw = wv.as_ref().map(|wv| matvec(wv, &h));
                let mut v = v_raw.clone().unwrap_or_else(|| k.clone());
                for head in k.chunks_exact_mut(hd) {
                    let normed = rms_norm(head, Some(kn));
                    head.copy_from_slice(&normed);
                    rope(head, pos, base, ff);
                }
                if v_raw.is_none() && is(Fault::VAfterKNorm) {
                    v = k.clone();
                }
                if !is(Fault::NoVNorm) {
                    for head in v.chunks_exact_mut(hd) {
                        let normed = rms_norm(head, None);
                        head.copy_from_slice(&normed);
                    }
                }
                ks.push(k.into_iter().map(f16r).collect::<Vec<_>>());
                vs.push(v.into_iter().map(f16r).collect::<Vec<_>>());
            }
        }
        if l.kv.is_some() {
            caches[il] = Some((ks, vs));
        }
        let src = if is(Fault::SharedWrongLayer) && il >= N_LAYER - N_SHARED {
            N_LAYER - N_SHARED - 1
        } else {
            kv_layer(il)
        };
        let (ks, vs) = caches[src].clone().unwrap();
        let window = (swa && !is(Fault::NoWindow)).then_some(WINDOW);
        for (pos, xp) in x.iter_mut().enumerate() {
            let first = window.map_or(0, |win| (pos + 1).saturating_sub(win));
            let mut att = vec![0.0; N_HEAD * hd];
            for h in 0..N_HEAD {
                let g = h / (N_HEAD / kvh);
                let q: Vec<f64> = qs[pos][h * hd..(h + 1) * hd]
                    .iter()
                    .map(|&v| f16r(v))
                    .collect();
                let kv = |m: &Vec<f64>| m[g * hd..(g + 1) * hd].to_vec();
                let scores: Vec<f64> = (first..=pos)
                    .map(|j| q.iter().zip(kv(&ks[j])).map(|(a, b)| a * b).sum::<f64>())
                    .collect();
                let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = exps.iter().sum();
                let out = &mut att[h * hd..(h + 1) * hd];
                for (j, e) in (first..=pos).zip(&exps) {
                    for (o, v) in out.iter_mut().zip(kv(&vs[j])) {
                        *o += f16r(e / sum) * v;
                    }
                }
            }
            let o = rms_norm(&matvec(&l.wo, &att), Some(&l.post_attn_norm));
            xp.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
        }
        for (t, xp) in x.iter_mut().enumerate() {
            let h = rms_norm(xp, Some(&l.ffn_norm));
            let a: Vec<f64> = matvec(&l.gate, &h)
                .iter()
                .zip(matvec(&l.up, &h))
                .map(|(&g, u)| gelu(g) * u)
                .collect();
            let mut o = matvec(&l.down, &a);
            if let Some(e) = &l.experts {
                o = experts(e, xp, &o, fault);
            }
            let o = rms_norm(&o, Some(&l.post_ffw_norm));
            xp.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            if !is(Fault::NoPerLayer) {
                let g: Vec<f64> = matvec(&l.inp_gate, xp)
                    .iter()
                    .zip(&per_layer[t][il * PLE..(il + 1) * PLE])
                    .map(|(&g, p)| gelu(g) * p)
                    .collect();
                let o = rms_norm(&matvec(&l.proj, &g), Some(&l.post_norm));
                xp.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            }
            if !is(Fault::NoOutScale) {
                xp.iter_mut().for_each(|v| *v *= f64::from(l.out_scale));
            }
        }
    }
    let cap = f64::from(SOFTCAP);
    x.iter()
        .map(|xp| {
            matvec(&w.tok_embd, &rms_norm(xp, Some(&w.output_norm)))
                .into_iter()
                .map(|v| {
                    if is(Fault::NoSoftcap) {
                        v
                    } else {
                        cap * (v / cap).tanh()
                    }
                })
                .collect()
        })
        .collect()
}

/// A 26B-A4B feed-forward block after its dense MLP gave `mlp`, on the residual `x`:
/// `norm₁(mlp) + norm₂(Σ w · s_e · down_e(gelu(gate_e·h) · up_e·h))` with `h = norm(x)` by
/// `pre_ffw_norm_2`, the experts chosen by softmax over `router · (rms(x) / √d · scale)`, the top
/// `N_USED` renormalised.
fn experts(e: &Experts, x: &[f64], mlp: &[f64], fault: Option<Fault>) -> Vec<f64> {
    let is = |f: Fault| fault == Some(f);
    let d = N_EMBD;
    let h = rms_norm(x, Some(&e.pre_norm_2));
    let r: Vec<f64> = if is(Fault::RouterOnExpertInput) {
        h.clone()
    } else {
        rms_norm(x, None)
            .iter()
            .zip(&e.router_scale)
            .map(|(v, &s)| {
                let s = if is(Fault::NoRouterScale) {
                    1.0
                } else {
                    f64::from(s)
                };
                v / (d as f64).sqrt() * s
            })
            .collect()
    };
    let logits = matvec(&e.router, &r);
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    let probs: Vec<f64> = exps.iter().map(|v| v / total).collect();
    let mut order: Vec<usize> = (0..N_EXPERT).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let chosen = &order[..N_USED];
    let sum: f64 = chosen.iter().map(|&i| probs[i]).sum();
    let mut moe = vec![0.0; d];
    for &i in chosen {
        let w = probs[i] / sum;
        let (gate, up) = if is(Fault::GateUpSwapped) {
            (&e.up[i], &e.gate[i])
        } else {
            (&e.gate[i], &e.up[i])
        };
        let a: Vec<f64> = matvec(gate, &h)
            .iter()
            .zip(matvec(up, &h))
            .map(|(&g, u)| gelu(g) * u)
            .collect();
        let s = if is(Fault::NoExpertScale) {
            1.0
        } else {
            f64::from(e.down_scale[i])
        };
        for (o, y) in moe.iter_mut().zip(matvec(&e.down[i], &a)) {
            *o += w * s * y;
        }
    }
    let (mlp, moe) = if is(Fault::NoBranchNorms) {
        (mlp.to_vec(), moe)
    } else {
        (
            rms_norm(mlp, Some(&e.post_norm_1)),
            rms_norm(&moe, Some(&e.post_norm_2)),
        )
    };
    if is(Fault::NoDenseBeside) {
        return moe;
    }
    mlp.iter().zip(&moe).map(|(a, b)| a + b).collect()
}

fn engine_logits(
    model: &Arc<Model>,
    tokens: &[u32],
    n_batch: usize,
    n_threads: usize,
) -> Vec<Vec<f32>> {
    let params = ContextParams {
        n_ctx: 64,
        n_batch,
        n_threads,
        ..ContextParams::default()
    };
    let mut ctx = Context::new(model.clone(), params).unwrap();
    let mut out = vec![Vec::new(); tokens.len()];
    ctx.decode_with(tokens, Outputs::All, |i, l| out[i] = l.to_vec())
        .unwrap();
    out
}

#[test]
fn gemma4_blocks_match_the_f64_reference() {
    let w = random_weights(7);
    let model = Arc::new(synth::load(&build(&w)).unwrap());
    assert_eq!(model.hparams.layer(4).kv_layer, 2);
    assert_eq!(model.hparams.layer(5).kv_layer, 3);
    let tokens = Rng::new(0x9e4).tokens(12, n_vocab());
    let want = reference(&w, &tokens, None);
    let mut worst = 0.0f64;
    for (n_batch, n_threads) in [(512, 1), (5, 2), (1, 1)] {
        let got = engine_logits(&model, &tokens, n_batch, n_threads);
        let err = synth::reference::worst_rel_error(&got, &want);
        assert!(
            err <= TOL,
            "n_batch {n_batch}, {n_threads} threads: error {err:.2e} > {TOL:.0e}"
        );
        worst = worst.max(err);
    }
    let got = engine_logits(&model, &tokens, 512, 1);
    for f in FAULTS {
        let wrong = reference(&w, &tokens, Some(f));
        let err = synth::reference::worst_rel_error(&got, &wrong);
        assert!(
            err >= FAULT_MIN,
            "fault {f:?} is not caught: {err:.2e} < {FAULT_MIN:.0e} (engine error {worst:.2e})"
        );
    }
}

/// The 26B-A4B's experts beside every dense MLP, with fused and with separate gate/up.
#[test]
fn gemma4_experts_match_the_f64_reference() {
    let w = random_weights_with(8, true);
    let tokens = Rng::new(0x9e5).tokens(12, n_vocab());
    let want = reference(&w, &tokens, None);
    for gate_up in [GateUp::Fused, GateUp::Separate] {
        let model = Arc::new(synth::load(&build_with(&w, gate_up)).unwrap());
        let mut worst = 0.0f64;
        for (n_batch, n_threads) in [(512, 1), (5, 2), (1, 1)] {
            let got = engine_logits(&model, &tokens, n_batch, n_threads);
            let err = synth::reference::worst_rel_error(&got, &want);
            assert!(
                err <= TOL,
                "n_batch {n_batch}, {n_threads} threads: error {err:.2e} > {TOL:.0e}"
            );
            worst = worst.max(err);
        }
        eprintln!("gemma4 experts: worst error {worst:.2e}");
        let got = engine_logits(&model, &tokens, 512, 1);
        for f in MOE_FAULTS {
            let wrong = reference(&w, &tokens, Some(f));
            let err = synth::reference::worst_rel_error(&got, &wrong);
            eprintln!("gemma4 experts: reference with {f:?} is off by {err:.2e}");
            assert!(
                err >= FAULT_MIN,
                "fault {f:?} is not caught: {err:.2e} < {FAULT_MIN:.0e} (engine error {worst:.2e})"
            );
        }
    }
}

/// A hostile expert layer is a load error naming the tensor, never a panic: a fused gate_up of
/// the wrong height, a missing router scale, per-expert scales of the wrong length.
#[test]
fn bad_gemma4_expert_tensors_are_load_errors() {
    let w = random_weights_with(8, true);
    let (d, ne, f) = (N_EMBD as u64, N_EXPERT as u64, N_FF_EXP as u64);
    let fused = |rows: u64| vec![0.5f32; (d * rows * ne) as usize];
    let cases: [(&str, Vec<u64>, Vec<f32>, &str); 3] = [
        (
            "blk.0.ffn_gate_up_exps.weight",
            vec![d, 2 * f + 2, ne],
            fused(2 * f + 2),
            "ffn_gate_up_exps",
        ),
        (
            "blk.1.ffn_down_exps.scale",
            vec![ne - 1],
            vec![1.0; N_EXPERT - 1],
            "ffn_down_exps.scale",
        ),
        (
            "blk.2.ffn_gate_inp.scale",
            vec![d + 1],
            vec![1.0; N_EMBD + 1],
            "ffn_gate_inp.scale",
        ),
    ];
    for (name, shape, data, want) in cases {
        // the file with that one tensor replaced
        let good = build_with(&w, GateUp::Fused);
        let mut b = Builder::new();
        for (k, v) in good.metadata() {
            b.set(k.clone(), v.clone()).unwrap();
        }
        for t in good.tensors().iter().filter(|t| t.name != name) {
            b.add_tensor(t.name.clone(), t.ty, &t.shape, t.data.clone())
                .unwrap();
        }
        add_f32(&mut b, name, &shape, &data);
        match synth::load(&b) {
            Ok(_) => panic!("{name} {shape:?} loaded"),
            Err(e) => assert!(e.to_string().contains(want), "{name} {shape:?}: {e}"),
        }
    }
}

/// Per-layer hyper-parameters a hostile file can get wrong are load errors naming the key,
/// never a panic: too many shared layers, arrays of the wrong length or with zeros, a shared
/// layer whose source cache has another shape, a final soft-cap that is not a number.
#[test]
fn bad_gemma4_hyper_parameters_are_load_errors() {
    let w = random_weights(7);
    let all_full = Value::Array(Array::Numbers {
        ty: ValueType::Bool,
        bytes: vec![0u8; N_LAYER].into(),
    });
    let cases: [(&str, Value<'static>, &str); 7] = [
        (
            "attention.shared_kv_layers",
            Value::U32(5),
            "shared_kv_layers",
        ),
        (
            "attention.shared_kv_layers",
            Value::U32(u32::MAX),
            "shared_kv_layers",
        ),
        (
            "attention.head_count_kv",
            Value::Array(Array::from_i32s(&[2, 1, 2])),
            "head_count_kv",
        ),
        (
            "feed_forward_length",
            Value::Array(Array::from_i32s(&[48, 0, 48, 48, 96, 96])),
            "feed_forward_length",
        ),
        (
            "attention.head_count_kv",
            Value::Array(Array::from_i32s(&[2, -1, 2, 1, 2, 1])),
            "head_count_kv",
        ),
        // every layer full: layer 4 (2 KV heads) would read layer 3's cache (1 KV head)
        (
            "attention.sliding_window_pattern",
            all_full,
            "shared_kv_layers",
        ),
        (
            "final_logit_softcapping",
            Value::F32(f32::NAN),
            "final_logit_softcapping",
        ),
    ];
    for (key, value, want) in cases {
        let mut b = build(&w);
        b.set(format!("gemma4.{key}"), value.clone()).unwrap();
        match synth::load(&b) {
            Ok(_) => panic!("gemma4.{key} = {value:?} loaded"),
            Err(e) => assert!(
                e.to_string().contains(want),
                "gemma4.{key} = {value:?}: {e}"
            ),
        }
    }
}
