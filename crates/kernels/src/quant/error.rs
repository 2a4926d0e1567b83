//! [`KernelError`], the one error type of the kernels' checked entry points.

use gguf::GgmlType;
use std::fmt;

/// Why a kernel call was refused. Kernels check shapes at their entry points and never panic on
/// bad input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelError {
    /// hearth cannot compute with this type (yet).
    UnsupportedType(GgmlType),
    /// A row length that is not a whole number of blocks of the type.
    PartialBlock {
        /// The type whose block size does not divide `n`.
        ty: GgmlType,
        /// The offending number of values.
        n: usize,
    },
    /// A buffer whose length disagrees with the shape it was given with.
    LengthMismatch {
        /// Which buffer.
        what: &'static str,
        /// The length the shape implies.
        expected: usize,
        /// The length passed.
        actual: usize,
    },
    /// Matrices passed together that cannot be (different input widths, too many outputs, …).
    ShapeMismatch(&'static str),
    /// Quantizing to this type needs importance weights (an imatrix) and none were given.
    NeedsImatrix(GgmlType),
}

impl fmt::Display for KernelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            KernelError::UnsupportedType(t) => write!(f, "unsupported tensor type {t}"),
            KernelError::PartialBlock { ty, n } => write!(
                f,
                "{n} values are not a whole number of {ty} blocks of {}",
                ty.block_size()
            ),
            KernelError::LengthMismatch {
                what,
                expected,
                actual,
            } => write!(f, "{what} has length {actual}, expected {expected}"),
            KernelError::ShapeMismatch(what) => write!(f, "shape mismatch: {what}"),
            KernelError::NeedsImatrix(t) => {
                write!(f, "quantizing to {t} needs an importance matrix (imatrix)")
            }
        }
    }
}

impl std::error::Error for KernelError {}
