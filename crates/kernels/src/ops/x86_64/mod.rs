//! x86-64 SIMD kernels, one module per `Isa` level; chosen at run time by `ops::Ops`. The
//! `*_ggml` modules hold the levels' versions of `ops::ggml` (ggml's own arithmetic).

pub mod avx2;
pub mod avx2_ggml;
pub mod avx512;
pub mod avx512_ggml;
mod ggml16;
