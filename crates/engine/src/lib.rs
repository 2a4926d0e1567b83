//! hearth's API boundary: load a GGUF model, tokenize, render chat templates, run the forward
//! pass, sample and generate. Knows nothing about HTTP, JSON wire types, argv or the network.
#![forbid(unsafe_code)]

pub mod chat_template;
pub mod sampler;
pub mod tokenizer;
