//! The four checkpoints, unpacked once per test run into a temporary folder.
//!
//! `tests/fixtures/hf/<arch>` holds the small files, `model.safetensors` without the bytes of
//! its token embedding (`pack_hf.py` says why) and a shared gzipped `tokenizer.json`; the
//! embedding comes back from llama.cpp's bf16 conversion in the engine's fixtures
//! (`crates/engine/tests/fixtures/hf/<arch>/reference-bf16.gguf.gz`, where the embedding is
//! stored unchanged), and the sha256 of the rebuilt file must be the original's.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

pub const ARCHS: [&str; 4] = ["llama", "qwen2", "qwen3", "gemma3"];

/// The sha256 of each original `model.safetensors` (printed by `pack_hf.py`).
fn safetensors_sha256(arch: &str) -> &'static str {
    match arch {
        "llama" => "3e4d5f9dfdb20b034a1fa8071ded312809bd3b48912e7d93f774d11222bd657e",
        "gemma3" => "126033a5b1699681df3beca7b07a6c5cca57b6076a8c7a87e3c1542a16060009",
        "qwen2" => "242cd7a778c3483aa847aa9b2b8db3d8e07afe14efd015df29dc0e53f12429a9",
        "qwen3" => "e0fbaceef0fd27085277509dbae63208b2c0d2a8b643df112f6dabb20c40de0d",
        _ => unreachable!("no fixture {arch}"),
    }
}

fn tokenizer_of(arch: &str) -> &'static str {
    match arch {
        "llama" | "gemma3" => "smollm2",
        _ => "qwen2",
    }
}

/// `crates/convert/tests/fixtures/hf` (written so that the cli's tests can include this file).
pub fn own_fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../convert/tests/fixtures/hf")
}

/// The engine's fixtures for `arch`: reference.json, reference-bf16.gguf.gz, logits.
pub fn engine_fixtures(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/fixtures/hf")
        .join(arch)
}

pub fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// llama.cpp's bf16 conversion of `arch` (from the engine's fixtures), unpacked once.
pub fn reference_bf16(arch: &str) -> &'static [u8] {
    static CACHE: [OnceLock<Vec<u8>>; 4] = [const { OnceLock::new() }; 4];
    let i = ARCHS.iter().position(|a| *a == arch).unwrap();
    CACHE[i].get_or_init(|| {
        let d = engine_fixtures(arch);
        let whole = d.join("reference-bf16.gguf.gz");
        let gz = if whole.exists() {
            std::fs::read(whole).unwrap()
        } else {
            let mut gz = Vec::new();
            for i in 0.. {
                let part = d.join(format!("reference-bf16.gguf.gz.part{i}"));
                if !part.exists() {
                    break;
                }
                gz.extend(std::fs::read(part).unwrap());
            }
            gz
        };
        gunzip(&gz)
    })
}

pub fn reference_json(arch: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(engine_fixtures(arch).join("reference.json")).unwrap())
        .unwrap()
}

/// The checkpoint folder of `arch`, rebuilt once per test run.
pub fn checkpoint(arch: &str) -> PathBuf {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    static BUILT: OnceLock<()> = OnceLock::new();
    let root = ROOT.get_or_init(|| tempfile::tempdir().unwrap());
    BUILT.get_or_init(|| {
        for a in ARCHS {
            build(a, &root.path().join(a).join("hf"));
        }
    });
    root.path().join(arch).join("hf")
}

/// Writes `arch`'s checkpoint into `dst`.
pub fn build(arch: &str, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    let src = own_fixtures().join(arch);
    for name in [
        "config.json",
        "generation_config.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        std::fs::copy(src.join(name), dst.join(name)).unwrap();
    }
    let tok = own_fixtures().join(format!("tokenizers/{}.json.gz", tokenizer_of(arch)));
    std::fs::write(
        dst.join("tokenizer.json"),
        gunzip(&std::fs::read(tok).unwrap()),
    )
    .unwrap();
    let stripped = gunzip(&std::fs::read(src.join("model.safetensors.sans-embd.gz")).unwrap());
    let n = u64::from_le_bytes(stripped[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&stripped[8..8 + n]).unwrap();
    let start = header["model.embed_tokens.weight"]["data_offsets"][0]
        .as_u64()
        .unwrap() as usize;
    let gguf_bytes = reference_bf16(arch);
    let file = gguf::Gguf::parse(gguf_bytes).unwrap();
    let embd = file.tensor_data(file.tensor("token_embd.weight").unwrap());
    let mut whole = Vec::with_capacity(stripped.len() + embd.len());
    whole.extend_from_slice(&stripped[..8 + n + start]);
    whole.extend_from_slice(embd);
    whole.extend_from_slice(&stripped[8 + n + start..]);
    assert_eq!(
        sha256_hex(&whole),
        safetensors_sha256(arch),
        "{arch}: the rebuilt model.safetensors differs from the original"
    );
    std::fs::write(dst.join("model.safetensors"), whole).unwrap();
}

/// The engine's fixtures of a newer architecture (`scripts/tiny-models/gen.sh`): llama.cpp's
/// f16 and q8_0 conversions, transformers' and llama.cpp's logits.
pub fn tiny_fixtures(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../engine/tests/fixtures")
        .join(name)
}

/// The fixtures made by `make_reference.py` (the newer architectures): the checkpoint folder
/// with llama.cpp's conversion in its `reference.json`.
pub const PACKED: [&str; 8] = [
    "qwen3moe",
    "smollm3",
    "mistral3",
    "gpt-oss",
    "gpt-oss-mxfp4",
    "gemma4",
    "gemma4-moe",
    "phi3",
];

/// `tests/fixtures/hf/<name>/reference.json` of a [`PACKED`] fixture.
pub fn packed_reference(name: &str) -> serde_json::Value {
    serde_json::from_slice(
        &std::fs::read(own_fixtures().join(name).join("reference.json")).unwrap(),
    )
    .unwrap()
}

/// The checkpoint folder of [`PACKED`] fixture `name`, rebuilt once per test run: its large
/// embedding (and untied output matrix) come back from llama.cpp's f16 conversion in the
/// engine's fixtures (`crates/engine/tests/fixtures/<name>/model-f16.gguf.gz`), whose values
/// are exactly the checkpoint's f32 ones.
pub fn packed_checkpoint(name: &str) -> PathBuf {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    static BUILT: [OnceLock<()>; PACKED.len()] = [const { OnceLock::new() }; PACKED.len()];
    let root = ROOT.get_or_init(|| tempfile::tempdir().unwrap());
    let i = PACKED.iter().position(|a| *a == name).unwrap();
    // llama.cpp names the model after the folder: `hf`, as when the reference was made.
    let dst = root.path().join(name).join("hf");
    BUILT[i].get_or_init(|| build_packed(name, &dst));
    dst
}

fn build_packed(name: &str, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    let src = own_fixtures().join(name);
    let reference = packed_reference(name);
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let f = e.file_name().to_string_lossy().into_owned();
        if f.ends_with(".json") && f != "reference.json" && f != "logits.json"
            || f.ends_with(".jinja")
            || f == "tokenizer.model"
        {
            std::fs::copy(e.path(), dst.join(&f)).unwrap();
        }
    }
    if let Some(tok) = reference["tokenizer"].as_str() {
        let gz = std::fs::read(own_fixtures().join(format!("tokenizers/{tok}.json.gz"))).unwrap();
        std::fs::write(dst.join("tokenizer.json"), gunzip(&gz)).unwrap();
    }
    let stripped = gunzip(&std::fs::read(src.join("model.safetensors.sans-embd.gz")).unwrap());
    let n = u64::from_le_bytes(stripped[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&stripped[8..8 + n]).unwrap();
    let restored = reference["restored"].as_object().unwrap();
    let mut whole = stripped[..8 + n].to_vec();
    if !restored.is_empty() {
        let from = reference["restored_from"].as_str().unwrap();
        let gguf_path = tiny_fixtures(from).join(reference["restored_file"].as_str().unwrap());
        let bytes = gunzip(&std::fs::read(gguf_path).unwrap());
        let file = gguf::Gguf::parse(&bytes).unwrap();
        // The cut tensors, by their place in the data section.
        let mut cuts: Vec<(usize, usize, &str)> = restored
            .iter()
            .map(|(hf, gg)| {
                let off = &header[hf]["data_offsets"];
                let (a, b) = (off[0].as_u64().unwrap(), off[1].as_u64().unwrap());
                (a as usize, b as usize, gg.as_str().unwrap())
            })
            .collect();
        cuts.sort();
        let data = &stripped[8 + n..];
        let mut pos = 0; // in the stripped data
        let mut at = 0; // in the whole data
        for (start, end, gg) in cuts {
            whole.extend_from_slice(&data[pos..pos + (start - at)]);
            pos += start - at;
            let t = file.tensor(gg).unwrap();
            match t.ty {
                gguf::GgmlType::F32 => whole.extend_from_slice(file.tensor_data(t)),
                _ => {
                    for h in file.tensor_data(t).chunks_exact(2) {
                        let v = f16_to_f32(u16::from_le_bytes([h[0], h[1]]));
                        whole.extend_from_slice(&v.to_le_bytes());
                    }
                }
            }
            at = end;
        }
        whole.extend_from_slice(&data[pos..]);
    } else {
        whole = stripped;
    }
    assert_eq!(
        sha256_hex(&whole),
        reference["sha256"].as_str().unwrap(),
        "{name}: the rebuilt model.safetensors differs from the original"
    );
    std::fs::write(dst.join("model.safetensors"), whole).unwrap();
}

/// IEEE half to single precision (exact; written out so that the cli's tests, which include
/// this file, need no `half`).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        (0, m) => return f32::from_bits(sign) + (m as f32) * 2f32.powi(-24) * sign_of(sign),
        (31, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn sign_of(sign: u32) -> f32 {
    if sign == 0 { 1.0 } else { -1.0 }
}
