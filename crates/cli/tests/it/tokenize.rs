//! `hearth tokenize` against llama.cpp's ids: the SmolLM2 fixture cases, a vocabulary-only
//! file from llama.cpp's conformance suite, and the `id -> 'piece'` listing.

use std::path::{Path, PathBuf};
use std::process::Output;

use super::hearth;

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "hearth failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn ids_list(ids: &[u64]) -> String {
    let s: Vec<String> = ids.iter().map(u64::to_string).collect();
    format!("[{}]\n", s.join(", "))
}

#[test]
fn smollm2_ids_match_llama_cpp() {
    let model = test_models::path(test_models::SMOLLM2);
    let model = model.to_str().unwrap();
    let fixture = repo().join("crates/text/tests/fixtures/smollm2/tokenize.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let cases = json["cases"].as_array().unwrap();
    let mut checked = 0;
    for c in cases
        .iter()
        .step_by(3)
        .chain(cases.iter().skip(2).step_by(3))
    {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u64> = c["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let mut args = vec!["tokenize", "-m", model, "--ids"];
        if !c["add_special"].as_bool().unwrap() {
            args.push("--no-bos");
        }
        if c["parse_special"].as_bool().unwrap() {
            args.push("--parse-special");
        }
        args.extend(["--", text]);
        assert_eq!(stdout(&hearth(&args)), ids_list(&want), "{text:?}");
        checked += 1;
    }
    assert_eq!(checked, 64);
}

#[test]
fn vocab_only_file_and_text_from_a_file() {
    let dir = repo().join("tests/fixtures/vocab");
    let model = dir.join("ggml-vocab-llama-spm.gguf");
    let inp = std::fs::read_to_string(dir.join("ggml-vocab-llama-spm.gguf.inp")).unwrap();
    let out = std::fs::read_to_string(dir.join("ggml-vocab-llama-spm.gguf.out")).unwrap();
    let text = inp.split("\n__ggml_vocab_test__\n").next().unwrap();
    let want: Vec<u64> = out
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .map(|t| t.parse().unwrap())
        .collect();
    let file = std::env::temp_dir().join(format!("hearth-tokenize-{}.txt", std::process::id()));
    std::fs::write(&file, text).unwrap();
    let o = hearth(&[
        "tokenize",
        "-m",
        model.to_str().unwrap(),
        "--no-bos",
        "--ids",
        "-f",
        file.to_str().unwrap(),
    ]);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(stdout(&o), ids_list(&want));
    // BOS is added when the model asks for it
    let o = hearth(&["tokenize", "-m", model.to_str().unwrap(), "--ids", text]);
    assert!(stdout(&o).starts_with("[1, "));
}

#[test]
fn pieces_are_listed_like_llama_tokenize() {
    // ids as in the fixture: "Hi" after a newline is 26843, " 🦙" is 15107 116 243
    let model = test_models::path(test_models::SMOLLM2);
    let o = hearth(&[
        "tokenize",
        "-m",
        model.to_str().unwrap(),
        "--parse-special",
        "<|im_start|>Hi 🦙",
    ]);
    assert_eq!(
        stdout(&o),
        "     1 -> '<|im_start|>'\n 26843 -> 'Hi'\n 15107 -> ' \\xf0\\x9f'\n   116 -> '\\xa6'\n   243 -> '\\x99'\n"
    );
}

#[test]
fn errors_are_one_line_and_non_zero() {
    let o = hearth(&["tokenize", "-m", "/nonexistent.gguf", "x"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("error: cannot open /nonexistent.gguf"),
        "{err}"
    );
    let model = repo().join("tests/fixtures/vocab/ggml-vocab-gpt-2.gguf");
    let o = hearth(&["tokenize", "-m", model.to_str().unwrap()]);
    assert!(!o.status.success());
}
