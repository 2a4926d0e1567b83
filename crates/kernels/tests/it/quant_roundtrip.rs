//! Reference quantization round trips within ggml's error budgets (`tests/test-quantize-fns.cpp`:
//! RMSE-like total error < 0.002, 0.004 for 3-bit, 0.0075 for 2-bit, 0.003 for FP4), for every
//! type with a quantizer — including the k-quants and IQ4 types the Python package cannot
//! quantize.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use crate::quant_util::synthetic;
use kernels::quant::{GgmlType, dequantize_row, quantize_row, row_bytes};

/// ggml's `array_rmse`: sqrt(Σ diff²) / n.
fn total_error(a: &[f32], b: &[f32]) -> f32 {
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    sum.sqrt() as f32 / a.len() as f32
}

pub fn budget(ty: GgmlType) -> f32 {
    match ty {
        GgmlType::Q2_K => 0.0075,
        GgmlType::Q3_K => 0.0040,
        GgmlType::MXFP4 => 0.0030,
        _ => 0.002,
    }
}

#[test]
fn round_trip_within_ggml_budgets() {
    let x = synthetic(32 * 128, 0.0);
    for ty in [
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
    ] {
        let mut q = vec![0u8; row_bytes(ty, x.len()).unwrap()];
        quantize_row(ty, &x, &mut q).unwrap();
        let mut y = vec![0.0f32; x.len()];
        dequantize_row(ty, &q, &mut y).unwrap();
        let err = total_error(&x, &y);
        assert!(
            err < budget(ty),
            "{ty}: total error {err} over budget {}",
            budget(ty)
        );
    }
}

#[test]
fn k_quants_beat_their_plain_counterparts_on_normal_data() {
    // The k-quant search for scales must do at least as well as the simple 32-value formats of
    // the same width: a check that the scale search is wired right, not only within budget.
    let mut rng = crate::quant_util::Rng::new(7);
    let x = rng.normals(256 * 16);
    let err = |ty: GgmlType| {
        let mut q = vec![0u8; row_bytes(ty, x.len()).unwrap()];
        quantize_row(ty, &x, &mut q).unwrap();
        let mut y = vec![0.0f32; x.len()];
        dequantize_row(ty, &q, &mut y).unwrap();
        crate::quant_util::nmse(&x, &y)
    };
    assert!(err(GgmlType::Q4_K) < err(GgmlType::Q4_0), "q4_K vs q4_0");
    assert!(err(GgmlType::Q5_K) < err(GgmlType::Q5_0), "q5_K vs q5_0");
    assert!(err(GgmlType::Q6_K) < err(GgmlType::Q5_K), "q6_K vs q5_K");
    assert!(err(GgmlType::Q3_K) < err(GgmlType::Q2_K), "q3_K vs q2_K");
    assert!(
        err(GgmlType::IQ4_XS) < err(GgmlType::Q4_0),
        "iq4_xs vs q4_0"
    );
    assert!(
        err(GgmlType::IQ4_NL) < err(GgmlType::Q4_0),
        "iq4_nl vs q4_0"
    );
}

/// `quantize_chunk` (ggml's `ggml_quantize_chunk`, what llama-quantize runs) with and without
/// importance weights stays within the same budgets; the weights move the error where they
/// say: with weight on the first half of each row, that half's error drops below the
/// unweighted one. (Byte equality with llama-quantize is checked in the quantize crate.)
#[test]
fn quantize_chunk_with_importance_weights() {
    use kernels::quant::{quantize_chunk, uses_imatrix};
    let n_per_row = 512;
    let x = synthetic(n_per_row * 8, 0.0);
    let heavy: Vec<f32> = (0..n_per_row)
        .map(|i| if i < n_per_row / 2 { 100.0 } else { 0.01 })
        .collect();
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::IQ4_NL,
        GgmlType::IQ4_XS,
    ] {
        assert!(uses_imatrix(ty));
        let run = |w: Option<&[f32]>| {
            let mut q = vec![0u8; row_bytes(ty, x.len()).unwrap()];
            quantize_chunk(ty, &x, n_per_row, w, &mut q).unwrap();
            let mut y = vec![0.0f32; x.len()];
            dequantize_row(ty, &q, &mut y).unwrap();
            y
        };
        let first_half_err = |y: &[f32]| {
            let (a, b): (Vec<f32>, Vec<f32>) = x
                .chunks(n_per_row)
                .zip(y.chunks(n_per_row))
                .flat_map(|(xr, yr)| xr[..n_per_row / 2].iter().zip(&yr[..n_per_row / 2]))
                .map(|(a, b)| (*a, *b))
                .unzip();
            total_error(&a, &b)
        };
        let plain = run(None);
        let weighted = run(Some(&heavy));
        for y in [&plain, &weighted] {
            let err = total_error(&x, y);
            assert!(err < budget(ty), "{ty}: total error {err} over budget");
        }
        assert!(
            first_half_err(&weighted) <= first_half_err(&plain),
            "{ty}: importance weights did not help the weighted half"
        );
    }
    // Wrong lengths are errors, not panics.
    let mut q = vec![0u8; row_bytes(GgmlType::Q4_K, 512).unwrap()];
    let w = vec![1.0f32; 100];
    assert!(quantize_chunk(GgmlType::Q4_K, &x[..512], 512, Some(&w), &mut q).is_err());
    assert!(quantize_chunk(GgmlType::Q4_K, &x[..500], 512, None, &mut q).is_err());
    assert!(quantize_chunk(GgmlType::Q4_K, &x[..512], 500, None, &mut q).is_err());
    assert!(quantize_chunk(GgmlType::IQ2_XXS, &x[..512], 512, None, &mut q).is_err());
}
