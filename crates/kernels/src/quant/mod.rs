//! Tensor element formats: the ggml block layouts, conversion to and from `f32`, and the one
//! per-type table saying what hearth can do with each [`GgmlType`].
//!
//! [`dequantize_row`] and [`quantize_row`] convert whole rows (a whole number of blocks);
//! quantization is ggml's reference round-to-nearest (`quantize_row_*_ref`), the path that
//! creates model files. [`vec_dot_type`] names the format activations take when they are
//! multiplied with weights of a type (the `vec_dot_type` of ggml's `type_traits_cpu`): the
//! matmul code quantizes activations to it once per call. Everything type-specific is declared
//! in the private `traits` table; adding a type means one arm there (and its kernels in `dot`).

// Block code indexes several parallel arrays (values, scales, mins) by one group index.
#![allow(clippy::needless_range_loop)]

mod blocks;
mod error;
mod float;
mod iq;
mod iq4;
mod iq_grids;
mod iq_quant;
mod kquants;
mod legacy;

pub use blocks::*;
pub use error::KernelError;
pub use gguf::GgmlType;

pub(crate) use iq::{
    IQ1_DELTA, SIGNS_PM1, unpack_iq1m, unpack_iq1s, unpack_iq2s, unpack_iq2xs, unpack_iq2xxs,
    unpack_iq3s, unpack_iq3xxs,
};
pub(crate) use iq_grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID};
pub(crate) use kquants::{q8k_block, unpack_q2k, unpack_q3k, unpack_q4k, unpack_q5k, unpack_q6k};
pub(crate) use legacy::{unpack_nibbles, unpack_q5};

type DequantizeFn = fn(&[u8], &mut [f32]);
type QuantizeFn = fn(&[f32], &mut [u8]);

/// What hearth knows about one tensor type.
#[derive(Clone, Copy)]
pub(crate) struct Traits {
    /// Row conversion to `f32`; `None` when unsupported.
    pub dequantize: Option<DequantizeFn>,
    /// Reference row quantization from `f32`; `None` when unsupported.
    pub quantize: Option<QuantizeFn>,
    /// The format activations are converted to for dot products with weights of this type;
    /// `None` for types that cannot be matmul weights.
    pub vec_dot_type: Option<GgmlType>,
}

/// The per-type table. Types not listed are unsupported: files holding them still open, and
/// every entry point here returns [`KernelError::UnsupportedType`] for them.
pub(crate) fn traits(ty: GgmlType) -> Traits {
    use GgmlType as T;
    let t = |dq: DequantizeFn, q: QuantizeFn, vdt: Option<GgmlType>| Traits {
        dequantize: Some(dq),
        quantize: Some(q),
        vec_dot_type: vdt,
    };
    let weights_only = |dq: DequantizeFn| Traits {
        dequantize: Some(dq),
        quantize: None,
        vec_dot_type: Some(T::Q8_K),
    };
    match ty {
        T::F32 => t(float::dequantize_f32, float::quantize_f32, Some(T::F32)),
        // Half-precision weights dot against f32 activations (exact products, f32 sums), not
        // against f16-rounded ones as ggml does.
        T::F16 => t(float::dequantize_f16, float::quantize_f16, Some(T::F32)),
        T::BF16 => t(float::dequantize_bf16, float::quantize_bf16, Some(T::F32)),
        T::Q4_0 => t(
            legacy::dequantize_q4_0,
            legacy::quantize_q4_0,
            Some(T::Q8_0),
        ),
        T::Q4_1 => t(
            legacy::dequantize_q4_1,
            legacy::quantize_q4_1,
            Some(T::Q8_1),
        ),
        T::Q5_0 => t(
            legacy::dequantize_q5_0,
            legacy::quantize_q5_0,
            Some(T::Q8_0),
        ),
        T::Q5_1 => t(
            legacy::dequantize_q5_1,
            legacy::quantize_q5_1,
            Some(T::Q8_1),
        ),
        T::Q8_0 => t(
            legacy::dequantize_q8_0,
            legacy::quantize_q8_0,
            Some(T::Q8_0),
        ),
        // Activation-only formats: convertible, not usable as weights.
        T::Q8_1 => t(legacy::dequantize_q8_1, legacy::quantize_q8_1, None),
        T::Q8_K => t(kquants::dequantize_q8_k, kquants::quantize_q8_k, None),
        T::Q2_K => t(
            kquants::dequantize_q2_k,
            kquants::quantize_q2_k,
            Some(T::Q8_K),
        ),
        T::Q3_K => t(
            kquants::dequantize_q3_k,
            kquants::quantize_q3_k,
            Some(T::Q8_K),
        ),
        T::Q4_K => t(
            kquants::dequantize_q4_k,
            kquants::quantize_q4_k,
            Some(T::Q8_K),
        ),
        T::Q5_K => t(
            kquants::dequantize_q5_k,
            kquants::quantize_q5_k,
            Some(T::Q8_K),
        ),
        T::Q6_K => t(
            kquants::dequantize_q6_k,
            kquants::quantize_q6_k,
            Some(T::Q8_K),
        ),
        T::IQ4_NL => t(iq4::dequantize_iq4_nl, iq4::quantize_iq4_nl, Some(T::Q8_0)),
        T::IQ4_XS => t(iq4::dequantize_iq4_xs, iq4::quantize_iq4_xs, Some(T::Q8_K)),
        T::MXFP4 => t(iq::dequantize_mxfp4, iq::quantize_mxfp4, Some(T::Q8_0)),
        // The lattice types (`iq_quant`): ggml's reference quantizers exist for those that do
        // not need importance weights; the other three only quantize through
        // [`quantize_chunk`] with an imatrix.
        T::IQ2_XXS => weights_only(iq::dequantize_iq2_xxs),
        T::IQ2_XS => weights_only(iq::dequantize_iq2_xs),
        T::IQ1_S => weights_only(iq::dequantize_iq1_s),
        T::IQ2_S => t(
            iq::dequantize_iq2_s,
            |x, d| iq_quant::quantize_iq2_s(x, None, d),
            Some(T::Q8_K),
        ),
        T::IQ3_XXS => t(
            iq::dequantize_iq3_xxs,
            |x, d| iq_quant::quantize_iq3_xxs(x, None, d),
            Some(T::Q8_K),
        ),
        T::IQ3_S => t(
            iq::dequantize_iq3_s,
            |x, d| iq_quant::quantize_iq3_s(x, None, d),
            Some(T::Q8_K),
        ),
        T::IQ1_M => t(
            iq::dequantize_iq1_m,
            |x, d| iq_quant::quantize_iq1_m(x, None, d),
            Some(T::Q8_K),
        ),
        // Not implemented yet (each needs its dequantizer, quantizer and dot kernels):
        T::TQ1_0
        | T::TQ2_0
        | T::NVFP4
        | T::Q1_0
        | T::Q2_0
        | T::I8
        | T::I16
        | T::I32
        | T::I64
        | T::F64 => Traits {
            dequantize: None,
            quantize: None,
            vec_dot_type: None,
        },
    }
}

/// Whether weights of type `ty` can be used for computation here: dequantized and multiplied (a
/// [`crate::matmul::Matrix`] of this type can be made). Every such type can also be quantized
/// to with [`quantize_chunk`]; `IQ2_XXS`, `IQ2_XS` and `IQ1_S` need importance weights for it
/// ([`requires_imatrix`]).
pub fn is_supported(ty: GgmlType) -> bool {
    traits(ty).vec_dot_type.is_some()
}

/// The format activations are quantized to for dot products with weights of type `ty`
/// (`Q4_0` → `Q8_0`, `Q4_1` → `Q8_1`, k-quants → `Q8_K`, float types → `F32`), or `None`
/// when `ty` cannot be a matmul weight.
pub fn vec_dot_type(ty: GgmlType) -> Option<GgmlType> {
    traits(ty).vec_dot_type
}

/// Bytes taken by a row of `n` values of type `ty`.
pub fn row_bytes(ty: GgmlType, n: usize) -> Result<usize, KernelError> {
    let block = ty.block_size() as usize;
    if !n.is_multiple_of(block) {
        return Err(KernelError::PartialBlock { ty, n });
    }
    (n / block)
        .checked_mul(ty.type_size() as usize)
        .ok_or(KernelError::PartialBlock { ty, n })
}

/// Converts `src` (whole blocks of `ty`) to `f32` values in `dst`; `dst.len()` gives the
/// number of values. Supported: every type with [`is_supported`] plus `Q8_1` and `Q8_K`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    let f = traits(ty)
        .dequantize
        .ok_or(KernelError::UnsupportedType(ty))?;
    let bytes = row_bytes(ty, dst.len())?;
    if src.len() != bytes {
        return Err(KernelError::LengthMismatch {
            what: "quantized row",
            expected: bytes,
            actual: src.len(),
        });
    }
    f(src, dst);
    Ok(())
}

/// Quantizes `src` to `ty` into `dst` (ggml's reference round-to-nearest); `src.len()` must be
/// a whole number of blocks and `dst` exactly the row's size in bytes.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    let f = traits(ty)
        .quantize
        .ok_or(KernelError::UnsupportedType(ty))?;
    let bytes = row_bytes(ty, src.len())?;
    if dst.len() != bytes {
        return Err(KernelError::LengthMismatch {
            what: "quantized row",
            expected: bytes,
            actual: dst.len(),
        });
    }
    f(src, dst);
    Ok(())
}

/// Whether [`quantize_chunk`] uses importance weights for type `ty` (ggml's types whose
/// `quantize_*` function reads `quant_weights`): the 4- and 5-bit legacy types, the k-quants,
/// the `IQ4` types and the lattice types. `Q8_0` and the float types ignore them.
pub fn uses_imatrix(ty: GgmlType) -> bool {
    use GgmlType as T;
    requires_imatrix(ty)
        || matches!(ty, T::IQ2_S | T::IQ3_XXS | T::IQ3_S | T::IQ1_M)
        || matches!(
            ty,
            T::Q4_0
                | T::Q4_1
                | T::Q5_0
                | T::Q5_1
                | T::Q2_K
                | T::Q3_K
                | T::Q4_K
                | T::Q5_K
                | T::Q6_K
                | T::IQ4_NL
                | T::IQ4_XS
        )
}

/// Whether [`quantize_chunk`] cannot quantize to `ty` without importance weights (ggml's
/// `ggml_quantize_requires_imatrix`): `IQ2_XXS`, `IQ2_XS` and `IQ1_S`.
pub fn requires_imatrix(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::IQ2_XXS | GgmlType::IQ2_XS | GgmlType::IQ1_S)
}

/// Quantizes whole rows of `n_per_row` values to `ty` as ggml's `ggml_quantize_chunk` — what
/// llama-quantize runs — so the bytes match its output: the reference quantizers, except
/// `IQ4_NL`, whose chunk quantizer searches more scales than its `_ref`; and with `imatrix`
/// (one importance weight per column, `n_per_row` values) the weighted searches of
/// `quantize_row_*_impl` for the types of [`uses_imatrix`]. The lattice types (`IQ2_XXS` …
/// `IQ1_M`) run ggml's grid searches (`iq_quant`); for those of [`requires_imatrix`] a missing
/// `imatrix` is [`KernelError::NeedsImatrix`].
pub fn quantize_chunk(
    ty: GgmlType,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    dst: &mut [u8],
) -> Result<(), KernelError> {
    use GgmlType as T;
    let row = row_bytes(ty, n_per_row)?;
    if n_per_row == 0 || !src.len().is_multiple_of(n_per_row) {
        return Err(KernelError::LengthMismatch {
            what: "values (whole rows)",
            expected: n_per_row,
            actual: src.len(),
        });
    }
    let nrows = src.len() / n_per_row;
    if dst.len() != row * nrows {
        return Err(KernelError::LengthMismatch {
            what: "quantized rows",
            expected: row * nrows,
            actual: dst.len(),
        });
    }
    if let Some(w) = imatrix
        && w.len() != n_per_row
    {
        return Err(KernelError::LengthMismatch {
            what: "importance weights",
            expected: n_per_row,
            actual: w.len(),
        });
    }
    // The lattice types: one row at a time, as ggml's `quantize_iq*`.
    type LatticeFn = fn(&[f32], Option<&[f32]>, &mut [u8]);
    let lattice: Option<LatticeFn> = match ty {
        T::IQ2_XXS => Some(|x, w, d| iq_quant::quantize_iq2_xxs(x, w.unwrap_or(&[]), d)),
        T::IQ2_XS => Some(|x, w, d| iq_quant::quantize_iq2_xs(x, w.unwrap_or(&[]), d)),
        T::IQ1_S => Some(|x, w, d| iq_quant::quantize_iq1_s(x, w.unwrap_or(&[]), d)),
        T::IQ2_S => Some(iq_quant::quantize_iq2_s),
        T::IQ3_XXS => Some(iq_quant::quantize_iq3_xxs),
        T::IQ3_S => Some(iq_quant::quantize_iq3_s),
        T::IQ1_M => Some(iq_quant::quantize_iq1_m),
        _ => None,
    };
    if let Some(f) = lattice {
        if imatrix.is_none() && requires_imatrix(ty) {
            return Err(KernelError::NeedsImatrix(ty));
        }
        for (x, d) in src.chunks_exact(n_per_row).zip(dst.chunks_exact_mut(row)) {
            f(x, imatrix, d);
        }
        return Ok(());
    }
    type RowFn = fn(&[f32], &[f32], &mut [u8]);
    let weighted: Option<RowFn> = match ty {
        T::Q4_0 => Some(legacy::quantize_q4_0_imatrix),
        T::Q4_1 => Some(legacy::quantize_q4_1_imatrix),
        T::Q5_0 => Some(legacy::quantize_q5_0_imatrix),
        T::Q5_1 => Some(legacy::quantize_q5_1_imatrix),
        T::Q2_K => Some(kquants::quantize_q2_k_imatrix),
        T::Q3_K => Some(kquants::quantize_q3_k_imatrix),
        T::Q4_K => Some(kquants::quantize_q4_k_imatrix),
        T::Q5_K => Some(kquants::quantize_q5_k_imatrix),
        T::Q6_K => Some(kquants::quantize_q6_k_imatrix),
        T::IQ4_NL => Some(|x, w, d| iq4::quantize_iq4_nl_chunk(x, Some(w), d)),
        T::IQ4_XS => Some(|x, w, d| iq4::quantize_iq4_xs_chunk(x, Some(w), d)),
        _ => None,
    };
    match (imatrix, weighted) {
        (Some(w), Some(f)) => {
            for (x, d) in src.chunks_exact(n_per_row).zip(dst.chunks_exact_mut(row)) {
                f(x, w, d);
            }
        }
        _ if ty == T::IQ4_NL => iq4::quantize_iq4_nl_chunk(src, None, dst),
        _ => {
            let f = traits(ty)
                .quantize
                .ok_or(KernelError::UnsupportedType(ty))?;
            f(src, dst);
        }
    }
    Ok(())
}
