//! llama.cpp's tokenizer-suite vocabulary files (`tests/fixtures/vocab`, written by its Python
//! gguf writer): each parses, its token arrays agree in length, and it re-writes byte for byte.

use std::io::Read;

use gguf::{Builder, Gguf};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/vocab");

/// Every vocabulary file as (name, bytes); the largest are stored gzipped.
fn vocab_files() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(DIR).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        if let Some(stem) = name.strip_suffix(".gz") {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut plain)
                .unwrap();
            out.push((stem.to_owned(), plain));
        } else if name.ends_with(".gguf") {
            out.push((name, bytes));
        }
    }
    out.sort();
    out
}

#[test]
fn all_fourteen_vocab_files_are_present() {
    let names: Vec<String> = vocab_files().into_iter().map(|(n, _)| n).collect();
    let expected = [
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
        "starcoder",
    ]
    .map(|n| format!("ggml-vocab-{n}.gguf"));
    assert_eq!(names, expected);
}

#[test]
fn vocab_files_parse_and_rewrite_byte_identically() {
    for (name, bytes) in vocab_files() {
        let f = Gguf::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(f.tensors().is_empty(), "{name} is vocabulary only");
        f.architecture().unwrap();
        f.get_str("tokenizer.ggml.model").unwrap();
        let n_tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap().len();
        assert!(n_tokens > 1000, "{name}: {n_tokens} tokens");
        for key in ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"] {
            if let Some(a) = f.get(key).and_then(|v| v.as_array()) {
                assert_eq!(a.len(), n_tokens, "{name}: {key}");
            }
        }
        let again = Builder::from_gguf(&f).to_bytes();
        assert!(again == bytes, "{name} does not re-write byte for byte");
    }
}
