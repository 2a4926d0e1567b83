//! Dot products: the scalar kernels against exact f64 arithmetic on the dequantized operands,
//! every SIMD level against the scalar kernels, ggml's dot-product error budgets, the
//! `Q4_1`/`Q5_1` min term, and the activation quantization against llama.cpp's run-time
//! quantizers (written out here from `ggml-cpu/arch/x86/quants.c` and `ggml-quants.c`).

#![allow(clippy::unwrap_used)] // test helpers: a failed step is a failed test

use crate::quant_util::{Rng, synthetic};
use kernels::isa::Isa;
use kernels::matmul::{Matrix, Scratch, dot_row, matmul, quantize_activations};
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
    GgmlType::MXFP4,
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ2_S,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
];

/// The IQ lattice types: weights with no quantizer here.
pub const LATTICE_TYPES: &[GgmlType] = &[
    GgmlType::IQ2_XXS,
    GgmlType::IQ2_XS,
    GgmlType::IQ2_S,
    GgmlType::IQ3_XXS,
    GgmlType::IQ3_S,
    GgmlType::IQ1_S,
    GgmlType::IQ1_M,
];

/// Random blocks of a lattice type: random bytes (every grid index, sign and scale is valid)
/// with the f16 super-block scale set to a random value of either sign in [1/64, 1/32) (for
/// `IQ1_M`, spread over the top nibbles of its scale words as the format stores it).
pub fn random_lattice_row(rng: &mut Rng, ty: GgmlType, n: usize) -> Vec<u8> {
    let mut w: Vec<u8> = (0..row_bytes(ty, n).unwrap())
        .map(|_| rng.next_u64() as u8)
        .collect();
    let size = ty.type_size() as usize;
    for b in w.chunks_mut(size) {
        let d = (rng.uniform() + 3.0) / 128.0 * if rng.uniform() < 0.0 { -1.0 } else { 1.0 };
        let bits = half::f16::from_f32(d).to_bits();
        if ty == GgmlType::IQ1_M {
            for k in 0..4 {
                let nibble = ((bits >> (4 * k)) & 0xf) as u8;
                b[48 + 2 * k + 1] = (b[48 + 2 * k + 1] & 0x0f) | (nibble << 4);
            }
        } else {
            b[..2].copy_from_slice(&bits.to_le_bytes());
        }
    }
    w
}

/// A weight row of `n` values of type `ty` from random normal data (some blocks scaled up or
/// zeroed, so scales vary), quantized with the reference quantizer; for the lattice types,
/// [`random_lattice_row`].
pub fn random_row(rng: &mut Rng, ty: GgmlType, n: usize) -> Vec<u8> {
    if LATTICE_TYPES.contains(&ty) {
        return random_lattice_row(rng, ty, n);
    }
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

/// One block of 32 activations as llama.cpp's x86 `quantize_row_q8_1` quantizes it at run time,
/// written out plainly: `(d as stored (f16), q, s as stored (f16))`.
pub fn ggml_q8_1_block(x: &[f32]) -> (f32, [i8; 32], f32) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut q = [0i8; 32];
    let mut sum = 0i32;
    for (q, &v) in q.iter_mut().zip(x) {
        // `_mm256_round_ps(_MM_ROUND_NEAREST)`: ties to even.
        let r = (v * id).round_ties_even() as i32;
        *q = r.clamp(-128, 127) as i8;
        sum += r;
    }
    let f16 = |v: f32| half::f16::from_f32(v).to_f32();
    (f16(d), q, f16(d * sum as f32))
}

/// ggml's `nearest_int`, as written there (the float-add trick: ties to even).
fn nearest_int(v: f32) -> i32 {
    ((v + 12_582_912.0).to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// One super-block of 256 activations as ggml's `quantize_row_q8_K_ref` (what its x86
/// `quantize_row_q8_K` calls) quantizes it: `(d, q, the 16 sums of 16)`.
pub fn ggml_q8_k_block(x: &[f32]) -> (f32, Vec<i8>, Vec<i16>) {
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        return (0.0, vec![0; 256], vec![0; 16]);
    }
    let iscale = -127.0 / max;
    let q: Vec<i8> = x
        .iter()
        .map(|&v| nearest_int(iscale * v).min(127) as i8)
        .collect();
    let sums = q
        .chunks(16)
        .map(|c| c.iter().map(|&v| i16::from(v)).sum())
        .collect();
    (1.0 / iscale, q, sums)
}

/// The exact (f64) dot product of weight row `w` with the activations as matmul quantizes them
/// (llama.cpp's run-time quantizers, written out in this file), and Σ|terms| (the scale of
/// rounding errors). `Q4_1`/`Q5_1` take their min term as ggml does: `m · s` per block, with
/// the activation block's f16 `s`.
pub fn exact_dot(ty: GgmlType, w: &[u8], x: &[f32]) -> (f64, f64) {
    let mut wf = vec![0.0f32; x.len()];
    dequantize_row(ty, w, &mut wf).unwrap();
    let (mut dot, mut mag) = (0.0f64, 0.0f64);
    let mut add = |t: f64| {
        dot += t;
        mag += t.abs();
    };
    match vec_dot_type(ty).unwrap() {
        GgmlType::F32 => {
            for (&w, &x) in wf.iter().zip(x) {
                add(f64::from(w) * f64::from(x));
            }
        }
        GgmlType::Q8_0 | GgmlType::Q8_1 => {
            let block_bytes = ty.type_size() as usize;
            for (i, xb) in x.chunks(32).enumerate() {
                let (d, q, s) = ggml_q8_1_block(xb);
                let b = &w[i * block_bytes..];
                let half_at = |k: usize| f64::from(half::f16::from_le_bytes([b[k], b[k + 1]]));
                if matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1) {
                    // w = dw·qw + m: the dot is dw·d·Σ qw·q + m·s.
                    let (dw, m) = (half_at(0), half_at(2));
                    let (qh, qs) = if ty == GgmlType::Q5_1 {
                        (u32::from_le_bytes([b[4], b[5], b[6], b[7]]), &b[8..24])
                    } else {
                        (0, &b[4..20])
                    };
                    for j in 0..32 {
                        let nibble = if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 };
                        let qw = u32::from(nibble) | ((qh >> j) & 1) << 4;
                        add(dw * f64::from(qw) * f64::from(d) * f64::from(q[j]));
                    }
                    add(m * f64::from(s));
                } else {
                    for j in 0..32 {
                        add(f64::from(wf[32 * i + j]) * f64::from(d) * f64::from(q[j]));
                    }
                }
            }
        }
        GgmlType::Q8_K => {
            for (i, xb) in x.chunks(256).enumerate() {
                let (d, q, _) = ggml_q8_k_block(xb);
                for j in 0..256 {
                    add(f64::from(wf[256 * i + j]) * f64::from(d) * f64::from(q[j]));
                }
            }
        }
        other => unreachable!("{other}"),
    }
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
    // test-quantize-fns: |quantized dot − exact dot| / n < 0.02 (0.04 for 2-bit, 0.03 for
    // FP4), n = 4096.
    let n = 32 * 128;
    let (a, b) = (synthetic(n, 0.0), synthetic(n, 1.0));
    let exact: f64 = a
        .iter()
        .zip(&b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    for &ty in WEIGHT_TYPES.iter().filter(|t| !LATTICE_TYPES.contains(t)) {
        let mut w = vec![0u8; row_bytes(ty, n).unwrap()];
        quantize_row(ty, &a, &mut w).unwrap();
        let budget = match ty {
            GgmlType::Q2_K => 0.04,
            GgmlType::MXFP4 => 0.03,
            _ => 0.02,
        };
        for isa in Isa::all_supported() {
            let got = dot_row(isa, ty, &w, &b).unwrap();
            let err = (f64::from(got) - exact).abs() / n as f64;
            assert!(err < budget, "{ty} {}: error {err}", isa.name());
        }
    }
}

/// Activations that exercise the rounding rules: random blocks, zero blocks and super-blocks,
/// blocks whose scaled values fall exactly on .5 (`amax` 127 and 254: `127/amax` is exact),
/// both signs of the largest magnitude, a constant block.
fn rounding_cases(rng: &mut Rng) -> Vec<f32> {
    let mut x = rng.normals(256 * 6);
    x[..32].fill(0.0);
    x[256..512].fill(0.0);
    for (k, c) in x[512..768].chunks_mut(32).enumerate() {
        for (j, v) in c.iter_mut().enumerate() {
            *v = ((7 * j + 3 * k) % 101) as f32 - 50.5;
        }
        c[0] = 127.0;
    }
    x[512..519].copy_from_slice(&[127.0, 2.5, -2.5, 3.5, 0.5, -0.5, 1.5]);
    for (k, c) in x[768..1024].chunks_mut(32).enumerate() {
        for (j, v) in c.iter_mut().enumerate() {
            *v = ((13 * j + k) % 199) as f32 - 99.0;
        }
        c[0] = -254.0;
    }
    x[1024] = -3.0;
    x[1100] = 3.0;
    x[1280..1312].fill(0.7);
    x
}

#[test]
fn activations_are_quantized_as_llama_cpp_does_at_run_time() {
    let mut rng = Rng::new(3);
    let x = rounding_cases(&mut rng);
    for &ty in WEIGHT_TYPES {
        let Some(vdt) = vec_dot_type(ty).filter(|&t| t != GgmlType::F32) else {
            assert_eq!(
                quantize_activations(Isa::Generic, ty, &x).unwrap(),
                None,
                "{ty}"
            );
            continue;
        };
        let got = quantize_activations(Isa::Generic, ty, &x).unwrap().unwrap();
        match vdt {
            GgmlType::Q8_0 | GgmlType::Q8_1 => {
                // Ties go to even (the reference quantizer would give 3, −3, 4, 1, −1, 2).
                assert_eq!(&got.qs[512..519], &[127, 2, -2, 4, 0, 0, 2], "{ty}");
                assert_eq!(got.s.len(), x.len() / 32, "{ty}");
                for (i, xb) in x.chunks(32).enumerate() {
                    let (d, q, s) = ggml_q8_1_block(xb);
                    assert_eq!(got.d[i].to_bits(), d.to_bits(), "{ty} block {i}");
                    assert_eq!(&got.qs[32 * i..32 * i + 32], &q, "{ty} block {i}");
                    let sum: i16 = q.iter().map(|&v| i16::from(v)).sum();
                    assert_eq!(got.sums[i], sum, "{ty} block {i}");
                    assert_eq!(got.s[i].to_bits(), s.to_bits(), "{ty} block {i}");
                }
            }
            GgmlType::Q8_K => {
                // Run-time Q8_K is the reference quantizer: also byte-equal to `quantize_row`.
                let mut bytes = vec![0u8; row_bytes(vdt, x.len()).unwrap()];
                quantize_row(vdt, &x, &mut bytes).unwrap();
                assert!(got.s.is_empty(), "{ty}");
                for (i, (xb, b)) in x.chunks(256).zip(bytes.chunks(292)).enumerate() {
                    let (d, q, sums16) = ggml_q8_k_block(xb);
                    assert_eq!(got.d[i].to_bits(), d.to_bits(), "{ty} block {i}");
                    assert_eq!(
                        f32::from_le_bytes([b[0], b[1], b[2], b[3]]).to_bits(),
                        d.to_bits()
                    );
                    assert_eq!(&got.qs[256 * i..256 * i + 256], &q[..], "{ty} block {i}");
                    let qb: Vec<i8> = b[4..260].iter().map(|&v| v as i8).collect();
                    assert_eq!(qb, q, "{ty} block {i}");
                    let sums = &got.sums[24 * i..24 * i + 24];
                    assert_eq!(&sums[..16], &sums16[..], "{ty} block {i}");
                    for g in 0..8 {
                        assert_eq!(sums[16 + g], sums16[2 * g] + sums16[2 * g + 1], "{ty} {i}");
                    }
                }
            }
            other => unreachable!("{other}"),
        }
        for isa in Isa::all_supported() {
            let at = quantize_activations(isa, ty, &x).unwrap().unwrap();
            assert_eq!(at, got, "{ty} at {}", isa.name());
        }
    }
}

#[test]
fn q4_1_and_q5_1_products_take_the_min_term_from_the_f16_block_sum() {
    // Every kernel family (row kernels at each level, packed groups of 16 rows), against the
    // exact dot with ggml's `m · s`: the former `m · d · Σq` misses by ~2⁻¹¹ of the min term.
    let mut rng = Rng::new(5);
    let pool = kernels::pool::ThreadPool::new(1);
    for ty in [GgmlType::Q4_1, GgmlType::Q5_1] {
        let (rows, cols) = (32, 32 * 24);
        let w: Vec<u8> = (0..rows)
            .flat_map(|_| random_row(&mut rng, ty, cols))
            .collect();
        let rb = row_bytes(ty, cols).unwrap();
        for n_tokens in [1, 5] {
            let x: Vec<f32> = rng
                .normals(n_tokens * cols)
                .iter()
                .map(|v| v + 1.5)
                .collect();
            for options in crate::matmul_naive::all_options() {
                let isa = options.isa;
                let m = Matrix::with_options(ty, rows, cols, &w, options).unwrap();
                let mut y = vec![f32::NAN; n_tokens * rows];
                matmul(&pool, &m, &x, n_tokens, &mut y, &mut Scratch::new()).unwrap();
                for t in 0..n_tokens {
                    for r in 0..rows {
                        let xt = &x[t * cols..(t + 1) * cols];
                        let (exact, mag) = exact_dot(ty, &w[r * rb..(r + 1) * rb], xt);
                        let got = y[t * rows + r];
                        assert!(
                            (f64::from(got) - exact).abs() <= 1e-6 * mag,
                            "{ty} {} packed={} token {t} row {r}: got {got}, exact {exact}",
                            isa.name(),
                            m.is_packed()
                        );
                    }
                }
            }
        }
    }
}
