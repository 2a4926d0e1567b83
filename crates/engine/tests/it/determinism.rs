//! Determinism on the real models: sampling with a seed repeats exactly, whatever the thread
//! count, and — with `ContextParams::batch_invariant` on, the setting for serving many
//! requests — a prompt gives the same logits however it is split into batches.

use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use engine::{Context, ContextParams, GenerateParams, Model, SamplerParams};

fn smollm2() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Model::load(&test_models::path(test_models::SMOLLM2)).unwrap()))
        .clone()
}

fn gemma3() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Model::load(&test_models::path(test_models::GEMMA3)).unwrap()))
        .clone()
}

fn context(model: &Arc<Model>, n_batch: usize, n_threads: usize) -> Context {
    Context::new(
        model.clone(),
        ContextParams {
            n_ctx: 256,
            n_batch,
            n_threads,
            batch_invariant: true,
            ..ContextParams::default()
        },
    )
    .unwrap()
}

fn prompt(model: &Model) -> Vec<u32> {
    let text = "The old lighthouse keeper opened his notebook and wrote down the strangest thing \
                he had seen that night:";
    model.tokenizer.encode(text, true, false)
}

/// Tokens generated per sampling run.
const N_SAMPLED: usize = 10;

/// Tokens sampled with llama.cpp's default chain (temperature 0.8, top-k 40, top-p 0.95,
/// min-p 0.05) and `seed`.
fn sample(model: &Arc<Model>, seed: u64, n_threads: usize) -> Vec<u32> {
    let mut ctx = context(model, 512, n_threads);
    let params = GenerateParams {
        max_tokens: Some(N_SAMPLED),
        sampler: SamplerParams {
            seed,
            ..SamplerParams::default()
        },
        ignore_eog: true,
        ..GenerateParams::default()
    };
    let g = engine::generate(&mut ctx, &prompt(model), &params, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(g.tokens.len(), N_SAMPLED);
    g.tokens
}

fn same_seed_same_tokens(model: &Arc<Model>, name: &str) {
    let two = sample(model, 42, 2);
    assert_eq!(
        sample(model, 42, 2),
        two,
        "{name}: seed 42 twice at 2 threads"
    );
    assert_eq!(
        sample(model, 42, 1),
        two,
        "{name}: seed 42 at 1 vs 2 threads"
    );
    let other = sample(model, 43, 2);
    assert_ne!(
        other, two,
        "{name}: seeds 42 and 43 sampled the same tokens"
    );
}

#[test]
fn smollm2_same_seed_same_tokens_at_any_thread_count() {
    same_seed_same_tokens(&smollm2(), "smollm2");
}

#[test]
fn gemma3_same_seed_same_tokens_at_any_thread_count() {
    same_seed_same_tokens(&gemma3(), "gemma3");
}

/// `max |a − b| / max |b|`.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let max_abs = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / max_abs
}

/// Largest accepted `max |Δ| / max |logit|` between two batchings of one prompt.
const BATCHING_TOL: f32 = 1e-4;

/// The last token's logits when the prompt is decoded in one batch, in batches of 7, one token
/// per batch (`n_batch` 1), and one `decode` call per token, at `n_threads`.
fn batchings_agree(model: &Arc<Model>, name: &str, n_threads: usize) {
    let tokens = prompt(model);
    assert!(
        tokens.len() > 14,
        "{name}: prompt of {} tokens",
        tokens.len()
    );
    let last = |n_batch: usize| {
        let mut ctx = context(model, n_batch, n_threads);
        ctx.decode(&tokens).unwrap();
        ctx.logits().to_vec()
    };
    let whole = last(512);
    let mut per_call = context(model, 512, n_threads);
    for t in &tokens {
        per_call.decode(std::slice::from_ref(t)).unwrap();
    }
    let mut failures = Vec::new();
    for (what, logits) in [
        ("n_batch 7", last(7)),
        ("n_batch 1", last(1)),
        ("one decode per token", per_call.logits().to_vec()),
    ] {
        let d = rel_diff(&logits, &whole);
        eprintln!(
            "{name} ({n_threads} threads): {what} vs one batch: max |Δ| / max |logit| = {d:.2e}"
        );
        if d > BATCHING_TOL {
            failures.push(format!("{what}: {d:.2e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{name} ({n_threads} threads): {}",
        failures.join(", ")
    );
}

#[test]
fn smollm2_batching_does_not_change_logits() {
    batchings_agree(&smollm2(), "smollm2", 1);
    batchings_agree(&smollm2(), "smollm2", 2);
}

#[test]
fn gemma3_batching_does_not_change_logits() {
    batchings_agree(&gemma3(), "gemma3", 2);
}

#[test]
fn f32_weights_batching_does_not_change_logits() {
    // F32 weights take other matmul kernels than the quantized real models.
    use crate::synth::{self, Arch, Config, Rng, Weights};
    let cfg = Config {
        n_layer: 3,
        ..Config::small(Arch::Llama)
    };
    let model = Arc::new(synth::load(&synth::build(&cfg, &Weights::random(&cfg))).unwrap());
    let tokens = Rng::new(9).tokens(40, cfg.n_vocab());
    for n_threads in [1, 2] {
        let last = |n_batch: usize| {
            let mut ctx = context(&model, n_batch, n_threads);
            ctx.decode(&tokens).unwrap();
            ctx.logits().to_vec()
        };
        let whole = last(512);
        for n_batch in [7, 1] {
            let d = rel_diff(&last(n_batch), &whole);
            eprintln!(
                "synthetic f32 ({n_threads} threads): n_batch {n_batch} vs one batch: {d:.2e}"
            );
            assert!(
                d <= BATCHING_TOL,
                "n_batch {n_batch}, {n_threads} threads: {d:.2e}"
            );
        }
    }
}
