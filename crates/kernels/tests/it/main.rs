//! The kernels crate's one integration-test binary.

mod dot_reference;
mod isa_levels;
mod matmul_ggml;
mod matmul_ggml_float;
mod matmul_ggml_iq;
mod matmul_ggml_kquant;
mod matmul_grouped;
mod matmul_naive;
mod matmul_real;
mod matmul_rows;
mod ops;
mod ops_attention;
mod ops_ggml;
mod ops_rope;
mod ops_util;
mod pool;
mod quant_dequant;
mod quant_iq_quant;
mod quant_roundtrip;
mod quant_util;
