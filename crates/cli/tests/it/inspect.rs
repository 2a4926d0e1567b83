//! `hearth inspect` on the two real models and on llama.cpp's vocabulary files, compared with
//! what the Python gguf package (gguf-py, the reference reader) lists for each file
//! (`tests/fixtures/inspect-reference.json`, written by `scripts/gen_inspect_reference.py`);
//! and on files that are not GGUF: a failing exit code and a one-line error, never a panic.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use serde_json::Value as Json;

use super::hearth;

const VOCAB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/vocab");
const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/inspect-reference.json"
);
const TMP: &str = env!("CARGO_TARGET_TMPDIR");

/// `hearth inspect PATH [--json]`, which must succeed; returns its standard output.
fn inspect(path: &Path, json: bool) -> String {
    let mut args = vec![std::ffi::OsStr::new("inspect"), path.as_os_str()];
    if json {
        args.push("--json".as_ref());
    }
    let out = hearth(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "hearth inspect {} failed: {stderr}",
        path.display()
    );
    assert!(stderr.is_empty(), "{}: {stderr}", path.display());
    String::from_utf8(out.stdout).unwrap()
}

/// gguf-py's description of the file named `name`.
fn reference(name: &str) -> &'static Json {
    static DOC: OnceLock<Json> = OnceLock::new();
    let doc = DOC.get_or_init(|| {
        serde_json::from_str(&std::fs::read_to_string(REFERENCE).unwrap()).unwrap()
    });
    doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"] == name)
        .unwrap_or_else(|| panic!("no reference for {name}"))
}

/// The vocabulary files as (name, path); the gzipped two are unpacked once into the target's
/// temporary folder.
fn vocab_files() -> &'static [(String, PathBuf)] {
    static FILES: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(VOCAB_DIR).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".gz") {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
                    .read_to_end(&mut plain)
                    .unwrap();
                let out = Path::new(TMP).join(stem);
                std::fs::write(&out, plain).unwrap();
                files.push((stem.to_owned(), out));
            } else if name.ends_with(".gguf") {
                files.push((name, path));
            }
        }
        files.sort();
        files
    })
}

/// JSON values equal, numbers compared as f64 to within rounding when either is a float
/// (gguf-py writes f32 metadata widened to f64; hearth does the same).
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-12 * y.abs()
        }
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

/// Checks `hearth inspect --json` output against gguf-py's reference for the same file.
fn assert_matches_reference(name: &str, ours: &Json, want: &Json) {
    assert_eq!(ours["version"], want["version"], "{name}: version");

    let meta = ours["metadata"].as_object().unwrap();
    let want_meta = want["metadata"].as_array().unwrap();
    assert_eq!(meta.len(), want_meta.len(), "{name}: metadata keys");
    for w in want_meta {
        let key = w["key"].as_str().unwrap();
        let o = meta
            .get(key)
            .unwrap_or_else(|| panic!("{name}: {key} missing"));
        assert_eq!(o["type"], w["type"], "{name}: type of {key}");
        if w["type"] == "arr" {
            let v = &o["value"];
            assert_eq!(v["element_type"], w["element_type"], "{name}: {key}");
            assert_eq!(v["len"], w["len"], "{name}: length of {key}");
            assert!(
                same(&v["head"], &w["head"]),
                "{name}: {key} starts {} in hearth, {} in gguf-py",
                v["head"],
                w["head"]
            );
        } else {
            assert!(
                same(&o["value"], &w["value"]),
                "{name}: {key} is {} in hearth, {} in gguf-py",
                o["value"],
                w["value"]
            );
        }
    }

    let tensors = ours["tensors"].as_array().unwrap();
    let want_tensors = want["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), want_tensors.len(), "{name}: tensor count");
    for (o, w) in tensors.iter().zip(want_tensors) {
        let t = w["name"].as_str().unwrap();
        assert_eq!(o["name"], w["name"], "{name}: tensor order");
        assert!(
            o["type"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(w["type"].as_str().unwrap()),
            "{name}: {t} is {} in hearth, {} in gguf-py",
            o["type"],
            w["type"]
        );
        for field in ["shape", "n_elements", "n_bytes", "offset"] {
            assert_eq!(o[field], w[field], "{name}: {field} of {t}");
        }
    }

    // The per-type totals add up to gguf-py's tensors.
    let mut want_totals: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for w in want_tensors {
        let e = want_totals
            .entry(w["type"].as_str().unwrap().to_ascii_lowercase())
            .or_default();
        e.0 += 1;
        e.1 += w["n_elements"].as_u64().unwrap();
        e.2 += w["n_bytes"].as_u64().unwrap();
    }
    let totals: BTreeMap<String, (u64, u64, u64)> = ours["totals"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(ty, t)| {
            let n = |f: &str| t[f].as_u64().unwrap();
            (
                ty.to_ascii_lowercase(),
                (n("tensors"), n("parameters"), n("bytes")),
            )
        })
        .collect();
    assert_eq!(totals, want_totals, "{name}: totals");
}

/// The text output lists every metadata key, in the file's order, and the tensor count.
fn assert_text_lists(name: &str, text: &str, want: &Json) {
    let n_tensors = want["tensors"].as_array().unwrap().len();
    let n_keys = want["metadata"].as_array().unwrap().len();
    assert!(
        text.starts_with(&format!(
            "GGUF version {}, {n_keys} metadata keys, {n_tensors} tensors",
            want["version"]
        )),
        "{name}: {}",
        text.lines().next().unwrap_or("")
    );
    let keys: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(" | ")?.1.split_once(" = ").map(|(k, _)| k))
        .collect();
    let want_keys: Vec<&str> = want["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, want_keys, "{name}: metadata keys in file order");
}

fn check_model(file: &str) -> String {
    let path = test_models::path(file);
    let want = reference(file);
    let text = inspect(&path, false);
    assert_text_lists(file, &text, want);
    let json: Json = serde_json::from_str(&inspect(&path, true)).unwrap();
    assert_matches_reference(file, &json, want);
    text
}

#[test]
fn inspect_smollm2_matches_gguf_py() {
    let text = check_model(test_models::SMOLLM2);
    assert!(text.contains(", 272 tensors,"));
    assert!(text.contains("| llama.block_count = 30\n"));
    assert!(text.contains("| tokenizer.ggml.pre = \"smollm\"\n"));
    assert!(text.contains("| tokenizer.chat_template = \"{% for message in messages %}"));
    assert!(text.contains("token_embd.weight"));
    assert!(text.contains("\n  total         272      134515008"));
}

#[test]
fn inspect_gemma3_matches_gguf_py() {
    let text = check_model(test_models::GEMMA3);
    assert!(text.contains(", 236 tensors,"));
    assert!(text.contains("| gemma3.block_count = 18\n"));
    assert!(text.contains("| tokenizer.ggml.pre = \"default\"\n"));
    assert!(!text.contains("tokenizer.chat_template"));
}

#[test]
fn inspect_every_vocab_file_matches_gguf_py() {
    let files = vocab_files();
    assert_eq!(files.len(), 14, "llama.cpp's fourteen vocabulary files");
    for (name, path) in files {
        let want = reference(name);
        let text = inspect(path, false);
        assert_text_lists(name, &text, want);
        assert!(
            text.contains("No tensors (a vocabulary-only file)."),
            "{name}"
        );
        assert!(text.contains("| tokenizer.ggml.tokens = ["), "{name}");
        let json: Json = serde_json::from_str(&inspect(path, true)).unwrap();
        assert_matches_reference(name, &json, want);
    }
}

/// The run failed with one line on standard error naming the problem, and nothing else.
fn assert_one_line_error(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(expected), "{stderr} lacks {expected:?}");
}

fn inspect_fails(name: &str, bytes: &[u8], expected: &str) {
    let path = Path::new(TMP).join(name);
    std::fs::write(&path, bytes).unwrap();
    let out = hearth(&["inspect".as_ref(), path.as_os_str()]);
    assert_one_line_error(&out, expected);
    let out = hearth(&["inspect".as_ref(), path.as_os_str(), "--json".as_ref()]);
    assert_one_line_error(&out, expected);
}

#[test]
fn inspect_of_a_file_that_is_not_gguf_fails_with_one_line() {
    inspect_fails(
        "not-gguf.txt",
        b"this is not a model\n",
        "not a GGUF file: magic is [74, 68, 69, 73]",
    );
    inspect_fails("empty.gguf", b"", "file ends inside magic");
    // A header claiming 2^64 - 1 key-values.
    let mut hostile = b"GGUF".to_vec();
    hostile.extend_from_slice(&3u32.to_le_bytes());
    hostile.extend_from_slice(&0u64.to_le_bytes());
    hostile.extend_from_slice(&u64::MAX.to_le_bytes());
    inspect_fails(
        "kv-count-minus-one.gguf",
        &hostile,
        "metadata key-value count 18446744073709551615 cannot fit in the rest of the file (at byte offset 16)",
    );
}

#[test]
fn inspect_of_a_truncated_model_fails_with_one_line() {
    let bytes = test_models::read(test_models::SMOLLM2);
    // Inside the token list.
    inspect_fails(
        "smollm2-first-500k.gguf",
        &bytes[..500_000],
        "is not a valid GGUF file: file ends inside array string",
    );
    // Inside the last tensor's data.
    inspect_fails(
        "smollm2-one-byte-short.gguf",
        &bytes[..bytes.len() - 1],
        "lies outside the",
    );
}

#[test]
fn inspect_of_a_missing_file_fails_with_one_line() {
    let out = hearth(&[
        "inspect".as_ref(),
        Path::new(TMP).join("no-such-file.gguf").as_os_str(),
    ]);
    assert_one_line_error(&out, "cannot open");
}
