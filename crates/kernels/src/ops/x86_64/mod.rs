//! x86-64 SIMD kernels, one module per `Isa` level; chosen at run time by `ops::Ops`.

pub mod avx2;
pub mod avx512;
