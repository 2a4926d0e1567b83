//! `Q4_K` and `Q6_K` matmuls against llama.cpp itself: what llama-cpp-python's bundled ggml (its
//! AVX-512 CPU build, with the CPU_REPACK extra buffer type as llama.cpp's loader uses it)
//! computed, written by `scripts/gen_ggml_kquant_fixtures.py` into `tests/fixtures/ggml-kquant`.
//! llama.cpp sums these types in a different order depending on the batch (see the `matmul`
//! module documentation), so the fixtures hold products of several sizes, and with
//! `MatrixOptions::ggml_order` every token of every size must come out with ggml's bits — at
//! each x86 level, with hearth's weights repacked or not, with 1 and 2 threads.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use kernels::isa::Isa;
use kernels::matmul::{Matrix, MatrixOptions, Scratch, matmul, quantize_activations};
use kernels::pool::ThreadPool;
use kernels::quant::{GgmlType, row_bytes};

// Shapes as in scripts/gen_ggml_kquant_fixtures.py.
const K: usize = 1024;
const M: usize = 40;
const N_TOKENS: usize = 33;
const N_LIST: [usize; 11] = [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33];

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ggml-kquant")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn activations() -> Vec<f32> {
    let x = f32s(&fixture("x.f32"));
    assert_eq!(x.len(), N_TOKENS * K);
    x
}

/// A fixture case: the weights (`M × K`) and ggml's output (`n × M`) for each `n` of `N_LIST`.
struct Case {
    ty: GgmlType,
    w: Vec<u8>,
    outputs: Vec<Vec<f32>>,
}

impl Case {
    fn load(name: &str, ty: GgmlType) -> Case {
        let b = fixture(&format!("matmul-{name}.bin"));
        let wbytes = M * row_bytes(ty, K).unwrap();
        let n_out: usize = N_LIST.iter().sum();
        assert_eq!(b.len(), wbytes + 4 * n_out * M, "{name}");
        let mut all = f32s(&b[wbytes..]).into_iter();
        let outputs = N_LIST
            .iter()
            .map(|&n| all.by_ref().take(n * M).collect())
            .collect();
        Case {
            ty,
            w: b[..wbytes].to_vec(),
            outputs,
        }
    }

    /// Checks hearth's products of every size of `N_LIST` against ggml's, for the first `rows`
    /// rows, at every x86 level, repacked by hearth or not, at 1 and 2 threads.
    fn check(&self, rows: usize, llama_repacked: bool, what: &str) {
        let x = activations();
        let pools = [ThreadPool::new(1), ThreadPool::new(2)];
        let w = &self.w[..rows * row_bytes(self.ty, K).unwrap()];
        for isa in Isa::all_supported().into_iter().filter(|&i| i >= Isa::Avx2) {
            for repack in [false, true] {
                let options = MatrixOptions {
                    isa,
                    repack,
                    ggml_order: true,
                    llama_repacked,
                };
                let m = Matrix::with_options(self.ty, rows, K, w, options).unwrap();
                for (&n, want) in N_LIST.iter().zip(&self.outputs) {
                    for pool in &pools {
                        let mut y = vec![f32::NAN; n * rows];
                        let mut scratch = Scratch::new();
                        matmul(pool, &m, &x[..n * K], n, &mut y, &mut scratch).unwrap();
                        let what = format!(
                            "{what} {} packed={} threads={} n={n}",
                            isa.name(),
                            m.is_packed(),
                            pool.n_threads()
                        );
                        assert_bits(&y, want, rows, &what);
                    }
                }
            }
        }
    }
}

#[test]
fn q8_k_activations_are_ggml_bytes() {
    // Rows with super-blocks of six decades of scale, zero and constant blocks, large values.
    let x = activations();
    let want = fixture("acts-Q8_K.bin");
    let block = 4 + 256 + 32;
    assert_eq!(want.len(), N_TOKENS * K / 256 * block);
    for isa in Isa::all_supported() {
        for (t, row) in x.chunks(K).enumerate() {
            let got = quantize_activations(isa, GgmlType::Q6_K, row)
                .unwrap()
                .unwrap();
            let blocks = &want[t * K / 256 * block..(t + 1) * K / 256 * block];
            for (i, b) in blocks.chunks(block).enumerate() {
                let what = format!("{} token {t} block {i}", isa.name());
                let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                assert_eq!(got.d[i].to_bits(), d.to_bits(), "{what}: d");
                let qs: Vec<i8> = b[4..260].iter().map(|&v| v as i8).collect();
                assert_eq!(&got.qs[256 * i..256 * i + 256], &qs[..], "{what}: qs");
            }
        }
    }
}

#[test]
fn q4_k_repacked_by_llama_cpp_is_ggml_bits() {
    // ggml_gemm_q4_K_8x8_q8_K for the tokens in whole groups of four, ggml_gemv_q4_K_8x8_q8_K
    // for the rest: token t's result depends on n.
    Case::load("Q4_K-repack", GgmlType::Q4_K).check(M, true, "Q4_K repacked");
}

#[test]
fn q4_k_in_ggml_layout_is_ggml_bits() {
    // ggml_vec_dot_q4_K_q8_K below 8 tokens, the tiled mat-mul from 8: where llama.cpp does not
    // repack (asked not to, or rows not a multiple of 8).
    let case = Case::load("Q4_K-plain", GgmlType::Q4_K);
    case.check(M, false, "Q4_K not repacked");
    case.check(20, true, "Q4_K 20 rows");
}

#[test]
fn q6_k_is_ggml_bits() {
    // ggml_vec_dot_q6_K_q8_K below 8 tokens, the tiled mat-mul from 8 (llama.cpp has no
    // repacked Q6_K on x86). 37 rows: two 16-row groups and a tail in ggml layout.
    let case = Case::load("Q6_K-plain", GgmlType::Q6_K);
    case.check(M, true, "Q6_K");
    case.check(37, false, "Q6_K 37 rows");
}

#[test]
fn batch_invariant_scratch_takes_the_single_token_paths() {
    // With `Scratch::batch_invariant` every token of a batch of 33 gets what llama.cpp gives a
    // token on its single-token path, known here from the products where llama.cpp takes that
    // path for it: repacked Q4_K's last n % 4 tokens, and every token of products under 8.
    let x = activations();
    let pool = ThreadPool::new(2);
    // (case, type, repacked by llama.cpp: gemm/gemv, else vec_dot/tiled)
    for (name, ty, llama_repacked) in [
        ("Q4_K-repack", GgmlType::Q4_K, true),
        ("Q4_K-plain", GgmlType::Q4_K, false),
        ("Q6_K-plain", GgmlType::Q6_K, false),
    ] {
        let case = Case::load(name, ty);
        // Token -> ggml's output row for it on the single-token path.
        let mut single: Vec<Option<&[f32]>> = vec![None; N_TOKENS];
        for (&n, out) in N_LIST.iter().zip(&case.outputs) {
            let first = match (llama_repacked, n) {
                (true, _) => n - n % 4,
                (false, n) if n < 8 => 0,
                _ => n,
            };
            for (t, s) in single.iter_mut().enumerate().take(n).skip(first) {
                *s = Some(&out[t * M..(t + 1) * M]);
            }
        }
        for isa in Isa::all_supported().into_iter().filter(|&i| i >= Isa::Avx2) {
            let options = MatrixOptions {
                isa,
                ggml_order: true,
                llama_repacked,
                ..MatrixOptions::default()
            };
            let m = Matrix::with_options(ty, M, K, &case.w, options).unwrap();
            let mut y = vec![f32::NAN; N_TOKENS * M];
            let mut scratch = Scratch::new().batch_invariant();
            matmul(&pool, &m, &x, N_TOKENS, &mut y, &mut scratch).unwrap();
            let mut checked = 0;
            for (t, want) in single.iter().enumerate() {
                if let Some(want) = want {
                    let what = format!("{name} {} token {t}", isa.name());
                    assert_bits(&y[t * M..(t + 1) * M], want, M, &what);
                    checked += 1;
                }
            }
            assert!(checked >= 7, "{name}: {checked} tokens checked");
        }
    }
}

#[test]
fn default_kernels_are_close_to_ggml() {
    // The fast kernels sum in another order: a few float roundings apart, whatever the batch.
    let x = activations();
    let pool = ThreadPool::new(2);
    for (name, ty) in [
        ("Q4_K-repack", GgmlType::Q4_K),
        ("Q6_K-plain", GgmlType::Q6_K),
    ] {
        let case = Case::load(name, ty);
        for isa in Isa::all_supported() {
            let options = MatrixOptions {
                isa,
                ..MatrixOptions::default()
            };
            let m = Matrix::with_options(ty, M, K, &case.w, options).unwrap();
            let n = N_TOKENS;
            let mut y = vec![f32::NAN; n * M];
            matmul(&pool, &m, &x, n, &mut y, &mut Scratch::new()).unwrap();
            let want = case.outputs.last().unwrap();
            for (t, (got, want)) in y.chunks(M).zip(want.chunks(M)).enumerate() {
                let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                for (r, (&g, &w)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-5 * scale,
                        "{name} {} token {t} row {r}: {g} vs ggml {w}",
                        isa.name()
                    );
                }
            }
        }
    }
}

/// Asserts equal bits for `got` (`n × rows`) against the first `rows` of each `M`-row output
/// row of `want`, naming the first difference.
#[track_caller]
fn assert_bits(got: &[f32], want: &[f32], rows: usize, what: &str) {
    let n = got.len() / rows;
    assert_eq!(want.len(), n * M, "{what}: length");
    for t in 0..n {
        for r in 0..rows {
            let (g, w) = (got[t * rows + r], want[t * M + r]);
            assert!(
                g.to_bits() == w.to_bits(),
                "{what}: token {t} row {r}: got {g:e}, ggml {w:e}"
            );
        }
    }
}
