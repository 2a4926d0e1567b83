//! MXFP4_MOE (experts to MXFP4, every other matrix to Q8_0) on the engine's tiny gpt-oss
//! checkpoint: the whole output equals llama-quantize's tensor for tensor, and the engine runs
//! it to llama.cpp's own logits of that file (tests/fixtures/gpt-oss-mxfp4.json, made by
//! tests/fixtures/make-gpt-oss-mxfp4.sh): gpt-oss's experts as released, in MXFP4.

use std::io::Read;
use std::sync::Arc;

use engine::{Context, ContextParams, Model, Outputs};
use gguf::Gguf;
use quantize::{Ftype, Options};

use crate::smollm2::reference_in;
use crate::util::{fixture, sha256};

fn fnv1a64(logits: &[f32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in logits {
        for b in v.to_le_bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[test]
fn gpt_oss_mxfp4_moe_equals_llama_quantize_and_runs_to_llama_cpps_logits() {
    let gz = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../engine/tests/fixtures/gpt-oss/model-f16.gguf.gz"),
    )
    .unwrap();
    let mut f16 = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut f16)
        .unwrap();
    let file = Gguf::parse(&f16).unwrap();
    let opts = Options {
        ftype: Ftype::parse("MXFP4_MOE").unwrap(),
        allow_requantize: false,
        output_tensor_type: None,
        token_embedding_type: None,
        leave_output_tensor: false,
        pure: false,
        n_threads: 2,
    };
    let mut bytes = Vec::new();
    let out = quantize::quantize(&file, &opts, None, &mut bytes, |_| {}).unwrap();
    assert_eq!(out.bytes_written, bytes.len() as u64);
    let q = Gguf::parse(&bytes).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("gpt-oss-mxfp4.json")).unwrap())
            .unwrap();
    let reference = reference_in(&json, "MXFP4_MOE");
    assert_eq!(q.tensors().len(), reference.len());
    let mut n_mxfp4 = 0;
    for (t, r) in q.tensors().iter().zip(&reference) {
        assert_eq!(t.name, r.0);
        assert_eq!(t.ty.name().to_uppercase(), r.1.to_uppercase(), "{}", t.name);
        assert_eq!(
            sha256(q.tensor_data(t)),
            r.3,
            "{} differs from llama-quantize's",
            t.name
        );
        n_mxfp4 += usize::from(r.1 == "MXFP4");
    }
    assert_eq!(n_mxfp4, 6, "the experts of every layer in MXFP4");

    // The engine on that file: llama.cpp's logits at every position.
    let path = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(path.path(), &bytes).unwrap();
    let model = Arc::new(Model::load(path.path()).unwrap());
    let ids: Vec<u32> = json["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let exact = kernels::isa::Isa::detected() == kernels::isa::Isa::Avx512;
    for n_threads in [1, 2] {
        let params = ContextParams {
            n_ctx: 64,
            n_batch: 64,
            n_threads,
            ..ContextParams::default()
        };
        let mut ctx = Context::new(model.clone(), params).unwrap();
        let mut rows = Vec::new();
        ctx.decode_with(&ids, Outputs::All, |_, l| rows.push(l.to_vec()))
            .unwrap();
        let mut same = 0;
        let mut worst = 0.0f32;
        for (pos, l) in rows.iter().enumerate() {
            same += usize::from(fnv1a64(l) == json["fnv1a64_per_position"][pos]);
            let top = json["top20_per_position"][pos].as_array().unwrap();
            let max = top[0][1].as_f64().unwrap() as f32;
            for p in top {
                let (id, v) = (
                    p[0].as_u64().unwrap() as usize,
                    p[1].as_f64().unwrap() as f32,
                );
                worst = worst.max((l[id] - v).abs() / max.abs());
            }
        }
        eprintln!(
            "gpt-oss MXFP4_MOE, {n_threads} threads: {same}/{} positions bit-identical to \
             llama.cpp, worst top-20 |Δ|/max {worst:.2e}",
            rows.len()
        );
        if exact {
            // As the q8_0 file (see the engine's tiny_reference): every position bit for bit,
            // the F32 matrices (the untied LM head) summed in llama.cpp's order too.
            assert_eq!(same, rows.len(), "worst top-20 error {worst:.2e}");
        } else {
            assert!(worst <= 1e-3, "top-20 error {worst:.2e}");
        }
    }
}
