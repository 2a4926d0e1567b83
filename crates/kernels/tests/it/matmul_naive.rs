//! Mat-vec and mat-mat against a naive f64 product on the dequantized weights (NMSE ≤ 5e-4,
//! test-backend-ops' bound), at every instruction-set level, 1 and 2 threads; `matmul_many`
//! against separate calls; shape errors.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use crate::dot_reference::{WEIGHT_TYPES, random_row};
use crate::quant_util::{Rng, nmse};
use kernels::isa::Isa;
use kernels::matmul::{Matrix, MatrixOptions, Scratch, matmul, matmul_many};
use kernels::pool::ThreadPool;
use kernels::quant::{GgmlType, KernelError, dequantize_row, row_bytes};

/// `y[t][r] = Σ_c W[r][c]·x[t][c]` in f64 over the dequantized weights.
pub fn naive(
    ty: GgmlType,
    w: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    n_tokens: usize,
) -> Vec<f32> {
    let rb = row_bytes(ty, cols).unwrap();
    let mut wf = vec![0.0f32; rows * cols];
    for r in 0..rows {
        dequantize_row(
            ty,
            &w[r * rb..(r + 1) * rb],
            &mut wf[r * cols..(r + 1) * cols],
        )
        .unwrap();
    }
    let mut y = vec![0.0f32; n_tokens * rows];
    for t in 0..n_tokens {
        for r in 0..rows {
            let s: f64 = (0..cols)
                .map(|c| f64::from(wf[r * cols + c]) * f64::from(x[t * cols + c]))
                .sum();
            y[t * rows + r] = s as f32;
        }
    }
    y
}

/// Every way to prepare a matrix: each supported level, in place or repacked, and repacked
/// with ggml's summation order.
pub fn all_options() -> Vec<MatrixOptions> {
    Isa::all_supported()
        .into_iter()
        .flat_map(|isa| {
            [(false, false), (true, false), (true, true)].map(|(repack, ggml_order)| {
                MatrixOptions {
                    isa,
                    repack,
                    ggml_order,
                    llama_repacked: true,
                }
            })
        })
        .collect()
}

pub fn random_matrix(rng: &mut Rng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    (0..rows).flat_map(|_| random_row(rng, ty, cols)).collect()
}

#[test]
fn matmul_matches_naive_product_for_every_type_level_and_thread_count() {
    let mut rng = Rng::new(11);
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    for &ty in WEIGHT_TYPES {
        // Float types take any width: 100 exercises the masked tails.
        let cols = match ty.block_size() {
            256 => 512,
            1 => 100,
            _ => 96,
        };
        for rows in [37, 64] {
            let w = random_matrix(&mut rng, ty, rows, cols);
            for n_tokens in [1, 3, 8, 20] {
                let x = rng.normals(n_tokens * cols);
                let reference = naive(ty, &w, rows, cols, &x, n_tokens);
                for options in all_options() {
                    let isa = options.isa;
                    let m = Matrix::with_options(ty, rows, cols, &w, options).unwrap();
                    for pool in &pools {
                        let mut y = vec![f32::NAN; n_tokens * rows];
                        matmul(pool, &m, &x, n_tokens, &mut y, &mut Scratch::new()).unwrap();
                        let e = nmse(&reference, &y);
                        assert!(
                            e <= 5e-4,
                            "{ty} {rows}x{cols} tokens={n_tokens} {} packed={} threads={}: nmse {e}",
                            isa.name(),
                            m.is_packed(),
                            pool.n_threads()
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_many_equals_separate_calls() {
    let mut rng = Rng::new(12);
    let pool = ThreadPool::new(2);
    let cols = 512;
    let specs = [
        (GgmlType::Q4_K, 48),
        (GgmlType::Q5_0, 20),
        (GgmlType::Q8_0, 64),
        (GgmlType::F16, 5),
    ];
    let data: Vec<Vec<u8>> = specs
        .iter()
        .map(|&(ty, rows)| random_matrix(&mut rng, ty, rows, cols))
        .collect();
    let ms: Vec<Matrix> = specs
        .iter()
        .zip(&data)
        .map(|(&(ty, rows), d)| Matrix::new(ty, rows, cols, d).unwrap())
        .collect();
    for n_tokens in [1, 5] {
        let x = rng.normals(n_tokens * cols);
        let mut scratch = Scratch::with_capacity(8, cols);
        let mut outs: Vec<Vec<f32>> = ms.iter().map(|m| vec![0.0; n_tokens * m.rows()]).collect();
        {
            let mut ys: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
            let refs: Vec<&Matrix> = ms.iter().collect();
            matmul_many(&pool, &refs, &x, n_tokens, &mut ys, &mut scratch).unwrap();
        }
        for (m, got) in ms.iter().zip(&outs) {
            let mut y = vec![0.0; n_tokens * m.rows()];
            matmul(&pool, m, &x, n_tokens, &mut y, &mut scratch).unwrap();
            assert_eq!(&y, got, "{}", m.ty());
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let w = vec![0u8; 4 * 18];
    assert!(matches!(
        Matrix::new(GgmlType::Q4_0, 4, 32, &w[1..]),
        Err(KernelError::LengthMismatch { .. })
    ));
    assert_eq!(
        Matrix::new(GgmlType::Q4_K, 1, 32, &[0; 18]).unwrap_err(),
        KernelError::PartialBlock {
            ty: GgmlType::Q4_K,
            n: 32
        }
    );
    assert_eq!(
        Matrix::new(GgmlType::TQ2_0, 1, 256, &[0; 66]).unwrap_err(),
        KernelError::UnsupportedType(GgmlType::TQ2_0)
    );
    let m = Matrix::new(GgmlType::Q4_0, 4, 32, &w).unwrap();
    let pool = ThreadPool::new(1);
    let mut s = Scratch::new();
    assert!(matmul(&pool, &m, &[0.0; 31], 1, &mut [0.0; 4], &mut s).is_err());
    assert!(matmul(&pool, &m, &[0.0; 32], 1, &mut [0.0; 3], &mut s).is_err());
    assert!(matmul(&pool, &m, &[0.0; 64], 2, &mut [0.0; 8], &mut s).is_ok());
    let no_rows = Matrix::new(GgmlType::Q4_0, 0, 32, &[]).unwrap();
    matmul(&pool, &no_rows, &[0.0; 64], 2, &mut [], &mut s).unwrap();
    let empty = Matrix::new(GgmlType::Q4_0, 2, 0, &[]).unwrap();
    let mut y = [f32::NAN; 6];
    matmul(&pool, &empty, &[], 3, &mut y, &mut s).unwrap();
    assert_eq!(y, [0.0; 6]);
    let other = Matrix::new(GgmlType::F32, 1, 16, &[0; 64]).unwrap();
    assert!(
        matmul_many(
            &pool,
            &[&m, &other],
            &[0.0; 32],
            1,
            &mut [&mut [0.0; 4], &mut [0.0; 1]],
            &mut s
        )
        .is_err()
    );
}

#[test]
fn packed_kernels_match_scalar_row_kernels_closely() {
    // Same quantized activations, same integer sums: only the float summation order differs,
    // so the interleaved kernels must agree with the scalar ones far below the NMSE bound.
    let mut rng = Rng::new(13);
    let pool = ThreadPool::new(2);
    let mut packed_seen = 0;
    for &ty in WEIGHT_TYPES {
        let cols = match ty.block_size() {
            256 => 768,
            1 => 150,
            _ => 160,
        };
        let rows = 53;
        let w = random_matrix(&mut rng, ty, rows, cols);
        let scalar = Matrix::with_options(
            ty,
            rows,
            cols,
            &w,
            MatrixOptions {
                isa: Isa::Generic,
                repack: false,
                ..MatrixOptions::default()
            },
        )
        .unwrap();
        let best = Matrix::new(ty, rows, cols, &w).unwrap();
        packed_seen += usize::from(best.is_packed());
        for n_tokens in [1, 2, 5, 8, 11] {
            let x = rng.normals(n_tokens * cols);
            let mut want = vec![0.0; n_tokens * rows];
            let mut got = vec![0.0; n_tokens * rows];
            matmul(&pool, &scalar, &x, n_tokens, &mut want, &mut Scratch::new()).unwrap();
            matmul(&pool, &best, &x, n_tokens, &mut got, &mut Scratch::new()).unwrap();
            let e = nmse(&want, &got);
            assert!(
                e <= 1e-10,
                "{ty} tokens={n_tokens} packed={}: nmse {e}",
                best.is_packed()
            );
        }
    }
    if Isa::detected() == Isa::Avx512 && Isa::has_vnni() {
        assert!(packed_seen >= 9, "only {packed_seen} types packed");
    }
}

#[test]
fn owned_matrices_compute_the_same() {
    let mut rng = Rng::new(14);
    let pool = ThreadPool::new(2);
    for ty in [GgmlType::Q4_1, GgmlType::F16, GgmlType::Q6_K] {
        let cols = 512;
        let w = random_matrix(&mut rng, ty, 40, cols);
        let x = rng.normals(3 * cols);
        let borrowed = Matrix::with_options(
            ty,
            40,
            cols,
            &w,
            MatrixOptions {
                isa: Isa::detected(),
                repack: false,
                ..MatrixOptions::default()
            },
        )
        .unwrap();
        let mut want = vec![0.0; 3 * 40];
        matmul(&pool, &borrowed, &x, 3, &mut want, &mut Scratch::new()).unwrap();
        let owned: Matrix<'static> = borrowed.into_owned();
        let packed: Matrix<'static> = Matrix::new(ty, 40, cols, &w).unwrap().into_owned();
        drop(w);
        for m in [owned, packed] {
            let mut got = vec![0.0; 3 * 40];
            matmul(&pool, &m, &x, 3, &mut got, &mut Scratch::new()).unwrap();
            assert!(nmse(&want, &got) <= 1e-10, "{ty} packed={}", m.is_packed());
        }
    }
}

#[test]
fn wide_rows_in_batches_match_scalar() {
    // Rows longer than the batch column range (2048 values) are split and summed in pieces.
    let mut rng = Rng::new(15);
    let pool = ThreadPool::new(2);
    let (rows, cols) = (40, 2560);
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ] {
        let w = random_matrix(&mut rng, ty, rows, cols);
        let scalar = Matrix::with_options(
            ty,
            rows,
            cols,
            &w,
            MatrixOptions {
                isa: Isa::Generic,
                repack: false,
                ..MatrixOptions::default()
            },
        )
        .unwrap();
        for options in all_options().into_iter().filter(|o| o.repack) {
            let isa = options.isa;
            let m = Matrix::with_options(ty, rows, cols, &w, options).unwrap();
            for n_tokens in [1, 9] {
                let x = rng.normals(n_tokens * cols);
                let mut want = vec![0.0; n_tokens * rows];
                let mut got = vec![0.0; n_tokens * rows];
                matmul(&pool, &scalar, &x, n_tokens, &mut want, &mut Scratch::new()).unwrap();
                matmul(&pool, &m, &x, n_tokens, &mut got, &mut Scratch::new()).unwrap();
                let e = nmse(&want, &got);
                assert!(
                    e <= 1e-10,
                    "{ty} {} packed={} tokens={n_tokens}: nmse {e}",
                    isa.name(),
                    m.is_packed()
                );
            }
        }
    }
}

#[test]
fn long_batches_match_scalar() {
    // More tokens than one token block (256): the weight chunks are walked once per block.
    let mut rng = Rng::new(16);
    let pool = ThreadPool::new(2);
    let (rows, cols, n_tokens) = (40, 256, 300);
    for ty in [GgmlType::Q4_1, GgmlType::Q6_K] {
        let w = random_matrix(&mut rng, ty, rows, cols);
        let scalar = Matrix::with_options(
            ty,
            rows,
            cols,
            &w,
            MatrixOptions {
                isa: Isa::Generic,
                repack: false,
                ..MatrixOptions::default()
            },
        )
        .unwrap();
        let best = Matrix::new(ty, rows, cols, &w).unwrap();
        let x = rng.normals(n_tokens * cols);
        let mut want = vec![0.0; n_tokens * rows];
        let mut got = vec![0.0; n_tokens * rows];
        matmul(&pool, &scalar, &x, n_tokens, &mut want, &mut Scratch::new()).unwrap();
        matmul(
            &pool,
            &best,
            &x,
            n_tokens,
            &mut got,
            &mut Scratch::with_capacity(n_tokens, cols),
        )
        .unwrap();
        let e = nmse(&want, &got);
        assert!(e <= 1e-10, "{ty} packed={}: nmse {e}", best.is_packed());
    }
}

#[test]
fn matrices_and_scratch_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Matrix<'static>>();
    send_sync::<Scratch>();
    send_sync::<KernelError>();
}

#[test]
fn results_do_not_depend_on_batch_or_threads() {
    // A token's outputs are computed with the same arithmetic whether it comes alone or in a
    // batch, and whichever thread takes its rows: bit-identical results. (In llama.cpp's order,
    // k-quant products switch kernels with the batch as llama.cpp does, unless the scratch is
    // batch-invariant: `matmul_ggml_kquant` checks both.)
    let mut rng = Rng::new(17);
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    for &ty in WEIGHT_TYPES {
        let cols = match ty.block_size() {
            256 => 512,
            1 => 150,
            _ => 160,
        };
        let rows = 53;
        let w = random_matrix(&mut rng, ty, rows, cols);
        let n_tokens = 11;
        let x = rng.normals(n_tokens * cols);
        for options in all_options() {
            let isa = options.isa;
            let m = Matrix::with_options(ty, rows, cols, &w, options).unwrap();
            let mut batch = vec![0.0; n_tokens * rows];
            let mut scratch = Scratch::new().batch_invariant();
            matmul(&pools[1], &m, &x, n_tokens, &mut batch, &mut scratch).unwrap();
            for t in 0..n_tokens {
                let mut one = vec![0.0; rows];
                matmul(
                    &pools[t % 2],
                    &m,
                    &x[t * cols..(t + 1) * cols],
                    1,
                    &mut one,
                    &mut Scratch::new(),
                )
                .unwrap();
                let same = one
                    .iter()
                    .zip(&batch[t * rows..(t + 1) * rows])
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{ty} {} packed={} token {t}",
                    isa.name(),
                    m.is_packed()
                );
            }
        }
    }
}

#[test]
fn ggml_order_kernels_equal_the_row_kernels_bit_for_bit() {
    // The packed kernels that keep ggml's summation order give exactly what the 256-bit row
    // kernels give (which equal llama.cpp's own dot products: see `matmul_ggml` and
    // `matmul_ggml_kquant`), alone and in batches that take each of llama.cpp's code paths,
    // with rows longer than a batch column range (2048 values) and rows past the last 16-row
    // group.
    let mut rng = Rng::new(18);
    let pool = ThreadPool::new(2);
    let cols = 2560;
    for (ty, rows) in [
        (GgmlType::Q4_1, 37),
        (GgmlType::Q5_1, 37),
        (GgmlType::Q5_0, 37),
        (GgmlType::Q8_0, 37),
        (GgmlType::Q4_K, 40),
        (GgmlType::Q6_K, 37),
        (GgmlType::IQ4_NL, 40),
        // The lattice types: at `Avx512` the 512-bit tiles (products of 8 tokens or more)
        // against the 256-bit tiled row kernels.
        (GgmlType::IQ2_XXS, 37),
        (GgmlType::IQ2_XS, 37),
        (GgmlType::IQ2_S, 37),
        (GgmlType::IQ3_XXS, 37),
        (GgmlType::IQ3_S, 37),
        (GgmlType::IQ1_S, 37),
        (GgmlType::IQ1_M, 37),
    ] {
        let w = random_matrix(&mut rng, ty, rows, cols);
        for isa in Isa::all_supported().into_iter().filter(|&i| i >= Isa::Avx2) {
            let options = |repack| MatrixOptions {
                isa,
                repack,
                ggml_order: true,
                llama_repacked: true,
            };
            let rows_only = Matrix::with_options(ty, rows, cols, &w, options(false)).unwrap();
            let m = Matrix::with_options(ty, rows, cols, &w, options(true)).unwrap();
            if isa == Isa::Avx512 && Isa::has_vnni() {
                assert!(m.is_packed(), "{ty}");
            }
            // Every tile width, and 8 + 1 to 8 + 7 tokens after a full tile.
            for n_tokens in [1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
                let x = rng.normals(n_tokens * cols);
                let mut want = vec![0.0; n_tokens * rows];
                let mut got = vec![0.0; n_tokens * rows];
                matmul(
                    &pool,
                    &rows_only,
                    &x,
                    n_tokens,
                    &mut want,
                    &mut Scratch::new(),
                )
                .unwrap();
                matmul(&pool, &m, &x, n_tokens, &mut got, &mut Scratch::new()).unwrap();
                for (i, (a, b)) in want.iter().zip(&got).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{ty} {} packed={} tokens={n_tokens} output {i}: {a} vs {b}",
                        isa.name(),
                        m.is_packed()
                    );
                }
            }
        }
    }
}

#[test]
fn mxfp4_scales_at_the_ends_of_the_exponent_range() {
    // E8M0 exponents 0 and 1 give subnormal scales (ggml's special case), 236 a large one whose
    // products still fit an f32: every kernel family, rows a multiple of 16 so the packed
    // kernels take them.
    let mut rng = Rng::new(19);
    let (rows, cols) = (32, 128);
    let ty = GgmlType::MXFP4;
    let exps = [0u8, 1, 2, 3, 100, 127, 128, 200, 225, 236];
    let mut w = random_matrix(&mut rng, ty, rows, cols);
    for (r, row) in w.chunks_mut(row_bytes(ty, cols).unwrap()).enumerate() {
        for b in row.chunks_mut(17) {
            b[0] = exps[r % exps.len()];
        }
    }
    let x = rng.normals(3 * cols);
    let reference = naive(ty, &w, rows, cols, &x, 3);
    // Σ|w·x| per output: the scale of the activations' 8-bit quantization error.
    let x_abs: Vec<f32> = x.iter().map(|v| v.abs()).collect();
    let mut w_abs = vec![0.0f32; rows * cols];
    let rb = row_bytes(ty, cols).unwrap();
    for r in 0..rows {
        let out = &mut w_abs[r * cols..(r + 1) * cols];
        dequantize_row(ty, &w[r * rb..(r + 1) * rb], out).unwrap();
        out.iter_mut().for_each(|v| *v = v.abs());
    }
    let mag: Vec<f32> = (0..3)
        .flat_map(|t| {
            let (w_abs, x_abs) = (&w_abs, &x_abs);
            (0..rows).map(move |r| {
                (0..cols)
                    .map(|c| w_abs[r * cols + c] * x_abs[t * cols + c])
                    .sum::<f32>()
            })
        })
        .collect();
    let pool = ThreadPool::new(1);
    for options in all_options() {
        let m = Matrix::with_options(ty, rows, cols, &w, options).unwrap();
        let mut y = vec![f32::NAN; 3 * rows];
        matmul(&pool, &m, &x, 3, &mut y, &mut Scratch::new()).unwrap();
        for (i, (&g, &e)) in y.iter().zip(&reference).enumerate() {
            assert!(
                (g - e).abs() <= 0.01 * mag[i] + f32::MIN_POSITIVE,
                "{} packed={} token {} row {}: got {g}, reference {e}",
                options.isa.name(),
                m.is_packed(),
                i / rows,
                i % rows
            );
        }
    }
}
