//! [`Error`]: everything a conversion can refuse, each naming the file or tensor at fault.

use std::path::PathBuf;

/// Why a checkpoint cannot be converted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} not found: a transformers checkpoint folder holds config.json, the weights \
         (model.safetensors, or shards listed in model.safetensors.index.json) and tokenizer.json",
        .0.display()
    )]
    Missing(PathBuf),
    #[error("{}: not valid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {reason}", path.display())]
    Safetensors { path: PathBuf, reason: String },
    #[error("unsupported architecture {found}; hearth converts {}", .supported.join(", "))]
    UnsupportedArch {
        found: String,
        supported: Vec<&'static str>,
    },
    #[error("config.json: {0}")]
    Config(String),
    #[error("tensor {name}: {reason}")]
    Tensor { name: String, reason: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error(transparent)]
    Gguf(#[from] gguf::Error),
    #[error("writing the GGUF file: {0}")]
    Write(std::io::Error),
}

impl Error {
    pub(crate) fn tensor(name: &str, reason: impl Into<String>) -> Error {
        Error::Tensor {
            name: name.to_owned(),
            reason: reason.into(),
        }
    }
}
