//! The text crate's one integration-test binary: tokenizers against llama.cpp's token ids, chat
//! templates against jinja2's renderings; each module covers one area.
// Tests may unwrap, helpers outside `#[test]` functions included (clippy.toml only covers those).
#![allow(clippy::unwrap_used)]

mod chat_template_checkpoint;
mod chat_template_fixtures;
mod chat_template_models;
mod chat_template_sandbox;
mod chat_template_semantics;
mod tokenizer_hostile;
mod tokenizer_models;
mod tokenizer_stream;
mod tokenizer_vocab;
