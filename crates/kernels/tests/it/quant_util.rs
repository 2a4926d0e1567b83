//! Helpers shared by the quantization, dot-product and matmul tests: fixtures, a seeded PRNG,
//! ggml's synthetic test data.

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use std::path::PathBuf;

/// The bytes of `tests/fixtures/quant/<name>`.
pub fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/quant")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Little-endian f32 values of a byte buffer.
pub fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// SplitMix64: a tiny seeded generator, enough for reproducible random test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// Roughly normal (sum of uniforms), mean 0, deviation ~1.
    pub fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.uniform()).sum::<f32>() * 0.866
    }

    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal()).collect()
    }
}

/// ggml's `test-quantize-fns` data: `0.1 + 2·cos(i + offset)`.
pub fn synthetic(n: usize, offset: f32) -> Vec<f32> {
    (0..n)
        .map(|i| 0.1 + 2.0 * (i as f32 + offset).cos())
        .collect()
}

/// Normalized mean squared error Σ(a−b)²/Σa², in f64 (ggml's test-backend-ops metric).
pub fn nmse(reference: &[f32], got: &[f32]) -> f64 {
    assert_eq!(reference.len(), got.len());
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (&a, &b) in reference.iter().zip(got) {
        err += (f64::from(a) - f64::from(b)).powi(2);
        norm += f64::from(a).powi(2);
    }
    if norm == 0.0 { err } else { err / norm }
}
