//! Dot products: the scalar kernels against exact f64 arithmetic on the dequantized operands,
//! every SIMD level against the scalar kernels, ggml's dot-product error budgets, and the
//! activation quantization against the reference quantizers.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use crate::quant_util::{Rng, synthetic};
use kernels::isa::Isa;
use kernels::matmul::{dot_row, quantize_activations};
use kernels::quant::{GgmlType, dequantize_row, quantize_row, row_bytes, vec_dot_type};

/// Every type that can be a matmul weight.
pub const WEIGHT_TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::IQ4_NL,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_XS,
];

/// A weight row of `n` values of type `ty` from random normal data (some blocks scaled up or
/// zeroed, so scales vary), quantized with the reference quantizer.
pub fn random_row(rng: &mut Rng, ty: GgmlType, n: usize) -> Vec<u8> {
    let mut x = rng.normals(n);
    for (i, c) in x.chunks_mut(32).enumerate() {
        match i % 7 {
            3 => c.iter_mut().for_each(|v| *v *= 30.0),
            5 => c.iter_mut().for_each(|v| *v += 2.0),
            6 if i % 3 == 0 => c.fill(0.0),
            _ => {}
        }
    }
    let mut q = vec![0u8; row_bytes(ty, n).unwrap()];
    quantize_row(ty, &x, &mut q).unwrap();
    q
}

/// Dequantized activations as matmul sees them, and Σ|w·a| (the scale of rounding errors).
fn exact_dot(ty: GgmlType, w: &[u8], x: &[f32]) -> (f64, f64) {
    let mut wf = vec![0.0f32; x.len()];
    dequantize_row(ty, w, &mut wf).unwrap();
    let a: Vec<f64> = match quantize_activations(Isa::Generic, ty, x).unwrap() {
        None => x.iter().map(|&v| f64::from(v)).collect(),
        Some(q) => {
            let block = q.qs.len() / q.d.len();
            q.qs.iter()
                .enumerate()
                .map(|(i, &v)| f64::from(v) * f64::from(q.d[i / block]))
                .collect()
        }
    };
    let dot = wf.iter().zip(&a).map(|(&w, &a)| f64::from(w) * a).sum();
    let mag = wf
        .iter()
        .zip(&a)
        .map(|(&w, &a)| (f64::from(w) * a).abs())
        .sum();
    (dot, mag)
}

fn lengths(ty: GgmlType) -> Vec<usize> {
    let qk = ty.block_size().max(32) as usize;
    [1, 2, 3, 7, 9, 33].iter().map(|b| b * qk).collect()
}

#[test]
fn scalar_dots_are_exact_up_to_float_rounding() {
    let mut rng = Rng::new(1);
    for &ty in WEIGHT_TYPES {
        for n in lengths(ty) {
            let w = random_row(&mut rng, ty, n);
            let x = rng.normals(n);
            let got = dot_row(Isa::Generic, ty, &w, &x).unwrap();
            let (exact, mag) = exact_dot(ty, &w, &x);
            let err = (f64::from(got) - exact).abs();
            assert!(
                err <= 2e-6 * mag + 1e-30,
                "{ty} n={n}: got {got}, exact {exact}, |terms| {mag}"
            );
        }
    }
}

#[test]
fn simd_dots_match_scalar_at_every_level() {
    let mut rng = Rng::new(2);
    for &ty in WEIGHT_TYPES {
        for n in lengths(ty) {
            let w = random_row(&mut rng, ty, n);
            let x = rng.normals(n);
            let reference = dot_row(Isa::Generic, ty, &w, &x).unwrap();
            let (_, mag) = exact_dot(ty, &w, &x);
            for isa in Isa::all_supported() {
                let got = dot_row(isa, ty, &w, &x).unwrap();
                let err = f64::from((got - reference).abs());
                assert!(
                    err <= 2e-6 * mag + 1e-30,
                    "{ty} n={n} {}: got {got}, scalar {reference}",
                    isa.name()
                );
            }
        }
    }
}

#[test]
fn dot_error_within_ggml_budgets() {
    // test-quantize-fns: |quantized dot − exact dot| / n < 0.02 (0.04 for 2-bit), n = 4096.
    let n = 32 * 128;
    let (a, b) = (synthetic(n, 0.0), synthetic(n, 1.0));
    let exact: f64 = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    for &ty in WEIGHT_TYPES {
        let mut w = vec![0u8; row_bytes(ty, n).unwrap()];
        quantize_row(ty, &a, &mut w).unwrap();
        let budget = if ty == GgmlType::Q2_K { 0.04 } else { 0.02 };
        for isa in Isa::all_supported() {
            let got = dot_row(isa, ty, &w, &b).unwrap();
            let err = (f64::from(got) - exact).abs() / n as f64;
            assert!(err < budget, "{ty} {}: error {err}", isa.name());
        }
    }
}

#[test]
fn activations_are_quantized_as_the_reference_quantizers_do() {
    let mut rng = Rng::new(3);
    let mut x = rng.normals(256 * 5);
    x[..32].fill(0.0);
    x[256..512].fill(0.0);
    for &ty in WEIGHT_TYPES {
        let Some(vdt) = vec_dot_type(ty).filter(|&t| t != GgmlType::F32) else {
            assert_eq!(
                quantize_activations(Isa::Generic, ty, &x).unwrap(),
                None,
                "{ty}"
            );
            continue;
        };
        let reference = quantize_activations(Isa::Generic, ty, &x).unwrap().unwrap();
        let mut bytes = vec![0u8; row_bytes(vdt, x.len()).unwrap()];
        quantize_row(vdt, &x, &mut bytes).unwrap();
        let block = vdt.type_size() as usize;
        for (i, b) in bytes.chunks(block).enumerate() {
            match vdt {
                GgmlType::Q8_0 | GgmlType::Q8_1 => {
                    let d = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                    let qs = &b[block - 32..];
                    assert_eq!(reference.d[i], d, "{ty} block {i}");
                    let sum: i32 = qs.iter().map(|&v| i32::from(v as i8)).sum();
                    assert_eq!(i32::from(reference.sums[i]), sum, "{ty} block {i}");
                    for (j, &v) in qs.iter().enumerate() {
                        assert_eq!(reference.qs[32 * i + j], v as i8, "{ty} block {i}");
                    }
                }
                GgmlType::Q8_K => {
                    assert_eq!(reference.d[i], f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    for (j, &v) in b[4..260].iter().enumerate() {
                        assert_eq!(reference.qs[256 * i + j], v as i8, "{ty} block {i}");
                    }
                    let sums = &reference.sums[24 * i..24 * i + 24];
                    for g in 0..16 {
                        let s = i16::from_le_bytes([b[260 + 2 * g], b[261 + 2 * g]]);
                        assert_eq!(sums[g], s, "{ty} block {i}");
                    }
                    for g in 0..8 {
                        assert_eq!(
                            sums[16 + g],
                            sums[2 * g] + sums[2 * g + 1],
                            "{ty} block {i}"
                        );
                    }
                }
                _ => unreachable!("{vdt}"),
            }
        }
        for isa in Isa::all_supported() {
            let got = quantize_activations(isa, ty, &x).unwrap().unwrap();
            assert_eq!(got, reference, "{ty} at {}", isa.name());
        }
    }
}
