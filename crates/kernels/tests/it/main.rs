//! The kernels crate's one integration-test binary.

mod pool;
mod quant_dequant;
mod quant_roundtrip;
mod quant_util;
