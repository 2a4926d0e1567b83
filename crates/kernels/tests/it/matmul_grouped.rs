//! `matmul_grouped`: many products, each of a matrix with a range of rows of one input, in one
//! hand-off give, product by product, exactly what `matmul` gives for the same matrix, rows and
//! batch-invariance — for every activation form (f32, Q8, Q8_K), llama.cpp's order and not,
//! batches on both sides of the kernels' 8-token switch, 1–3 threads, more products than one
//! hand-off takes; and shape errors are errors.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use kernels::matmul::{
    MAX_GROUPED, Matrix, MatrixOptions, Product, Scratch, matmul, matmul_grouped,
};
use kernels::pool::ThreadPool;
use kernels::quant::{GgmlType, quantize_row, row_bytes};

use crate::ops_util::Rng;

fn matrix(
    rng: &mut Rng,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    ggml_order: bool,
) -> Matrix<'static> {
    let rb = row_bytes(ty, cols).unwrap();
    let mut data = vec![0u8; rows * rb];
    for out in data.chunks_exact_mut(rb) {
        quantize_row(ty, &rng.vec(cols, -1.0, 1.0), out).unwrap();
    }
    let options = MatrixOptions {
        ggml_order,
        ..MatrixOptions::default()
    };
    Matrix::with_options(ty, rows, cols, &data, options)
        .unwrap()
        .into_owned()
}

#[test]
fn grouped_products_equal_one_matmul_each() {
    let mut rng = Rng::new(5);
    let cols = 512;
    let types = [
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q8_0,
        GgmlType::F32,
    ];
    for ggml_order in [false, true] {
        let mats: Vec<Matrix> = (0..40)
            .map(|i| matrix(&mut rng, types[i % 4], 96 + 8 * (i % 3), cols, ggml_order))
            .collect();
        // Row ranges of various sizes (0, 1, 3, 9, 12 tokens), some shared, some empty.
        let sizes = [1usize, 9, 0, 3, 12];
        let mut ranges = Vec::new();
        let mut t = 0;
        for i in 0..mats.len() {
            let c = sizes[i % sizes.len()];
            ranges.push(t..t + c);
            if i % 2 == 1 {
                t += c; // every other product shares its rows with the one before
            }
        }
        let n_tokens = ranges.iter().map(|r| r.end).max().unwrap();
        let x = rng.vec(n_tokens * cols, -2.0, 2.0);
        assert!(mats.len() > MAX_GROUPED);
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads);
            let mut outs: Vec<Vec<f32>> = mats
                .iter()
                .zip(&ranges)
                .map(|(m, r)| vec![f32::NAN; r.len() * m.rows()])
                .collect();
            let products: Vec<Product> = mats
                .iter()
                .zip(&ranges)
                .zip(outs.iter_mut())
                .enumerate()
                .map(|(i, ((w, rows), y))| Product {
                    w,
                    rows: rows.clone(),
                    y,
                    batch_invariant: i % 3 == 0,
                })
                .collect();
            let mut scratch = Scratch::new();
            matmul_grouped(&pool, &x, n_tokens, cols, products, &mut scratch).unwrap();
            for (i, ((w, rows), got)) in mats.iter().zip(&ranges).zip(&outs).enumerate() {
                let mut want = vec![0.0; rows.len() * w.rows()];
                let mut s = if i % 3 == 0 {
                    Scratch::new().batch_invariant()
                } else {
                    Scratch::new()
                };
                let xr = &x[rows.start * cols..rows.end * cols];
                matmul(&pool, w, xr, rows.len(), &mut want, &mut s).unwrap();
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "product {i} ({:?}, {} tokens, ggml_order {ggml_order}, {threads} threads)",
                    w.ty(),
                    rows.len()
                );
            }
        }
    }
}

#[test]
fn grouped_shape_errors_are_errors() {
    let mut rng = Rng::new(9);
    let m = matrix(&mut rng, GgmlType::Q8_0, 32, 64, false);
    let pool = ThreadPool::new(2);
    let x = rng.vec(2 * 64, -1.0, 1.0);
    let mut y = vec![0.0; 2 * 32];
    let mut scratch = Scratch::new();
    let mut run = |rows: std::ops::Range<usize>, x: &[f32], cols: usize, y: &mut [f32]| {
        let p = Product {
            w: &m,
            rows,
            y,
            batch_invariant: false,
        };
        matmul_grouped(&pool, x, 2, cols, [p], &mut scratch)
    };
    assert!(
        run(1..3, &x, 64, &mut y[..64]).is_err(),
        "rows past the input"
    );
    assert!(run(0..2, &x[..127], 64, &mut y).is_err(), "short input");
    assert!(run(0..2, &x, 64, &mut y[..63]).is_err(), "short output");
    assert!(run(0..4, &x[..64], 32, &mut y).is_err(), "another width");
    assert!(run(0..2, &x, 64, &mut y).is_ok());
}
