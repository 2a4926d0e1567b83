//! The tokenizer's one error type: what is wrong with a model's tokenizer metadata, or with
//! ids handed to decoding.

/// A tokenizer that cannot be built from a file's metadata, or an id it does not know.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    #[error("tokenizer metadata key '{0}' is missing")]
    MissingKey(&'static str),
    #[error("tokenizer metadata key '{key}' {problem}")]
    BadKey { key: &'static str, problem: String },
    #[error(
        "tokenizer model '{0}' is not supported (hearth reads 'llama', 'gpt2', 'gemma4' and 'bert')"
    )]
    UnsupportedModel(String),
    #[error(
        "unknown pre-tokenizer '{0}' (tokenizer.ggml.pre): the file may need a newer hearth, \
         or reconverting with a known pre-tokenizer"
    )]
    UnknownPre(String),
    #[error("pre-tokenizer '{0}' (tokenizer.ggml.pre) is not supported by hearth yet")]
    UnsupportedPre(String),
    #[error("the vocabulary has the token {text:?} twice, as ids {first} and {second}")]
    DuplicateToken {
        text: String,
        first: u32,
        second: u32,
    },
    #[error("{flag} is true, but {id_key} is not set")]
    MissingSpecial {
        flag: &'static str,
        id_key: &'static str,
    },
    #[error("token id {id} is out of range: the vocabulary has {n_vocab} tokens")]
    BadId { id: u32, n_vocab: usize },
}
