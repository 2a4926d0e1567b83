//! Rope on every ISA level against a direct f64 implementation of ggml's formulas
//! (`ggml_rope_yarn_corr_dims`, `rope_yarn`, `rope_yarn_ramp`, `rotate_pairs`): both layouts,
//! partial rotary, linear scaling, YaRN, per-pair frequency factors.

use kernels::isa::Isa;
use kernels::ops::Ops;
use kernels::ops::rope::{Rope, RopeCache, RopeError, RopeMode, RopeParams};

use crate::ops_util::Rng;

/// ggml's rope in f64: `theta_k = p · base^(−2k/n_rot) / ff[k]`, YaRN-mixed, applied to the
/// pairs of the mode.
fn rope_f64(
    p: &RopeParams,
    ff: Option<&[f32]>,
    x: &[f32],
    n_head: usize,
    head_dim: usize,
    positions: &[i32],
) -> Vec<f64> {
    let n_dims = p.n_rot as f64;
    let base = f64::from(p.freq_base);
    let corr = |beta: f32| {
        n_dims * (p.n_ctx_orig as f64 / (f64::from(beta) * 2.0 * std::f64::consts::PI)).ln()
            / (2.0 * base.ln())
    };
    let low = corr(p.beta_fast).floor().max(0.0);
    let high = corr(p.beta_slow).ceil().min(n_dims - 1.0);
    let mut out: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
    let half = p.n_rot / 2;
    for (t, &pos) in positions.iter().enumerate() {
        for h in 0..n_head {
            let head = &mut out[(t * n_head + h) * head_dim..][..head_dim];
            for k in 0..half {
                let f = ff.map_or(1.0, |f| f64::from(f[k]));
                let extrap = f64::from(pos) * base.powf(-2.0 * k as f64 / n_dims) / f;
                let interp = f64::from(p.freq_scale) * extrap;
                let (theta, mscale) = if p.ext_factor != 0.0 {
                    let y = (k as f64 - low) / (high - low).max(0.001);
                    let mix = (1.0 - y.clamp(0.0, 1.0)) * f64::from(p.ext_factor);
                    let m = f64::from(p.attn_factor)
                        * (1.0 + 0.1 * (1.0 / f64::from(p.freq_scale)).ln());
                    (interp * (1.0 - mix) + extrap * mix, m)
                } else {
                    (interp, f64::from(p.attn_factor))
                };
                let (c, s) = (theta.cos() * mscale, theta.sin() * mscale);
                let (i0, i1) = match p.mode {
                    RopeMode::Normal => (2 * k, 2 * k + 1),
                    RopeMode::Neox => (k, k + half),
                };
                let (x0, x1) = (head[i0], head[i1]);
                head[i0] = x0 * c - x1 * s;
                head[i1] = x0 * s + x1 * c;
            }
        }
    }
    out
}

struct Case {
    name: &'static str,
    params: RopeParams,
    head_dim: usize,
    n_head: usize,
    freq_factors: bool,
}

fn cases() -> Vec<Case> {
    let mut v = Vec::new();
    for mode in [RopeMode::Normal, RopeMode::Neox] {
        v.push(Case {
            name: "plain",
            params: RopeParams::new(mode, 64, 10_000.0),
            head_dim: 64,
            n_head: 3,
            freq_factors: false,
        });
        // Partial rotary with a half (20) that is not a multiple of any vector width.
        v.push(Case {
            name: "partial",
            params: RopeParams::new(mode, 40, 10_000.0),
            head_dim: 72,
            n_head: 2,
            freq_factors: false,
        });
        v.push(Case {
            name: "gemma-global",
            params: RopeParams::new(mode, 256, 1_000_000.0),
            head_dim: 256,
            n_head: 1,
            freq_factors: false,
        });
        let mut linear = RopeParams::new(mode, 128, 500_000.0);
        linear.freq_scale = 0.25;
        v.push(Case {
            name: "linear-scaled",
            params: linear,
            head_dim: 128,
            n_head: 2,
            freq_factors: false,
        });
        let mut yarn = RopeParams::new(mode, 64, 10_000.0);
        yarn.freq_scale = 0.25;
        yarn.ext_factor = 1.0;
        yarn.attn_factor = 0.9;
        yarn.n_ctx_orig = 4096;
        v.push(Case {
            name: "yarn",
            params: yarn,
            head_dim: 80,
            n_head: 2,
            freq_factors: false,
        });
        let mut yarn_half = yarn;
        yarn_half.ext_factor = 0.5;
        yarn_half.beta_fast = 24.0;
        yarn_half.beta_slow = 2.0;
        v.push(Case {
            name: "yarn-partial-mix",
            params: yarn_half,
            head_dim: 64,
            n_head: 1,
            freq_factors: true,
        });
        v.push(Case {
            name: "freq-factors",
            params: RopeParams::new(mode, 128, 500_000.0),
            head_dim: 128,
            n_head: 2,
            freq_factors: true,
        });
    }
    v
}

#[test]
fn rope_matches_ggml_formulas_in_f64() {
    let mut positions: Vec<i32> = (0..40).collect();
    positions.extend([100, 511, 512, 1000, 2047, 3000]);
    for isa in Isa::all_supported() {
        let ops = Ops::new(isa);
        for case in cases() {
            let mut rng = Rng::new(11);
            let ff: Option<Vec<f32>> = case
                .freq_factors
                .then(|| rng.vec(case.params.n_rot / 2, 1.0, 8.0));
            let rope = Rope::new(case.params, ff.as_deref()).unwrap();
            let n = positions.len() * case.n_head * case.head_dim;
            let x = rng.vec(n, -1.0, 1.0);
            let want = rope_f64(
                &case.params,
                ff.as_deref(),
                &x,
                case.n_head,
                case.head_dim,
                &positions,
            );
            let mut got = x.clone();
            ops.rope(&rope, &mut got, case.n_head, case.head_dim, &positions);

            let per_token = case.n_head * case.head_dim;
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let t = i / per_token;
                let d = i % case.head_dim;
                if d >= case.params.n_rot {
                    assert_eq!(
                        g.to_bits(),
                        x[i].to_bits(),
                        "{} {isa:?}: dim {d} past n_rot must not change",
                        case.name
                    );
                    continue;
                }
                // ggml builds theta by repeated f32 multiplication: its angle error grows with the
                // position (≈ pos · 3e-7 rad at worst), on top of f32 rounding of the rotation.
                let tol = 2e-6 + 5e-7 * f64::from(positions[t]);
                assert!(
                    (f64::from(g) - w).abs() <= tol,
                    "{} {isa:?} {:?}: pos {} dim {d}: got {g}, want {w}",
                    case.name,
                    case.params.mode,
                    positions[t]
                );
            }

            // The cached path applies the very same angles.
            let mut cache = RopeCache::new();
            cache.fill(&rope, &positions);
            assert_eq!(cache.n_tokens(), positions.len());
            let mut cached = x.clone();
            ops.rope_cached(&cache, &mut cached, case.n_head, case.head_dim);
            assert_eq!(
                cached, got,
                "{} {isa:?}: rope_cached differs from rope",
                case.name
            );
        }
    }
}

/// Every level applies the same angles with the same products: results agree to an ulp or two.
#[test]
fn rope_levels_agree() {
    let params = RopeParams::new(RopeMode::Normal, 96, 10_000.0);
    let rope = Rope::new(params, None).unwrap();
    let positions: Vec<i32> = (0..17).map(|i| i * 37).collect();
    let mut rng = Rng::new(12);
    let x = rng.vec(positions.len() * 5 * 96, -4.0, 4.0);
    let mut reference = x.clone();
    Ops::new(Isa::Generic).rope(&rope, &mut reference, 5, 96, &positions);
    for isa in Isa::all_supported() {
        let mut got = x.clone();
        Ops::new(isa).rope(&rope, &mut got, 5, 96, &positions);
        for (g, r) in got.iter().zip(&reference) {
            assert!(
                (g - r).abs() <= 1e-6 * r.abs().max(1.0),
                "{isa:?}: {g} vs {r}"
            );
        }
    }
}

#[test]
fn position_zero_is_identity() {
    for isa in Isa::all_supported() {
        for mode in [RopeMode::Normal, RopeMode::Neox] {
            let rope = Rope::new(RopeParams::new(mode, 32, 10_000.0), None).unwrap();
            let x: Vec<f32> = (0..64).map(|i| i as f32 - 20.5).collect();
            let mut y = x.clone();
            Ops::new(isa).rope(&rope, &mut y, 2, 32, &[0]);
            assert_eq!(x, y, "{isa:?} {mode:?}");
        }
    }
}

#[test]
fn invalid_parameters_are_errors() {
    let p = |n_rot| RopeParams::new(RopeMode::Normal, n_rot, 10_000.0);
    assert_eq!(Rope::new(p(0), None).unwrap_err(), RopeError::NRot(0));
    assert_eq!(Rope::new(p(7), None).unwrap_err(), RopeError::NRot(7));
    assert_eq!(
        Rope::new(p(Rope::MAX_ROT + 2), None).unwrap_err(),
        RopeError::NRot(Rope::MAX_ROT + 2)
    );
    assert_eq!(
        Rope::new(p(64), Some(&[1.0; 31])).unwrap_err(),
        RopeError::FreqFactors { got: 31, need: 32 }
    );
    assert!(Rope::new(p(64), Some(&[1.0; 40])).is_ok());
}
