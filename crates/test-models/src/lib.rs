//! The one place tests find the real models: `$HEARTH_TEST_MODELS`, or the cache folder that
//! `scripts/fetch-models.sh` fills (`${XDG_CACHE_HOME:-~/.cache}/hearth/test-models`).
//!
//! A missing model is a test failure with a message saying how to fetch it, never a skip.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// SmolLM2-135M-Instruct, Q4_1 (architecture `llama`, gpt2 BPE tokenizer, ChatML template).
pub const SMOLLM2: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// Gemma 3 270M, Q4_K_M (architecture `gemma3`, SentencePiece tokenizer, no chat template).
pub const GEMMA3: &str = "gemma-3-270m-q4_k_m.gguf";

/// The folder holding the test models.
pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HEARTH_TEST_MODELS") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("hearth").join("test-models")
}

/// The path of test model `name`; panics with instructions when it has not been fetched.
pub fn path(name: &str) -> PathBuf {
    let p = dir().join(name);
    assert!(
        p.is_file(),
        "test model {} is missing: run scripts/fetch-models.sh (or set HEARTH_TEST_MODELS to the \
         folder holding it)",
        p.display()
    );
    p
}

/// The bytes of test model `name`, read whole (tests may hold a 250 MB file in memory).
pub fn read(name: &str) -> Vec<u8> {
    let p = path(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}
