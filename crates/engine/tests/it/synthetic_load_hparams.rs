//! Hyper-parameters that once loaded and then broke decoding, now refused at load:
//! a NaN RoPE scaling factor, a non-positive or NaN `gemma3.rope.freq_base_swa` (every logit
//! was NaN), and `attention.value_length` unlike `key_length` (the first decode panicked in
//! the attention kernel).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use engine::{Context, ContextParams};
use gguf::{Builder, Value};

use crate::synth::{self, Arch, Config, Weights};

fn with_key(mut b: Builder<'static>, key: &str, value: Value<'static>) -> Builder<'static> {
    b.set(key, value).unwrap();
    b
}

/// Float hyper-parameters set to hostile values: either a load error, or a model whose logits
/// are finite (a NaN RoPE base or scale must not load and then compute NaNs).
#[test]
fn hostile_float_hyper_parameters_are_rejected_or_harmless() {
    let keys = [
        "attention.layer_norm_rms_epsilon",
        "rope.freq_base",
        "rope.freq_base_swa",
        "rope.scaling.factor",
    ];
    let values = [
        0.0f32,
        -1.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-30,
        1e30,
    ];
    let mut bad = Vec::new();
    for arch in [Arch::Llama, Arch::Gemma3] {
        let cfg = Config {
            rope_linear: Some(2.0),
            sliding_window: Some(4),
            n_layer: 6,
            ..Config::small(arch)
        };
        let b = synth::build(&cfg, &Weights::random(&cfg));
        for key in keys {
            for v in values {
                let key = format!("{}.{key}", arch.name());
                let b = with_key(b.clone(), &key, Value::F32(v));
                let run = catch_unwind(AssertUnwindSafe(|| {
                    let Ok(model) = synth::load(&b) else {
                        return true;
                    };
                    let params = ContextParams {
                        n_ctx: 16,
                        n_batch: 4,
                        n_threads: 1,
                        ..ContextParams::default()
                    };
                    let mut ctx = Context::new(Arc::new(model), params).unwrap();
                    ctx.decode(&[5, 6, 7, 8, 9, 10]).unwrap();
                    ctx.logits().iter().all(|l| l.is_finite())
                }));
                match run {
                    Ok(true) => {}
                    Ok(false) => bad.push(format!("{key} = {v}: loads, then non-finite logits")),
                    Err(_) => bad.push(format!("{key} = {v}: panicked")),
                }
            }
        }
    }
    assert!(bad.is_empty(), "\n{}", bad.join("\n"));
}

#[test]
fn value_length_unlike_key_length_is_refused_or_works() {
    let cfg = Config {
        write_head_dim: true,
        ..Config::small(Arch::Llama)
    };
    let mut b = synth::build(&cfg, &Weights::random(&cfg));
    // Value heads of 8: v is [n_embd → 2·8], the output projection [4·8 → n_embd].
    b.set("llama.attention.value_length", Value::U32(8))
        .unwrap();
    for il in 0..cfg.n_layer {
        b = synth::with_tensor(&b, &format!("blk.{il}.attn_v.weight"), Some(&[64, 16]));
        b = synth::with_tensor(&b, &format!("blk.{il}.attn_output.weight"), Some(&[32, 64]));
    }
    let run = catch_unwind(AssertUnwindSafe(|| {
        let Ok(model) = synth::load(&b) else { return };
        let params = ContextParams {
            n_ctx: 16,
            n_batch: 4,
            n_threads: 1,
            ..ContextParams::default()
        };
        let mut ctx = Context::new(Arc::new(model), params).unwrap();
        ctx.decode(&[5, 6, 7]).unwrap();
    }));
    assert!(
        run.is_ok(),
        "value_length 8 with key_length 16 loaded and then panicked"
    );
}
