//! `hearth convert` and `hearth run -m DIR` on the small llama checkpoint of the convert
//! crate's fixtures.

use crate::convert_fixtures::{build, reference_bf16};
use crate::hearth;

#[test]
fn convert_writes_llama_cpp_s_file_and_run_dir_runs_it_in_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hf");
    build("llama", &dir);
    let out = tmp.path().join("out.gguf");
    let o = hearth(&[
        "convert".as_ref(),
        dir.as_os_str(),
        "--outtype".as_ref(),
        "bf16".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        std::fs::read(&out).unwrap() == reference_bf16("llama"),
        "not llama.cpp's reference-bf16.gguf"
    );
    assert!(!tmp.path().join("out.gguf.part").exists());

    // The default name, llama.cpp's, in the checkpoint folder.
    let o = hearth(&[
        "convert".as_ref(),
        dir.as_os_str(),
        "--outtype".as_ref(),
        "q8_0".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(dir.join("Hf-1.6M-Q8_0.gguf").is_file());
    std::fs::remove_file(dir.join("Hf-1.6M-Q8_0.gguf")).unwrap();

    // `run -m DIR` converts in memory (auto: bf16 here) and writes nothing: its greedy text is
    // the bf16 file's.
    let args = ["-p", "Hello world", "-n", "6", "--temp", "0"];
    let from_dir = hearth(&[&["run", "-m", dir.to_str().unwrap()][..], &args[..]].concat());
    assert!(
        from_dir.status.success(),
        "{}",
        String::from_utf8_lossy(&from_dir.stderr)
    );
    let from_file = hearth(&[&["run", "-m", out.to_str().unwrap()][..], &args[..]].concat());
    assert!(from_file.status.success());
    assert!(!from_dir.stdout.is_empty());
    assert_eq!(from_dir.stdout, from_file.stdout);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "chat_template.jinja",
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json"
        ]
    );
}

#[test]
fn convert_errors_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let o = hearth(&["convert".as_ref(), tmp.path().as_os_str()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("config.json not found"), "{err}");

    let o = hearth(&[
        "convert".as_ref(),
        tmp.path().as_os_str(),
        "--outtype".as_ref(),
        "q4_0".as_ref(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown --outtype \"q4_0\""), "{err}");
}

/// The convert → quantize round trip against llama.cpp's: a checkpoint whose rows are whole
/// K-quant blocks (weights from the counter-based generator of
/// `crates/convert/tests/fixtures/make_roundtrip.py`, reimplemented here), converted to f16 by
/// `hearth convert` and to Q4_K_M by `hearth quantize`, must give the files llama.cpp's
/// converter and llama-quantize gave: the same metadata and every tensor's bytes.
#[test]
fn convert_then_quantize_q4_k_m_is_llama_cpp_s() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../convert/tests/fixtures");
    let reference: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixtures.join("roundtrip/reference.json")).unwrap())
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hf");
    std::fs::create_dir(&dir).unwrap();
    std::fs::copy(
        fixtures.join("roundtrip/config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    for f in [
        "tokenizer.model",
        "tokenizer_config.json",
        "added_tokens.json",
    ] {
        std::fs::copy(fixtures.join("hf/spm").join(f), dir.join(f)).unwrap();
    }
    let want_sha = reference["checkpoint_sha256"].as_object().unwrap();
    std::fs::write(
        dir.join("model.safetensors"),
        roundtrip_checkpoint(want_sha),
    )
    .unwrap();

    let f16 = tmp.path().join("f16.gguf");
    let q = tmp.path().join("q4_k_m.gguf");
    let o = hearth(&[
        "convert".as_ref(),
        dir.as_os_str(),
        "--outtype".as_ref(),
        "f16".as_ref(),
        "-o".as_ref(),
        f16.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = hearth(&[
        "quantize".as_ref(),
        f16.as_os_str(),
        q.as_os_str(),
        "Q4_K_M".as_ref(),
        "1".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut failures = Vec::new();
    for (path, key) in [(&f16, "f16"), (&q, "q4_k_m")] {
        let bytes = std::fs::read(path).unwrap();
        let file = gguf::Gguf::parse(&bytes).unwrap();
        same_file(&file, &reference[key], key, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The checkpoint's safetensors file, every tensor checked against the generator's sha256.
fn roundtrip_checkpoint(want_sha: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    let (d, ff, kv, v) = (256usize, 512, 128, 600);
    let mut shapes: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![v, d]),
        ("lm_head.weight".into(), vec![v, d]),
        ("model.norm.weight".into(), vec![d]),
    ];
    for b in 0..2 {
        let p = format!("model.layers.{b}.");
        for (n, s) in [
            ("input_layernorm.weight", vec![d]),
            ("post_attention_layernorm.weight", vec![d]),
            ("self_attn.q_proj.weight", vec![d, d]),
            ("self_attn.k_proj.weight", vec![kv, d]),
            ("self_attn.v_proj.weight", vec![kv, d]),
            ("self_attn.o_proj.weight", vec![d, d]),
            ("mlp.gate_proj.weight", vec![ff, d]),
            ("mlp.up_proj.weight", vec![ff, d]),
            ("mlp.down_proj.weight", vec![d, ff]),
        ] {
            shapes.push((format!("{p}{n}"), s));
        }
    }
    shapes.sort();
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (k, (name, shape)) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let norm = name.ends_with("norm.weight");
        let start = data.len();
        for i in 0..n as u64 {
            let mut z = ((k as u64) << 32 | i).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 40) as f32 * 2f32.powi(-23) - 1.0;
            let x = if norm { 1.0 + 0.1 * u } else { 0.05 * u };
            data.extend_from_slice(&x.to_le_bytes());
        }
        let sha = crate::convert_fixtures::sha256_hex(&data[start..]);
        assert_eq!(
            Some(sha.as_str()),
            want_sha[name].as_str(),
            "{name}: not the generator's values"
        );
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let header = serde_json::Value::Object(header).to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

/// `file` against a `make_reference.py`-style dump: the same keys in the same order, scalar
/// values equal (arrays by length), every tensor's name, type, shape and bytes.
fn same_file(
    file: &gguf::Gguf<'_>,
    want: &serde_json::Value,
    what: &str,
    failures: &mut Vec<String>,
) {
    use gguf::Value;
    let want_meta = want["metadata"].as_object().unwrap();
    let ours: Vec<&str> = file.metadata().iter().map(|(k, _)| k.as_ref()).collect();
    let theirs: Vec<&str> = want_meta.keys().map(String::as_str).collect();
    if ours != theirs {
        failures.push(format!(
            "{what} keys: ours {ours:?}\nllama.cpp's {theirs:?}"
        ));
    }
    for (k, w) in want_meta {
        let Some(v) = file.get(k) else { continue };
        let ok = match (v, w) {
            (Value::String(s), serde_json::Value::String(w)) => s.as_ref() == w.as_bytes(),
            (Value::Bool(b), serde_json::Value::Bool(w)) => b == w,
            (Value::F32(f), serde_json::Value::Number(w)) => w.as_f64() == Some(f64::from(*f)),
            (Value::Array(a), serde_json::Value::Object(w)) => {
                w["len"].as_u64() == Some(a.len() as u64)
            }
            (v, serde_json::Value::Number(w)) => v.as_i128() == w.as_i64().map(i128::from),
            _ => false,
        };
        if !ok {
            failures.push(format!("{what} {k}: ours {v:?}, llama.cpp's {w}"));
        }
    }
    let tensors = want["tensors"].as_array().unwrap();
    if file.tensors().len() != tensors.len() {
        failures.push(format!(
            "{what}: {} tensors, llama.cpp's {}",
            file.tensors().len(),
            tensors.len()
        ));
    }
    for (t, w) in file.tensors().iter().zip(tensors) {
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
                "{what}: tensor {} {} {:?}, llama.cpp's {} {} {shape:?}",
                t.name,
                t.ty.name(),
                t.shape,
                w["name"],
                w["type"]
            ));
        } else if crate::convert_fixtures::sha256_hex(file.tensor_data(t))
            != w["sha256"].as_str().unwrap()
        {
            failures.push(format!("{what}: tensor {} bytes differ", t.name));
        }
    }
}
