//! The IQ lattice quantizers (`quantize_chunk` to IQ2_XXS … IQ1_M): the bytes ggml's
//! `ggml_quantize_chunk` writes for the same rows (fixtures from
//! scripts/gen_ggml_iq_quant_fixtures.sh: smooth rows, rows full of ties, all-zero groups,
//! outliers; with and without importance weights), and the quantize → dequantize error of
//! each type on Gaussian data within bounds.

#![allow(clippy::unwrap_used)] // tests: a failed step is a failed test

use std::path::PathBuf;

use kernels::quant::{
    GgmlType, KernelError, dequantize_row, quantize_chunk, requires_imatrix, row_bytes,
};

use crate::quant_util::{Rng, f32s, nmse};

const TYPES: [GgmlType; 7] = [
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ2_S,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
];

fn ggml_fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ggml-iq-quant")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

fn u32_at(b: &[u8], i: usize) -> usize {
    u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]) as usize
}

#[test]
fn iq_quantizers_match_ggml_bytes() {
    let mut checked = 0;
    for ty in TYPES {
        for with_imatrix in [false, true] {
            if !with_imatrix && requires_imatrix(ty) {
                continue;
            }
            let suffix = if with_imatrix { "-imatrix" } else { "" };
            let bytes = ggml_fixture(&format!("{}{suffix}.bin", ty.name().to_lowercase()));
            let (rows, k, has_w) = (u32_at(&bytes, 0), u32_at(&bytes, 1), u32_at(&bytes, 2));
            assert_eq!(has_w == 1, with_imatrix);
            let mut at = 12;
            let x = f32s(&bytes[at..at + 4 * rows * k]);
            at += 4 * rows * k;
            let w = with_imatrix.then(|| {
                let w = f32s(&bytes[at..at + 4 * k]);
                at += 4 * k;
                w
            });
            let expected = &bytes[at..];
            let rb = row_bytes(ty, k).unwrap();
            assert_eq!(expected.len(), rows * rb, "{ty}{suffix}: fixture size");
            let mut got = vec![0u8; rows * rb];
            quantize_chunk(ty, &x, k, w.as_deref(), &mut got).unwrap();
            for r in 0..rows {
                assert_eq!(
                    &got[r * rb..(r + 1) * rb],
                    &expected[r * rb..(r + 1) * rb],
                    "{ty}{suffix}: row {r} differs from ggml's bytes"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 11);
}

/// Quantized then dequantized Gaussian rows keep the normalised squared error below a bound per
/// type (about 1.4× what these quantizers measure here: IQ2_XXS 0.116, IQ2_XS 0.089, IQ2_S
/// 0.060/0.067 without weights, IQ3_XXS 0.033/0.044, IQ3_S 0.018/0.026, IQ1_S 0.228, IQ1_M
/// 0.197/0.331), with importance weights and, where allowed, without.
#[test]
fn iq_round_trip_error_is_bounded() {
    let k = 4096;
    let mut rng = Rng::new(7);
    let x = rng.normals(4 * k);
    let w: Vec<f32> = (0..k).map(|_| 0.5 + 0.5 * rng.uniform().abs()).collect();
    let bounds = [
        (GgmlType::IQ2_XXS, 0.16),
        (GgmlType::IQ2_XS, 0.13),
        (GgmlType::IQ2_S, 0.095),
        (GgmlType::IQ3_XXS, 0.062),
        (GgmlType::IQ3_S, 0.037),
        (GgmlType::IQ1_S, 0.32),
        (GgmlType::IQ1_M, 0.46),
    ];
    for (ty, bound) in bounds {
        for weights in [Some(w.as_slice()), None] {
            if weights.is_none() && requires_imatrix(ty) {
                continue;
            }
            let rb = row_bytes(ty, k).unwrap();
            let mut q = vec![0u8; 4 * rb];
            quantize_chunk(ty, &x, k, weights, &mut q).unwrap();
            let mut y = vec![0.0f32; 4 * k];
            for r in 0..4 {
                dequantize_row(ty, &q[r * rb..(r + 1) * rb], &mut y[r * k..(r + 1) * k]).unwrap();
            }
            let e = nmse(&x, &y);
            eprintln!("{ty} imatrix={}: nmse {e:.4}", weights.is_some());
            assert!(e < bound, "{ty}: normalised error {e} over {bound}");
        }
    }
}

#[test]
fn iq_types_that_need_an_imatrix_say_so() {
    for ty in [GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ1_S] {
        let x = vec![0.5f32; 256];
        let mut q = vec![0u8; row_bytes(ty, 256).unwrap()];
        assert_eq!(
            quantize_chunk(ty, &x, 256, None, &mut q),
            Err(KernelError::NeedsImatrix(ty))
        );
    }
    // Rows that are not whole super-blocks are refused, not truncated.
    let mut q = vec![0u8; 1024];
    assert!(quantize_chunk(GgmlType::IQ3_S, &[0.0; 300], 300, None, &mut q).is_err());
}

/// Non-finite and all-zero input never panics.
#[test]
fn iq_quantizers_survive_odd_input() {
    let mut x = vec![0.0f32; 512];
    x[3] = f32::NAN;
    x[300] = f32::INFINITY;
    x[301] = -f32::INFINITY;
    let w = vec![1.0f32; 512];
    for ty in TYPES {
        let mut q = vec![0u8; 2 * row_bytes(ty, 256).unwrap()];
        quantize_chunk(ty, &x, 256, Some(&w[..256]), &mut q).unwrap();
        let zeros = vec![0.0f32; 256];
        let mut z = vec![0xffu8; row_bytes(ty, 256).unwrap()];
        quantize_chunk(ty, &zeros, 256, Some(&w[..256]), &mut z).unwrap();
        let mut y = vec![1.0f32; 256];
        dequantize_row(ty, &z, &mut y).unwrap();
        assert!(y.iter().all(|&v| v == 0.0), "{ty}: zeros do not stay zeros");
    }
}
