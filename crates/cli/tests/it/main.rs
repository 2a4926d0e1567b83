//! Integration tests of the `hearth` binary, run as a user runs it.
// Tests may unwrap, helpers outside `#[test]` functions included (clippy.toml only covers those).
#![allow(clippy::unwrap_used)]

mod bench;
mod convert;
// The convert crate's fixture helpers; the cli's tests use only some of them.
#[allow(dead_code)]
#[path = "../../../convert/tests/it/fixtures.rs"]
mod convert_fixtures;
mod hub;
#[path = "../../../hub/tests/it/server.rs"]
mod hub_server;
mod imatrix;
mod inspect;
mod perplexity;
mod quantize;
mod run;
mod serve;
mod template;
mod tokenize;

use std::ffi::OsStr;
use std::process::{Command, Output};

/// Runs the `hearth` binary with `args` and collects what it printed.
fn hearth<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .output()
        .unwrap()
}

/// The path of the cached SmolLM2 test model, as text for argument lists.
fn smollm2() -> String {
    test_models::path(test_models::SMOLLM2)
        .display()
        .to_string()
}
