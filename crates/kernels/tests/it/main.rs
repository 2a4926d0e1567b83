//! The kernels crate's one integration-test binary.

mod dot_reference;
mod matmul_naive;
mod matmul_real;
mod quant_dequant;
mod quant_roundtrip;
mod quant_util;
