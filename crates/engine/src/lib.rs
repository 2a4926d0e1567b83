//! hearth's API boundary: load a GGUF model ([`Model`]), tokenize, render chat templates, run
//! the forward pass in a [`Context`], sample and generate. Knows nothing about HTTP, JSON wire
//! types, argv or the network. The tokenizer and chat templates live in the `text` crate and
//! are re-exported here as [`tokenizer`] and [`chat_template`].
//!
//! Data flow: text → [`tokenizer`] → token ids → a [`Batch`] of entries of one or many
//! sequences → [`Context::decode_batch`] (the architecture's `forward` in [`arch`] over the
//! [`exec::Backend`], writing the cells of the [`kv_cache::KvStore`]) → logits → [`sampler`]
//! chain → token → detokenized text; [`generate`] runs that loop for one sequence with stop
//! conditions; [`perplexity`] measures a text.
#![forbid(unsafe_code)]

pub mod arch;
pub mod batch;
pub mod chat;
pub mod context;
pub mod exec;
pub mod generate;
pub mod kv_cache;
pub mod model;
pub mod moe;
pub mod perplexity;
pub mod profile;
pub mod sampler;

pub use text::{chat_template, tokenizer};

pub use batch::{Batch, SeqId, SeqSet};
pub use context::{Context, ContextError, ContextParams, Outputs};
pub use generate::{ContextShift, GenerateParams, Generation, StopReason, generate};
pub use model::{LoadError, LoadOptions, Model};
pub use sampler::SamplerParams;
