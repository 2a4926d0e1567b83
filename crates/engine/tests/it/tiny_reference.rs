//! Tiny random checkpoints of the newer architectures (`tests/fixtures/<arch>/`, made by
//! `scripts/tiny-models/gen.sh`: transformers' config class, random weights, SmolLM2's
//! tokenizer, converted by llama.cpp's own `convert_hf_to_gguf.py` to f16 and q8_0) against
//! llama.cpp's logits at every position and greedy continuation, and against transformers.
//!
//! - q8_0: every matrix sums in llama.cpp's order (the router in its f32 order), so on an
//!   AVX-512 machine (where the reference was made) the logits of every position equal
//!   llama.cpp's bit for bit — checked by an FNV-1a hash of each position's f32 logits, with
//!   the worst top-20 difference reported when they do not.
//! - f16: the f16 products round their activations to f16 and sum in llama.cpp's order
//!   (`ggml_vec_dot_f16` for one token or an expert, llamafile's sgemm for a batch), so on
//!   AVX-512 every position equals llama.cpp's bit for bit too; elsewhere within a tolerance.
//! - greedy: hearth's incremental decode against llama.cpp's greedy tokens; a divergence is
//!   allowed only where llama.cpp's top-2 margin is a near-tie.
//! - transformers: argmax where its top-2 margin exceeds 0.05, the last position within 1e-2
//!   of the largest logit (f16 file: the checkpoint's weights are f16-exact).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engine::{Context, ContextParams, GenerateParams, Model, Outputs, SamplerParams};
use serde_json::Value;

fn dir(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(arch)
}

fn reference(arch: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir(arch).join("reference.json")).unwrap())
        .unwrap()
}

/// Unpacks `model-<ty>.gguf.gz` into a temporary file and loads it.
pub(crate) fn load(arch: &str, ty: &str) -> Arc<Model> {
    load_gz(
        &dir(arch).join(format!("model-{ty}.gguf.gz")),
        &format!("{arch}-{ty}"),
    )
}

/// A fixture's gzipped GGUF, unpacked.
fn gunzip_file(path: &Path) -> Vec<u8> {
    let gz = std::fs::read(path).unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

/// Unpacks a gzipped GGUF into a temporary file and loads it.
fn load_gz(path: &Path, tag: &str) -> Arc<Model> {
    load_file_bytes(gunzip_file(path), tag)
}

/// Loads a GGUF's bytes through a temporary file.
fn load_file_bytes(bytes: Vec<u8>, tag: &str) -> Arc<Model> {
    let path = std::env::temp_dir().join(format!(
        "hearth-tiny-{tag}-{}-{:?}.gguf",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, bytes).unwrap();
    let model = Model::load(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    Arc::new(model)
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn f32s(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn fnv1a64(logits: &[f32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in logits {
        for b in v.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn context(model: &Arc<Model>, n_threads: usize) -> Context {
    let params = ContextParams {
        n_ctx: 128,
        n_batch: 64,
        n_threads,
        ..ContextParams::default()
    };
    Context::new(model.clone(), params).unwrap()
}

/// Every position's logits of `tokens` decoded in one batch.
fn all_logits(model: &Arc<Model>, tokens: &[u32], n_threads: usize) -> Vec<Vec<f32>> {
    let mut ctx = context(model, n_threads);
    let mut out = Vec::new();
    ctx.decode_with(tokens, Outputs::All, |_, l| out.push(l.to_vec()))
        .unwrap();
    out
}

/// The largest |Δ| between our logits and the reference's top 20, relative to the largest
/// reference logit.
fn top20_error(ours: &[f32], top20: &Value) -> f32 {
    let top: Vec<(usize, f32)> = top20
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_u64().unwrap() as usize,
                p[1].as_f64().unwrap() as f32,
            )
        })
        .collect();
    let max = top.iter().fold(0.0f32, |m, &(_, v)| m.max(v.abs()));
    top.iter()
        .fold(0.0f32, |m, &(i, v)| m.max((ours[i] - v).abs()))
        / max
}

/// q8_0: the logits of every position of the prompt, and of prompt + llama.cpp's greedy
/// continuation (one batch, teacher-forced), equal llama.cpp's bit for bit on AVX-512.
pub fn llama_cpp_exact(arch: &str) {
    llama_cpp_q8_0(arch, true, 1e-3);
}

/// q8_0 as [`llama_cpp_exact`], `bit_exact` or within `tol` of the largest logit.
pub fn llama_cpp_q8_0(arch: &str, bit_exact: bool, tol: f32) {
    let reference = reference(arch);
    let model = load(arch, "q8_0");
    let exact = bit_exact && kernels::isa::Isa::detected() == kernels::isa::Isa::Avx512;
    let mut failures = Vec::new();
    for (n, (case, llama)) in reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["llama_cpp"]["q8_0"].as_array().unwrap())
        .enumerate()
    {
        let prompt = ids(&case["ids"]);
        let full: Vec<u32> = prompt
            .iter()
            .copied()
            .chain(ids(&llama["greedy"]))
            .collect();
        for (tokens, hashes, tops) in [
            (
                &prompt,
                &llama["fnv1a64_per_position"],
                &llama["top20_per_position"],
            ),
            (
                &full,
                &llama["full_fnv1a64_per_position"],
                &llama["full_top20_per_position"],
            ),
        ] {
            for n_threads in [1, 2] {
                let logits = all_logits(&model, tokens, n_threads);
                let mut same = 0;
                let mut worst = 0.0f32;
                for (pos, l) in logits.iter().enumerate() {
                    if fnv1a64(l) == hashes[pos].as_str().unwrap() {
                        same += 1;
                    }
                    worst = worst.max(top20_error(l, &tops[pos]));
                }
                eprintln!(
                    "{arch} q8_0 case {n} ({} tokens, {n_threads} threads): {same}/{} positions \
                     bit-identical to llama.cpp, worst top-20 |Δ|/max {worst:.2e}",
                    tokens.len(),
                    logits.len()
                );
                if exact && same != logits.len() {
                    failures.push(format!(
                        "case {n} ({} tokens, {n_threads} threads): {same}/{} positions equal \
                         (worst {worst:.2e})",
                        tokens.len(),
                        logits.len()
                    ));
                }
                if worst > tol {
                    failures.push(format!("case {n}: top-20 error {worst:.2e} > {tol:.0e}"));
                }
            }
        }
        // The last prompt position's full logits, as a second check of the hash.
        let last = f32s(&dir(arch).join(llama["last_logits_file"].as_str().unwrap()));
        let ours = all_logits(&model, &prompt, 1).pop().unwrap();
        if exact && ours != last {
            failures.push(format!("case {n}: last prompt logits differ"));
        }
    }
    assert!(failures.is_empty(), "{arch}:\n{}", failures.join("\n"));
}

/// f16: every position bit for bit on AVX-512; elsewhere within `tol` of the largest logit
/// (top 20), argmax equal where llama.cpp's margin exceeds 0.05.
pub fn llama_cpp_f16(arch: &str, tol: f32) {
    let reference = reference(arch);
    let model = load(arch, "f16");
    let exact = kernels::isa::Isa::detected() == kernels::isa::Isa::Avx512;
    let mut failures = Vec::new();
    for (n, (case, llama)) in reference["cases"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["llama_cpp"]["f16"].as_array().unwrap())
        .enumerate()
    {
        let prompt = ids(&case["ids"]);
        let logits = all_logits(&model, &prompt, 2);
        let mut worst = 0.0f32;
        let mut same = 0;
        for (pos, l) in logits.iter().enumerate() {
            if fnv1a64(l) == llama["fnv1a64_per_position"][pos].as_str().unwrap() {
                same += 1;
            }
            let top = &llama["top20_per_position"][pos];
            worst = worst.max(top20_error(l, top));
            let margin = top[0][1].as_f64().unwrap() - top[1][1].as_f64().unwrap();
            let want = top[0][0].as_u64().unwrap() as usize;
            let ours = argmax(l);
            if margin > 0.05 && ours != want {
                failures.push(format!("case {n} pos {pos}: argmax {ours} vs {want}"));
            }
        }
        eprintln!(
            "{arch} f16 case {n}: {same}/{} positions bit-identical, worst top-20 |Δ|/max vs \
             llama.cpp {worst:.2e}",
            logits.len()
        );
        if exact && same != logits.len() {
            failures.push(format!(
                "case {n}: {same}/{} positions equal llama.cpp's",
                logits.len()
            ));
        }
        if worst > tol {
            failures.push(format!("case {n}: top-20 error {worst:.2e} > {tol:.0e}"));
        }
    }
    assert!(failures.is_empty(), "{arch}:\n{}", failures.join("\n"));
}

fn argmax(l: &[f32]) -> usize {
    (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap()
}

/// Greedy generation (incremental decode) against llama.cpp's greedy tokens, for both files.
pub fn greedy_matches(arch: &str) {
    let reference = reference(arch);
    for ty in ["q8_0", "f16"] {
        let model = load(arch, ty);
        for (n, (case, llama)) in reference["cases"]
            .as_array()
            .unwrap()
            .iter()
            .zip(reference["llama_cpp"][ty].as_array().unwrap())
            .enumerate()
        {
            let prompt = ids(&case["ids"]);
            let want = ids(&llama["greedy"]);
            let margins: Vec<f64> = llama["greedy_margins"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_f64().unwrap())
                .collect();
            let mut ctx = context(&model, 2);
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
            eprintln!(
                "{arch} {ty} case {n}: greedy matches llama.cpp for {same}/{} tokens",
                want.len()
            );
            if same < want.len() {
                assert!(
                    margins[same] < 0.02,
                    "{arch} {ty} case {n}: greedy diverges at {same} where llama.cpp's margin \
                     is {:.3}\n got {got:?}\nwant {want:?}",
                    margins[same]
                );
            }
        }
    }
}

/// The f16 file against transformers.
pub fn transformers_close(arch: &str) {
    let reference = reference(arch);
    let model = load(arch, "f16");
    let mut failures = Vec::new();
    let mut worst = 0.0f32;
    for (n, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let prompt = ids(&case["ids"]);
        let top10 = case["hf"]["top10_per_position"].as_array().unwrap();
        let last = f32s(&dir(arch).join(case["hf"]["last_logits_file"].as_str().unwrap()));
        let logits = all_logits(&model, &prompt, 2);
        for (pos, l) in logits.iter().enumerate() {
            let top = top10[pos].as_array().unwrap();
            let margin = top[0][1].as_f64().unwrap() - top[1][1].as_f64().unwrap();
            let want = top[0][0].as_u64().unwrap() as usize;
            let ours = argmax(l);
            if margin > 0.05 && ours != want {
                failures.push(format!(
                    "case {n} pos {pos}: argmax {ours} vs {want} (margin {margin:.3})"
                ));
            }
        }
        let ours = logits.last().unwrap();
        let max_abs = last.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let diff = ours
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
    eprintln!("{arch}: worst last-position error vs transformers {worst:.2e}");
    assert!(failures.is_empty(), "{arch}:\n{}", failures.join("\n"));
}

#[test]
fn qwen3moe_logits_equal_llama_cpp() {
    llama_cpp_exact("qwen3moe");
}

#[test]
fn qwen3moe_f16_logits_equal_llama_cpp() {
    llama_cpp_f16("qwen3moe", 5e-3);
}

#[test]
fn qwen3moe_greedy_matches_llama_cpp() {
    greedy_matches("qwen3moe");
}

#[test]
fn qwen3moe_matches_transformers() {
    transformers_close("qwen3moe");
}

/// A 2-layer synthetic qwen3moe in the Q4_K_M mix (`tests/fixtures/qwen3moe-q4_k_m`, written by
/// our GGUF writer, `scripts/tiny-models/gen-q4km.sh`): Q4_K experts (which llama.cpp repacks and
/// runs one token at a time) and Q6_K `ffn_down_exps` (its tiled mat-mul for experts that 8 or
/// more of the 24 tokens chose, `ggml_vec_dot_q6_K_q8_K` for the others) give llama.cpp's logits
/// bit for bit at every position on AVX-512, and within 1e-3 elsewhere.
#[test]
fn qwen3moe_q4_k_m_logits_equal_llama_cpp() {
    let d = dir("qwen3moe-q4_k_m");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("reference.json")).unwrap()).unwrap();
    let model = load_gz(&d.join("model.gguf.gz"), "qwen3moe-q4_k_m");
    let exact = kernels::isa::Isa::detected() == kernels::isa::Isa::Avx512;
    let tokens = ids(&reference["ids"]);
    for n_threads in [1, 2] {
        let logits = all_logits(&model, &tokens, n_threads);
        let mut same = 0;
        let mut worst = 0.0f32;
        for (pos, l) in logits.iter().enumerate() {
            if fnv1a64(l) == reference["fnv1a64_per_position"][pos].as_str().unwrap() {
                same += 1;
            }
            worst = worst.max(top20_error(l, &reference["top20_per_position"][pos]));
        }
        eprintln!(
            "qwen3moe Q4_K_M ({n_threads} threads): {same}/{} positions bit-identical, worst \
             top-20 |Δ|/max {worst:.2e}",
            logits.len()
        );
        if exact {
            assert_eq!(same, logits.len(), "worst top-20 error {worst:.2e}");
        }
        assert!(worst <= 1e-3, "top-20 error {worst:.2e}");
    }
}

/// The tiny smollm3 quantized to IQ4_NL by llama-quantize (`tests/fixtures/smollm3-iq4_nl`,
/// `scripts/tiny-models/gen-iq4nl.sh`): llama.cpp repacks its IQ4_NL matrices (`iq4_nl_8x8`)
/// and sums them a block per fma; hearth follows that order (`ggml_order`), so the logits
/// equal llama.cpp's bit for bit at every position on AVX-512, and within 1e-3 elsewhere.
/// (Regression: IQ4_NL was summed in hearth's own order, PPL 25.1077 against 25.2170.)
#[test]
fn smollm3_iq4_nl_logits_equal_llama_cpp() {
    let d = dir("smollm3-iq4_nl");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("reference.json")).unwrap()).unwrap();
    let model = load_gz(&d.join("model.gguf.gz"), "smollm3-iq4_nl");
    let exact = kernels::isa::Isa::detected() == kernels::isa::Isa::Avx512;
    let tokens = ids(&reference["ids"]);
    for n_threads in [1, 2] {
        let logits = all_logits(&model, &tokens, n_threads);
        let mut same = 0;
        let mut worst = 0.0f32;
        for (pos, l) in logits.iter().enumerate() {
            if fnv1a64(l) == reference["fnv1a64_per_position"][pos].as_str().unwrap() {
                same += 1;
            }
            worst = worst.max(top20_error(l, &reference["top20_per_position"][pos]));
        }
        eprintln!(
            "smollm3 IQ4_NL ({n_threads} threads): {same}/{} positions bit-identical, worst \
             top-20 |Δ|/max {worst:.2e}",
            logits.len()
        );
        if exact {
            assert_eq!(same, logits.len(), "worst top-20 error {worst:.2e}");
        }
        assert!(worst <= 1e-3, "top-20 error {worst:.2e}");
    }
}

/// Batch-invariant contexts route and run each token's experts as if it were alone.
#[test]
fn qwen3moe_sequences_decoded_together_equal_each_alone() {
    let model = load("qwen3moe", "q8_0");
    crate::many_sequences::check_model_together_equals_alone("qwen3moe q8_0", &model, true);
}

/// The shared experts (run densely over the batch) keep batch invariance too.
#[test]
fn qwen2moe_sequences_decoded_together_equal_each_alone() {
    let model = load("qwen2moe", "q8_0");
    crate::many_sequences::check_model_together_equals_alone("qwen2moe q8_0", &model, true);
}

/// The four reference checks of one architecture's tiny checkpoint.
macro_rules! tiny_arch_tests {
    ($m:ident, $arch:literal, $f16_tol:expr) => {
        tiny_arch_tests!($m, $arch, $f16_tol, logits_equal_llama_cpp, true, 1e-3);
    };
    ($m:ident, $arch:literal, $f16_tol:expr, $q8_name:ident, $exact:expr, $q8_tol:expr) => {
        mod $m {
            #[test]
            fn $q8_name() {
                super::llama_cpp_q8_0($arch, $exact, $q8_tol);
            }

            #[test]
            fn f16_logits_equal_llama_cpp() {
                super::llama_cpp_f16($arch, $f16_tol);
            }

            #[test]
            fn greedy_matches_llama_cpp() {
                super::greedy_matches($arch);
            }

            #[test]
            fn matches_transformers() {
                super::transformers_close($arch);
            }
        }
    };
}

// Qwen2-MoE: experts weighed without renormalising, plus the sigmoid-gated shared expert.
tiny_arch_tests!(qwen2moe, "qwen2moe", 5e-3);
tiny_arch_tests!(smollm3, "smollm3", 5e-3);
tiny_arch_tests!(mistral3, "mistral3", 5e-3);
// Phi-3 (Phi-4-mini's shape): fused attn_qkv and gate/up, partial neox RoPE, LongRoPE's short
// factors at these contexts (128 cells, 256 as llama.cpp pads them, not past the 256 trained).
tiny_arch_tests!(phi3, "phi3", 5e-3);

/// LongRoPE's long factors: a Phi-3 context longer than the training context (512 > 256
/// cells) rotates with `rope_factors_long`, chosen once when the context is made, as llama.cpp
/// chooses by its context size — every position equals llama.cpp's at that size bit for bit on
/// AVX-512 (the short factors' logits differ from these from position 1 on), and transformers'
/// argmax with the long frequencies.
#[test]
fn phi3_long_context_uses_the_long_rope_factors() {
    let reference = reference("phi3");
    let long = &reference["long_context"];
    let n_ctx = long["n_ctx"].as_u64().unwrap() as usize;
    let (model, f16) = (load("phi3", "q8_0"), load("phi3", "f16"));
    let exact = kernels::isa::Isa::detected() == kernels::isa::Isa::Avx512;
    let mut failures = Vec::new();
    for (n, case) in reference["cases"].as_array().unwrap().iter().enumerate() {
        let prompt = ids(&case["ids"]);
        let llama = &long["llama_cpp"]["q8_0"][n];
        let short = &reference["llama_cpp"]["q8_0"][n]["fnv1a64_per_position"];
        let params = ContextParams {
            n_ctx,
            n_batch: 64,
            n_threads: 2,
            ..ContextParams::default()
        };
        let run = |model: &Arc<Model>| {
            let mut ctx = Context::new(model.clone(), params.clone()).unwrap();
            let mut logits = Vec::new();
            ctx.decode_with(&prompt, Outputs::All, |_, l| logits.push(l.to_vec()))
                .unwrap();
            logits
        };
        let logits = run(&model);
        let (mut same, mut like_short, mut worst) = (0, 0, 0.0f32);
        for (pos, l) in logits.iter().enumerate() {
            let h = fnv1a64(l);
            same += usize::from(h == llama["fnv1a64_per_position"][pos].as_str().unwrap());
            like_short += usize::from(pos > 0 && h == short[pos].as_str().unwrap());
            worst = worst.max(top20_error(l, &llama["top20_per_position"][pos]));
        }
        // transformers against the f16 file, whose weights are the checkpoint's.
        for (pos, l) in run(&f16).iter().enumerate() {
            let top = long["hf"][n]["top10_per_position"][pos].as_array().unwrap();
            let margin = top[0][1].as_f64().unwrap() - top[1][1].as_f64().unwrap();
            let want = top[0][0].as_u64().unwrap() as usize;
            if margin > 0.05 && argmax(l) != want {
                failures.push(format!(
                    "case {n} pos {pos}: argmax {} vs transformers' {want}",
                    argmax(l)
                ));
            }
        }
        eprintln!(
            "phi3 long context case {n}: {same}/{} positions bit-identical to llama.cpp at n_ctx \
             {n_ctx}, worst top-20 |Δ|/max {worst:.2e}",
            logits.len()
        );
        // The same store held to 256 cells per sequence (llama-server's slots without
        // `--kv-unified`): the short factors again, as llama.cpp's `n_ctx_seq` gives.
        let shared = ContextParams {
            n_seq_max: 2,
            n_ctx_seq: Some(n_ctx / 2),
            ..params.clone()
        };
        let mut ctx = Context::new(model.clone(), shared).unwrap();
        let mut k = 0;
        let short_tops = &reference["llama_cpp"]["q8_0"][n]["top20_per_position"];
        ctx.decode_with(&prompt, Outputs::All, |pos, l| {
            if fnv1a64(l) != short[pos].as_str().unwrap() && exact
                || top20_error(l, &short_tops[pos]) > 1e-3
            {
                k += 1;
            }
        })
        .unwrap();
        if k > 0 {
            failures.push(format!(
                "case {n}: {k} positions differ from the short factors' at 256 cells per sequence"
            ));
        }
        if like_short > 0 {
            failures.push(format!(
                "case {n}: {like_short} positions equal the short factors' logits"
            ));
        }
        if exact && same != logits.len() {
            failures.push(format!("case {n}: {same}/{} positions equal", logits.len()));
        }
        if worst > 1e-3 {
            failures.push(format!("case {n}: top-20 error {worst:.2e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The K-shift with the RoPE the context chose: a Phi-3 sequence moved by `seq_add` and decoded
/// on equals it evaluated afresh at the moved positions in a 256-cell context (short factors)
/// and a 512-cell one (long factors), within 5e-3 of the logits (measured 0.9–2.7e-3: the f16
/// file rounds every product's activations to f16, which carries the f16 cache's rounding
/// further than the synthetic f32 models of `many_sequences` do); as a pure rotation —
/// llama.cpp's K-shift multiplies the keys by LongRoPE's `attn_factor` (1.118 here) again,
/// which was 1.7e-1 off.
#[test]
fn phi3_shifted_keys_equal_keys_at_the_new_positions() {
    use crate::many_sequences::{rel_diff, shifted_and_fresh_in};
    let model = load("phi3", "f16");
    let tokens = ids(&reference("phi3")["cases"][1]["ids"]);
    for n_ctx in [256, 512] {
        for (start, delta) in [(0, 9), (20, -13)] {
            let (shifted, fresh) =
                shifted_and_fresh_in(&model, n_ctx, &tokens, start, delta, false);
            let d = rel_diff(&shifted, &fresh);
            assert!(d <= 5e-3, "n_ctx {n_ctx}, from {start} by {delta}: {d:.2e}");
            let (unshifted, _) = shifted_and_fresh_in(&model, n_ctx, &tokens, start, delta, true);
            assert!(
                rel_diff(&unshifted, &fresh) > 1e-2,
                "n_ctx {n_ctx}: no shift is close"
            );
        }
    }
}

// gpt-oss's q8_0 logits were within 2e-7 of llama.cpp's but not identical while its F32
// matrices (the untied LM head among them) summed in hearth's own order; in llama.cpp's
// (`ggml_vec_dot_f32`, llamafile's sgemm) they are equal at every position.
tiny_arch_tests!(gpt_oss, "gpt-oss", 1.5e-2);

// ---- MoE layouts llama.cpp's converter does not write, made by editing the q8_0 fixtures ----
//
// `scripts/tiny-models/moe_layouts.py` makes the same edits with gguf-py and runs llama.cpp on
// them: it loads the qwen2moe file without `expert_feed_forward_length` and the qwen3moe file
// with a uniform per-layer array, and their logits equal the originals' bit for bit (so the
// originals' reference hashes are llama.cpp's for the edited files too); it refuses the others
// (its gpt-oss loader takes only separate gate and up experts, and its MoE loaders give every
// layer layer 0's width), which hearth runs as the same model.

/// `f` zero-valued Q8_0 values per row, as blocks.
fn q8_0_zeros(values: usize) -> Vec<u8> {
    vec![0u8; values / 32 * 34]
}

/// The q8_0 fixture of `arch` edited by `edit`, checked against llama.cpp's logits of the
/// original: every position bit for bit on AVX-512 (where `exact`), else within 1e-3.
fn edited_equals_llama_cpp(arch: &str, exact: bool, edit: impl FnOnce(&mut gguf::Builder<'_>)) {
    let bytes = gunzip_file(&dir(arch).join("model-q8_0.gguf.gz"));
    let file = gguf::Gguf::parse(&bytes).unwrap();
    let mut b = gguf::Builder::from_gguf(&file);
    edit(&mut b);
    let model = load_file_bytes(b.to_bytes(), &format!("{arch}-edited"));
    let original = load(arch, "q8_0");
    let reference = reference(arch);
    let llama = &reference["llama_cpp"]["q8_0"][0];
    let prompt = ids(&reference["cases"][0]["ids"]);
    let exact = exact && kernels::isa::Isa::detected() == kernels::isa::Isa::Avx512;
    for n_threads in [1, 2] {
        let got = all_logits(&model, &prompt, n_threads);
        assert_eq!(
            got,
            all_logits(&original, &prompt, n_threads),
            "{arch}: the edited file is not the same model"
        );
        for (pos, l) in got.iter().enumerate() {
            if exact {
                assert_eq!(
                    fnv1a64(l),
                    llama["fnv1a64_per_position"][pos].as_str().unwrap(),
                    "{arch} position {pos}"
                );
            }
            let err = top20_error(l, &llama["top20_per_position"][pos]);
            assert!(err <= 1e-3, "{arch} position {pos}: {err:.2e}");
        }
    }
}

/// qwen2moe without `expert_feed_forward_length`: llama.cpp's loader takes
/// `feed_forward_length / expert_used_count` (96 / 3 = 32, the experts' width here).
#[test]
fn qwen2moe_without_expert_feed_forward_length_equals_llama_cpp() {
    edited_equals_llama_cpp("qwen2moe", true, |b| {
        assert!(b.remove("qwen2moe.expert_feed_forward_length").is_some());
    });
}

/// `expert_feed_forward_length` as an array of one value per layer (`get_key_or_arr`).
#[test]
fn qwen3moe_per_layer_expert_feed_forward_length_equals_llama_cpp() {
    edited_equals_llama_cpp("qwen3moe", true, |b| {
        let arr = gguf::Array::from_u32s(&[32, 32]);
        b.set(
            "qwen3moe.expert_feed_forward_length",
            gguf::Value::Array(arr),
        )
        .unwrap();
    });
}

/// Layers of different expert widths: layer 1's experts padded from 32 to 64 with zero rows
/// (gate, up) and zero columns (down), the array saying `[32, 64]`. The padding adds only
/// exact zeros, so the logits must stay llama.cpp's for the unpadded model — a layer bound or
/// run at another layer's width would not.
#[test]
fn qwen3moe_layers_of_different_expert_widths_run_each_at_its_own() {
    edited_equals_llama_cpp("qwen3moe", true, |b| {
        let arr = gguf::Array::from_u32s(&[32, 64]);
        b.set(
            "qwen3moe.expert_feed_forward_length",
            gguf::Value::Array(arr),
        )
        .unwrap();
        pad_layer_experts(b, 1, 32, 64, 64, 8);
    });
}

/// Pads layer `il`'s Q8_0 experts from width `f` to `f2` (`d` the embedding width, `ne` the
/// experts): `f2 − f` zero rows after each expert's gate and up rows, zero values after each of
/// its down rows.
fn pad_layer_experts(
    b: &mut gguf::Builder<'_>,
    il: usize,
    f: usize,
    f2: usize,
    d: usize,
    ne: usize,
) {
    let take = |b: &mut gguf::Builder<'_>, name: &str| -> Vec<u8> {
        let t = b.tensors().iter().find(|t| t.name == name).unwrap();
        t.data.to_vec()
    };
    let mut rebuilt = Vec::new();
    for part in ["gate", "up"] {
        let name = format!("blk.{il}.ffn_{part}_exps.weight");
        let data = take(b, &name);
        let row = d / 32 * 34;
        let mut out = Vec::new();
        for e in data.chunks_exact(f * row) {
            out.extend_from_slice(e);
            out.extend(std::iter::repeat_n(0u8, (f2 - f) * row));
        }
        assert_eq!(out.len(), ne * f2 * row);
        rebuilt.push((name, vec![d as u64, f2 as u64, ne as u64], out));
    }
    let name = format!("blk.{il}.ffn_down_exps.weight");
    let data = take(b, &name);
    let mut out = Vec::new();
    for r in data.chunks_exact(f / 32 * 34) {
        out.extend_from_slice(r);
        out.extend(q8_0_zeros(f2 - f));
    }
    rebuilt.push((name, vec![f2 as u64, d as u64, ne as u64], out));
    replace_tensors(b, rebuilt, gguf::GgmlType::Q8_0);
}

/// `b` with the named tensors replaced (same type, new shapes and data), in place.
fn replace_tensors(
    b: &mut gguf::Builder<'_>,
    new: Vec<(String, Vec<u64>, Vec<u8>)>,
    ty: gguf::GgmlType,
) {
    let mut out = gguf::Builder::new();
    for (k, v) in b.metadata() {
        out.set(k.clone(), v.clone()).unwrap();
    }
    for t in b.tensors() {
        match new.iter().find(|(n, _, _)| *n == t.name) {
            Some((n, shape, data)) => out.add_tensor(n.clone(), ty, shape, data.clone()).unwrap(),
            None => out
                .add_tensor(t.name.clone(), t.ty, &t.shape, t.data.clone())
                .unwrap(),
        }
    }
    *b = out;
}

/// gpt-oss with its gate and up experts fused into `ffn_gate_up_exps` (each expert's gate rows,
/// then its up rows) and their biases into `ffn_gate_up_exps.bias` (gate's, then up's, per
/// expert), as llama.cpp's `build_moe_ffn` reads a fused gate_up with `gate_up_exps_b`. Its
/// gpt-oss loader does not take this layout, so the check is against the separate-tensor file:
/// the same logits bit for bit, and within 2e-7 of llama.cpp's (as that file is).
#[test]
fn gpt_oss_fused_gate_up_with_biases_equals_separate() {
    edited_equals_llama_cpp("gpt-oss", false, |b| {
        let (d, f, ne) = (64usize, 32usize, 8usize);
        let row = d / 32 * 34;
        let mut fused = Vec::new();
        for il in 0..2 {
            let get = |name: &str| -> Vec<u8> {
                let t = b.tensors().iter().find(|t| t.name == name).unwrap();
                t.data.to_vec()
            };
            let g = get(&format!("blk.{il}.ffn_gate_exps.weight"));
            let u = get(&format!("blk.{il}.ffn_up_exps.weight"));
            let mut w = Vec::new();
            for (ge, ue) in g.chunks_exact(f * row).zip(u.chunks_exact(f * row)) {
                w.extend_from_slice(ge);
                w.extend_from_slice(ue);
            }
            let gb = get(&format!("blk.{il}.ffn_gate_exps.bias"));
            let ub = get(&format!("blk.{il}.ffn_up_exps.bias"));
            let mut bias = Vec::new();
            for (ge, ue) in gb.chunks_exact(4 * f).zip(ub.chunks_exact(4 * f)) {
                bias.extend_from_slice(ge);
                bias.extend_from_slice(ue);
            }
            fused.push((il, w, bias));
        }
        let mut out = gguf::Builder::new();
        for (k, v) in b.metadata() {
            out.set(k.clone(), v.clone()).unwrap();
        }
        for t in b.tensors() {
            let separate = ["gate_exps", "up_exps"]
                .iter()
                .any(|p| t.name.contains(&format!("ffn_{p}.")));
            if !separate {
                out.add_tensor(t.name.clone(), t.ty, &t.shape, t.data.clone())
                    .unwrap();
            }
        }
        for (il, w, bias) in fused {
            let shape = [d as u64, 2 * f as u64, ne as u64];
            out.add_tensor(
                format!("blk.{il}.ffn_gate_up_exps.weight"),
                gguf::GgmlType::Q8_0,
                &shape,
                w,
            )
            .unwrap();
            out.add_tensor(
                format!("blk.{il}.ffn_gate_up_exps.bias"),
                gguf::GgmlType::F32,
                &[2 * f as u64, ne as u64],
                bias,
            )
            .unwrap();
        }
        *b = out;
    });
}
