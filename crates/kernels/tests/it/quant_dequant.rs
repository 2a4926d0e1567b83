//! Dequantization and reference quantization, bit for bit against the Python `gguf` package
//! (fixtures written by `scripts/gen_quant_fixtures.py`), and the checked API's errors.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use crate::quant_util::{f32s, fixture};
use kernels::quant::{
    GgmlType, KernelError, dequantize_row, is_supported, quantize_row, row_bytes, vec_dot_type,
};

const DEQUANT_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q8_1,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
    GgmlType::MXFP4,
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ2_S,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
];

fn fixture_name(ty: GgmlType) -> String {
    ty.name().to_ascii_uppercase()
}

#[test]
fn dequantize_matches_gguf_python_bit_for_bit() {
    for &ty in DEQUANT_TYPES {
        let name = fixture_name(ty);
        let raw = fixture(&format!("dequant-{name}.raw"));
        let expected = f32s(&fixture(&format!("dequant-{name}.f32")));
        let mut got = vec![f32::NAN; expected.len()];
        dequantize_row(ty, &raw, &mut got).unwrap();
        for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
            assert_eq!(
                e.to_bits(),
                g.to_bits(),
                "{ty} value {i}: expected {e}, got {g}"
            );
        }
    }
}

#[test]
fn quantize_matches_gguf_python_bit_for_bit() {
    let input = f32s(&fixture("quant-input.f32"));
    for ty in [
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q8_K,
        GgmlType::MXFP4,
    ] {
        let expected = fixture(&format!("quant-{}.raw", fixture_name(ty)));
        let mut got = vec![0u8; row_bytes(ty, input.len()).unwrap()];
        quantize_row(ty, &input, &mut got).unwrap();
        assert_eq!(got.len(), expected.len(), "{ty}");
        let block = ty.type_size() as usize;
        for (i, (e, g)) in expected.chunks(block).zip(got.chunks(block)).enumerate() {
            assert_eq!(e, g, "{ty} block {i}");
        }
    }
}

#[test]
fn the_type_table() {
    use GgmlType as T;
    for (ty, vdt) in [
        (T::F32, T::F32),
        (T::F16, T::F32),
        (T::BF16, T::F32),
        (T::Q4_0, T::Q8_0),
        (T::Q4_1, T::Q8_1),
        (T::Q5_0, T::Q8_0),
        (T::Q5_1, T::Q8_1),
        (T::Q8_0, T::Q8_0),
        (T::Q2_K, T::Q8_K),
        (T::Q3_K, T::Q8_K),
        (T::Q4_K, T::Q8_K),
        (T::Q5_K, T::Q8_K),
        (T::Q6_K, T::Q8_K),
        (T::IQ4_NL, T::Q8_0),
        (T::IQ4_XS, T::Q8_K),
        (T::MXFP4, T::Q8_0),
        (T::IQ2_XXS, T::Q8_K),
        (T::IQ2_XS, T::Q8_K),
        (T::IQ2_S, T::Q8_K),
        (T::IQ3_XXS, T::Q8_K),
        (T::IQ3_S, T::Q8_K),
        (T::IQ1_S, T::Q8_K),
        (T::IQ1_M, T::Q8_K),
    ] {
        assert!(is_supported(ty), "{ty}");
        assert_eq!(vec_dot_type(ty), Some(vdt), "{ty}");
    }
    for ty in [T::Q8_1, T::Q8_K, T::TQ1_0, T::NVFP4, T::I32] {
        assert!(!is_supported(ty), "{ty}");
        assert_eq!(vec_dot_type(ty), None, "{ty}");
    }
}

#[test]
fn bad_calls_are_errors_not_panics() {
    let mut out = vec![0.0f32; 32];
    assert_eq!(
        dequantize_row(GgmlType::TQ1_0, &[0; 54], &mut vec![0.0; 256]),
        Err(KernelError::UnsupportedType(GgmlType::TQ1_0))
    );
    // IQ2_XXS (like IQ2_XS and IQ1_S) only quantizes with importance weights (quantize_chunk).
    assert_eq!(
        quantize_row(GgmlType::IQ2_XXS, &[0.0; 256], &mut [0; 66]),
        Err(KernelError::UnsupportedType(GgmlType::IQ2_XXS))
    );
    assert_eq!(
        quantize_row(GgmlType::TQ2_0, &[0.0; 256], &mut [0; 66]),
        Err(KernelError::UnsupportedType(GgmlType::TQ2_0))
    );
    assert_eq!(
        dequantize_row(GgmlType::Q4_0, &[0; 17], &mut out),
        Err(KernelError::LengthMismatch {
            what: "quantized row",
            expected: 18,
            actual: 17
        })
    );
    assert_eq!(
        dequantize_row(GgmlType::Q4_K, &[0; 144], &mut out),
        Err(KernelError::PartialBlock {
            ty: GgmlType::Q4_K,
            n: 32
        })
    );
    assert_eq!(
        quantize_row(GgmlType::Q8_0, &[0.0; 33], &mut [0; 34]),
        Err(KernelError::PartialBlock {
            ty: GgmlType::Q8_0,
            n: 33
        })
    );
    let err = quantize_row(GgmlType::Q8_0, &[0.0; 32], &mut [0; 35]).unwrap_err();
    assert!(err.to_string().contains("expected 34"), "{err}");
}
