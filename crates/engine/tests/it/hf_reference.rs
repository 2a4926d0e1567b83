//! The small transformers checkpoints (`tests/fixtures/hf/<arch>`, random bf16 weights, real
//! tokenizers) converted by llama.cpp's own converter, against transformers' outputs: argmax at
//! every position where transformers' top-2 margin exceeds 0.05, and the last position's full
//! logits to max |Δ| / max |logit| ≤ 1e-2.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{Context, ContextParams, Model, Outputs};
use serde_json::Value;

fn dir(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(arch)
}

/// Unpacks `reference-bf16.gguf.gz` (or its `.partN` pieces) into a temporary file.
fn unpack(arch: &str) -> PathBuf {
    let d = dir(arch);
    let mut gz = Vec::new();
    let whole = d.join("reference-bf16.gguf.gz");
    if whole.exists() {
        gz = std::fs::read(whole).unwrap();
    } else {
        for i in 0.. {
            let part = d.join(format!("reference-bf16.gguf.gz.part{i}"));
            if !part.exists() {
                break;
            }
            gz.extend(std::fs::read(part).unwrap());
        }
    }
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut bytes)
        .unwrap();
    let out = std::env::temp_dir().join(format!("hearth-hf-{arch}-{}.gguf", std::process::id()));
    std::fs::write(&out, bytes).unwrap();
    out
}

fn f32s(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn check(arch: &str) {
    let path = unpack(arch);
    let model = Arc::new(Model::load(&path).unwrap());
    let _ = std::fs::remove_file(&path);
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(dir(arch).join("reference.json")).unwrap())
            .unwrap();
    let mut failures = Vec::new();
    let mut worst = 0.0f32;
    for (n, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let ids: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let top10 = case["top10_per_position"].as_array().unwrap();
        let last = f32s(&dir(arch).join(case["last_logits_file"].as_str().unwrap()));
        for n_threads in [1, 2] {
            let params = ContextParams {
                n_ctx: 256,
                n_batch: 64,
                n_threads,
                ..ContextParams::default()
            };
            let mut ctx = Context::new(model.clone(), params).unwrap();
            ctx.decode_with(&ids, Outputs::All, |pos, logits| {
                let top = top10[pos].as_array().unwrap();
                let margin = top[0][1].as_f64().unwrap() - top[1][1].as_f64().unwrap();
                let want = top[0][0].as_u64().unwrap() as usize;
                let ours = (0..logits.len())
                    .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
                    .unwrap();
                if margin > 0.05 && ours != want {
                    failures.push(format!(
                        "case {n} pos {pos}: argmax {ours} vs {want} (margin {margin:.3})"
                    ));
                }
                if pos + 1 == ids.len() {
                    let max_abs = last.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    let diff = logits
                        .iter()
                        .zip(&last)
                        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
                    worst = worst.max(diff / max_abs);
                    if diff / max_abs > 1e-2 {
                        failures.push(format!(
                            "case {n}: last logits max |Δ| / max |logit| = {:.2e}",
                            diff / max_abs
                        ));
                    }
                }
            })
            .unwrap();
        }
    }
    eprintln!("{arch}: worst last-position logit error {worst:.2e}");
    assert!(failures.is_empty(), "{arch}:\n{}", failures.join("\n"));
}

#[test]
fn llama_matches_transformers() {
    check("llama");
}

#[test]
fn qwen2_matches_transformers() {
    check("qwen2");
}

#[test]
fn qwen3_matches_transformers() {
    check("qwen3");
}

#[test]
fn gemma3_matches_transformers() {
    check("gemma3");
}
