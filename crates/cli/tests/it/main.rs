//! Integration tests of the `hearth` binary, run as a user runs it.
// Tests may unwrap, helpers outside `#[test]` functions included (clippy.toml only covers those).
#![allow(clippy::unwrap_used)]

mod bench;
mod inspect;
mod run;
mod template;
mod tokenize;
