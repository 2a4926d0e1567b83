//! hearth's API boundary: load a GGUF model ([`Model`]), tokenize, render chat templates, run
//! the forward pass in a [`Context`], sample and generate. Knows nothing about HTTP, JSON wire
//! types, argv or the network. The tokenizer and chat templates live in the `text` crate and
//! are re-exported here as [`tokenizer`] and [`chat_template`].
//!
//! Data flow: text → [`tokenizer`] → token ids → [`Context::decode`] (the architecture's
//! `forward` in [`arch`], writing the KV cache) → logits → [`sampler`] chain → token →
//! detokenized text; [`generate`] runs that loop with stop conditions.
#![forbid(unsafe_code)]

pub mod arch;
pub mod chat;
mod compute;
pub mod context;
pub mod generate;
mod kv_cache;
pub mod model;
pub mod profile;
pub mod sampler;

pub use text::{chat_template, tokenizer};

pub use context::{Context, ContextError, ContextParams, Outputs};
pub use generate::{ContextShift, GenerateParams, Generation, StopReason, generate};
pub use model::{LoadError, Model};
pub use sampler::SamplerParams;
