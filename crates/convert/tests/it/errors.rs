//! Broken and hostile checkpoints: each a clear error naming what is wrong, never a panic.
//! Also a sharded checkpoint (index + two shards), which must convert exactly as the single file.

use std::path::Path;

use convert::{Conversion, Error, Outtype};
use safetensors::SafeTensors;

use crate::fixtures::checkpoint;

/// A copy of the llama fixture's folder, which a test then breaks.
fn copy_llama(dst: &Path) {
    let src = checkpoint("llama");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

fn error_of(dir: &Path) -> String {
    match Conversion::plan(dir, Outtype::F16) {
        Ok(_) => panic!("{} converted", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// A safetensors file from a raw header (JSON) and data.
fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn missing_config_json_is_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_llama(dir.path());
    std::fs::remove_file(dir.path().join("config.json")).unwrap();
    let e = error_of(dir.path());
    assert!(e.contains("config.json not found"), "{e}");
}

#[test]
fn missing_weights_are_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_llama(dir.path());
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let e = error_of(dir.path());
    assert!(e.contains("model.safetensors not found"), "{e}");
}

#[test]
fn a_header_over_100_mb_is_refused_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    copy_llama(dir.path());
    let mut bytes = 200_000_000u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    std::fs::write(dir.path().join("model.safetensors"), bytes).unwrap();
    let e = error_of(dir.path());
    assert!(e.contains("over the 100 MB limit"), "{e}");
}

#[test]
fn overlapping_tensor_offsets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_llama(dir.path());
    let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
    std::fs::write(
        dir.path().join("model.safetensors"),
        raw_safetensors(header, &[0; 12]),
    )
    .unwrap();
    let e = error_of(dir.path());
    assert!(e.contains("overlap"), "{e}");
}

#[test]
fn offsets_past_the_end_of_the_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    copy_llama(dir.path());
    let header = r#"{"a":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}}"#;
    std::fs::write(
        dir.path().join("model.safetensors"),
        raw_safetensors(header, &[0; 16]),
    )
    .unwrap();
    let e = error_of(dir.path());
    assert!(e.contains("do not end at the end of the file"), "{e}");
}

#[test]
fn a_shape_that_disagrees_with_config_json_is_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_llama(dir.path());
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["intermediate_size"] = 64.into();
    std::fs::write(&path, config.to_string()).unwrap();
    let e = error_of(dir.path());
    assert!(
        e.contains("model.layers.0.mlp.down_proj.weight")
            && e.contains("[32, 96]")
            && e.contains("config.json implies [32, 64]"),
        "{e}"
    );
}

#[test]
fn an_unsupported_architecture_lists_the_supported_ones() {
    let dir = tempfile::tempdir().unwrap();
    copy_llama(dir.path());
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["architectures"] = serde_json::json!(["MambaForCausalLM"]);
    std::fs::write(&path, config.to_string()).unwrap();
    let err = Conversion::plan(dir.path(), Outtype::F16).err().unwrap();
    assert!(matches!(err, Error::UnsupportedArch { .. }));
    let e = err.to_string();
    assert!(
        e.contains("MambaForCausalLM")
            && [
                "LlamaForCausalLM",
                "Qwen2ForCausalLM",
                "Qwen3ForCausalLM",
                "Gemma3ForCausalLM"
            ]
            .iter()
            .all(|a| e.contains(a)),
        "{e}"
    );
}

#[test]
fn a_layer_past_config_json_s_count_is_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_llama(dir.path());
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["num_hidden_layers"] = 1.into();
    std::fs::write(&path, config.to_string()).unwrap();
    // Layer 1 now lies past config.json's layer count.
    let e = error_of(dir.path());
    assert!(
        e.contains("model.layers.1.") && e.contains("config.json has 1 layers"),
        "{e}"
    );
}

/// Writes the tensors `names` of `st` into a safetensors file at `path`.
fn write_part(st: &SafeTensors<'_>, names: &[String], path: &Path) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for n in names {
        let t = st.tensor(n).unwrap();
        let start = data.len();
        data.extend_from_slice(t.data());
        header.insert(
            n.clone(),
            serde_json::json!({
                "dtype": format!("{:?}", t.dtype()),
                "shape": t.shape(),
                "data_offsets": [start, data.len()],
            }),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    std::fs::write(path, raw_safetensors(&header, &data)).unwrap();
}

#[test]
fn a_sharded_checkpoint_converts_as_the_single_file() {
    let tmp = tempfile::tempdir().unwrap();
    // Named as the fixture's folder, so that the descriptive keys agree too.
    let dir = tmp.path().join("hf");
    std::fs::create_dir(&dir).unwrap();
    copy_llama(&dir);
    let whole = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&whole).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_owned).collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let parts = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    write_part(&st, a, &dir.join(parts[0]));
    write_part(&st, b, &dir.join(parts[1]));
    let mut map = serde_json::Map::new();
    for (names, part) in [(a, parts[0]), (b, parts[1])] {
        for n in names {
            map.insert(n.clone(), part.into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    let sharded = Conversion::plan(&dir, Outtype::Q8_0)
        .unwrap()
        .to_bytes()
        .unwrap();
    let single = Conversion::plan(&checkpoint("llama"), Outtype::Q8_0)
        .unwrap()
        .to_bytes()
        .unwrap();
    assert!(
        sharded == single,
        "the sharded checkpoint converts differently"
    );

    // A weight map naming a tensor no shard has.
    map.insert("model.extra.weight".into(), parts[0].into());
    let index = serde_json::json!({ "weight_map": map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let e = error_of(&dir);
    assert!(e.contains("model.extra.weight"), "{e}");
}

#[test]
fn absurd_config_values_are_errors_not_crashes() {
    for (key, value) in [
        ("vocab_size", serde_json::json!(1u64 << 39)),
        ("num_attention_heads", serde_json::json!(1u64 << 39)),
        ("head_dim", serde_json::json!(1u64 << 39)),
        ("num_hidden_layers", serde_json::json!(-3)),
        ("hidden_size", serde_json::json!("32")),
        (
            "rope_parameters",
            serde_json::json!({"rope_type": "llama3", "rope_theta": "x"}),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        copy_llama(dir.path());
        let path = dir.path().join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        config[key] = value.clone();
        std::fs::write(&path, config.to_string()).unwrap();
        let e = error_of(dir.path());
        assert!(!e.is_empty(), "{key} = {value}");
    }
}

#[test]
fn a_broken_tokenizer_model_is_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_llama(dir.path());
    // A piece whose length runs past the end of the file.
    std::fs::write(dir.path().join("tokenizer.model"), [0x0a, 0x7f, 0x0a]).unwrap();
    let e = error_of(dir.path());
    assert!(
        e.contains("tokenizer.model is not a SentencePiece model"),
        "{e}"
    );
}

#[test]
fn an_absurd_expert_count_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let src = crate::fixtures::packed_checkpoint("qwen3moe");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["num_local_experts"] = serde_json::json!(1u64 << 38);
    std::fs::write(&path, config.to_string()).unwrap();
    let e = error_of(dir.path());
    assert!(e.contains("experts is more than hearth converts"), "{e}");
}

#[test]
fn mxfp4_blocks_without_an_mxfp4_config_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = crate::fixtures::packed_checkpoint("gpt-oss-mxfp4");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config
        .as_object_mut()
        .unwrap()
        .remove("quantization_config");
    std::fs::write(&path, config.to_string()).unwrap();
    let e = error_of(dir.path());
    assert!(e.contains("quantization_config is not mxfp4"), "{e}");
}

/// A copy of the phi3 fixture's folder, its config.json changed by `edit`.
fn phi3_with(dst: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let src = crate::fixtures::packed_checkpoint("phi3");
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let path = dst.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut config);
    std::fs::write(&path, config.to_string()).unwrap();
}

/// Phi-3's LongRoPE settings are checked as llama.cpp's converter checks them (it raises), each
/// a configuration error naming what is wrong.
#[test]
fn broken_phi3_rope_settings_are_named() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(Edit, &str); 8] = [
        (
            |c| c["rope_parameters"]["long_factor"] = serde_json::json!([1.0, 2.0, 3.0]),
            "must have 6 values (half of the 12 rotated dimensions), they have 3 and 6",
        ),
        (
            |c| {
                c["rope_parameters"]
                    .as_object_mut()
                    .unwrap()
                    .remove("original_max_position_embeddings");
                c.as_object_mut()
                    .unwrap()
                    .remove("original_max_position_embeddings");
            },
            "phi3 needs original_max_position_embeddings",
        ),
        (
            |c| {
                c["rope_parameters"]
                    .as_object_mut()
                    .unwrap()
                    .remove("short_factor");
            },
            "long_factor but no short_factor",
        ),
        (
            |c| {
                c["rope_parameters"]
                    .as_object_mut()
                    .unwrap()
                    .remove("rope_type");
            },
            "lack rope_type",
        ),
        (
            |c| c["rope_parameters"]["rope_type"] = "dynamic".into(),
            "rope_type dynamic with long_factor is not supported",
        ),
        (
            |c| c["rope_parameters"]["long_factor"][2] = "x".into(),
            "rope long_factor has \"x\", not a number",
        ),
        (
            |c| c["rope_parameters"]["partial_rotary_factor"] = 7.into(),
            "partial_rotary_factor is 7, not a number in (0, 1]",
        ),
        (
            |c| c["rope_parameters"]["original_max_position_embeddings"] = (-1).into(),
            "original_max_position_embeddings is -1, not a positive count",
        ),
    ];
    for (edit, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        phi3_with(dir.path(), edit);
        let e = error_of(dir.path());
        assert!(e.contains(want), "{e}\nwanted: {want}");
    }
}

/// Phi-3's vocabulary reader needs tokenizer_config.json's tokenizer_class, and
/// tokenizer.model unless that class is GPT2Tokenizer.
#[test]
fn a_phi3_tokenizer_without_its_class_or_model_is_named() {
    for (class, want) in [
        (None, "tokenizer_config.json has no tokenizer_class"),
        (Some("LlamaTokenizer"), "needs tokenizer.model"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        phi3_with(dir.path(), |_| {});
        let path = dir.path().join("tokenizer_config.json");
        let mut tc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        match class {
            None => {
                tc.as_object_mut().unwrap().remove("tokenizer_class");
            }
            Some(c) => tc["tokenizer_class"] = c.into(),
        }
        std::fs::write(&path, tc.to_string()).unwrap();
        let e = error_of(dir.path());
        assert!(e.contains(want), "{e}\nwanted: {want}");
    }
}

/// LongRoPE stays refused for the architectures that have no rope-factor tensors for it.
#[test]
fn longrope_is_refused_for_other_architectures() {
    let dir = tempfile::tempdir().unwrap();
    copy_llama(dir.path());
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["rope_parameters"] = serde_json::json!({
        "rope_type": "longrope", "rope_theta": 10000.0, "long_factor": [1.0],
        "short_factor": [1.0], "original_max_position_embeddings": 64
    });
    std::fs::write(&path, config.to_string()).unwrap();
    let e = error_of(dir.path());
    assert!(e.contains("rope_type longrope"), "{e}");
}
