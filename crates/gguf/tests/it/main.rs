//! Integration tests of the GGUF reader and writer.
// Tests may unwrap, helpers outside `#[test]` functions included (clippy.toml only covers those).
#![allow(clippy::unwrap_used)]

mod hostile;
mod proptests;
mod real_models;
mod streaming;
mod vocab_files;
