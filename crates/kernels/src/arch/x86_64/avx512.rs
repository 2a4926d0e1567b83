//! 512-bit kernels for the `Avx512` level (F/BW/VL/DQ + VNNI).

use crate::arch::RowsFn;
use crate::quant::GgmlType;

/// The 512-bit row kernel for `ty`, where one exists (else the 256-bit VNNI one is used).
pub(crate) fn rows_kernel(_ty: GgmlType) -> Option<RowsFn> {
    None
}
