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

/// `smollm2.json`: what llama-quantize wrote per type (see tests/fixtures/make-fixtures.sh).
pub fn references() -> &'static serde_json::Value {
    static JSON: OnceLock<serde_json::Value> = OnceLock::new();
    JSON.get_or_init(|| {
        let text = std::fs::read_to_string(fixture("smollm2.json")).expect("smollm2.json");
        serde_json::from_str(&text).expect("smollm2.json is JSON")
    })
}

pub fn sha256(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
