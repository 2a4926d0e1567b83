//! hearth serve's integration tests: a real server on 127.0.0.1 port 0 running SmolLM2,
//! real HTTP over TCP.
// Tests may unwrap, helpers outside `#[test]` functions included (clippy.toml only covers those).
#![allow(clippy::unwrap_used)]

mod agent_tools;
mod client;
mod conformance;
mod constrained;
mod errors;
mod infill;
mod llama;
mod ollama;
mod openai;
mod probs;
mod python;
mod reasoning;
mod scheduling;
mod tools;
