//! Our conversion of each fixture against llama.cpp's (`reference.json` →
//! `llama_cpp_convert.{f32,f16,bf16,q8_0}`): the same metadata keys and values and the same
//! tensors, bytes included. The descriptive `general.name` and `general.size_label` are
//! derived from the folder and the parameter count by both converters and are compared too
//! (the fixtures' folder is `hf`, as llama.cpp's was). For bf16 the whole file is also
//! compared byte for byte with llama.cpp's `reference-bf16.gguf`: key order and value types.

use convert::{Conversion, Outtype};
use gguf::{Array, Gguf, Value};
use serde_json::Value as Json;

use crate::fixtures::{
    checkpoint, gunzip, packed_checkpoint, packed_reference, reference_bf16, reference_json,
    sha256_hex, tiny_fixtures,
};

/// Python's `json.dumps(list, ensure_ascii=False)`, how reference.json fingerprints long arrays.
fn python_json(a: &Array<'_>) -> String {
    let mut out = String::from("[");
    for i in 0..a.len() {
        if i > 0 {
            out.push_str(", ");
        }
        if let Some(bytes) = a.str_bytes_at(i) {
            out.push('"');
            for c in std::str::from_utf8(bytes).unwrap().chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
        } else if let Some(Value::Bool(b)) = a.number_at(i) {
            out.push_str(if b { "true" } else { "false" });
        } else if let Some(n) = a.i128_at(i) {
            out.push_str(&n.to_string());
        } else {
            panic!("array element {i} is neither text nor an integer");
        }
    }
    out.push(']');
    out
}

fn same_value(ours: &Value<'_>, want: &Json) -> Result<(), String> {
    let ok = match (ours, want) {
        (Value::String(s), Json::String(w)) => std::str::from_utf8(s).ok() == Some(w.as_str()),
        (Value::Bool(b), Json::Bool(w)) => b == w,
        (Value::F32(f), Json::Number(w)) => w.as_f64() == Some(f64::from(*f)),
        (Value::F64(f), Json::Number(w)) => w.as_f64() == Some(*f),
        (Value::Array(a), Json::Object(w)) if w.contains_key("f32_sha256") => {
            let len_ok = w["len"].as_u64() == Some(a.len() as u64);
            let bytes: Option<Vec<u8>> = (0..a.len())
                .map(|i| match a.number_at(i) {
                    Some(Value::F32(f)) => Some(f.to_le_bytes()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(|v| v.concat());
            let hash = bytes.map(|b| sha256_hex(&b));
            len_ok && w["f32_sha256"].as_str() == hash.as_deref()
        }
        (Value::Array(a), Json::Object(w)) => {
            let len_ok = w["len"].as_u64() == Some(a.len() as u64);
            let hash = sha256_hex(python_json(a).as_bytes());
            len_ok && w["sha256"].as_str() == Some(hash.as_str())
        }
        (v, Json::Number(w)) => v.as_i128().is_some() && v.as_i128() == w.as_i64().map(i128::from),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("ours {ours:?} (abridged), llama.cpp's {want}"))
    }
}

/// Each output type of `arch` against llama.cpp's (one plan, retargeted).
fn check(arch: &str) {
    check_against(arch, &checkpoint(arch), &reference_json(arch));
}

/// Each output type of [`crate::fixtures::PACKED`] fixture `name` against llama.cpp's.
fn check_packed(name: &str) {
    check_against(name, &packed_checkpoint(name), &packed_reference(name));
}

fn check_against(arch: &str, dir: &std::path::Path, reference: &Json) {
    let mut conversion = Conversion::plan(dir, Outtype::F32).unwrap();
    for (outtype, key) in [
        (Outtype::F32, "f32"),
        (Outtype::F16, "f16"),
        (Outtype::Bf16, "bf16"),
        (Outtype::Q8_0, "q8_0"),
    ] {
        assert!(
            reference["llama_cpp_convert"].get(key).is_some(),
            "{arch}: no reference for {key}"
        );
        conversion.set_outtype(outtype).unwrap();
        check_one(arch, &conversion, reference, outtype, key);
    }
}

fn check_one(arch: &str, conversion: &Conversion, reference: &Json, outtype: Outtype, key: &str) {
    check_want(
        arch,
        conversion,
        &reference["llama_cpp_convert"][key],
        outtype,
        key,
    );
}

fn check_want(arch: &str, conversion: &Conversion, want: &Json, outtype: Outtype, key: &str) {
    let bytes = conversion.to_bytes().unwrap();
    let file = Gguf::parse(&bytes).unwrap();
    let mut failures = Vec::new();

    let want_meta = want["metadata"].as_object().unwrap();
    let ours_keys: Vec<&str> = file.metadata().iter().map(|(k, _)| k.as_ref()).collect();
    let want_keys: Vec<&str> = want_meta.keys().map(String::as_str).collect();
    if ours_keys != want_keys {
        failures.push(format!(
            "keys: ours {ours_keys:?}\nllama.cpp's {want_keys:?}"
        ));
    }
    for (k, w) in want_meta {
        match file.get(k) {
            None => failures.push(format!("{k}: missing")),
            Some(v) => {
                if let Err(e) = same_value(v, w) {
                    let e: String = e.chars().take(300).collect();
                    failures.push(format!("{k}: {e}"));
                }
            }
        }
    }

    let want_tensors = want["tensors"].as_array().unwrap();
    if file.tensors().len() != want_tensors.len() {
        failures.push(format!(
            "{} tensors, llama.cpp wrote {}",
            file.tensors().len(),
            want_tensors.len()
        ));
    }
    for (t, w) in file.tensors().iter().zip(want_tensors) {
        let shape: Vec<u64> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        if t.name != w["name"].as_str().unwrap()
            || !t
                .ty
                .name()
                .eq_ignore_ascii_case(w["type"].as_str().unwrap())
            || t.shape != shape
        {
            failures.push(format!(
                "tensor {} {} {:?}, llama.cpp's {} {} {shape:?}",
                t.name,
                t.ty.name(),
                t.shape,
                w["name"],
                w["type"]
            ));
        } else if sha256_hex(file.tensor_data(t)) != w["sha256"].as_str().unwrap() {
            failures.push(format!("tensor {}: bytes differ", t.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{arch} --outtype {key}:\n{}",
        failures.join("\n")
    );
    if outtype == Outtype::Bf16 && crate::fixtures::ARCHS.contains(&arch) {
        assert!(
            bytes == reference_bf16(arch),
            "{arch}: the bf16 file differs from llama.cpp's reference-bf16.gguf"
        );
    }
}

#[test]
fn llama_matches_llama_cpp() {
    check("llama");
}

#[test]
fn qwen2_matches_llama_cpp() {
    check("qwen2");
}

#[test]
fn qwen3_matches_llama_cpp() {
    check("qwen3");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check("gemma3");
}

#[test]
fn qwen3moe_matches_llama_cpp() {
    check_packed("qwen3moe");
}

#[test]
fn auto_picks_bf16_for_a_bf16_checkpoint() {
    let c = Conversion::plan(&checkpoint("llama"), Outtype::Auto).unwrap();
    assert_eq!(c.outtype(), Outtype::Bf16);
    assert_eq!(c.default_file_name(), "Hf-1.6M-BF16.gguf");
}

#[test]
fn smollm3_matches_llama_cpp() {
    check_packed("smollm3");
}

#[test]
fn mistral3_matches_llama_cpp() {
    check_packed("mistral3");
}

#[test]
fn gpt_oss_matches_llama_cpp() {
    check_packed("gpt-oss");
}

#[test]
fn gemma4_matches_llama_cpp() {
    check_packed("gemma4");
}

/// Gemma 4's mixture-of-experts layout (26B-A4B; the engine does not run it on this branch).
#[test]
fn gemma4_moe_matches_llama_cpp() {
    check_packed("gemma4-moe");
}

#[test]
fn gpt_oss_mxfp4_matches_llama_cpp() {
    check_packed("gpt-oss-mxfp4");
}

/// Phi-3 with LongRoPE (`scripts/tiny-models`' phi3 checkpoint: partial rotary, tied
/// embeddings, a GPT-2 tokenizer): `rope_factors_long`/`rope_factors_short` first, the
/// `rope.scaling.attn_factor` key right after `general.architecture`, as llama.cpp writes them.
#[test]
fn phi3_matches_llama_cpp() {
    check_packed("phi3");
}

/// Phi-3's other config and tokenizer styles (`tests/fixtures/make_phi3_variants.py`): no
/// LongRoPE with a sliding window (Phi-3-mini-4k), transformers 4's `rope_scaling` with
/// `type: longrope` (Phi-3.5-mini, Phi-4-mini), and the SentencePiece vocabulary
/// `Phi3MiniModel.set_vocab` reads its own way (Phi-3): the files of each variant over a copy of
/// the phi3 fixture, converted to f16, against llama.cpp's conversion.
#[test]
fn phi3_variants_match_llama_cpp() {
    let fix = crate::fixtures::own_fixtures().join("phi3-variants");
    let spm = crate::fixtures::own_fixtures().join("spm");
    let reference: Json =
        serde_json::from_slice(&std::fs::read(fix.join("reference.json")).unwrap()).unwrap();
    for name in ["4k", "old", "spm"] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("hf");
        std::fs::create_dir(&dir).unwrap();
        for e in std::fs::read_dir(packed_checkpoint("phi3")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        for e in std::fs::read_dir(fix.join(name)).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        if name == "spm" {
            for f in ["tokenizer.model", "added_tokens.json"] {
                std::fs::copy(spm.join(f), dir.join(f)).unwrap();
            }
        }
        let conversion = Conversion::plan(&dir, Outtype::F16).unwrap();
        check_want(
            &format!("phi3 {name}"),
            &conversion,
            &reference["llama_cpp_convert"][name],
            Outtype::F16,
            "f16",
        );
    }
}

/// The whole f16 and q8_0 files, key order and alignment included, equal llama.cpp's
/// conversions of the same checkpoint in the engine's fixtures byte for byte.
#[test]
fn phi3_files_equal_llama_cpp_s() {
    let mut conversion = Conversion::plan(&packed_checkpoint("phi3"), Outtype::F16).unwrap();
    for (outtype, file) in [
        (Outtype::F16, "model-f16.gguf.gz"),
        (Outtype::Q8_0, "model-q8_0.gguf.gz"),
    ] {
        conversion.set_outtype(outtype).unwrap();
        let want = gunzip(&std::fs::read(tiny_fixtures("phi3").join(file)).unwrap());
        assert!(
            conversion.to_bytes().unwrap() == want,
            "phi3: our conversion differs from llama.cpp's {file}"
        );
    }
}

/// A SentencePiece `tokenizer.model` (with `added_tokens.json` and tokenizer_config.json's
/// `added_tokens_decoder`) in place of the llama and gemma3 fixtures' tokenizer.json
/// (`tests/fixtures/make_spm.py`): tokens, scores and token types as llama.cpp's
/// `_set_vocab_sentencepiece` writes them, padded to config.json's vocab_size.
#[test]
fn sentencepiece_vocabularies_match_llama_cpp() {
    let spm = crate::fixtures::own_fixtures().join("spm");
    let reference: Json =
        serde_json::from_slice(&std::fs::read(spm.join("reference.json")).unwrap()).unwrap();
    for arch in ["llama", "gemma3"] {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("hf");
        std::fs::create_dir(&dir).unwrap();
        for e in std::fs::read_dir(checkpoint(arch)).unwrap() {
            let e = e.unwrap();
            if e.file_name() != "tokenizer.json" {
                std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
            }
        }
        for f in [
            "tokenizer.model",
            "added_tokens.json",
            "tokenizer_config.json",
        ] {
            std::fs::copy(spm.join(f), dir.join(f)).unwrap();
        }
        let conversion = Conversion::plan(&dir, Outtype::F16).unwrap();
        check_want(
            arch,
            &conversion,
            &reference["llama_cpp_convert"][arch],
            Outtype::F16,
            "f16",
        );
    }
}

/// A Llama-style BPE tokenizer.json with byte fallback (llama.cpp's `LlamaHfVocab`) in place
/// of the llama fixture's tokenizer (`tests/fixtures/make_llama_hf.py`): the model's tokens then
/// the added ones past them, scores -1000, byte and control types as transformers reports them.
#[test]
fn llama_hf_vocabulary_matches_llama_cpp() {
    let fix = crate::fixtures::own_fixtures().join("llama-hf");
    let reference: Json =
        serde_json::from_slice(&std::fs::read(fix.join("reference.json")).unwrap()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("hf");
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(checkpoint("llama")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    let tok = gunzip(&std::fs::read(fix.join("tokenizer.json.gz")).unwrap());
    std::fs::write(dir.join("tokenizer.json"), tok).unwrap();
    std::fs::copy(
        fix.join("tokenizer_config.json"),
        dir.join("tokenizer_config.json"),
    )
    .unwrap();
    let conversion = Conversion::plan(&dir, Outtype::F16).unwrap();
    check_want("llama", &conversion, &reference["f16"], Outtype::F16, "f16");
}

/// A multimodal checkpoint made from `src` as `tests/fixtures/make_{gemma3,mistral3}_mm.py`
/// made it: the fixture's config.json, tensors renamed `model.X` → `model.language_model.X`,
/// and `extra` 8-value vision tensors (zeros) appended; converted, it must be llama.cpp's
/// conversion (the text model only).
fn check_multimodal(arch: &str, src: &std::path::Path, fixture: &str, extra: &[&str]) {
    let fix = crate::fixtures::own_fixtures().join(fixture);
    let reference: Json =
        serde_json::from_slice(&std::fs::read(fix.join("reference.json")).unwrap()).unwrap();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("hf");
    std::fs::create_dir(&dir).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    std::fs::copy(fix.join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Json> = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let mut data = bytes[8 + n..].to_vec();
    let mut renamed = serde_json::Map::new();
    for (k, v) in header {
        let k = match k.strip_prefix("model.") {
            Some(rest) => format!("model.language_model.{rest}"),
            None => k,
        };
        renamed.insert(k, v);
    }
    for name in extra {
        renamed.insert(
            (*name).into(),
            serde_json::json!({"dtype": "F32", "shape": [8], "data_offsets": [data.len(), data.len() + 32]}),
        );
        data.extend_from_slice(&[0u8; 32]);
    }
    let header = Json::Object(renamed).to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    std::fs::write(dir.join("model.safetensors"), out).unwrap();
    let conversion = Conversion::plan(&dir, Outtype::F16).unwrap();
    check_want(arch, &conversion, &reference["f16"], Outtype::F16, "f16");
}

/// Gemma 3 as its 4B–27B releases are published (`Gemma3ForConditionalGeneration`).
#[test]
fn gemma3_conditional_generation_keeps_the_text_model_as_llama_cpp() {
    check_multimodal(
        "gemma3",
        &checkpoint("gemma3"),
        "gemma3-mm",
        &["model.vision_tower.vision_model.post_layernorm.weight"],
    );
}

/// Ministral 3 and Mistral Small 3.x as published (`Mistral3ForConditionalGeneration`).
#[test]
fn mistral3_conditional_generation_keeps_the_text_model_as_llama_cpp() {
    check_multimodal(
        "mistral3",
        &packed_checkpoint("mistral3"),
        "mistral3-mm",
        &[
            "model.vision_tower.ln_pre.weight",
            "model.multi_modal_projector.norm.weight",
        ],
    );
}

/// Gemma 4 as published (`Gemma4ForConditionalGeneration`).
#[test]
fn gemma4_conditional_generation_keeps_the_text_model_as_llama_cpp() {
    check_multimodal(
        "gemma4",
        &packed_checkpoint("gemma4"),
        "gemma4-mm",
        &[
            "model.vision_tower.encoder.norm.weight",
            "model.embed_vision.embedding_projection.weight",
        ],
    );
}
