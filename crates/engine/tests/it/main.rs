//! The engine's one integration-test binary; each module covers one area.
// Tests may unwrap, helpers outside `#[test]` functions included (clippy.toml only covers those).
#![allow(clippy::unwrap_used)]

mod chat_prompt;
mod chat_template_checkpoint;
mod chat_template_fixtures;
mod chat_template_models;
mod chat_template_sandbox;
mod chat_template_semantics;
mod context_shift;
mod determinism;
mod hf_reference;
mod model_reference;
mod sampler_reference;
mod synth;
mod synthetic_arch;
mod synthetic_context_errors;
mod synthetic_load_errors;
mod synthetic_load_hparams;
mod tokenizer_hostile;
mod tokenizer_models;
mod tokenizer_stream;
mod tokenizer_vocab;
