//! hearth's API boundary: load a GGUF model ([`Model`]), tokenize, render chat templates, run
//! the forward pass in a [`Context`], sample and generate. Knows nothing about HTTP, JSON wire
//! types, argv or the network.
//!
//! Data flow: text → [`tokenizer`] → token ids → [`Context::decode`] (the architecture's
//! `forward` in [`arch`], writing the KV cache) → logits → [`sampler`] chain → token →
//! detokenized text; [`generate`] runs that loop with stop conditions.
#![forbid(unsafe_code)]

pub mod arch;
pub mod batch;
pub mod chat;
pub mod chat_template;
pub mod context;
pub mod exec;
pub mod generate;
pub mod kv_cache;
pub mod model;
pub mod perplexity;
pub mod profile;
pub mod sampler;
pub mod tokenizer;

pub use batch::{Batch, SeqId, SeqSet};
pub use context::{Context, ContextError, ContextParams, Outputs};
pub use generate::{ContextShift, GenerateParams, Generation, StopReason, generate};
pub use model::{LoadError, LoadOptions, Model};
pub use sampler::SamplerParams;
