//! The numeric kernels hearth's speed comes from — the only crate with `unsafe`.
//!
//! Every SIMD kernel has a scalar twin in `dot::generic` that stays forever and a differential
//! test against it; the instruction set is chosen once at run time (`HEARTH_ISA` may force a lower
//! level), each kernel family resolved to function pointers by one match on `Isa::dispatch` (see
//! [`isa`]). Models, files and tokens are unknown here: kernels see slices of bytes and floats.

pub(crate) mod dot;
pub mod isa;
pub mod matmul;
pub mod membw;
pub mod mmap;
pub mod ops;
pub mod pool;
pub mod quant;
