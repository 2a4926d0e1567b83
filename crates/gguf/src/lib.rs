//! The GGUF container, version 2 and 3: [`Gguf`] reads a file held in memory, [`Builder`]
//! writes one, and [`GgmlType`] is the table of ggml tensor types.
//!
//! The reader borrows everything from the input bytes (the CLI maps the file with `memmap2`):
//! metadata strings and number arrays, tensor names and tensor data are slices of the file.
//! It treats the file as hostile — see [`read`] — and knows nothing about models or math.
#![forbid(unsafe_code)]

mod error;
pub mod read;
mod types;
mod value;
mod write;

pub use error::{Error, ErrorKind, Result};
pub use read::{FromValue, Gguf, TensorInfo, tensor_bytes};
pub use types::GgmlType;
pub use value::{Array, Value, ValueType};
pub use write::{Builder, TensorEntry, TensorPlan};

/// `general.alignment`: the data alignment, a `u32` power of two (32 when absent).
pub const KEY_ALIGNMENT: &str = "general.alignment";
/// `general.architecture`: the model architecture, which prefixes its hyper-parameter keys.
pub const KEY_ARCHITECTURE: &str = "general.architecture";
