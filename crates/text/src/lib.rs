//! Text in and out of a model, from a GGUF file's metadata: the [`tokenizer`] (text ↔ token ids,
//! llama.cpp's algorithms id for id) and the [`chat_template`] (a conversation → the prompt text
//! the model was trained on, as transformers renders it). Knows nothing about weights, math or
//! the forward pass; depends on `gguf` only for reading metadata.
#![forbid(unsafe_code)]

pub mod chat_template;
pub mod tokenizer;
