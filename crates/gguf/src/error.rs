//! The one error type of the crate: what is wrong with a file, and at which byte offset.

use std::fmt;

/// A GGUF file that cannot be read, or metadata that cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Byte offset in the file where the problem was found.
    pub offset: u64,
    pub kind: ErrorKind,
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    BadMagic([u8; 4]),
    UnsupportedVersion(u32),
    /// `needed` bytes were to be read but only `available` remain.
    Truncated {
        what: &'static str,
        needed: u64,
        available: u64,
    },
    /// A count read from the file cannot fit in the bytes that follow it.
    CountTooLarge {
        what: &'static str,
        count: u64,
    },
    KeyEmpty,
    DuplicateKey(String),
    InvalidUtf8 {
        what: &'static str,
    },
    UnknownValueType(u32),
    InvalidBool(u8),
    NestingTooDeep {
        depth: usize,
    },
    /// `general.alignment` is not a `u32` power of two.
    BadAlignment(String),
    TensorNameTooLong {
        name: String,
        len: usize,
    },
    DuplicateTensor(String),
    TooManyDims {
        name: String,
        n_dims: u32,
    },
    BadShape {
        name: String,
        reason: String,
    },
    UnknownTensorType {
        name: String,
        id: u32,
    },
    MisalignedTensor {
        name: String,
        offset: u64,
        alignment: u64,
    },
    TensorOutOfBounds {
        name: String,
        offset: u64,
        size: u64,
        data_len: u64,
    },
    /// A typed getter found no key, or a value of another type.
    Missing(String),
    WrongType {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    Io(String),
}

impl Error {
    pub(crate) fn at(offset: u64, kind: ErrorKind) -> Error {
        Error { offset, kind }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        match &self.kind {
            BadMagic(m) => write!(f, "not a GGUF file: magic is {m:02x?}, expected \"GGUF\""),
            UnsupportedVersion(v) => {
                write!(
                    f,
                    "unsupported GGUF version {v} (hearth reads versions 2 and 3)"
                )
            }
            Truncated {
                what,
                needed,
                available,
            } => write!(
                f,
                "file ends inside {what}: {needed} bytes needed, {available} left"
            ),
            CountTooLarge { what, count } => {
                write!(f, "{what} count {count} cannot fit in the rest of the file")
            }
            KeyEmpty => write!(f, "metadata key is empty"),
            DuplicateKey(k) => write!(f, "duplicate metadata key '{k}'"),
            InvalidUtf8 { what } => write!(f, "{what} is not valid UTF-8"),
            UnknownValueType(t) => write!(f, "unknown metadata value type {t}"),
            InvalidBool(b) => write!(f, "bool value {b} is neither 0 nor 1"),
            NestingTooDeep { depth } => write!(f, "arrays nested deeper than {depth} levels"),
            BadAlignment(why) => write!(f, "general.alignment {why}"),
            TensorNameTooLong { name, len } => {
                write!(f, "tensor name '{name}' is {len} bytes, longer than 63")
            }
            DuplicateTensor(n) => write!(f, "duplicate tensor name '{n}'"),
            TooManyDims { name, n_dims } => {
                write!(
                    f,
                    "tensor '{name}' has {n_dims} dimensions, at most 4 allowed"
                )
            }
            BadShape { name, reason } => write!(f, "tensor '{name}' has a bad shape: {reason}"),
            UnknownTensorType { name, id } => {
                write!(f, "tensor '{name}' has unknown ggml type id {id}")
            }
            MisalignedTensor {
                name,
                offset,
                alignment,
            } => write!(
                f,
                "tensor '{name}' data offset {offset} is not a multiple of the alignment {alignment}"
            ),
            TensorOutOfBounds {
                name,
                offset,
                size,
                data_len,
            } => write!(
                f,
                "tensor '{name}' data [{offset}, {offset}+{size}) lies outside the {data_len}-byte data section"
            ),
            Missing(k) => write!(f, "metadata key '{k}' not found"),
            WrongType {
                key,
                expected,
                found,
            } => {
                write!(f, "metadata key '{key}' is {found}, expected {expected}")
            }
            Io(e) => write!(f, "{e}"),
        }?;
        write!(f, " (at byte offset {})", self.offset)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
