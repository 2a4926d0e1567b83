//! `convert`'s integration tests: the small transformers checkpoints of `tests/fixtures/hf`
//! against what llama.cpp's converter wrote for them, the converted files run by the engine
//! against transformers' logits, and hostile or broken checkpoints.

mod errors;
mod fixtures;
mod logits;
mod reference;
