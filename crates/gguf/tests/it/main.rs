//! Integration tests of the GGUF reader and writer.
mod real_models;
