//! Each architecture on a tiny synthetic model (written by our GGUF writer, loaded by
//! `Model::load`) against the plain f64 forward pass in `synth::reference`: logits at every
//! position, the prompt in one batch and in small batches.
//!
//! Every case also runs the reference with deliberate mistakes ([`Fault`]) that apply to its
//! configuration and checks that each one lands far outside the tolerance, so a wrong RoPE
//! layout, a missing bias, an off-by-one window or a wrong scale cannot pass.

use std::sync::Arc;

use engine::{Context, ContextParams, Model, Outputs};

use crate::synth::reference::{self, Fault, Options};
use crate::synth::{self, Arch, Config, Rng, Vocab, Weights};

/// Largest accepted `max |Δ| / max |logit|` at any position. The engine rounds as llama.cpp's
/// CPU backend does (keys, values, queries and attention probabilities to f16, GELU through an
/// f16 table); the reference does the same (`f16_kv`), which leaves f32 rounding and the values
/// whose f16 rounding flips between f32 and f64 inputs (one f16 step is 4.9e-4 relative). Every
/// modelled fault moves the logits by 3e-2 or more.
const TOL: f64 = 5e-4;
/// The same measure without rounding K/V in the reference: the full cost of the f16 cache.
const TOL_F64_KV: f64 = 2e-3;
/// Each fault must be at least this far off (well above both tolerances).
const FAULT_MIN: f64 = 1e-2;

/// Every position's logits from the engine, decoding `tokens` in batches of `n_batch`.
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
    ctx.decode_with(tokens, Outputs::All, |i, logits| out[i] = logits.to_vec())
        .unwrap();
    assert!(out.iter().all(|l| l.len() == model.hparams.n_vocab));
    out
}

/// Builds `cfg`, checks the engine against the reference on `n_tokens` random tokens, and
/// checks that every fault in `faults` is caught.
fn check(name: &str, cfg: &Config, n_tokens: usize, faults: &[Fault]) {
    let w = Weights::random(cfg);
    let model = Arc::new(synth::load(&synth::build(cfg, &w)).unwrap());
    assert_eq!(model.hparams.n_vocab, cfg.n_vocab());
    let tokens = Rng::new(cfg.seed ^ 0x70c5).tokens(n_tokens, cfg.n_vocab());

    let want = reference::forward(
        cfg,
        &w,
        &tokens,
        Options {
            f16_kv: true,
            fault: None,
        },
    );
    let want_f64 = reference::forward(cfg, &w, &tokens, Options::default());
    let mut worst = 0.0f64;
    let mut worst_f64 = 0.0f64;
    for (n_batch, n_threads) in [(512, 1), (3, 2), (1, 1)] {
        let got = engine_logits(&model, &tokens, n_batch, n_threads);
        let err = reference::worst_rel_error(&got, &want);
        let err_f64 = reference::worst_rel_error(&got, &want_f64);
        assert!(
            err <= TOL,
            "{name} (n_batch {n_batch}, {n_threads} threads): error {err:.2e} > {TOL:.0e}"
        );
        assert!(
            err_f64 <= TOL_F64_KV,
            "{name} (n_batch {n_batch}): error {err_f64:.2e} vs the unrounded reference > {TOL_F64_KV:.0e}"
        );
        worst = worst.max(err);
        worst_f64 = worst_f64.max(err_f64);
    }
    eprintln!("{name}: worst error {worst:.2e} (f16 K/V reference), {worst_f64:.2e} (f64 K/V)");

    let got = engine_logits(&model, &tokens, 512, 1);
    for &fault in faults {
        let wrong = reference::forward(
            cfg,
            &w,
            &tokens,
            Options {
                f16_kv: true,
                fault: Some(fault),
            },
        );
        let err = reference::worst_rel_error(&got, &wrong);
        eprintln!("{name}: reference with {fault:?} is off by {err:.2e}");
        assert!(
            err >= FAULT_MIN,
            "{name}: the reference with {fault:?} is within {err:.2e} of the engine, so the test \
             cannot tell that mistake apart"
        );
    }
}

#[test]
fn llama_gqa_untied_matches_reference() {
    let cfg = Config::small(Arch::Llama);
    let faults = [
        Fault::RopeLayout,
        Fault::KqScale,
        Fault::Activation,
        Fault::GqaInterleaved,
    ];
    check("llama", &cfg, 12, &faults);
}

#[test]
fn llama_tied_partial_rotary_matches_reference() {
    let cfg = Config {
        tied: true,
        n_rot: 8,
        n_layer: 3,
        seed: 2,
        ..Config::small(Arch::Llama)
    };
    check("llama tied, n_rot 8", &cfg, 12, &[Fault::RopeLayout]);
}

#[test]
fn llama_rope_linear_scaling_matches_reference() {
    let cfg = Config {
        rope_linear: Some(2.0),
        seed: 3,
        ..Config::small(Arch::Llama)
    };
    check(
        "llama rope linear ×2",
        &cfg,
        12,
        &[Fault::RopeUnscaled, Fault::RopeLayout],
    );
}

#[test]
fn llama_rope_freq_factors_match_reference() {
    let cfg = Config {
        rope_freqs: true,
        seed: 4,
        ..Config::small(Arch::Llama)
    };
    check("llama rope_freqs", &cfg, 12, &[Fault::RopeNoFreqFactors]);
}

#[test]
fn qwen2_biases_tied_match_reference() {
    let cfg = Config {
        vocab: Vocab::Gpt2,
        tied: true,
        seed: 5,
        ..Config::small(Arch::Qwen2)
    };
    check(
        "qwen2",
        &cfg,
        12,
        &[Fault::NoBias, Fault::RopeLayout, Fault::GqaInterleaved],
    );
}

#[test]
fn qwen3_qk_norm_wide_heads_match_reference() {
    // Query width 64 over a residual of 48, as Qwen3's head_dim 128 over n_embd 1024.
    let cfg = Config {
        vocab: Vocab::Gpt2,
        n_embd: 48,
        write_head_dim: true,
        seed: 6,
        ..Config::small(Arch::Qwen3)
    };
    check(
        "qwen3",
        &cfg,
        12,
        &[Fault::NoQkNorm, Fault::RopeLayout, Fault::KqScale],
    );
}

#[test]
fn qwen3moe_experts_match_reference() {
    // 8 experts, 3 per token, over 12 tokens and 2 layers: every expert is chosen by some
    // tokens and not others, so a batch mixes the groups.
    let cfg = Config {
        vocab: Vocab::Gpt2,
        seed: 11,
        ..Config::small(Arch::Qwen3Moe)
    };
    check(
        "qwen3moe",
        &cfg,
        12,
        &[
            Fault::MoeNoNorm,
            Fault::MoeTopKShort,
            Fault::MoeSigmoid,
            Fault::NoQkNorm,
        ],
    );
}

#[test]
fn qwen2moe_shared_experts_match_reference() {
    // Qwen2-MoE: the chosen experts weighed by their probabilities as they are, the shared
    // expert times σ(gate_inp · h), q/k/v biases.
    let cfg = Config {
        seed: 14,
        ..Config::small(Arch::Qwen2Moe)
    };
    check(
        "qwen2moe",
        &cfg,
        12,
        &[
            Fault::MoeNoShared,
            Fault::MoeSharedUngated,
            Fault::MoeNoNorm,
            Fault::MoeTopKShort,
            Fault::NoBias,
        ],
    );
}

#[test]
fn smollm3_no_rope_layers_match_reference() {
    // Eight layers: 3 and 7 have no RoPE.
    let cfg = Config {
        n_layer: 8,
        seed: 12,
        ..Config::small(Arch::Smollm3)
    };
    check(
        "smollm3",
        &cfg,
        12,
        &[Fault::RopeEveryLayer, Fault::RopeLayout, Fault::KqScale],
    );
}

#[test]
fn mistral3_query_temperature_matches_reference() {
    // The temperature steps every 4 positions over 14 tokens.
    let cfg = Config {
        temperature: Some((0.5, 4)),
        seed: 13,
        ..Config::small(Arch::Mistral3)
    };
    check(
        "mistral3",
        &cfg,
        14,
        &[Fault::NoTemperature, Fault::RopeLayout, Fault::KqScale],
    );
}

#[test]
fn gpt_oss_sinks_biases_and_experts_match_reference() {
    // Four layers, the even ones sliding over 4 positions of 12; sinks of 0–2 against
    // scores of a few units; 8 biased experts, 3 per token.
    let cfg = Config {
        n_layer: 4,
        sliding_window: Some(4),
        seed: 14,
        ..Config::small(Arch::GptOss)
    };
    check(
        "gpt-oss",
        &cfg,
        12,
        &[
            Fault::NoSinks,
            Fault::MoeSoftmaxAll,
            Fault::PlainSwiglu,
            Fault::NoExpertBias,
            Fault::NoBias,
            Fault::NoWindow,
            Fault::RopeLayout,
        ],
    );
}

/// Six layers so that layers 0–4 slide and layer 5 is global; window 4 under a 14-token prompt.
fn gemma3_config() -> Config {
    Config {
        n_embd: 48,
        n_layer: 6,
        write_head_dim: true,
        rope_base: 1_000_000.0,
        sliding_window: Some(4),
        tied: true,
        seed: 7,
        ..Config::small(Arch::Gemma3)
    }
}

#[test]
fn gemma3_sliding_window_matches_reference() {
    let faults = [
        Fault::NoWindow,
        Fault::WindowOffByOne,
        Fault::WindowEverywhere,
        Fault::RopeLocalBase,
        Fault::NoEmbdScale,
        Fault::NoPostNorms,
        Fault::NoQkNorm,
        Fault::Activation,
        Fault::RopeLayout,
        Fault::KqScale,
    ];
    check("gemma3", &gemma3_config(), 14, &faults);
}

#[test]
fn gemma3_local_rope_base_key_and_linear_scaling_match_reference() {
    // The local base from `gemma3.rope.freq_base_swa`; linear scaling on the global layer only.
    let cfg = Config {
        rope_base_swa: Some(100.0),
        rope_linear: Some(2.0),
        tied: false,
        seed: 8,
        ..gemma3_config()
    };
    check(
        "gemma3 freq_base_swa, linear",
        &cfg,
        14,
        &[Fault::RopeLocalBase, Fault::RopeUnscaled],
    );
}

#[test]
fn synthetic_tokenizers_are_usable() {
    // The minimal vocabularies really tokenize: SentencePiece through byte fallback (ids 3 + the
    // byte, after the "▁" space prefix), byte-level BPE through the byte symbols (id = byte).
    let cfg = Config::small(Arch::Llama);
    let spm = synth::load(&synth::build(&cfg, &Weights::random(&cfg))).unwrap();
    let want: Vec<u32> = "\u{2581}hé".bytes().map(|b| u32::from(b) + 3).collect();
    assert_eq!(spm.tokenizer.encode("hé", false, false), want);
    let cfg = Config {
        vocab: Vocab::Gpt2,
        ..Config::small(Arch::Qwen2)
    };
    let bpe = synth::load(&synth::build(&cfg, &Weights::random(&cfg))).unwrap();
    let want: Vec<u32> = "hé!".bytes().map(u32::from).collect();
    assert_eq!(bpe.tokenizer.encode("hé!", false, false), want);
}
