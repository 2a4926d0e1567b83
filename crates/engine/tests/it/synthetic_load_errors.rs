//! `Model::load` on broken synthetic files: each problem is a [`LoadError`] that names what is
//! wrong, never a panic — and hostile hyper-parameters that load anyway decode without panicking.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use engine::{Context, ContextParams, LoadError, Model};
use gguf::{Builder, Value};

use crate::synth::{self, Arch, Config, Weights};

fn base() -> Builder<'static> {
    let cfg = Config::small(Arch::Llama);
    synth::build(&cfg, &Weights::random(&cfg))
}

fn with_key(mut b: Builder<'static>, key: &str, value: Option<Value<'static>>) -> Builder<'static> {
    match value {
        Some(v) => b.set(key, v).unwrap(),
        None => {
            b.remove(key).unwrap();
        }
    }
    b
}

fn load_err(b: &Builder<'_>) -> LoadError {
    match synth::load(b) {
        Ok(_) => panic!("the file loaded"),
        Err(e) => e,
    }
}

#[test]
fn the_unbroken_file_loads() {
    synth::load(&base()).unwrap();
}

#[test]
fn missing_tensor_is_named() {
    for name in [
        "blk.1.ffn_down.weight",
        "output_norm.weight",
        "token_embd.weight",
    ] {
        let e = load_err(&synth::with_tensor(&base(), name, None));
        assert!(
            matches!(&e, LoadError::MissingTensor(n) if n == name),
            "{e:?}"
        );
        assert!(e.to_string().contains(name), "{e}");
    }
}

#[test]
fn missing_arch_specific_tensors_are_named() {
    // Qwen2's biases, Qwen3's and Gemma 3's QK-norms, Gemma 3's post-norms.
    let cases = [
        (Arch::Qwen2, "blk.0.attn_k.bias"),
        (Arch::Qwen3, "blk.1.attn_q_norm.weight"),
        (Arch::Gemma3, "blk.0.post_ffw_norm.weight"),
    ];
    for (arch, name) in cases {
        let cfg = Config::small(arch);
        let b = synth::build(&cfg, &Weights::random(&cfg));
        let e = load_err(&synth::with_tensor(&b, name, None));
        assert!(
            matches!(&e, LoadError::MissingTensor(n) if n == name),
            "{arch:?}: {e:?}"
        );
    }
}

#[test]
fn mis_shaped_tensor_is_named() {
    // Small config: n_embd 64, q width 64, kv width 32, n_ff 96, head_dim 16.
    let cases: [(&str, &[u64]); 5] = [
        ("blk.1.attn_k.weight", &[64, 64]),
        ("blk.0.ffn_gate.weight", &[96, 64]),
        ("blk.0.attn_norm.weight", &[63]),
        ("output.weight", &[64, 258]),
        ("token_embd.weight", &[64, 259, 2]),
    ];
    for (name, shape) in cases {
        let e = load_err(&synth::with_tensor(&base(), name, Some(shape)));
        assert!(
            matches!(&e, LoadError::TensorShape { name: n, found, .. } if n == name && found == shape),
            "{name}: {e:?}"
        );
        assert!(e.to_string().contains(name), "{e}");
    }
    // Optional tensors are checked when present.
    let cfg = Config {
        rope_freqs: true,
        ..Config::small(Arch::Llama)
    };
    let b = synth::build(&cfg, &Weights::random(&cfg));
    synth::load(&b).unwrap();
    let e = load_err(&synth::with_tensor(&b, "rope_freqs.weight", Some(&[3])));
    assert!(
        matches!(&e, LoadError::TensorShape { name, .. } if name == "rope_freqs.weight"),
        "{e:?}"
    );
}

#[test]
fn unsupported_architecture_is_named() {
    let b = with_key(base(), "general.architecture", Some(Value::string("mamba")));
    let e = load_err(&b);
    assert!(
        matches!(&e, LoadError::UnsupportedArch(a) if a == "mamba"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("mamba") && msg.contains("llama"), "{msg}");
}

#[test]
fn bad_hyper_parameters_are_load_errors() {
    let bad = |key: &str, v: u32| {
        let e = load_err(&with_key(base(), key, Some(Value::U32(v))));
        match &e {
            LoadError::BadHParam { key: k, .. } => assert_eq!(k, key, "{e}"),
            other => panic!("{key} = {v}: {other:?}"),
        }
        assert!(e.to_string().contains(key), "{e}");
    };
    bad("llama.attention.head_count_kv", 3); // does not divide 4 heads
    bad("llama.attention.head_count_kv", 0);
    bad("llama.block_count", 0);
    bad("llama.embedding_length", 0);
    bad("llama.attention.head_count", 0);
    bad("llama.rope.dimension_count", 7); // odd
    bad("llama.rope.dimension_count", 32); // above the head size
    bad("llama.feed_forward_length", 1 << 30);

    let e = load_err(&with_key(base(), "llama.embedding_length", None));
    assert!(
        matches!(&e, LoadError::MissingKey(k) if k == "llama.embedding_length"),
        "{e:?}"
    );
    let e = load_err(&with_key(
        base(),
        "llama.rope.scaling.type",
        Some(Value::string("ntk")),
    ));
    assert!(
        matches!(&e, LoadError::BadHParam { key, .. } if key == "llama.rope.scaling.type"),
        "{e:?}"
    );
    let e = load_err(&with_key(
        base(),
        "llama.block_count",
        Some(Value::string("two")),
    ));
    assert!(
        matches!(&e, LoadError::Gguf(_)) && e.to_string().contains("llama.block_count"),
        "{e}"
    );
}

#[test]
fn broken_files_are_load_errors() {
    let bytes = base().to_bytes();
    for cut in [0, 3, 24, bytes.len() / 2, bytes.len() - 1] {
        let e = synth::load_bytes(&bytes[..cut]).unwrap_err();
        assert!(matches!(e, LoadError::Gguf(_)), "cut at {cut}: {e:?}");
    }
    let e = load_err(&with_key(base(), "tokenizer.ggml.tokens", None));
    assert!(matches!(e, LoadError::Tokenizer(_)), "{e:?}");
    let missing = std::env::temp_dir().join("hearth-synth-no-such-file.gguf");
    assert!(matches!(Model::load(&missing), Err(LoadError::Io { .. })));
}

/// Every integer hyper-parameter set to hostile values: loading returns (Ok or Err) without
/// panicking, and a model that loads decodes a few tokens without panicking.
#[test]
fn hostile_hyper_parameters_never_panic() {
    let keys = [
        "context_length",
        "embedding_length",
        "block_count",
        "feed_forward_length",
        "attention.head_count",
        "attention.head_count_kv",
        "attention.key_length",
        "attention.value_length",
        "rope.dimension_count",
        "attention.sliding_window",
        "rope.scaling.original_context_length",
    ];
    let values = [0u32, 1, 2, 3, 5, 8, 32, 63, 65, 128, 1 << 20, u32::MAX];
    let mut loaded = 0;
    let mut panics = Vec::new();
    for arch in [Arch::Llama, Arch::Gemma3] {
        let cfg = Config::small(arch);
        let b = synth::build(&cfg, &Weights::random(&cfg));
        for key in keys {
            for v in values {
                let key = format!("{}.{key}", arch.name());
                let b = with_key(b.clone(), &key, Some(Value::U32(v)));
                let run = catch_unwind(AssertUnwindSafe(|| {
                    let Ok(model) = synth::load(&b) else {
                        return false;
                    };
                    let params = ContextParams {
                        n_ctx: 16,
                        n_batch: 4,
                        n_threads: 1,
                        ..ContextParams::default()
                    };
                    let mut ctx = Context::new(Arc::new(model), params).unwrap();
                    ctx.decode(&[5, 6, 7, 8, 9, 10]).unwrap();
                    assert!(ctx.logits().iter().all(|l| l.is_finite()));
                    true
                }));
                match run {
                    Ok(ok) => loaded += usize::from(ok),
                    Err(_) => panics.push(format!("{key} = {v}")),
                }
            }
        }
    }
    eprintln!("{loaded} hostile variants loaded and decoded");
    assert!(panics.is_empty(), "panicked: {}", panics.join(", "));
    // Some values (a larger context length or window, a head count that still fits) load.
    assert!(loaded > 10, "only {loaded} variants loaded");
}
