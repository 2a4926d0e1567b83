//! Elementwise kernels on every ISA level this CPU has, against straightforward f64 code, on
//! random data with fixed seeds and lengths that are not multiples of the vector width.

use half::{bf16, f16};
use kernels::isa::Isa;
use kernels::ops::Ops;

use crate::ops_util::{LENGTHS, Rng, assert_close};

fn all_ops() -> Vec<Ops> {
    let levels = Isa::all_supported();
    assert!(levels.contains(&Isa::Generic));
    levels
        .into_iter()
        .map(|isa| {
            let ops = Ops::new(isa);
            assert_eq!(ops.isa(), isa, "Ops::new must keep a supported level");
            ops
        })
        .collect()
}

#[test]
fn rms_norm_matches_f64() {
    for ops in all_ops() {
        let mut rng = Rng::new(1);
        for &n in LENGTHS {
            let x = rng.vec(n, -3.0, 3.0);
            let w = rng.vec(n, -2.0, 2.0);
            let eps = 1e-6f32;
            let ms: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / n as f64;
            let s = 1.0 / (ms + f64::from(eps)).sqrt();
            let want: Vec<f64> = x
                .iter()
                .zip(&w)
                .map(|(&a, &b)| f64::from(a) * s * f64::from(b))
                .collect();
            let mut out = vec![0.0; n];
            ops.rms_norm(&mut out, &x, &w, eps);
            assert_close(
                &out,
                &want,
                2e-6,
                1e-7,
                &format!("rms_norm {:?} n={n}", ops.isa()),
            );
            let mut inplace = x.clone();
            ops.rms_norm_inplace(&mut inplace, &w, eps);
            assert_eq!(inplace, out, "in place must equal out of place");
        }
    }
}

#[test]
fn layer_norm_matches_f64() {
    for ops in all_ops() {
        let mut rng = Rng::new(2);
        for &n in LENGTHS {
            // An offset, so the mean matters.
            let x = rng.vec(n, 1.0, 5.0);
            let w = rng.vec(n, -2.0, 2.0);
            let b = rng.vec(n, -1.0, 1.0);
            let eps = 1e-5f32;
            let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
            let var = x
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / n as f64;
            let s = 1.0 / (var + f64::from(eps)).sqrt();
            for (use_w, use_b) in [(false, false), (true, false), (false, true), (true, true)] {
                let want: Vec<f64> = (0..n)
                    .map(|i| {
                        let mut v = (f64::from(x[i]) - mean) * s;
                        if use_w {
                            v *= f64::from(w[i]);
                        }
                        if use_b {
                            v += f64::from(b[i]);
                        }
                        v
                    })
                    .collect();
                let (wo, bo) = (use_w.then_some(&w[..]), use_b.then_some(&b[..]));
                let mut out = vec![0.0; n];
                ops.layer_norm(&mut out, &x, wo, bo, eps);
                // Mean and variance go through f32 as in ggml: a few ulp of the centered value.
                let what = format!("layer_norm {:?} n={n} w={use_w} b={use_b}", ops.isa());
                assert_close(&out, &want, 1e-5, 2e-6, &what);
                let mut inplace = x.clone();
                ops.layer_norm_inplace(&mut inplace, wo, bo, eps);
                assert_eq!(inplace, out, "{what}: in place");
            }
        }
    }
}

/// Softmax in f64, except that `x − max` is rounded to f32 first: that subtraction is part of
/// the f32 algorithm (its rounding, up to |x − max|·2⁻²⁴, is not the kernel's error).
fn softmax_f64(x: &[f32]) -> Vec<f64> {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = x.iter().map(|&v| f64::from(v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[test]
fn softmax_matches_f64() {
    for ops in all_ops() {
        let mut rng = Rng::new(3);
        for &n in LENGTHS {
            for spread in [1.0f32, 20.0, 80.0] {
                let x = rng.vec(n, -spread, spread);
                let mut got = x.clone();
                ops.softmax(&mut got);
                let what = format!("softmax {:?} n={n} spread={spread}", ops.isa());
                assert_close(&got, &softmax_f64(&x), 1e-6, 1e-30, &what);
                let total: f64 = got.iter().map(|&v| f64::from(v)).sum();
                assert!((total - 1.0).abs() < 1e-5, "{what}: sums to {total}");
            }
        }
    }
}

#[test]
fn softmax_masked_entries_become_zero() {
    for ops in all_ops() {
        for n in [2usize, 9, 17, 40] {
            let mut x: Vec<f32> = (0..n)
                .map(|i| {
                    if i % 3 == 0 {
                        f32::NEG_INFINITY
                    } else {
                        i as f32 * 0.1
                    }
                })
                .collect();
            let want = softmax_f64(&x);
            ops.softmax(&mut x);
            for (i, &v) in x.iter().enumerate() {
                if i % 3 == 0 {
                    assert_eq!(v, 0.0, "{:?} n={n} i={i}", ops.isa());
                }
            }
            assert_close(&x, &want, 1e-6, 0.0, "masked softmax");
        }
    }
}

fn silu64(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

fn gelu64(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * x * (1.0 + 0.044715 * x * x)).tanh())
}

#[test]
fn activations_match_f64() {
    for ops in all_ops() {
        let mut rng = Rng::new(4);
        for &n in LENGTHS {
            let g = rng.vec(n, -12.0, 12.0);
            let u = rng.vec(n, -3.0, 3.0);
            let what = |name: &str| format!("{name} {:?} n={n}", ops.isa());
            for (name, f) in [("silu", silu64 as fn(f64) -> f64), ("gelu", gelu64)] {
                let gelu = name == "gelu";
                let want: Vec<f64> = g.iter().map(|&v| f(f64::from(v))).collect();
                let mut got = g.clone();
                if gelu {
                    ops.gelu(&mut got)
                } else {
                    ops.silu(&mut got)
                }
                // Absolute slack for gelu's `1 + tanh` cancellation at large negative inputs.
                assert_close(&got, &want, 1e-6, 5e-7, &what(name));

                let want: Vec<f64> = g
                    .iter()
                    .zip(&u)
                    .map(|(&a, &b)| f(f64::from(a)) * f64::from(b))
                    .collect();
                let mut got = g.clone();
                if gelu {
                    ops.geglu(&mut got, &u)
                } else {
                    ops.swiglu(&mut got, &u)
                }
                assert_close(&got, &want, 1e-6, 2e-6, &what(name));
                let mut to = vec![0.0; n];
                if gelu {
                    ops.geglu_to(&mut to, &g, &u)
                } else {
                    ops.swiglu_to(&mut to, &g, &u)
                }
                assert_eq!(to, got, "{}: _to must equal in place", what(name));
            }
        }
    }
}

/// Far outside the polynomial's range: no NaN, the right limits.
#[test]
fn activations_at_extremes() {
    let xs = [
        -1e30f32, -1000.0, -100.0, -88.0, -87.5, -20.0, 0.0, 20.0, 87.5, 88.5, 100.0, 1000.0, 1e30,
    ];
    for ops in all_ops() {
        let mut s = xs.to_vec();
        ops.silu(&mut s);
        let mut g = xs.to_vec();
        ops.gelu(&mut g);
        for (i, &x) in xs.iter().enumerate() {
            let (ws, wg) = (silu64(f64::from(x)), gelu64(f64::from(x)));
            assert!(
                (f64::from(s[i]) - ws).abs() <= 1e-6 * ws.abs() + 1e-6,
                "silu({x}) = {} on {:?}",
                s[i],
                ops.isa()
            );
            assert!(
                (f64::from(g[i]) - wg).abs() <= 1e-6 * wg.abs() + 1e-6,
                "gelu({x}) = {} on {:?}",
                g[i],
                ops.isa()
            );
        }
        let mut nan = vec![f32::NAN; 3];
        ops.silu(&mut nan);
        assert!(
            nan.iter().all(|v| v.is_nan()),
            "silu(NaN) on {:?}",
            ops.isa()
        );
    }
}

#[test]
fn add_mul_scale_are_exact() {
    for ops in all_ops() {
        let mut rng = Rng::new(5);
        for &n in LENGTHS {
            let a = rng.vec(n, -10.0, 10.0);
            let b = rng.vec(n, -10.0, 10.0);
            let mut s = a.clone();
            ops.add(&mut s, &b);
            let mut p = a.clone();
            ops.mul(&mut p, &b);
            let mut k = a.clone();
            ops.scale(&mut k, 0.37);
            for i in 0..n {
                assert_eq!(s[i], a[i] + b[i]);
                assert_eq!(p[i], a[i] * b[i]);
                assert_eq!(k[i], a[i] * 0.37);
            }
        }
    }
}

/// Every f16 bit pattern widens exactly as `half` does.
#[test]
fn f16_to_f32_all_patterns() {
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
    for ops in all_ops() {
        // An odd length so a tail is exercised.
        let x = &all[..all.len() - 3];
        let mut out = vec![0.0f32; x.len()];
        ops.f16_to_f32(&mut out, x);
        for (h, &o) in x.iter().zip(&out) {
            let want = h.to_f32();
            assert!(
                o.to_bits() == want.to_bits() || (o.is_nan() && want.is_nan()),
                "{h:?} on {:?}",
                ops.isa()
            );
        }
    }
}

#[test]
fn bf16_to_f32_all_patterns() {
    let all: Vec<bf16> = (0..=u16::MAX).map(bf16::from_bits).collect();
    for ops in all_ops() {
        let x = &all[..all.len() - 5];
        let mut out = vec![0.0f32; x.len()];
        ops.bf16_to_f32(&mut out, x);
        for (h, &o) in x.iter().zip(&out) {
            // The bit pattern shifted up, as ggml does (NaN payloads included).
            assert_eq!(
                o.to_bits(),
                u32::from(h.to_bits()) << 16,
                "{h:?} on {:?}",
                ops.isa()
            );
            assert!(
                o.to_bits() == h.to_f32().to_bits() || o.is_nan(),
                "{h:?} on {:?}",
                ops.isa()
            );
        }
    }
}

/// f32 → f16/bf16 rounds exactly as `half` does: random bit patterns (all exponents, NaN, inf,
/// subnormals) and values on rounding ties.
#[test]
fn f32_to_half_rounding_matches_half() {
    let mut rng = Rng::new(6);
    let mut x: Vec<f32> = (0..100_003)
        .map(|_| f32::from_bits(rng.next_u64() as u32))
        .collect();
    x.extend([
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        65504.0,
        65520.0,
        1e-8,
        -6e-8,
        f32::MAX,
        f32::MIN_POSITIVE,
    ]);
    // Exact ties between two f16 / bf16 values.
    x.extend((0..64).map(|i| f32::from_bits(0x3F80_0000 + (i << 12) + 0x1000)));
    x.extend((0..64).map(|i| f32::from_bits(0x3F80_0000 + (i << 16) + 0x8000)));
    for ops in all_ops() {
        let mut h = vec![f16::ZERO; x.len()];
        ops.f32_to_f16(&mut h, &x);
        let mut b = vec![bf16::ZERO; x.len()];
        ops.f32_to_bf16(&mut b, &x);
        for i in 0..x.len() {
            let (wh, wb) = (f16::from_f32(x[i]), bf16::from_f32(x[i]));
            if x[i].is_nan() {
                assert!(
                    h[i].is_nan() && b[i].is_nan(),
                    "NaN {:#x} on {:?}",
                    x[i].to_bits(),
                    ops.isa()
                );
            } else {
                assert_eq!(
                    h[i].to_bits(),
                    wh.to_bits(),
                    "f16 of {:#x} on {:?}",
                    x[i].to_bits(),
                    ops.isa()
                );
                assert_eq!(
                    b[i].to_bits(),
                    wb.to_bits(),
                    "bf16 of {:#x} on {:?}",
                    x[i].to_bits(),
                    ops.isa()
                );
            }
        }
    }
}

#[test]
fn dot_and_axpy_f16_match_f64() {
    for ops in all_ops() {
        let mut rng = Rng::new(7);
        for &n in LENGTHS {
            let q = rng.vec(n, -2.0, 2.0);
            let k = rng.vec_f16(n, -2.0, 2.0);
            let want: f64 = q
                .iter()
                .zip(&k)
                .map(|(&a, &b)| f64::from(a) * f64::from(b.to_f32()))
                .sum();
            let mag: f64 = q
                .iter()
                .zip(&k)
                .map(|(&a, &b)| (f64::from(a) * f64::from(b.to_f32())).abs())
                .sum();
            let got = ops.dot_f16(&q, &k);
            let what = format!("dot_f16 {:?} n={n}", ops.isa());
            assert!(
                (f64::from(got) - want).abs() <= 1e-6 * mag + 1e-7,
                "{what}: {got} vs {want}"
            );

            let acc0 = rng.vec(n, -1.0, 1.0);
            let mut acc = acc0.clone();
            ops.axpy_f16(&mut acc, 0.75, &k);
            let want: Vec<f64> = acc0
                .iter()
                .zip(&k)
                .map(|(&a, &b)| f64::from(a) + 0.75 * f64::from(b.to_f32()))
                .collect();
            assert_close(
                &acc,
                &want,
                1e-6,
                1e-7,
                &format!("axpy_f16 {:?} n={n}", ops.isa()),
            );
        }
    }
}

#[test]
fn ops_new_clamps_to_the_cpu() {
    let best = Isa::best_supported();
    assert_eq!(Ops::new(Isa::Avx512).isa(), best.min(Isa::Avx512));
    assert!(Ops::detected().isa() <= best);
}

#[test]
#[should_panic(expected = "lengths")]
fn mismatched_lengths_panic() {
    Ops::new(Isa::Generic).add(&mut [0.0; 3], &[1.0; 4]);
}
