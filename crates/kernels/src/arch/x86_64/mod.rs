//! x86-64 kernels: `avx2` (AVX2 + FMA + F16C) and `avx512` (F/BW/VL/DQ + VNNI).
//!
//! The AVX-512 kernels use VNNI (`vpdpbusd`) for every 8-bit dot product; a CPU with AVX-512
//! but without VNNI (Skylake-X) runs the AVX2 kernels instead.

use super::{ActKind, QuantizeActsFn, RowsFn};
use crate::isa::Isa;
use crate::quant::GgmlType;

pub(crate) fn rows_kernel(_isa: Isa, _ty: GgmlType) -> Option<RowsFn> {
    None
}

pub(crate) fn quantize_acts_kernel(_isa: Isa, _kind: ActKind) -> Option<QuantizeActsFn> {
    None
}
