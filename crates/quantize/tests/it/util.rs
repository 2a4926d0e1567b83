//! Shared helpers: the SmolLM2 test model read once, the llama-quantize references.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

pub fn smollm2() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| test_models::read(test_models::SMOLLM2))
}

pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load_json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `smollm2.json`: what llama-quantize wrote per type (see tests/fixtures/make-fixtures.sh).
pub fn references() -> &'static serde_json::Value {
    static JSON: OnceLock<serde_json::Value> = OnceLock::new();
    JSON.get_or_init(|| load_json("smollm2.json"))
}

/// `gemma3.json`: the same for gemma-3-270m Q4_K_M.
pub fn references_gemma3() -> &'static serde_json::Value {
    static JSON: OnceLock<serde_json::Value> = OnceLock::new();
    JSON.get_or_init(|| load_json("gemma3.json"))
}

pub fn gemma3() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| test_models::read(test_models::GEMMA3))
}

pub fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
