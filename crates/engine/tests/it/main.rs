//! The engine's one integration-test binary; each module covers one area.
// Tests may unwrap, helpers outside `#[test]` functions included (clippy.toml only covers those).
#![allow(clippy::unwrap_used)]

mod chat_prompt;
mod context_shift;
mod determinism;
mod expert_matrices;
mod gemma4_moe_reference;
mod gemma4_reference;
mod grammar;
mod hf_reference;
mod imatrix;
mod many_sequences;
mod model_info;
mod model_reference;
mod perplexity;
mod sampler_reference;
mod synth;
mod synthetic_arch;
mod synthetic_context_errors;
mod synthetic_gemma4;
mod synthetic_load_errors;
mod synthetic_load_hparams;
mod tiny_reference;
