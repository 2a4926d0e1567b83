//! Q4_K_M of the engine's tiny mixture-of-experts checkpoints equals llama-quantize's file byte
//! for byte (`tests/fixtures/moe-q4_k_m.json`, made by `tests/fixtures/make-moe-q4_k_m.sh`):
//! qwen2moe's shared experts and their `[n_embd, 1]` gate (written `[n_embd]`, as ggml drops
//! trailing dimensions of 1), Gemma 4's fused `ffn_gate_up_exps` and per-expert scales. The
//! Gemma 4 output is the engine's own `gemma4-q4_k_m` fixture, which runs to llama.cpp's logits.

use std::io::Read;

use gguf::Gguf;
use quantize::{Ftype, Options};

use crate::util::{fixture, sha256};

fn quantize_engine_fixture(path: &str) -> Vec<u8> {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/fixtures")
        .join(path);
    let gz = std::fs::read(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let file = Gguf::parse(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
    let opts = Options {
        ftype: Ftype::Q4_K_M,
        allow_requantize: false,
        output_tensor_type: None,
        token_embedding_type: None,
        leave_output_tensor: false,
        pure: false,
        n_threads: 2,
    };
    let mut bytes = Vec::new();
    if let Err(e) = quantize::quantize(&file, &opts, None, &mut bytes, |_| {}) {
        panic!("{path}: {e}");
    }
    bytes
}

#[test]
fn moe_q4_k_m_equals_llama_quantize() {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("moe-q4_k_m.json")).unwrap())
            .unwrap();
    for (name, path) in [
        ("qwen2moe", "qwen2moe/model-f16.gguf.gz"),
        ("gemma4-moe", "gemma4-moe/gemma4-f32.gguf.gz"),
    ] {
        let out = quantize_engine_fixture(path);
        assert_eq!(sha256(&out), json[name].as_str().unwrap(), "{name}");
    }
    let q = Gguf::parse(&quantize_engine_fixture("qwen2moe/model-f16.gguf.gz"))
        .unwrap()
        .tensor("blk.0.ffn_gate_inp_shexp.weight")
        .map(|t| t.shape.clone());
    assert_eq!(q, Some(vec![64]));
}
