//! llama.cpp's tokenizer conformance suite: every `ggml-vocab-*.gguf` in the repo's
//! `tests/fixtures/vocab/` with its `.inp` (texts separated by `__ggml_vocab_test__` lines) and
//! `.out` (llama.cpp's ids, one line per text; BOS not added, special tokens not parsed).
//! Files over 4 MB are stored gzip-compressed.

use std::io::Read;
use std::path::PathBuf;

use text::tokenizer::Tokenizer;

pub fn vocab_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/vocab")
}

/// The bytes of `ggml-vocab-NAME.gguf`, decompressing the `.gz` copy when that is what exists.
pub fn vocab_bytes(name: &str) -> Vec<u8> {
    let path = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    if path.exists() {
        return std::fs::read(&path).unwrap();
    }
    let gz = path.with_extension("gguf.gz");
    let file = std::fs::File::open(&gz).unwrap_or_else(|e| panic!("{}: {e}", gz.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut out)
        .unwrap();
    out
}

pub fn vocab_tokenizer(name: &str) -> Tokenizer {
    let bytes = vocab_bytes(name);
    let g = gguf::Gguf::parse(&bytes).unwrap();
    Tokenizer::from_gguf(&g).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let base = vocab_dir().join(format!("ggml-vocab-{name}.gguf"));
    let inp = std::fs::read_to_string(base.with_extension("gguf.inp")).unwrap();
    let out = std::fs::read_to_string(base.with_extension("gguf.out")).unwrap();
    // llama.cpp's test-tokenizer-0: a final separator ends the last text; without one the
    // rest of the file is the last text (gemma-4's file ends so)
    let mut texts: Vec<&str> = inp.split("\n__ggml_vocab_test__\n").collect();
    if texts.last() == Some(&"") {
        texts.pop();
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
        .collect();
    assert_eq!(texts.len(), ids.len(), "{name}: .inp and .out disagree");
    texts.into_iter().map(str::to_owned).zip(ids).collect()
}

fn check(name: &str) {
    let tok = vocab_tokenizer(name);
    let cases = cases(name);
    let mut failures = Vec::new();
    for (text, want) in &cases {
        let got = tok.encode(text, false, false);
        if &got != want {
            failures.push(format!("  {text:?}\n    want {want:?}\n    got  {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn bert_bge() {
    check("bert-bge");
}

#[test]
fn deepseek_coder() {
    check("deepseek-coder");
}

#[test]
fn deepseek_llm() {
    check("deepseek-llm");
}

#[test]
fn falcon() {
    check("falcon");
}

#[test]
fn gemma_4() {
    check("gemma-4");
}

#[test]
fn gpt_2() {
    check("gpt-2");
}

#[test]
fn llama_bpe() {
    check("llama-bpe");
}

#[test]
fn llama_spm() {
    check("llama-spm");
}

#[test]
fn mpt() {
    check("mpt");
}

#[test]
fn phi_3() {
    check("phi-3");
}

#[test]
fn qwen2() {
    check("qwen2");
}

#[test]
fn qwen35() {
    check("qwen35");
}

#[test]
fn refact() {
    check("refact");
}

#[test]
fn starcoder() {
    check("starcoder");
}

#[test]
fn every_vocab_fixture_has_a_test() {
    let mut names: Vec<String> = std::fs::read_dir(vocab_dir())
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().into_string().unwrap();
            let n = n.strip_prefix("ggml-vocab-")?.to_owned();
            n.strip_suffix(".gguf.inp").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bert-bge",
            "deepseek-coder",
            "deepseek-llm",
            "falcon",
            "gemma-4",
            "gpt-2",
            "llama-bpe",
            "llama-spm",
            "mpt",
            "phi-3",
            "qwen2",
            "qwen35",
            "refact",
            "starcoder"
        ]
    );
}

/// Gemma 4 beyond plain encoding: llama.cpp's ids with BOS and special tokens parsed, and its
/// detokenization with and without special tokens, for the conformance texts and for
/// `gemma-4-extra.inp` (chat turns, tool-call and channel tokens, unused and BOS/EOS text, newline
/// runs longer than any token, CRLF, a `<0x41>` that is only text). Made by
/// `scripts/llama-tokenize-ref.sh`.
#[test]
fn gemma_4_special_tokens_and_detokenization() {
    let tok = vocab_tokenizer("gemma-4");
    let mut failures = Vec::new();
    for file in ["gemma-4-detok.json", "gemma-4-extra-detok.json"] {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(vocab_dir().join(file)).unwrap())
                .unwrap();
        let cases = json["cases"].as_array().unwrap();
        assert!(cases.len() >= 11, "{file}");
        for c in cases {
            let text = c["text"].as_str().unwrap();
            let want: Vec<u32> = c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect();
            let got = tok.encode(text, true, true);
            if got != want {
                failures.push(format!("{text:?}: ids {got:?}, llama.cpp {want:?}"));
            }
            for (special, key) in [(true, "detok_special"), (false, "detok")] {
                let got = tok.decode(&want, special).unwrap();
                let want = c[key].as_str().unwrap();
                if got != want {
                    failures.push(format!("{text:?} ({key}): {got:?}, llama.cpp {want:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
