//! Activation quantization and quantized matmuls against ggml itself: what llama-cpp-python's
//! bundled ggml (its AVX-512 CPU build) computed, written by
//! `scripts/gen_ggml_matmul_fixtures.py` into `tests/fixtures/ggml-matmul`. The activation
//! quantizers must give ggml's bytes at every level; the matmuls with
//! `MatrixOptions::ggml_order` must give ggml's bits at the x86 levels, alone and in a batch,
//! repacked or not; the default kernels must stay close.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use half::f16;
use kernels::isa::Isa;
use kernels::matmul::{Matrix, MatrixOptions, Scratch, matmul, quantize_activations};
use kernels::pool::ThreadPool;
use kernels::quant::{GgmlType, row_bytes};

// Shapes as in scripts/gen_ggml_matmul_fixtures.py.
const K: usize = 1024;
const M: usize = 40;
const N_TOKENS: usize = 6;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ggml-matmul")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

fn activations() -> Vec<f32> {
    let x = f32s(&fixture("x.f32"));
    assert_eq!(x.len(), N_TOKENS * K);
    x
}

#[test]
fn q8_0_and_q8_1_activations_are_ggml_bytes() {
    let x = activations();
    // Weight types whose activations are Q8_0 (Q5_0) and Q8_1 (Q4_1) at run time.
    for (weight, act) in [(GgmlType::Q5_0, "Q8_0"), (GgmlType::Q4_1, "Q8_1")] {
        let want = fixture(&format!("acts-{act}.bin"));
        let block = if act == "Q8_1" { 36 } else { 34 };
        assert_eq!(want.len(), N_TOKENS * K / 32 * block);
        for isa in Isa::all_supported() {
            for (t, row) in x.chunks(K).enumerate() {
                let got = quantize_activations(isa, weight, row).unwrap().unwrap();
                let blocks = &want[t * K / 32 * block..(t + 1) * K / 32 * block];
                for (i, b) in blocks.chunks(block).enumerate() {
                    let what = format!("{act} {} token {t} block {i}", isa.name());
                    let qs: Vec<i8> = b[block - 32..].iter().map(|&v| v as i8).collect();
                    assert_eq!(got.d[i].to_bits(), f16_at(b, 0).to_bits(), "{what}: d");
                    assert_eq!(&got.qs[32 * i..32 * i + 32], &qs[..], "{what}: qs");
                    let sum: i16 = qs.iter().map(|&v| i16::from(v)).sum();
                    assert_eq!(got.sums[i], sum, "{what}: sum");
                    if act == "Q8_1" {
                        assert_eq!(got.s[i].to_bits(), f16_at(b, 2).to_bits(), "{what}: s");
                    }
                }
            }
        }
    }
}

#[test]
fn q8_k_activations_are_ggml_bytes() {
    let x = activations();
    let want = fixture("acts-Q8_K.bin");
    let block = 4 + 256 + 32;
    assert_eq!(want.len(), N_TOKENS * K / 256 * block);
    for isa in Isa::all_supported() {
        for (t, row) in x.chunks(K).enumerate() {
            let got = quantize_activations(isa, GgmlType::Q4_K, row)
                .unwrap()
                .unwrap();
            let blocks = &want[t * K / 256 * block..(t + 1) * K / 256 * block];
            for (i, b) in blocks.chunks(block).enumerate() {
                let what = format!("Q8_K {} token {t} block {i}", isa.name());
                let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                assert_eq!(got.d[i].to_bits(), d.to_bits(), "{what}: d");
                let qs: Vec<i8> = b[4..260].iter().map(|&v| v as i8).collect();
                assert_eq!(&got.qs[256 * i..256 * i + 256], &qs[..], "{what}: qs");
                if d == 0.0 {
                    continue; // ggml leaves an all-zero block's sums unwritten
                }
                for g in 0..16 {
                    let s = i16::from_le_bytes([b[260 + 2 * g], b[261 + 2 * g]]);
                    assert_eq!(got.sums[24 * i + g], s, "{what}: sum {g}");
                }
            }
        }
    }
}

/// (weights, ggml's output `N_TOKENS × M`) of type `ty`.
fn product(ty: GgmlType) -> (Vec<u8>, Vec<f32>) {
    let b = fixture(&format!("matmul-{ty}.bin"));
    let wbytes = M * row_bytes(ty, K).unwrap();
    assert_eq!(b.len(), wbytes + 4 * N_TOKENS * M, "{ty}");
    (b[..wbytes].to_vec(), f32s(&b[wbytes..]))
}

const TYPES: [GgmlType; 4] = [
    GgmlType::Q4_1,
    GgmlType::Q5_1,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
];

#[test]
fn ggml_order_matmuls_are_ggml_bits() {
    let x = activations();
    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    for ty in TYPES {
        let (w, want) = product(ty);
        for isa in Isa::all_supported().into_iter().filter(|&i| i >= Isa::Avx2) {
            for repack in [false, true] {
                let options = MatrixOptions {
                    isa,
                    repack,
                    ggml_order: true,
                    llama_repacked: true,
                };
                let m = Matrix::with_options(ty, M, K, &w, options).unwrap();
                let what = format!("{ty} {} packed={}", isa.name(), m.is_packed());
                for pool in &pools {
                    let mut y = vec![f32::NAN; N_TOKENS * M];
                    matmul(pool, &m, &x, N_TOKENS, &mut y, &mut Scratch::new()).unwrap();
                    assert_bits(&y, &want, &what);
                    for t in 0..N_TOKENS {
                        let mut one = vec![f32::NAN; M];
                        let xt = &x[t * K..(t + 1) * K];
                        matmul(pool, &m, xt, 1, &mut one, &mut Scratch::new()).unwrap();
                        assert_bits(&one, &want[t * M..(t + 1) * M], &what);
                    }
                }
            }
        }
    }
}

#[test]
fn default_matmuls_are_close_to_ggml() {
    // The fast kernels sum in another order: a few float roundings apart.
    let x = activations();
    let pool = ThreadPool::new(2);
    for ty in TYPES {
        let (w, want) = product(ty);
        for isa in Isa::all_supported() {
            let options = MatrixOptions {
                isa,
                ..MatrixOptions::default()
            };
            let m = Matrix::with_options(ty, M, K, &w, options).unwrap();
            let mut y = vec![f32::NAN; N_TOKENS * M];
            matmul(&pool, &m, &x, N_TOKENS, &mut y, &mut Scratch::new()).unwrap();
            for (t, (got, want)) in y.chunks(M).zip(want.chunks(M)).enumerate() {
                let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                for (r, (&g, &w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-5 * scale,
                        "{ty} {} token {t} row {r}: {g} vs ggml {w}",
                        isa.name()
                    );
                }
            }
        }
    }
}

/// Asserts equal bits, naming the first difference.
#[track_caller]
fn assert_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits(),
            "{what}: output {i} (token {}, row {}): got {g:e}, ggml {w:e}",
            i / M,
            i % M
        );
    }
}
