//! `convert`'s integration tests: the small transformers checkpoints of `tests/fixtures/hf`
//! against what llama.cpp's converter wrote for them, the converted files run by the engine
//! against transformers' logits, and hostile or broken checkpoints.
// Tests may unwrap, helpers outside `#[test]` functions included (clippy.toml only covers those).
#![allow(clippy::unwrap_used)]

mod errors;
mod fixtures;
mod logits;
mod reference;
