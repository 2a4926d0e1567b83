//! The quantize crate's integration tests: byte-identical output to llama-quantize on SmolLM2
//! for every type (with and without an importance matrix), the imatrix reader, bad input.

mod bad_input;
mod gemma3;
mod gpt_oss;
mod imatrix_file;
mod iq;
mod moe;
mod smollm2;
mod util;
