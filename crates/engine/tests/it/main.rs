//! The engine's one integration-test binary; each module covers one area.

mod tokenizer_hostile;
mod tokenizer_models;
mod tokenizer_stream;
mod tokenizer_vocab;
