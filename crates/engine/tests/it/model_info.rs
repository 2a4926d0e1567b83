//! `ModelInfo` facts computed at load.

use std::io::Read;
use std::path::Path;

use engine::Model;

/// The tiny qwen3moe fixture (`tests/fixtures/qwen3moe`, q8_0) as bytes.
fn qwen3moe_bytes() -> Vec<u8> {
    let gz = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3moe/model-q8_0.gguf.gz"),
    )
    .unwrap();
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

/// Loads a model from `bytes` through a temporary file.
fn load(bytes: &[u8], tag: &str) -> Model {
    let path = std::env::temp_dir().join(format!("hearth-info-{tag}-{}.gguf", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let model = Model::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    model
}

/// What a decoded token reads (`ModelInfo::bytes_per_token`, the physical view of
/// `hearth bench`) on a mixture of experts: the whole file (its embedding table is also its LM
/// head), but each layer's experts only in the proportion `n_expert_used / n_expert`; a
/// separate LM head leaves one row of the embedding table.
#[test]
fn bytes_per_token_counts_one_embedding_row_and_the_used_experts() {
    let bytes = qwen3moe_bytes();
    let model = load(&bytes, "tied");
    let file = gguf::Gguf::parse(&bytes).unwrap();
    let hp = &model.hparams;
    assert!(hp.n_expert > hp.n_expert_used && hp.n_expert_used > 0);
    let size = |name: &str| {
        file.tensors()
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .n_bytes()
    };
    let embd = size("token_embd.weight");
    let unused_experts: u64 = (0..hp.n_layer)
        .flat_map(|l| ["gate", "up", "down"].map(|k| size(&format!("blk.{l}.ffn_{k}_exps.weight"))))
        .map(|b| b / hp.n_expert as u64 * (hp.n_expert - hp.n_expert_used) as u64)
        .sum();
    assert!(!file.tensors().iter().any(|t| t.name == "output.weight"));
    assert_eq!(
        model.info.bytes_per_token,
        model.info.n_bytes - unused_experts
    );
    // The same file with a separate LM head (`output.weight`) reads one embedding row.
    let mut untied = gguf::Builder::from_gguf(&file);
    let t = file
        .tensors()
        .iter()
        .find(|t| t.name == "token_embd.weight")
        .unwrap();
    untied
        .add_tensor("output.weight", t.ty, &t.shape, file.tensor_data(t))
        .unwrap();
    let info = load(&untied.to_bytes(), "untied").info;
    assert_eq!(
        info.bytes_per_token,
        model.info.bytes_per_token + embd / hp.n_vocab as u64
    );
}
