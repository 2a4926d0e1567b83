//! `MXFP4` and the IQ lattice types against ggml itself: the dot products llama.cpp's CPU
//! library computes for them (`vec_dot` after its run-time activation quantizer, the path of
//! products of fewer than 8 tokens), written by `scripts/gen_ggml_iq_fixtures.sh` into
//! `tests/fixtures/ggml-iq`. The x86 levels follow ggml's x86 kernels' float order and must give
//! its bits, alone and in a batch, with any thread count; the scalar level sums in ggml's generic
//! order (another rounding) and must stay within float rounding of them.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use kernels::isa::Isa;
use kernels::matmul::{Matrix, MatrixOptions, Scratch, matmul};
use kernels::pool::ThreadPool;
use kernels::quant::{GgmlType, dequantize_row, row_bytes};

// Shapes as in scripts/gen_ggml_iq_fixtures.c.
const ROWS: usize = 6;
const N_TOK: usize = 3;

const TYPES: &[(GgmlType, usize)] = &[
    (GgmlType::MXFP4, 32 * 41),
    (GgmlType::IQ2_XXS, 1280),
    (GgmlType::IQ2_XS, 1280),
    (GgmlType::IQ2_S, 1280),
    (GgmlType::IQ3_XXS, 1280),
    (GgmlType::IQ3_S, 1280),
    (GgmlType::IQ1_S, 1280),
    (GgmlType::IQ1_M, 1280),
];

/// (activations, weights, ggml's results) of `ty`'s fixture.
fn case(ty: GgmlType, k: usize) -> (Vec<f32>, Vec<u8>, Vec<f32>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ggml-iq")
        .join(format!("dot-{}.bin", ty.name().to_ascii_uppercase()));
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let (xb, rest) = b.split_at(4 * N_TOK * k);
    let (w, y) = rest.split_at(ROWS * row_bytes(ty, k).unwrap());
    assert_eq!(y.len(), 4 * N_TOK * ROWS, "{ty}");
    (f32s(xb), w.to_vec(), f32s(y))
}

#[test]
fn x86_dots_equal_ggml_bit_for_bit() {
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    for &(ty, k) in TYPES {
        let (x, w, want) = case(ty, k);
        // Σ|w·x| of each result: the scale of its rounding errors.
        let rb = row_bytes(ty, k).unwrap();
        let mut wf = vec![0.0f32; k];
        let mut mag = [0.0f64; N_TOK * ROWS];
        for r in 0..ROWS {
            dequantize_row(ty, &w[r * rb..(r + 1) * rb], &mut wf).unwrap();
            for t in 0..N_TOK {
                mag[t * ROWS + r] = wf
                    .iter()
                    .zip(&x[t * k..(t + 1) * k])
                    .map(|(&a, &b)| (f64::from(a) * f64::from(b)).abs())
                    .sum();
            }
        }
        for isa in Isa::all_supported() {
            for repack in [false, true] {
                let options = MatrixOptions {
                    isa,
                    repack,
                    ..MatrixOptions::default()
                };
                let m = Matrix::with_options(ty, ROWS, k, &w, options).unwrap();
                for pool in &pools {
                    let mut batch = vec![f32::NAN; N_TOK * ROWS];
                    matmul(pool, &m, &x, N_TOK, &mut batch, &mut Scratch::new()).unwrap();
                    for (i, (&g, &e)) in batch.iter().zip(&want).enumerate() {
                        let what =
                            format!("{ty} {} token {} row {}", isa.name(), i / ROWS, i % ROWS);
                        if isa == Isa::Generic {
                            // ggml's generic order: a few roundings from its x86 one.
                            let err = f64::from((g - e).abs());
                            assert!(err <= 2e-6 * mag[i], "{what}: got {g}, ggml {e}");
                        } else {
                            assert_eq!(g.to_bits(), e.to_bits(), "{what}: got {g}, ggml {e}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn iq4_nl_equals_ggml_vec_dot_bit_for_bit() {
    // Matrices llama.cpp leaves in ggml layout (here 6 rows, not a multiple of 8) take
    // `ggml_vec_dot_iq4_nl_q8_0`; with `ggml_order` hearth sums IQ4_NL in its order.
    let ty = GgmlType::IQ4_NL;
    let k = 32 * 41;
    let (x, w, want) = case(ty, k);
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    assert!(
        Isa::detected() == Isa::Generic || Matrix::ggml_order_available(ty),
        "IQ4_NL"
    );
    for isa in Isa::all_supported()
        .into_iter()
        .filter(|&i| i > Isa::Generic)
    {
        for llama_repacked in [false, true] {
            let options = MatrixOptions {
                isa,
                ggml_order: true,
                llama_repacked,
                ..MatrixOptions::default()
            };
            let m = Matrix::with_options(ty, ROWS, k, &w, options).unwrap();
            for pool in &pools {
                let mut y = vec![f32::NAN; N_TOK * ROWS];
                matmul(pool, &m, &x, N_TOK, &mut y, &mut Scratch::new()).unwrap();
                for (i, (g, e)) in y.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        e.to_bits(),
                        "{} token {} row {}: got {g}, ggml {e}",
                        isa.name(),
                        i / ROWS,
                        i % ROWS
                    );
                }
            }
        }
    }
}

// The repacked MXFP4 and IQ4_NL cases, as in scripts/gen_ggml_iq_fixtures.c.
const RP_ROWS: usize = 40;
const RP_K: usize = 32 * 41;
const RP_TOK: usize = 9;
const RP_N: [usize; 5] = [1, 3, 4, 5, 9];

#[test]
fn mxfp4_equals_llama_cpp_repacked_products_bit_for_bit() {
    // llama.cpp's loader repacks MXFP4 matrices of a multiple of 8 rows (`mxfp4_8x8`); its gemv
    // and gemm then sum whole blocks, one fma each. With `ggml_order` (and `llama_repacked`)
    // hearth follows that order in its packed kernels (16-row groups) and in its row kernels
    // (the 8 rows after them): every token of every batch, any thread count.
    repacked_products_equal_llama_cpp(GgmlType::MXFP4);
}

#[test]
fn iq4_nl_equals_llama_cpp_repacked_products_bit_for_bit() {
    // IQ4_NL: repacked as `iq4_nl_8x8`, summed by the template MXFP4's kernels share.
    repacked_products_equal_llama_cpp(GgmlType::IQ4_NL);
}

fn repacked_products_equal_llama_cpp(ty: GgmlType) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ggml-iq")
        .join(format!(
            "matmul-{}-repack.bin",
            ty.name().to_ascii_uppercase()
        ));
    let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let rb = row_bytes(ty, RP_K).unwrap();
    let (xb, rest) = b.split_at(4 * RP_TOK * RP_K);
    let (w, mut ys) = rest.split_at(RP_ROWS * rb);
    let x = f32s(xb);
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    let mut cases = Vec::new();
    for n in RP_N {
        let (y, next) = ys.split_at(4 * n * RP_ROWS);
        cases.push((n, f32s(y)));
        ys = next;
    }
    assert!(ys.is_empty());
    let mut packed_seen = false;
    for isa in Isa::all_supported()
        .into_iter()
        .filter(|&i| i > Isa::Generic)
    {
        let options = MatrixOptions {
            isa,
            ggml_order: true,
            llama_repacked: true,
            ..MatrixOptions::default()
        };
        let m = Matrix::with_options(ty, RP_ROWS, RP_K, w, options).unwrap();
        packed_seen |= m.is_packed();
        for (n, want) in &cases {
            for pool in &pools {
                let mut y = vec![f32::NAN; n * RP_ROWS];
                matmul(pool, &m, &x[..n * RP_K], *n, &mut y, &mut Scratch::new()).unwrap();
                for (i, (g, e)) in y.iter().zip(want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        e.to_bits(),
                        "{ty} {} packed={} n={n} token {} row {}: got {g}, ggml {e}",
                        isa.name(),
                        m.is_packed(),
                        i / RP_ROWS,
                        i % RP_ROWS
                    );
                }
            }
        }
    }
    if Isa::best_supported() == Isa::Avx512 && Isa::has_vnni() {
        assert!(packed_seen, "{ty} was never repacked");
    }
}

// The lattice types' products, as in scripts/gen_ggml_iq_fixtures.c.
const MM_ROWS: usize = 40;
const MM_K: usize = 256 * 5;
const MM_TOK: usize = 9;
const MM_N: [usize; 2] = [3, 9];

#[test]
fn lattice_products_equal_llama_cpp_in_both_of_its_paths() {
    // llama.cpp takes `vec_dot` for products of fewer than 8 tokens and its tiled mat-mul for
    // larger ones; with `ggml_order` hearth follows each, at the x86 levels, for every token
    // and thread count, in its packed kernels and its row kernels alike.
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    for &(ty, _) in &TYPES[1..] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ggml-iq")
            .join(format!("matmul-{}.bin", ty.name().to_ascii_uppercase()));
        let b = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let f32s = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let (xb, rest) = b.split_at(4 * MM_TOK * MM_K);
        let (w, ys) = rest.split_at(MM_ROWS * row_bytes(ty, MM_K).unwrap());
        let x = f32s(xb);
        if Isa::detected() > Isa::Generic {
            assert!(Matrix::ggml_order_available(ty), "{ty}");
        }
        for isa in Isa::all_supported()
            .into_iter()
            .filter(|&i| i > Isa::Generic)
        {
            let options = MatrixOptions {
                isa,
                ggml_order: true,
                ..MatrixOptions::default()
            };
            let m = Matrix::with_options(ty, MM_ROWS, MM_K, w, options).unwrap();
            // Two 16-row groups through the packed kernels, 8 rows through the row kernels.
            assert!(m.is_packed(), "{ty} {}", isa.name());
            let mut rest = ys;
            for n in MM_N {
                let (want, next) = rest.split_at(4 * n * MM_ROWS);
                rest = next;
                let want = f32s(want);
                for pool in &pools {
                    let mut y = vec![f32::NAN; n * MM_ROWS];
                    matmul(pool, &m, &x[..n * MM_K], n, &mut y, &mut Scratch::new()).unwrap();
                    for (i, (g, e)) in y.iter().zip(&want).enumerate() {
                        assert_eq!(
                            g.to_bits(),
                            e.to_bits(),
                            "{ty} {} n={n} token {} row {}: got {g}, ggml {e}",
                            isa.name(),
                            i / MM_ROWS,
                            i % MM_ROWS
                        );
                    }
                }
            }
            assert!(rest.is_empty());
        }
    }
}
