//! Float-weight matmuls (`F32`, `F16`, `BF16`) with `MatrixOptions::ggml_order` against ggml
//! itself: what llama.cpp's AVX-512 + AVX512-BF16 CPU build computed, written by
//! `scripts/gen_ggml_float_fixtures.py` into `tests/fixtures/ggml-float`. Every level (the
//! scalar one too) must give ggml's bits — alone (`ggml_vec_dot_*`) and in a batch (llamafile's
//! sgemm where the shape allows it, `vec_dot` otherwise), at 1 and 2 threads — and a
//! batch-invariant scratch must give each token its single-token result.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use kernels::isa::Isa;
use kernels::matmul::{Matrix, MatrixOptions, Scratch, matmul};
use kernels::pool::ThreadPool;
use kernels::quant::{GgmlType, row_bytes};

// As in scripts/gen_ggml_float_fixtures.py.
const N_TOKENS: usize = 6;
const SHAPES: [(usize, usize); 5] = [(1024, 40), (1056, 40), (1040, 36), (1000, 42), (72, 8)];

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ggml-float")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Runs every fixture of `ty` at every level and thread count, batched and token by token.
fn check(ty: GgmlType) {
    for (k, m) in SHAPES {
        let x = f32s(&fixture(&format!("x-{k}.f32")));
        assert_eq!(x.len(), N_TOKENS * k);
        let file = fixture(&format!("matmul-{}-{k}x{m}.bin", ty.name().to_uppercase()));
        let wb = m * row_bytes(ty, k).unwrap();
        assert_eq!(file.len(), wb + 2 * N_TOKENS * m * 4);
        let (w, ys) = file.split_at(wb);
        let ys = f32s(ys);
        let (batch, single) = ys.split_at(N_TOKENS * m);
        for isa in Isa::all_supported() {
            let options = MatrixOptions {
                isa,
                ggml_order: true,
                ..MatrixOptions::default()
            };
            let mat = Matrix::with_options(ty, m, k, w, options).unwrap();
            for threads in [1, 2] {
                let pool = ThreadPool::new(threads);
                let what = format!("{} {k}x{m} {} {threads} threads", ty.name(), isa.name());
                let mut y = vec![0.0f32; N_TOKENS * m];
                matmul(&pool, &mat, &x, N_TOKENS, &mut y, &mut Scratch::new()).unwrap();
                assert_eq!(bits(&y), bits(batch), "{what}: batch");
                let mut inv = Scratch::new().batch_invariant();
                matmul(&pool, &mat, &x, N_TOKENS, &mut y, &mut inv).unwrap();
                assert_eq!(bits(&y), bits(single), "{what}: batch-invariant");
                for t in 0..N_TOKENS {
                    let mut y1 = vec![0.0f32; m];
                    let xt = &x[t * k..(t + 1) * k];
                    matmul(&pool, &mat, xt, 1, &mut y1, &mut Scratch::new()).unwrap();
                    assert_eq!(
                        bits(&y1),
                        bits(&single[t * m..(t + 1) * m]),
                        "{what}: token {t}"
                    );
                }
            }
        }
    }
}

#[test]
fn f16_matmul_is_ggml_bits() {
    check(GgmlType::F16);
}

#[test]
fn bf16_matmul_is_ggml_bits() {
    check(GgmlType::BF16);
}

#[test]
fn f32_matmul_is_ggml_bits() {
    check(GgmlType::F32);
}

/// Without `ggml_order` the float kernels take f32 activations unrounded: on these fixtures
/// that is measurably not ggml's result for F16/BF16 (the difference this order removes).
#[test]
fn default_order_differs_from_ggml_for_f16_and_bf16() {
    let (k, m) = SHAPES[0];
    let x = f32s(&fixture(&format!("x-{k}.f32")));
    for ty in [GgmlType::F16, GgmlType::BF16] {
        let file = fixture(&format!("matmul-{}-{k}x{m}.bin", ty.name().to_uppercase()));
        let wb = m * row_bytes(ty, k).unwrap();
        let want = f32s(&file[wb + N_TOKENS * m * 4..]);
        let mat = Matrix::new(ty, m, k, &file[..wb]).unwrap();
        let mut y = vec![0.0f32; m];
        let pool = ThreadPool::new(1);
        matmul(&pool, &mat, &x[..k], 1, &mut y, &mut Scratch::new()).unwrap();
        let differ = y
            .iter()
            .zip(&want)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert!(
            differ > m / 2,
            "{}: only {differ} of {m} differ",
            ty.name().to_uppercase()
        );
    }
}
