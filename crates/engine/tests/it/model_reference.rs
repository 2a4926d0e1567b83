//! Both real models against llama.cpp's own outputs (`tests/fixtures/<model>/generate.json`,
//! made with flash attention off, 1 thread): greedy continuations, the top tokens at every
//! position of prompt + continuation (teacher-forced), and the full logits at the last prompt
//! position — at 1 and 2 threads.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use engine::{Context, ContextParams, GenerateParams, Model, Outputs, SamplerParams};
use serde_json::Value;

fn fixture_dir(model: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(model)
}

fn cases(model: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture_dir(model).join("generate.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

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

/// The same models with `--arithmetic fast`: the fastest summation order, not llama.cpp's.
fn fast(m: &str) -> Arc<Model> {
    let options = engine::LoadOptions { llama_order: false };
    Arc::new(Model::load_with(&test_models::path(m), options).unwrap())
}

fn context(model: &Arc<Model>, n_threads: usize) -> Context {
    let params = ContextParams {
        n_ctx: 1024,
        n_batch: 512,
        n_threads,
        ..ContextParams::default()
    };
    Context::new(model.clone(), params).unwrap()
}

/// Indices of the `k` largest values, largest first (lowest id first on ties).
fn top_k(logits: &[f32], k: usize) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    idx
}

/// (a) the greedy continuation matches for at least `robust_n` tokens; returns the tokens
/// matched and compared over all cases.
fn greedy_matches(model: &Arc<Model>, name: &str, n_threads: usize) -> (usize, usize) {
    let mut total = (0, 0);
    for case in cases(name) {
        let id = case["id"].as_str().unwrap();
        let prompt = ids(&case["prompt_ids"]);
        let want = ids(&case["greedy_ids"]);
        let robust = case["robust_n"].as_u64().unwrap() as usize;
        let mut ctx = context(model, n_threads);
        let params = GenerateParams {
            max_tokens: Some(want.len()),
            sampler: SamplerParams::greedy(),
            ignore_eog: true,
            ..GenerateParams::default()
        };
        let got = engine::generate(&mut ctx, &prompt, &params, |_| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap()
        .tokens;
        let same = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
        total = (total.0 + same, total.1 + want.len());
        eprintln!(
            "{name}/{id} ({n_threads} threads): greedy matches {same}/{} (robust_n {robust})",
            want.len()
        );
        assert!(
            same >= robust,
            "{name}/{id}: greedy diverges at {same}, before robust_n {robust}\n got {got:?}\nwant {want:?}"
        );
        // Beyond the bar: with the x86 kernels hearth follows llama.cpp's arithmetic bit
        // for bit on these models, so the whole continuation must be llama.cpp's.
        // (Not asked of `--arithmetic fast`, whose sums are ordered otherwise.)
        if model.llama_order() && kernels::isa::Isa::detected() >= kernels::isa::Isa::Avx2 {
            assert_eq!(
                got, want,
                "{name}/{id}: llama.cpp parity lost at token {same}"
            );
        }
    }
    total
}

/// (b) top-1 where the reference margin is ≥ 0.1, reference top-10 within our top-20, and
/// (c) last-prompt-position logits within 1e-2 of the maximum logit. The positions are computed
/// as llama.cpp computed the reference: the prompt in one batch, then the continuation one token
/// at a time (teacher-forced with the reference's greedy tokens). Returns the worst (c) error.
fn logits_match(model: &Arc<Model>, name: &str, n_threads: usize) -> f32 {
    let mut worst_rel = 0.0f32;
    for case in cases(name) {
        let id = case["id"].as_str().unwrap().to_owned();
        let prompt = ids(&case["prompt_ids"]);
        let greedy = ids(&case["greedy_ids"]);
        let top10 = case["top10_per_position"].as_array().unwrap();
        let file = fixture_dir(name).join(case["last_logits_file"].as_str().unwrap());
        let reference: Vec<f32> = std::fs::read(file)
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let mut failures = Vec::new();
        let mut check = |pos: usize, logits: &[f32]| {
            let want = top10[pos].as_array().unwrap();
            let want_ids: Vec<u32> = want.iter().map(|p| p[0].as_u64().unwrap() as u32).collect();
            let margin = want[0][1].as_f64().unwrap() - want[1][1].as_f64().unwrap();
            let ours = top_k(logits, 20);
            if margin >= 0.1 && ours[0] != want_ids[0] {
                failures.push(format!(
                    "pos {pos}: top-1 {} vs reference {} (margin {margin:.3})",
                    ours[0], want_ids[0]
                ));
            }
            if let Some(missing) = want_ids.iter().find(|t| !ours.contains(t)) {
                failures.push(format!(
                    "pos {pos}: reference top-10 token {missing} not in our top-20"
                ));
            }
            if pos + 1 == prompt.len() {
                let max_abs = reference.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let max_diff = logits
                    .iter()
                    .zip(&reference)
                    .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                let rel = max_diff / max_abs;
                worst_rel = worst_rel.max(rel);
                if rel > 1e-2 {
                    failures.push(format!(
                        "last prompt logits: max |Δ| / max |logit| = {rel:.2e}"
                    ));
                }
            }
        };
        let mut ctx = context(model, n_threads);
        ctx.decode_with(&prompt, Outputs::All, &mut check).unwrap();
        for (k, &t) in greedy.iter().enumerate().take(top10.len() - prompt.len()) {
            ctx.decode(&[t]).unwrap();
            check(prompt.len() + k, ctx.logits());
        }
        assert!(
            failures.is_empty(),
            "{name}/{id} ({n_threads} threads):\n{}",
            failures.join("\n")
        );
    }
    eprintln!("{name} ({n_threads} threads): worst last-prompt logit error {worst_rel:.2e}");
    worst_rel
}

#[test]
fn smollm2_greedy_matches_llama_cpp() {
    greedy_matches(&smollm2(), "smollm2", 1);
    greedy_matches(&smollm2(), "smollm2", 2);
}

#[test]
fn smollm2_logits_match_llama_cpp() {
    logits_match(&smollm2(), "smollm2", 1);
    logits_match(&smollm2(), "smollm2", 2);
}

#[test]
fn gemma3_greedy_matches_llama_cpp() {
    greedy_matches(&gemma3(), "gemma3", 1);
    greedy_matches(&gemma3(), "gemma3", 2);
}

#[test]
fn gemma3_logits_match_llama_cpp() {
    logits_match(&gemma3(), "gemma3", 1);
    logits_match(&gemma3(), "gemma3", 2);
}

/// `--arithmetic fast` (the faster order `hearth bench`, `batched-bench` and `perplexity`
/// offer) against the same llama.cpp references: not bit-identical, but llama.cpp's greedy text
/// up to its near-ties (`robust_n`). Its logits are further from llama.cpp's than a
/// llama.cpp-order path's (measured: top-1 flips where llama.cpp's margin is up to ~0.5, the
/// last-prompt logits 3.75e-2 of the largest on SmolLM2 — the 8-bit activations re-quantized
/// before every product amplify any last-bit change), so the logit bar of [`logits_match`] is
/// not asked of it; docs/benchmarks.md has its KL divergence against an f32 evaluation.
#[test]
fn fast_arithmetic_keeps_llama_cpps_greedy_text_up_to_near_ties() {
    for (name, m) in [
        ("smollm2", test_models::SMOLLM2),
        ("gemma3", test_models::GEMMA3),
    ] {
        let model = fast(m);
        assert!(!model.llama_order());
        let (same, total) = greedy_matches(&model, name, 2);
        eprintln!("{name}, fast arithmetic: {same} of {total} greedy tokens equal llama.cpp's");
    }
}
