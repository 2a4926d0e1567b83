//! The real models: every tensor dequantizes, and a mat-vec with a real `ffn_down` matches the
//! naive product.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use crate::matmul_naive::naive;
use crate::quant_util::{Rng, nmse};
use kernels::matmul::{Matrix, Scratch, matmul};
use kernels::pool::ThreadPool;
use kernels::quant::{dequantize_row, is_supported, row_bytes};

fn check_model(name: &str) {
    let bytes = test_models::read(name);
    let g = gguf::Gguf::parse(&bytes).unwrap();
    let mut seen = 0;
    for t in g.tensors() {
        let data = g.tensor_data(t);
        let cols = t.shape[0] as usize;
        let rows = (t.n_elements() as usize) / cols;
        let rb = row_bytes(t.ty, cols).unwrap();
        assert_eq!(data.len(), rows * rb, "{}", t.name);
        let mut out = vec![0.0f32; cols];
        for r in 0..rows {
            dequantize_row(t.ty, &data[r * rb..(r + 1) * rb], &mut out).unwrap();
            assert!(out.iter().all(|v| v.is_finite()), "{} row {r}", t.name);
        }
        seen += 1;
    }
    assert!(seen > 100, "{name}: only {seen} tensors");

    let t = g.tensor("blk.0.ffn_down.weight").unwrap();
    assert!(is_supported(t.ty));
    let (cols, rows) = (t.shape[0] as usize, t.shape[1] as usize);
    let w = g.tensor_data(t);
    let m = Matrix::new(t.ty, rows, cols, w).unwrap();
    let mut rng = Rng::new(5);
    for n_tokens in [1, 4] {
        let x = rng.normals(n_tokens * cols);
        let reference = naive(t.ty, w, rows, cols, &x, n_tokens);
        for threads in [1, 2] {
            let mut y = vec![0.0; n_tokens * rows];
            matmul(
                &ThreadPool::new(threads),
                &m,
                &x,
                n_tokens,
                &mut y,
                &mut Scratch::new(),
            )
            .unwrap();
            let e = nmse(&reference, &y);
            assert!(e <= 5e-4, "{name} {} tokens={n_tokens}: nmse {e}", t.ty);
        }
    }
}

#[test]
fn smollm2_tensors_dequantize_and_multiply() {
    check_model(test_models::SMOLLM2);
}

#[test]
fn gemma3_tensors_dequantize_and_multiply() {
    check_model(test_models::GEMMA3);
}
