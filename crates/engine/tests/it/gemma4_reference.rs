//! Gemma 4 on a tiny random checkpoint (`tests/fixtures/gemma4/`, made by
//! `scripts/tiny-models/gemma4.sh`: sliding and full layers with their own head sizes and KV
//! heads, V = K on the full layers, two shared-KV layers, per-layer embeddings, double-wide
//! MLPs, layer output scales, the logit soft-cap; a cut-down real Gemma 4 tokenizer), converted
//! by llama.cpp's own converter to f32, f16 and q8_0:
//!
//! - the prompt tokenizes to llama.cpp's ids (BOS added, as llama.cpp forces for Gemma 4);
//! - the logits at every position equal llama.cpp's bit for bit (f32, q8_0; f16 within a
//!   measured bound, see `f16_logits_near_llama_cpp`), at 1 and 2 threads;
//! - greedy choices agree at every position (up to near-ties for f16);
//! - transformers' logits (f32 weights) agree within 1e-2 of the largest logit.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{Context, ContextParams, Model, Outputs};
use serde_json::Value;

/// The dense fixture's folder (`tests/fixtures/gemma4`).
const DENSE: &str = "gemma4";

fn dir(fixture: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture)
}

pub fn gunzip(fixture: &str, name: &str) -> Vec<u8> {
    let gz = std::fs::read(dir(fixture).join(format!("{name}.gz"))).unwrap();
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

pub fn f32s(fixture: &str, name: &str) -> Vec<f32> {
    gunzip(fixture, name)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

pub fn reference(fixture: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir(fixture).join("reference.json")).unwrap())
        .unwrap()
}

/// Loads the dense fixture's `gemma4-TY.gguf`.
fn load(ty: &str) -> Arc<Model> {
    load_from(DENSE, ty)
}

/// Loads `gemma4-TY.gguf` of `fixture` (unpacked into a temporary file).
pub fn load_from(fixture: &str, ty: &str) -> Arc<Model> {
    let bytes = gunzip(fixture, &format!("gemma4-{ty}.gguf"));
    let path = std::env::temp_dir().join(format!(
        "hearth-{fixture}-{ty}-{}-{:?}.gguf",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, bytes).unwrap();
    let model = Model::load(&path);
    let _ = std::fs::remove_file(&path);
    Arc::new(model.unwrap())
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Every position's logits, the prompt decoded in batches of `n_batch`.
pub fn logits(model: &Arc<Model>, tokens: &[u32], n_batch: usize, n_threads: usize) -> Vec<f32> {
    let params = ContextParams {
        n_ctx: 64,
        n_batch,
        n_threads,
        ..ContextParams::default()
    };
    let mut ctx = Context::new(model.clone(), params).unwrap();
    let mut out = Vec::new();
    ctx.decode_with(tokens, Outputs::All, |_, l| out.extend_from_slice(l))
        .unwrap();
    out
}

pub fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&a, &b| row[a].total_cmp(&row[b]).then(b.cmp(&a)))
        .unwrap()
}

#[test]
fn prompt_tokenizes_as_llama_cpp() {
    let r = reference(DENSE);
    let model = load("q8_0");
    let got = model
        .tokenizer
        .encode(r["prompt"].as_str().unwrap(), true, true);
    assert_eq!(got, ids(&r["ids"]));
    assert_eq!(&got[1..], &ids(&r["transformers_ids"])[..]);
}

/// Compares every position's logits of `fixture`'s `gemma4-TY.gguf` with llama.cpp's: bit for
/// bit when `max_err` is 0, else within `max_err` (absolute; the logits span about ±30) with
/// the greedy choice equal wherever llama.cpp's top two are further apart than twice that.
pub fn check_llama_cpp(fixture: &str, ty: &str, max_err: f32) {
    let r = reference(fixture);
    let tokens = ids(&r["ids"]);
    let model = load_from(fixture, ty);
    let n_vocab = model.hparams.n_vocab;
    let want = f32s(fixture, &format!("llama-{ty}.f32"));
    assert_eq!(want.len(), tokens.len() * n_vocab);
    for (n_batch, n_threads) in [(512, 1), (512, 2)] {
        let got = logits(&model, &tokens, n_batch, n_threads);
        let mut worst = 0.0f32;
        let mut differ = 0;
        for (g, w) in got.iter().zip(&want) {
            worst = worst.max((g - w).abs());
            differ += usize::from(g.to_bits() != w.to_bits());
        }
        if max_err == 0.0 {
            assert_eq!(
                differ, 0,
                "{ty}, {n_threads} threads: {differ} logits differ from llama.cpp's, max |Δ| {worst:.3e}"
            );
        } else {
            assert!(
                worst <= max_err,
                "{ty}, {n_threads} threads: max |Δ| {worst:.3e} > {max_err:.0e}"
            );
        }
        for (t, (g, w)) in got
            .chunks_exact(n_vocab)
            .zip(want.chunks_exact(n_vocab))
            .enumerate()
        {
            let best = argmax(w);
            let second = (0..n_vocab)
                .filter(|&i| i != best)
                .map(|i| w[i])
                .fold(f32::MIN, f32::max);
            if w[best] - second > 2.0 * max_err {
                assert_eq!(argmax(g), best, "{ty}: greedy choice at position {t}");
            }
        }
    }
}

#[test]
fn f32_logits_equal_llama_cpp() {
    check_llama_cpp(DENSE, "f32", 0.0);
}

/// Bit for bit since F16 products round their activations to f16 (F16's `vec_dot_type`) and sum
/// in ggml's order as llama.cpp's do; with f32 activations they differed by up to 2.1e-2.
#[test]
fn f16_logits_equal_llama_cpp() {
    check_llama_cpp(DENSE, "f16", 0.0);
}

#[test]
fn q8_0_logits_equal_llama_cpp() {
    check_llama_cpp(DENSE, "q8_0", 0.0);
}

#[test]
fn f32_logits_match_transformers() {
    check_transformers(DENSE);
}

/// `fixture`'s f32 file against transformers' logits (f32 weights), within 1e-2 of the largest
/// logit at every position.
pub fn check_transformers(fixture: &str) {
    let r = reference(fixture);
    let tokens = ids(&r["ids"]);
    let model = load_from(fixture, "f32");
    let n_vocab = model.hparams.n_vocab;
    let want = f32s(fixture, "transformers.f32");
    let got = logits(&model, &tokens, 512, 1);
    for (t, (g, w)) in got
        .chunks_exact(n_vocab)
        .zip(want.chunks_exact(n_vocab))
        .enumerate()
    {
        let scale = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = g
            .iter()
            .zip(w)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale;
        assert!(
            err <= 1e-2,
            "{fixture} position {t}: max |Δ| / max |logit| = {err:.2e}"
        );
    }
}

/// Decoding the prompt in small pieces reads the earlier pieces back from the KV cache (the
/// shared-KV layers' included); with `batch_invariant` every token takes the single-token path,
/// so the pieces must give exactly what one batch gives.
#[test]
fn small_batches_equal_one_batch() {
    let r = reference(DENSE);
    let tokens = ids(&r["ids"]);
    let model = load("q8_0");
    let run = |n_batch: usize| {
        let params = ContextParams {
            n_ctx: 64,
            n_batch,
            n_threads: 2,
            batch_invariant: true,
            ..ContextParams::default()
        };
        let mut ctx = Context::new(model.clone(), params).unwrap();
        let mut out = Vec::new();
        ctx.decode_with(&tokens, Outputs::All, |_, l| out.extend_from_slice(l))
            .unwrap();
        out
    };
    let whole = run(512);
    for n_batch in [1, 5] {
        assert!(run(n_batch) == whole, "n_batch {n_batch}");
    }
}

/// K-shift on Gemma 4: the prompt decoded at positions `0..n` and then moved by `d` (the cached
/// keys re-rotated, each layer with its own RoPE, head size and KV heads; shared layers have no
/// keys of their own) must give the next token the logits of the prompt decoded at `d..d+n` in
/// the first place — attention sees only relative positions — up to the f16 rounding of the
/// re-rotated keys.
#[test]
fn shifted_cache_equals_decoding_at_the_shifted_positions() {
    use engine::Batch;
    let r = reference(DENSE);
    let tokens = ids(&r["ids"]);
    let (prompt, next) = (&tokens[..20], tokens[20]);
    let model = load("f32");
    let d = 7;
    let params = ContextParams {
        n_ctx: 64,
        n_batch: 64,
        n_threads: 1,
        ..ContextParams::default()
    };
    let run = |start: usize, shift: usize| {
        let mut ctx = Context::new(model.clone(), params.clone()).unwrap();
        let mut b = Batch::with_capacity(64);
        for (i, &t) in prompt.iter().enumerate() {
            b.push(t, start + i, &[0], false);
        }
        ctx.decode_batch(&b).unwrap();
        if shift > 0 {
            ctx.seq_add(0, 0, None, shift as isize);
        }
        b.clear();
        b.push(next, d + prompt.len(), &[0], true);
        ctx.decode_batch(&b).unwrap();
        ctx.batch_logits(0).to_vec()
    };
    let direct = run(d, 0);
    let shifted = run(0, d);
    let scale = direct.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = direct
        .iter()
        .zip(&shifted)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale;
    assert!(err <= 5e-3, "max |Δ| / max |logit| = {err:.2e}");
    assert_eq!(argmax(&direct), argmax(&shifted));
    // the shift did something: unshifted keys at the wrong positions are far off
    let unshifted = {
        let mut ctx = Context::new(model.clone(), params.clone()).unwrap();
        let mut b = Batch::with_capacity(64);
        for (i, &t) in prompt.iter().enumerate() {
            b.push(t, i, &[0], false);
        }
        ctx.decode_batch(&b).unwrap();
        b.clear();
        b.push(next, d + prompt.len(), &[0], true);
        ctx.decode_batch(&b).unwrap();
        ctx.batch_logits(0).to_vec()
    };
    let off = direct
        .iter()
        .zip(&unshifted)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale;
    assert!(
        off > 10.0 * err.max(1e-4),
        "no shift: {off:.2e}, shift: {err:.2e}"
    );
}
