//! Tiny synthetic models for the architecture tests: a [`Config`] names the architecture and its
//! options, [`Weights::random`] fills every tensor from a seeded PRNG (F32, norms away from 1),
//! [`build`] writes them with our own GGUF writer (`gguf::Builder`) together with a minimal valid
//! tokenizer, and [`load`] puts the bytes in a temporary file and runs `Model::load` on it.
//!
//! The same [`Weights`] feed the plain f64 forward pass in [`reference`], so the engine and the
//! reference compute from identical numbers and any difference is the engine's arithmetic.

pub mod reference;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use engine::{LoadError, Model};
use gguf::{Array, Builder, GgmlType, Value};

/// The decoder variants the engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen2Moe,
    Qwen3,
    Qwen3Moe,
    Smollm3,
    Mistral3,
    GptOss,
    Gemma3,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen2Moe => "qwen2moe",
            Arch::Qwen3 => "qwen3",
            Arch::Qwen3Moe => "qwen3moe",
            Arch::Smollm3 => "smollm3",
            Arch::Mistral3 => "mistral3",
            Arch::GptOss => "gpt-oss",
            Arch::Gemma3 => "gemma3",
        }
    }

    /// Biases on the q, k and v projections.
    pub fn has_qkv_bias(self) -> bool {
        matches!(self, Arch::Qwen2 | Arch::Qwen2Moe | Arch::GptOss)
    }

    /// gpt-oss's extras: output-projection bias, attention sinks, biased experts weighed by a
    /// softmax over the chosen logits, `swiglu_oai`, the sliding window on even layers.
    pub fn is_gpt_oss(self) -> bool {
        self == Arch::GptOss
    }

    /// Per-head RMS norms of queries and keys before RoPE.
    pub fn has_qk_norm(self) -> bool {
        matches!(self, Arch::Qwen3 | Arch::Qwen3Moe | Arch::Gemma3)
    }

    /// A mixture of experts in every layer instead of the dense feed-forward block.
    pub fn has_experts(self) -> bool {
        matches!(self, Arch::Qwen2Moe | Arch::Qwen3Moe | Arch::GptOss)
    }

    /// RoPE pairs `(k, k + n_rot/2)` instead of `(2k, 2k+1)`.
    pub fn rope_neox(self) -> bool {
        !matches!(self, Arch::Llama | Arch::Smollm3 | Arch::Mistral3)
    }

    /// Layers `il` with `(il + 1) % step == 0` have no RoPE (SmolLM3: 4).
    pub fn no_rope_step(self) -> Option<usize> {
        (self == Arch::Smollm3).then_some(4)
    }

    /// Gemma's extras: √n_embd embedding scale, post-norms, GeGLU, sliding-window layers.
    pub fn is_gemma(self) -> bool {
        self == Arch::Gemma3
    }
}

/// Which tokenizer the file carries (only its validity matters: the tests feed token ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vocab {
    /// SentencePiece (`llama`): `<unk>`, `<s>`, `</s>` and the 256 byte-fallback tokens.
    Spm,
    /// Byte-level BPE (`gpt2`, pre-tokenizer `qwen2`): the 256 byte symbols and `<|endoftext|>`,
    /// no merges.
    Gpt2,
}

impl Vocab {
    pub fn n_vocab(self) -> usize {
        match self {
            Vocab::Spm => 259,
            Vocab::Gpt2 => 257,
        }
    }
}

/// A synthetic model's shape and options.
#[derive(Clone, Debug)]
pub struct Config {
    pub arch: Arch,
    pub vocab: Vocab,
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    /// Rotated dimensions per head (`rope.dimension_count`; written only when below `head_dim`).
    pub n_rot: usize,
    pub rms_eps: f32,
    pub rope_base: f32,
    /// `gemma3.rope.freq_base_swa`; `None` leaves the key out (10000 then).
    pub rope_base_swa: Option<f32>,
    /// Linear RoPE scaling factor (`rope.scaling.type = linear`).
    pub rope_linear: Option<f32>,
    /// `rope.scaling.attn_factor`, the magnitude of RoPE's cos and sin (LongRoPE's); the engine
    /// only — `reference` does not model it.
    pub rope_attn_factor: Option<f32>,
    /// A `rope_freqs.weight` tensor of per-pair frequency divisors.
    pub rope_freqs: bool,
    /// `attention.sliding_window`.
    pub sliding_window: Option<usize>,
    /// No `output.weight`: the LM head is the token embedding.
    pub tied: bool,
    /// Write `attention.key_length` / `value_length` (needed when `n_embd != n_head·head_dim`).
    pub write_head_dim: bool,
    /// Mixture of experts (architectures with [`Arch::has_experts`]).
    pub experts: ExpertsCfg,
    /// Ministral 3's query temperature: `attention.temperature_scale` and the position
    /// granularity (`rope.scaling.original_context_length`).
    pub temperature: Option<(f32, usize)>,
    pub seed: u64,
}

/// The shape of a mixture-of-experts layer.
#[derive(Clone, Copy, Debug)]
pub struct ExpertsCfg {
    pub n_expert: usize,
    pub n_used: usize,
    pub n_ff_exp: usize,
    /// The shared expert's width (Qwen2-MoE).
    pub n_ff_shexp: usize,
}

impl Config {
    /// A small GQA model of `arch` with every option off.
    pub fn small(arch: Arch) -> Config {
        Config {
            arch,
            vocab: Vocab::Spm,
            n_embd: 64,
            n_layer: 2,
            n_ff: 96,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            n_rot: 16,
            rms_eps: 1e-5,
            rope_base: 10_000.0,
            rope_base_swa: None,
            rope_linear: None,
            rope_attn_factor: None,
            rope_freqs: false,
            sliding_window: None,
            tied: false,
            write_head_dim: false,
            experts: ExpertsCfg {
                n_expert: 8,
                n_used: 3,
                n_ff_exp: 32,
                n_ff_shexp: 40,
            },
            temperature: None,
            seed: 1,
        }
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.n_vocab()
    }

    /// Whether layer `il` attends within the sliding window (Gemma 3: five of every six).
    pub fn is_swa(&self, il: usize) -> bool {
        self.sliding_window.is_some()
            && match self.arch {
                Arch::Gemma3 => il % 6 < 5,
                Arch::GptOss => il.is_multiple_of(2),
                _ => false,
            }
    }

    /// RoPE base and linear position scale of layer `il`: the local layers of Gemma 3 use their
    /// own base and no scaling.
    pub fn rope_of_layer(&self, il: usize) -> (f64, f64) {
        if self.is_swa(il) {
            (f64::from(self.rope_base_swa.unwrap_or(10_000.0)), 1.0)
        } else {
            (
                f64::from(self.rope_base),
                1.0 / f64::from(self.rope_linear.unwrap_or(1.0)),
            )
        }
    }
}

/// splitmix64: small, seeded, good enough for test weights.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    /// A `rows × n_in` matrix whose products keep unit variance.
    pub fn mat(&mut self, rows: usize, n_in: usize) -> Vec<f32> {
        let s = (3.0 / n_in as f32).sqrt();
        self.vec(rows * n_in, -s, s)
    }

    /// Norm weights in `[0.5, 1.5)`: far enough from 1 that a skipped norm shows.
    pub fn norm(&mut self, n: usize) -> Vec<f32> {
        self.vec(n, 0.5, 1.5)
    }

    /// Token ids in `0..n_vocab`.
    pub fn tokens(&mut self, n: usize, n_vocab: usize) -> Vec<u32> {
        (0..n)
            .map(|_| (self.next_u64() % n_vocab as u64) as u32)
            .collect()
    }
}

/// One layer's weights; matrices are row-major `[n_out][n_in]` (ggml's layout).
#[derive(Clone, Debug)]
pub struct Layer {
    pub attn_norm: Vec<f32>,
    pub wq: Vec<f32>,
    pub wk: Vec<f32>,
    pub wv: Vec<f32>,
    pub wo: Vec<f32>,
    /// q, k, v biases (Qwen2).
    pub bias: Option<[Vec<f32>; 3]>,
    /// Per-head q and k norm weights (Qwen3, Gemma 3).
    pub qk_norm: Option<[Vec<f32>; 2]>,
    /// Norm of the attention output (Gemma 3).
    pub post_attn_norm: Option<Vec<f32>>,
    pub ffn_norm: Vec<f32>,
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    pub down: Vec<f32>,
    /// Norm of the feed-forward output (Gemma 3).
    pub post_ffw_norm: Option<Vec<f32>>,
    /// Output-projection bias and a sink logit per head (gpt-oss).
    pub out_bias: Option<Vec<f32>>,
    pub sinks: Option<Vec<f32>>,
    /// The mixture of experts replacing `gate`/`up`/`down` (which are then empty).
    pub experts: Option<Experts>,
}

/// A mixture-of-experts layer: the router and each expert's matrices.
#[derive(Clone, Debug)]
pub struct Experts {
    /// `[n_expert][n_embd]`
    pub router: Vec<f32>,
    /// Per expert `[n_ff_exp][n_embd]`, `[n_ff_exp][n_embd]`, `[n_embd][n_ff_exp]`.
    pub gate: Vec<Vec<f32>>,
    pub up: Vec<Vec<f32>>,
    pub down: Vec<Vec<f32>>,
    /// gpt-oss: router bias `[n_expert]`, per-expert gate/up `[n_ff_exp]` and down `[n_embd]`
    /// biases.
    pub biases: Option<ExpertBiases>,
    /// Qwen2-MoE: the shared expert.
    pub shared: Option<SharedExpert>,
}

/// A shared expert: `[n_ff_shexp][n_embd]` gate and up, `[n_embd][n_ff_shexp]` down, and the
/// `[n_embd]` sigmoid gate of its output.
#[derive(Clone, Debug)]
pub struct SharedExpert {
    pub gate: Vec<f32>,
    pub up: Vec<f32>,
    pub down: Vec<f32>,
    pub gate_inp: Vec<f32>,
}

/// The biases of gpt-oss's experts.
#[derive(Clone, Debug)]
pub struct ExpertBiases {
    pub router: Vec<f32>,
    pub gate: Vec<Vec<f32>>,
    pub up: Vec<Vec<f32>>,
    pub down: Vec<Vec<f32>>,
}

/// Every weight of a synthetic model.
#[derive(Clone, Debug)]
pub struct Weights {
    /// `[n_vocab][n_embd]`
    pub tok_embd: Vec<f32>,
    pub layers: Vec<Layer>,
    pub output_norm: Vec<f32>,
    /// `[n_vocab][n_embd]`; `None` when tied to `tok_embd`.
    pub output: Option<Vec<f32>>,
    /// `n_rot / 2` frequency divisors.
    pub rope_freqs: Option<Vec<f32>>,
}

impl Weights {
    /// Weights for `cfg` from its seed.
    pub fn random(cfg: &Config) -> Weights {
        let mut r = Rng::new(cfg.seed);
        let (d, hd) = (cfg.n_embd, cfg.head_dim);
        let (q_w, kv_w) = (cfg.n_head * hd, cfg.n_head_kv * hd);
        let a = cfg.arch;
        let moe = a.has_experts();
        let (n_ff, e) = (if moe { 0 } else { cfg.n_ff }, cfg.experts);
        let layers = (0..cfg.n_layer)
            .map(|_| Layer {
                attn_norm: r.norm(d),
                wq: r.mat(q_w, d),
                wk: r.mat(kv_w, d),
                wv: r.mat(kv_w, d),
                wo: r.mat(d, q_w),
                bias: a.has_qkv_bias().then(|| {
                    [
                        r.vec(q_w, -0.5, 0.5),
                        r.vec(kv_w, -0.5, 0.5),
                        r.vec(kv_w, -0.5, 0.5),
                    ]
                }),
                qk_norm: a.has_qk_norm().then(|| [r.norm(hd), r.norm(hd)]),
                post_attn_norm: a.is_gemma().then(|| r.norm(d)),
                ffn_norm: r.norm(d),
                gate: r.mat(n_ff, d),
                up: r.mat(n_ff, d),
                down: r.mat(d, n_ff),
                post_ffw_norm: a.is_gemma().then(|| r.norm(d)),
                out_bias: a.is_gpt_oss().then(|| r.vec(d, -0.5, 0.5)),
                sinks: a.is_gpt_oss().then(|| r.vec(cfg.n_head, 0.0, 2.0)),
                experts: moe.then(|| Experts {
                    // Router logits of a few units, so the choice is far from ties.
                    router: r.vec(e.n_expert * d, -0.6, 0.6),
                    gate: (0..e.n_expert).map(|_| r.mat(e.n_ff_exp, d)).collect(),
                    up: (0..e.n_expert).map(|_| r.mat(e.n_ff_exp, d)).collect(),
                    down: (0..e.n_expert).map(|_| r.mat(d, e.n_ff_exp)).collect(),
                    biases: a.is_gpt_oss().then(|| ExpertBiases {
                        router: r.vec(e.n_expert, -0.5, 0.5),
                        gate: (0..e.n_expert)
                            .map(|_| r.vec(e.n_ff_exp, -0.5, 0.5))
                            .collect(),
                        up: (0..e.n_expert)
                            .map(|_| r.vec(e.n_ff_exp, -0.5, 0.5))
                            .collect(),
                        down: (0..e.n_expert).map(|_| r.vec(d, -0.5, 0.5)).collect(),
                    }),
                    shared: (a == Arch::Qwen2Moe).then(|| SharedExpert {
                        gate: r.mat(e.n_ff_shexp, d),
                        up: r.mat(e.n_ff_shexp, d),
                        down: r.mat(d, e.n_ff_shexp),
                        gate_inp: r.vec(d, -0.6, 0.6),
                    }),
                }),
            })
            .collect();
        let n_vocab = cfg.n_vocab();
        Weights {
            tok_embd: r.vec(n_vocab * d, -1.0, 1.0),
            layers,
            output_norm: r.norm(d),
            output: (!cfg.tied).then(|| r.vec(n_vocab * d, -1.0, 1.0)),
            // Llama 3.1's factors run from 1 (fast pairs) up to 8 (slow pairs).
            rope_freqs: cfg.rope_freqs.then(|| r.vec(cfg.n_rot / 2, 1.0, 8.0)),
        }
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Adds an F32 tensor of GGUF shape `shape` (innermost first).
pub fn add_f32(b: &mut Builder<'static>, name: &str, shape: &[u64], data: &[f32]) {
    b.add_tensor(name, GgmlType::F32, shape, f32_bytes(data))
        .unwrap();
}

/// The SentencePiece vocabulary: ids 0–2 `<unk> <s> </s>`, then `<0x00>`…`<0xFF>`.
pub fn spm_vocab(b: &mut Builder<'static>) {
    let mut tokens = vec!["<unk>".to_owned(), "<s>".to_owned(), "</s>".to_owned()];
    tokens.extend((0..=255u8).map(|x| format!("<0x{x:02X}>")));
    // llama.cpp token types: 2 unknown, 3 control, 6 byte.
    let mut types = vec![2, 3, 3];
    types.extend(std::iter::repeat_n(6, 256));
    let scores = vec![0.0f32; tokens.len()];
    b.set("tokenizer.ggml.model", Value::string("llama"))
        .unwrap();
    b.set(
        "tokenizer.ggml.tokens",
        Value::Array(Array::from_strs(&tokens)),
    )
    .unwrap();
    b.set(
        "tokenizer.ggml.scores",
        Value::Array(Array::from_f32s(&scores)),
    )
    .unwrap();
    b.set(
        "tokenizer.ggml.token_type",
        Value::Array(Array::from_i32s(&types)),
    )
    .unwrap();
    b.set("tokenizer.ggml.unknown_token_id", Value::U32(0))
        .unwrap();
    b.set("tokenizer.ggml.bos_token_id", Value::U32(1)).unwrap();
    b.set("tokenizer.ggml.eos_token_id", Value::U32(2)).unwrap();
}

/// GPT-2's byte-to-symbol map: printable bytes stand for themselves, the others for U+0100….
fn gpt2_byte_symbol(byte: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(byte) {
        return char::from(byte);
    }
    let n = (0..byte).filter(|&b| !printable(b)).count() as u32;
    char::from_u32(256 + n).unwrap()
}

/// The byte-level BPE vocabulary: ids 0–255 the byte symbols, 256 `<|endoftext|>`.
fn gpt2_vocab(b: &mut Builder<'static>) {
    let mut tokens: Vec<String> = (0..=255u8)
        .map(|x| gpt2_byte_symbol(x).to_string())
        .collect();
    tokens.push("<|endoftext|>".to_owned());
    let mut types = vec![1; 256];
    types.push(3);
    b.set("tokenizer.ggml.model", Value::string("gpt2"))
        .unwrap();
    b.set("tokenizer.ggml.pre", Value::string("qwen2")).unwrap();
    b.set(
        "tokenizer.ggml.tokens",
        Value::Array(Array::from_strs(&tokens)),
    )
    .unwrap();
    b.set(
        "tokenizer.ggml.token_type",
        Value::Array(Array::from_i32s(&types)),
    )
    .unwrap();
    b.set(
        "tokenizer.ggml.merges",
        Value::Array(Array::from_strs::<&str>(&[])),
    )
    .unwrap();
    b.set("tokenizer.ggml.bos_token_id", Value::U32(256))
        .unwrap();
    b.set("tokenizer.ggml.eos_token_id", Value::U32(256))
        .unwrap();
    b.set("tokenizer.ggml.add_bos_token", Value::Bool(false))
        .unwrap();
}

/// The GGUF contents of `cfg` with weights `w`.
pub fn build(cfg: &Config, w: &Weights) -> Builder<'static> {
    let mut b = Builder::new();
    let arch = cfg.arch.name();
    let key = |k: &str| format!("{arch}.{k}");
    let u32_of = |v: usize| Value::U32(v as u32);
    b.set("general.architecture", Value::string(arch)).unwrap();
    b.set("general.name", Value::string(format!("synthetic {arch}")))
        .unwrap();
    b.set(key("context_length"), u32_of(256)).unwrap();
    b.set(key("embedding_length"), u32_of(cfg.n_embd)).unwrap();
    b.set(key("block_count"), u32_of(cfg.n_layer)).unwrap();
    b.set(key("feed_forward_length"), u32_of(cfg.n_ff)).unwrap();
    b.set(key("attention.head_count"), u32_of(cfg.n_head))
        .unwrap();
    b.set(key("attention.head_count_kv"), u32_of(cfg.n_head_kv))
        .unwrap();
    if cfg.write_head_dim {
        b.set(key("attention.key_length"), u32_of(cfg.head_dim))
            .unwrap();
        b.set(key("attention.value_length"), u32_of(cfg.head_dim))
            .unwrap();
    }
    if cfg.n_rot != cfg.head_dim {
        b.set(key("rope.dimension_count"), u32_of(cfg.n_rot))
            .unwrap();
    }
    b.set(
        key("attention.layer_norm_rms_epsilon"),
        Value::F32(cfg.rms_eps),
    )
    .unwrap();
    b.set(key("rope.freq_base"), Value::F32(cfg.rope_base))
        .unwrap();
    if let Some(base) = cfg.rope_base_swa {
        b.set(key("rope.freq_base_swa"), Value::F32(base)).unwrap();
    }
    if let Some(factor) = cfg.rope_linear {
        b.set(key("rope.scaling.type"), Value::string("linear"))
            .unwrap();
        b.set(key("rope.scaling.factor"), Value::F32(factor))
            .unwrap();
    }
    if let Some(f) = cfg.rope_attn_factor {
        b.set(key("rope.scaling.attn_factor"), Value::F32(f))
            .unwrap();
    }
    if let Some(window) = cfg.sliding_window {
        b.set(key("attention.sliding_window"), u32_of(window))
            .unwrap();
    }
    if let Some((scale, floor)) = cfg.temperature {
        b.set(key("attention.temperature_scale"), Value::F32(scale))
            .unwrap();
        b.set(key("rope.scaling.original_context_length"), u32_of(floor))
            .unwrap();
    }
    if cfg.arch.has_experts() {
        let e = cfg.experts;
        b.set(key("expert_count"), u32_of(e.n_expert)).unwrap();
        b.set(key("expert_used_count"), u32_of(e.n_used)).unwrap();
        b.set(key("expert_feed_forward_length"), u32_of(e.n_ff_exp))
            .unwrap();
        if cfg.arch == Arch::Qwen2Moe {
            b.set(
                key("expert_shared_feed_forward_length"),
                u32_of(e.n_ff_shexp),
            )
            .unwrap();
        }
    }
    match cfg.vocab {
        Vocab::Spm => spm_vocab(&mut b),
        Vocab::Gpt2 => gpt2_vocab(&mut b),
    }

    let (d, hd, n_vocab) = (cfg.n_embd as u64, cfg.head_dim as u64, cfg.n_vocab() as u64);
    let (q_w, kv_w, ff) = (
        cfg.n_head as u64 * hd,
        cfg.n_head_kv as u64 * hd,
        cfg.n_ff as u64,
    );
    add_f32(&mut b, "token_embd.weight", &[d, n_vocab], &w.tok_embd);
    for (il, l) in w.layers.iter().enumerate() {
        let n = |t: &str| format!("blk.{il}.{t}");
        add_f32(&mut b, &n("attn_norm.weight"), &[d], &l.attn_norm);
        add_f32(&mut b, &n("attn_q.weight"), &[d, q_w], &l.wq);
        add_f32(&mut b, &n("attn_k.weight"), &[d, kv_w], &l.wk);
        add_f32(&mut b, &n("attn_v.weight"), &[d, kv_w], &l.wv);
        add_f32(&mut b, &n("attn_output.weight"), &[q_w, d], &l.wo);
        if let Some([bq, bk, bv]) = &l.bias {
            add_f32(&mut b, &n("attn_q.bias"), &[q_w], bq);
            add_f32(&mut b, &n("attn_k.bias"), &[kv_w], bk);
            add_f32(&mut b, &n("attn_v.bias"), &[kv_w], bv);
        }
        if let Some([qn, kn]) = &l.qk_norm {
            add_f32(&mut b, &n("attn_q_norm.weight"), &[hd], qn);
            add_f32(&mut b, &n("attn_k_norm.weight"), &[hd], kn);
        }
        if let Some(ob) = &l.out_bias {
            add_f32(&mut b, &n("attn_output.bias"), &[d], ob);
        }
        if let Some(sk) = &l.sinks {
            add_f32(&mut b, &n("attn_sinks.weight"), &[sk.len() as u64], sk);
        }
        if let Some(pn) = &l.post_attn_norm {
            add_f32(&mut b, &n("post_attention_norm.weight"), &[d], pn);
        }
        // gpt-oss's file calls the norm before its experts `post_attention_norm`.
        let ffn_norm = if cfg.arch.is_gpt_oss() {
            "post_attention_norm.weight"
        } else {
            "ffn_norm.weight"
        };
        add_f32(&mut b, &n(ffn_norm), &[d], &l.ffn_norm);
        if let Some(x) = &l.experts {
            let (ne, f) = (x.gate.len() as u64, cfg.experts.n_ff_exp as u64);
            let cat = |m: &[Vec<f32>]| m.concat();
            add_f32(&mut b, &n("ffn_gate_inp.weight"), &[d, ne], &x.router);
            add_f32(
                &mut b,
                &n("ffn_gate_exps.weight"),
                &[d, f, ne],
                &cat(&x.gate),
            );
            add_f32(&mut b, &n("ffn_up_exps.weight"), &[d, f, ne], &cat(&x.up));
            add_f32(
                &mut b,
                &n("ffn_down_exps.weight"),
                &[f, d, ne],
                &cat(&x.down),
            );
            if let Some(eb) = &x.biases {
                add_f32(&mut b, &n("ffn_gate_inp.bias"), &[ne], &eb.router);
                add_f32(&mut b, &n("ffn_gate_exps.bias"), &[f, ne], &cat(&eb.gate));
                add_f32(&mut b, &n("ffn_up_exps.bias"), &[f, ne], &cat(&eb.up));
                add_f32(&mut b, &n("ffn_down_exps.bias"), &[d, ne], &cat(&eb.down));
            }
            if let Some(sh) = &x.shared {
                let fs = cfg.experts.n_ff_shexp as u64;
                add_f32(&mut b, &n("ffn_gate_shexp.weight"), &[d, fs], &sh.gate);
                add_f32(&mut b, &n("ffn_up_shexp.weight"), &[d, fs], &sh.up);
                add_f32(&mut b, &n("ffn_down_shexp.weight"), &[fs, d], &sh.down);
                // the 1-D shape llama.cpp declares (its converter writes `[n_embd, 1]`)
                add_f32(&mut b, &n("ffn_gate_inp_shexp.weight"), &[d], &sh.gate_inp);
            }
        } else {
            add_f32(&mut b, &n("ffn_gate.weight"), &[d, ff], &l.gate);
            add_f32(&mut b, &n("ffn_up.weight"), &[d, ff], &l.up);
            add_f32(&mut b, &n("ffn_down.weight"), &[ff, d], &l.down);
        }
        if let Some(pn) = &l.post_ffw_norm {
            add_f32(&mut b, &n("post_ffw_norm.weight"), &[d], pn);
        }
    }
    add_f32(&mut b, "output_norm.weight", &[d], &w.output_norm);
    if let Some(out) = &w.output {
        add_f32(&mut b, "output.weight", &[d, n_vocab], out);
    }
    if let Some(ff) = &w.rope_freqs {
        add_f32(&mut b, "rope_freqs.weight", &[ff.len() as u64], ff);
    }
    b
}

/// `b` with tensor `name` left out, or replaced by an F32 tensor of `shape` when given.
pub fn with_tensor(b: &Builder<'static>, name: &str, shape: Option<&[u64]>) -> Builder<'static> {
    let mut out = Builder::new();
    for (k, v) in b.metadata() {
        out.set(k.clone(), v.clone()).unwrap();
    }
    for t in b.tensors() {
        if t.name != name {
            out.add_tensor(t.name.clone(), t.ty, &t.shape, t.data.clone())
                .unwrap();
        } else if let Some(shape) = shape {
            let n: u64 = shape.iter().product();
            out.add_tensor(
                t.name.clone(),
                GgmlType::F32,
                shape,
                vec![0u8; n as usize * 4],
            )
            .unwrap();
        }
    }
    out
}

/// Writes `b` to a fresh temporary file, loads it, and removes the file (the mapping stays).
pub fn load(b: &Builder<'_>) -> Result<Model, LoadError> {
    load_bytes(&b.to_bytes())
}

/// [`load`] for raw file bytes.
pub fn load_bytes(bytes: &[u8]) -> Result<Model, LoadError> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path: PathBuf =
        std::env::temp_dir().join(format!("hearth-synth-{}-{n}.gguf", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let model = Model::load(&path);
    std::fs::remove_file(&path).unwrap();
    model
}
