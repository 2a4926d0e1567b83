//! The `_ggml` kernels against ggml itself: outputs of llama-cpp-python's bundled ggml (its
//! AVX-512 CPU build, written by `scripts/gen_ggml_ops_fixtures.py` into
//! `tests/fixtures/ggml`) must come out bit for bit, on every ISA level and thread count; and
//! against straightforward implementations written here from ggml's source, on random shapes.
//! The exact kernels (`gelu`, `swiglu`, `rms_norm`, `rope`, `attention`) are checked against
//! the same fixtures for how far from ggml they are.

use std::ops::Range;

use half::f16;
use kernels::isa::Isa;
use kernels::ops::Ops;
use kernels::ops::attention::{AttentionParams, AttentionScratch, KvCache};
use kernels::ops::rope::{Rope, RopeMode, RopeParams};
use kernels::pool::ThreadPool;

use crate::ops_util::Rng;

// ---- fixtures (shapes as in scripts/gen_ggml_ops_fixtures.py) ----

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ggml")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn f16s(b: &[u8]) -> Vec<f16> {
    b.chunks_exact(2)
        .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
        .collect()
}

/// Asserts equal bits (NaN payloads aside), naming the first difference.
#[track_caller]
fn assert_bits(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
        assert!(same, "{what}: element {i}: got {g:e}, want {w:e}");
    }
}

/// max |a − b| / max |b|.
fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let num = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).abs())
        .fold(0.0, f64::max);
    let den = b.iter().map(|&y| f64::from(y).abs()).fold(0.0, f64::max);
    num / den
}

const ACT_ROWS: usize = 3;
const ACT_COLS: usize = 1000;

/// gate, up, gelu, geglu, silu, swiglu — each `ACT_ROWS × ACT_COLS`.
fn act_fixture() -> Vec<Vec<f32>> {
    let all = f32s(&fixture("act.f32"));
    assert_eq!(all.len(), 6 * ACT_ROWS * ACT_COLS);
    all.chunks_exact(ACT_ROWS * ACT_COLS)
        .map(<[f32]>::to_vec)
        .collect()
}

// ---- GELU ----

/// `ggml_gelu_f32` written out: `0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²)))`, the inner
/// `1 + a·x·x` fused as GCC compiles it.
fn gelu_formula(x: f32) -> f32 {
    let inner = (0.044_715f32 * x).mul_add(x, 1.0);
    let arg = 0.797_884_6f32 * x * inner;
    0.5 * x * (1.0 + (f64::from(arg).tanh() as f32))
}

/// `ggml_vec_gelu_f32` written out.
fn gelu_straight(x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        let h = f16::from_f32(x).to_f32();
        f16::from_f32(gelu_formula(h)).to_f32()
    }
}

#[test]
fn gelu_table_is_ggmls_for_every_f16() {
    let table = f16s(&fixture("gelu-table.f16"));
    assert_eq!(table.len(), 65536);
    let xs: Vec<f32> = (0..=u16::MAX).map(|i| f16::from_bits(i).to_f32()).collect();
    for isa in Isa::all_supported() {
        let mut got = xs.clone();
        Ops::new(isa).gelu_ggml(&mut got);
        for (i, (&x, &g)) in xs.iter().zip(&got).enumerate() {
            let want = if x <= -10.0 {
                0.0
            } else if x >= 10.0 {
                x
            } else {
                table[i].to_f32()
            };
            assert!(
                g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                "{isa:?}: f16 {i:#06x} ({x}): got {g:e}, ggml's table {want:e}"
            );
            let straight = gelu_straight(x);
            assert!(
                g.to_bits() == straight.to_bits() || (g.is_nan() && straight.is_nan()),
                "{isa:?}: f16 {i:#06x} ({x}): got {g:e}, straightforward {straight:e}"
            );
        }
    }
}

#[test]
fn gelu_and_geglu_match_ggml() {
    let a = act_fixture();
    let (gate, up) = (&a[0], &a[1]);
    for isa in Isa::all_supported() {
        let ops = Ops::new(isa);
        let mut x = gate.clone();
        ops.gelu_ggml(&mut x);
        assert_bits(&x, &a[2], &format!("gelu {isa:?}"));
        let mut x = gate.clone();
        ops.geglu_ggml(&mut x, up);
        assert_bits(&x, &a[3], &format!("geglu {isa:?}"));
        let mut out = vec![f32::NAN; gate.len()];
        ops.geglu_ggml_to(&mut out, gate, up);
        assert_bits(&out, &a[3], &format!("geglu_to {isa:?}"));
    }
    // The exact formula is within ggml's f16 rounding of it (and differs: that is the point).
    let mut exact = gate.clone();
    Ops::detected().gelu(&mut exact);
    let d = rel_diff(&exact, &a[2]);
    assert!(d > 0.0 && d < 1e-3, "exact gelu vs ggml: {d:e}");
}

#[test]
fn gelu_ggml_random_and_edges_match_straightforward() {
    let mut rng = Rng::new(7);
    let mut xs = rng.vec(5000, -12.0, 12.0);
    for v in [-10.0f32, 10.0, 0.0, -0.0, 65504.0, 65520.0, 1e30, -1e30] {
        xs.extend([v, v.next_down(), v.next_up()]);
    }
    xs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
    let up = rng.vec(xs.len(), -3.0, 3.0);
    for isa in Isa::all_supported() {
        let ops = Ops::new(isa);
        let mut g = xs.clone();
        ops.gelu_ggml(&mut g);
        let want: Vec<f32> = xs.iter().map(|&x| gelu_straight(x)).collect();
        assert_bits(&g, &want, &format!("gelu {isa:?}"));
        let mut g = xs.clone();
        ops.geglu_ggml(&mut g, &up);
        let want: Vec<f32> = xs
            .iter()
            .zip(&up)
            .map(|(&x, &u)| {
                if x <= -10.0 {
                    0.0
                } else {
                    gelu_straight(x) * u
                }
            })
            .collect();
        assert_bits(&g, &want, &format!("geglu {isa:?}"));
    }
}

// ---- SiLU ----

/// `ggml_v_expf` (AVX-512) written out, `scalef` as an exact f64 scaling rounded once.
fn v_expf(x: f32) -> f32 {
    let n = x.mul_add(f32::from_bits(0x3FB8_AA3B), 12_582_912.0) - 12_582_912.0;
    let b = (-n).mul_add(
        f32::from_bits(0x35BF_BE8E),
        (-n).mul_add(f32::from_bits(0x3F31_7200), x),
    );
    let u = b * b;
    let c = |bits: u32| f32::from_bits(bits);
    let j = c(0x3C07_2010)
        .mul_add(b, c(0x3D2B_9F17))
        .mul_add(u, c(0x3E2A_AF33).mul_add(b, c(0x3EFF_FEDB)))
        .mul_add(u, c(0x3F7F_FFF6).mul_add(b, 1.0));
    if n.abs() > 192.0 {
        if n <= 0.0 { 0.0 } else { f32::INFINITY }
    } else if n.is_nan() {
        f32::NAN
    } else {
        (f64::from(j) * 2f64.powi(n as i32)) as f32
    }
}

/// `ggml_vec_swiglu_f32` written out (`u` = None: `ggml_vec_silu_f32`).
fn swiglu_straight(x: &[f32], u: Option<&[f32]>) -> Vec<f32> {
    let blocks = x.len() / 16 * 16;
    (0..x.len())
        .map(|i| {
            let e = if i < blocks {
                v_expf(-x[i])
            } else {
                (-x[i]).exp()
            };
            let s = x[i] / (1.0 + e);
            u.map_or(s, |u| s * u[i])
        })
        .collect()
}

#[test]
fn silu_and_swiglu_match_ggml() {
    let a = act_fixture();
    let mut exact = Vec::new();
    for isa in Isa::all_supported() {
        let ops = Ops::new(isa);
        for r in 0..ACT_ROWS {
            let row = r * ACT_COLS..(r + 1) * ACT_COLS;
            let (gate, up) = (&a[0][row.clone()], &a[1][row.clone()]);
            let what = |op| format!("{op} {isa:?} row {r}");
            let mut x = gate.to_vec();
            ops.silu_ggml(&mut x);
            assert_bits(&x, &a[4][row.clone()], &what("silu"));
            let mut x = gate.to_vec();
            ops.swiglu_ggml(&mut x, up);
            assert_bits(&x, &a[5][row.clone()], &what("swiglu"));
            let mut out = vec![f32::NAN; ACT_COLS];
            ops.swiglu_ggml_to(&mut out, gate, up);
            assert_bits(&out, &a[5][row.clone()], &what("swiglu_to"));
            if isa == Isa::Generic {
                let mut x = gate.to_vec();
                ops.swiglu(&mut x, up);
                exact.extend(x);
            }
        }
    }
    let d = rel_diff(&exact, &a[5]);
    assert!(d < 1e-6, "exact swiglu vs ggml: {d:e}");
}

#[test]
fn silu_ggml_random_and_edges_match_straightforward() {
    let mut rng = Rng::new(11);
    let mut specials = vec![
        0.0f32,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        88.0,
        89.0,
        -88.0,
        -89.0,
        104.0,
        -104.0,
        133.0,
        -133.0,
        200.0,
        -200.0,
        1e-30,
        -1e-30,
        1e30,
        -1e30,
    ];
    for &len in crate::ops_util::LENGTHS {
        let mut x = rng.vec(len, -20.0, 20.0);
        for (i, v) in x.iter_mut().enumerate().step_by(3) {
            *v = specials[i % specials.len()];
        }
        specials.rotate_left(1);
        let up = rng.vec(len, -2.0, 2.0);
        for isa in Isa::all_supported() {
            let ops = Ops::new(isa);
            let mut s = x.clone();
            ops.silu_ggml(&mut s);
            assert_bits(
                &s,
                &swiglu_straight(&x, None),
                &format!("silu {isa:?} len {len}"),
            );
            let mut s = x.clone();
            ops.swiglu_ggml(&mut s, &up);
            assert_bits(
                &s,
                &swiglu_straight(&x, Some(&up)),
                &format!("swiglu {isa:?} len {len}"),
            );
        }
    }
}

// ---- the exact kernels against ggml: rms_norm and rope are already ggml's ----

#[test]
fn rms_norm_matches_ggml() {
    const ROWS: usize = 4;
    const COLS: usize = 576;
    let all = f32s(&fixture("rms_norm.f32"));
    let (x, rest) = all.split_at(ROWS * COLS);
    let (w, want) = rest.split_at(COLS);
    for isa in Isa::all_supported() {
        let ops = Ops::new(isa);
        for r in 0..ROWS {
            let row = r * COLS..(r + 1) * COLS;
            let mut out = vec![f32::NAN; COLS];
            ops.rms_norm(&mut out, &x[row.clone()], w, 1e-5);
            assert_bits(&out, &want[row], &format!("rms_norm {isa:?} row {r}"));
        }
    }
}

#[test]
fn rope_matches_ggml() {
    const TOKENS: usize = 5;
    const HEADS: usize = 3;
    const HD: usize = 64;
    let positions = [0, 1, 7, 100, 4000];
    for (name, mode, n_rot, base) in [
        ("normal", RopeMode::Normal, 64, 100_000.0),
        ("neox", RopeMode::Neox, 32, 10_000.0),
    ] {
        let all = f32s(&fixture(&format!("rope-{name}.f32")));
        let (x, want) = all.split_at(TOKENS * HEADS * HD);
        let rope = Rope::new(RopeParams::new(mode, n_rot, base), None).unwrap();
        for isa in Isa::all_supported() {
            let mut y = x.to_vec();
            Ops::new(isa).rope(&rope, &mut y, HEADS, HD, &positions);
            assert_bits(&y, want, &format!("rope {name} {isa:?}"));
        }
    }
}

// ---- attention ----

/// One attention fixture: shape, cache and ggml's output.
struct AttnCase {
    name: &'static str,
    params: AttentionParams,
    n_kv: usize,
    rows: Vec<Range<usize>>,
    q: Vec<f32>,
    k: Vec<f16>,
    v: Vec<f16>,
    want: Vec<f32>,
}

fn attn_case(
    name: &'static str,
    (n_head, n_head_kv, head_dim): (usize, usize, usize),
    n_kv: usize,
    (n_tokens, pos0, window): (usize, usize, usize),
    (scale, softcap): (f32, f32),
) -> AttnCase {
    let data = fixture(&format!("attn-{name}.bin"));
    let nq = n_tokens * n_head * head_dim;
    let nkv = n_kv * n_head_kv * head_dim;
    assert_eq!(data.len(), 4 * nq + 2 * nkv + 2 * nkv + 4 * nq, "{name}");
    let (q, rest) = data.split_at(4 * nq);
    let (k, rest) = rest.split_at(2 * nkv);
    let (v, want) = rest.split_at(2 * nkv);
    let rows = (pos0..pos0 + n_tokens)
        .map(|p| {
            let lo = if window > 0 {
                (p + 1).saturating_sub(window)
            } else {
                0
            };
            lo..p + 1
        })
        .collect();
    AttnCase {
        name,
        params: AttentionParams {
            n_head,
            n_head_kv,
            head_dim,
            scale,
            softcap,
        },
        n_kv,
        rows,
        q: f32s(q),
        k: f16s(k),
        v: f16s(v),
        want: f32s(want),
    }
}

/// The cases of scripts/gen_ggml_ops_fixtures.py (`ATTN`).
fn attn_cases() -> Vec<AttnCase> {
    vec![
        attn_case("prefill-gqa", (9, 3, 64), 256, (7, 40, 0), (0.125, 0.0)),
        attn_case("decode-gqa", (9, 3, 64), 256, (1, 200, 0), (0.125, 0.0)),
        attn_case(
            "prefill-swa",
            (4, 1, 256),
            320,
            (5, 290, 100),
            (0.0625, 0.0),
        ),
        attn_case("decode-swa", (4, 1, 256), 320, (1, 301, 100), (0.0625, 0.0)),
        attn_case(
            "prefill-hd40-softcap",
            (2, 2, 40),
            128,
            (6, 60, 0),
            (0.158, 20.0),
        ),
        attn_case("decode-hd40", (2, 1, 40), 128, (1, 90, 0), (0.158, 0.0)),
    ]
}

fn cache_of<'a>(p: &AttentionParams, k: &'a [f16], v: &'a [f16]) -> KvCache<'a> {
    KvCache {
        k,
        v,
        pos_stride: p.n_head_kv * p.head_dim,
        head_stride: p.head_dim,
    }
}

fn run_ggml(ops: Ops, n_threads: usize, c: &AttnCase) -> Vec<f32> {
    let pool = ThreadPool::new(n_threads);
    let mut scratch = AttentionScratch::new(&c.params, n_threads, c.n_kv);
    let mut out = vec![f32::NAN; c.q.len()];
    let cache = cache_of(&c.params, &c.k, &c.v);
    ops.attention_ggml(
        &pool,
        &c.params,
        &c.q,
        &cache,
        &c.rows,
        &mut out,
        &mut scratch,
    );
    out
}

#[test]
fn attention_ggml_matches_ggml() {
    for c in attn_cases() {
        for isa in Isa::all_supported() {
            for n_threads in [1, 2, 3] {
                let out = run_ggml(Ops::new(isa), n_threads, &c);
                assert_bits(
                    &out,
                    &c.want,
                    &format!("{} {isa:?} threads {n_threads}", c.name),
                );
            }
        }
        // The exact kernel is close to ggml, but not equal: q and the probabilities lose
        // ~2^-11 relative to f16 there.
        let pool = ThreadPool::new(1);
        let mut exact = vec![f32::NAN; c.q.len()];
        let cache = cache_of(&c.params, &c.k, &c.v);
        if c.params.softcap != 0.0 {
            // The exact kernel caps after scaling, llama.cpp before: not comparable.
            continue;
        }
        Ops::detected().attention(&pool, &c.params, &c.q, &cache, &c.rows, &mut exact);
        let d = rel_diff(&exact, &c.want);
        assert!(
            d > 1e-5 && d < 1e-2,
            "{}: exact attention vs ggml: {d:e}",
            c.name
        );
    }
}

/// llama.cpp's non-flash attention written out per (token, head) over all `n_kv` cells, with
/// ggml's roundings: q → f16, scores by lanes of f16 products, soft-cap, scale, `−inf` mask,
/// `ggml_v_expf` in blocks of 16 summed in f32 then f64, probabilities → f16, value sums by
/// lanes over the cells. `batch`: more than one token (llamafile sgemm's 16 lanes) or one
/// (`ggml_vec_dot_f16`'s 64).
fn attention_straight(
    p: &AttentionParams,
    q: &[f32],
    c: &KvCache<'_>,
    rows: &[Range<usize>],
    n_kv: usize,
) -> Vec<f32> {
    let hd = p.head_dim;
    let g = p.n_head / p.n_head_kv;
    let batch = rows.len() > 1;
    let to16 = |x: f32| f16::from_f32(x).to_f32();
    // A dot product of `n` terms `term(i)`, ggml's way.
    let dot = |n: usize, lanes16: bool, term: &dyn Fn(usize) -> (f32, f32)| -> f32 {
        if lanes16 {
            assert!(n.is_multiple_of(16));
            let mut acc = [0f32; 16];
            for i in 0..n {
                let (a, b) = term(i);
                acc[i % 16] = a.mul_add(b, acc[i % 16]);
            }
            let b: Vec<f32> = (0..8).map(|i| acc[i] + acc[i + 8]).collect();
            let c: Vec<f32> = (0..4).map(|i| b[i] + b[i + 4]).collect();
            (c[0] + c[2]) + (c[1] + c[3])
        } else {
            let np = n / 64 * 64;
            let mut acc = [0f32; 64];
            for i in 0..np {
                let (a, b) = term(i);
                acc[i % 64] = a.mul_add(b, acc[i % 64]);
            }
            let s: Vec<f32> = (0..16)
                .map(|i| (acc[i] + acc[i + 32]) + (acc[i + 16] + acc[i + 48]))
                .collect();
            let b: Vec<f32> = (0..8).map(|i| s[i] + s[i + 8]).collect();
            let c: Vec<f32> = (0..4).map(|i| b[i] + b[i + 4]).collect();
            let mut sum = f64::from((c[0] + c[2]) + (c[1] + c[3]));
            for i in np..n {
                let (a, b) = term(i);
                sum += f64::from(a * b);
            }
            sum as f32
        }
    };
    let at = |j: usize, kvh: usize| j * c.pos_stride + kvh * c.head_stride;
    let mut out = vec![0f32; q.len()];
    for (t, r) in rows.iter().enumerate() {
        if r.is_empty() {
            // ggml would give NaN (every cell masked); the kernels' contract is zeros.
            continue;
        }
        for h in 0..p.n_head {
            let kvh = h / g;
            let qh: Vec<f32> = q[(t * p.n_head + h) * hd..][..hd]
                .iter()
                .map(|&x| to16(x))
                .collect();
            let mut s = vec![f32::NEG_INFINITY; n_kv];
            for j in r.clone() {
                let k = &c.k[at(j, kvh)..][..hd];
                let mut x = dot(hd, batch && hd.is_multiple_of(16), &|d| {
                    (k[d].to_f32(), qh[d])
                });
                if p.softcap != 0.0 {
                    x = (x * (1.0 / p.softcap)).tanh() * p.softcap;
                }
                s[j] = x * p.scale;
            }
            let m = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = s.iter().map(|&x| v_expf(x - m)).collect();
            let mut sum = 0f64;
            for b in e.chunks(16) {
                let b8: Vec<f32> = (0..8).map(|i| b[i] + b[i + 8]).collect();
                let b4: Vec<f32> = (0..4).map(|i| b8[i] + b8[i + 4]).collect();
                sum += f64::from((b4[0] + b4[2]) + (b4[1] + b4[3]));
            }
            let inv = (1.0 / sum) as f32;
            let p16: Vec<f32> = e.iter().map(|&x| to16(x * inv)).collect();
            for d in 0..hd {
                out[(t * p.n_head + h) * hd + d] = dot(n_kv, batch && hd.is_multiple_of(4), &|j| {
                    (c.v[at(j, kvh) + d].to_f32(), p16[j])
                });
            }
        }
    }
    out
}

#[test]
fn attention_straightforward_matches_ggml_fixtures() {
    // The test's own reference is right about ggml before it judges the kernel.
    for c in attn_cases() {
        let cache = cache_of(&c.params, &c.k, &c.v);
        let out = attention_straight(&c.params, &c.q, &cache, &c.rows, c.n_kv);
        assert_bits(&out, &c.want, &format!("straightforward {}", c.name));
    }
}

#[test]
fn attention_ggml_random_shapes_match_straightforward() {
    struct Case {
        n_head: usize,
        n_head_kv: usize,
        hd: usize,
        n_kv: usize,
        rows: Vec<Range<usize>>,
        softcap: f32,
        head_major: bool,
    }
    // Tokens at positions `pos0..pos0 + n`, seeing `window` positions back (0: all).
    let causal = |pos0: usize, n: usize, window: usize| -> Vec<Range<usize>> {
        (pos0..pos0 + n)
            .map(|p| {
                let lo = if window > 0 {
                    (p + 1).saturating_sub(window)
                } else {
                    0
                };
                lo..p + 1
            })
            .collect()
    };
    let cases = [
        // SmolLM2's shape: GQA 9/3, head 64; prefill then decode.
        Case {
            n_head: 9,
            n_head_kv: 3,
            hd: 64,
            n_kv: 192,
            rows: causal(150, 12, 0),
            softcap: 0.0,
            head_major: false,
        },
        Case {
            n_head: 9,
            n_head_kv: 3,
            hd: 64,
            n_kv: 192,
            rows: causal(177, 1, 0),
            softcap: 0.0,
            head_major: false,
        },
        // Gemma 3's shape: MQA 4/1, head 256, sliding window with unaligned starts.
        Case {
            n_head: 4,
            n_head_kv: 1,
            hd: 256,
            n_kv: 640,
            rows: causal(560, 9, 37),
            softcap: 0.0,
            head_major: false,
        },
        Case {
            n_head: 4,
            n_head_kv: 1,
            hd: 256,
            n_kv: 640,
            rows: causal(600, 1, 512),
            softcap: 0.0,
            head_major: true,
        },
        // More heads per kv head than one pass, odd head sizes, soft-capping, one row.
        Case {
            n_head: 20,
            n_head_kv: 2,
            hd: 48,
            n_kv: 128,
            rows: causal(0, 5, 0),
            softcap: 30.0,
            head_major: false,
        },
        Case {
            n_head: 3,
            n_head_kv: 3,
            hd: 70,
            n_kv: 256,
            rows: causal(230, 3, 0),
            softcap: 0.0,
            head_major: true,
        },
        Case {
            n_head: 2,
            n_head_kv: 1,
            hd: 130,
            n_kv: 128,
            rows: vec![0..0, 5..6, 3..100, 64..128],
            softcap: 0.0,
            head_major: false,
        },
    ];
    let mut rng = Rng::new(2026);
    for (ci, c) in cases.iter().enumerate() {
        let p = AttentionParams {
            n_head: c.n_head,
            n_head_kv: c.n_head_kv,
            head_dim: c.hd,
            scale: 1.0 / (c.hd as f32).sqrt(),
            softcap: c.softcap,
        };
        let n = c.n_kv * c.n_head_kv * c.hd;
        let k = rng.vec_f16(n, -2.0, 2.0);
        let v = rng.vec_f16(n, -2.0, 2.0);
        let cache = if c.head_major {
            KvCache {
                k: &k,
                v: &v,
                pos_stride: c.hd,
                head_stride: c.n_kv * c.hd,
            }
        } else {
            cache_of(&p, &k, &v)
        };
        let q = rng.vec(c.rows.len() * c.n_head * c.hd, -3.0, 3.0);
        let want = attention_straight(&p, &q, &cache, &c.rows, c.n_kv);
        for isa in Isa::all_supported() {
            for n_threads in [1, 2] {
                let pool = ThreadPool::new(n_threads);
                let mut scratch = AttentionScratch::new(&p, n_threads, c.n_kv);
                let mut out = vec![f32::NAN; q.len()];
                Ops::new(isa).attention_ggml(
                    &pool,
                    &p,
                    &q,
                    &cache,
                    &c.rows,
                    &mut out,
                    &mut scratch,
                );
                assert_bits(
                    &out,
                    &want,
                    &format!("case {ci} {isa:?} threads {n_threads}"),
                );
            }
        }
    }
}

#[test]
fn attention_ggml_scratch_is_reusable_across_shapes_it_fits() {
    // One scratch for the largest range serves shorter ranges and repeated calls unchanged.
    let c = &attn_cases()[0];
    let pool = ThreadPool::new(2);
    let mut scratch = AttentionScratch::new(&c.params, 2, 4096);
    let cache = cache_of(&c.params, &c.k, &c.v);
    for _ in 0..2 {
        let mut out = vec![f32::NAN; c.q.len()];
        Ops::detected().attention_ggml(
            &pool,
            &c.params,
            &c.q,
            &cache,
            &c.rows,
            &mut out,
            &mut scratch,
        );
        assert_bits(&out, &c.want, "reused scratch");
    }
}

#[test]
#[should_panic(expected = "longer than the scratch")]
fn attention_ggml_rejects_a_range_longer_than_its_scratch() {
    let c = &attn_cases()[0];
    let pool = ThreadPool::new(1);
    let mut scratch = AttentionScratch::new(&c.params, 1, 16);
    let mut out = vec![0.0; c.q.len()];
    let cache = cache_of(&c.params, &c.k, &c.v);
    Ops::detected().attention_ggml(
        &pool,
        &c.params,
        &c.q,
        &cache,
        &c.rows,
        &mut out,
        &mut scratch,
    );
}

#[test]
#[should_panic(expected = "scratch made for")]
fn attention_ggml_rejects_a_scratch_for_fewer_threads() {
    let c = &attn_cases()[0];
    let pool = ThreadPool::new(2);
    let mut scratch = AttentionScratch::new(&c.params, 1, c.n_kv);
    let mut out = vec![0.0; c.q.len()];
    let cache = cache_of(&c.params, &c.k, &c.v);
    Ops::detected().attention_ggml(
        &pool,
        &c.params,
        &c.q,
        &cache,
        &c.rows,
        &mut out,
        &mut scratch,
    );
}

/// A sequence's cells scattered over a larger cache (in a random order, between other
/// sequences' cells) give llama.cpp's bits, as if they were rows `0..n_kv`.
#[test]
fn attention_ggml_mapped_scattered_cells_match_ggml() {
    let mut rng = Rng::new(7);
    for c in attn_cases() {
        let width = c.params.n_head_kv * c.params.head_dim;
        // A cache 3× larger; the sequence's cell j lives at cache row perm[j].
        let n_cache = 3 * c.n_kv;
        let mut perm: Vec<u32> = (0..n_cache as u32).collect();
        for i in (1..perm.len()).rev() {
            perm.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        perm.truncate(c.n_kv);
        let junk = |i: usize| f16::from_f32((i % 97) as f32 - 48.0);
        let mut k: Vec<f16> = (0..n_cache * width).map(junk).collect();
        let mut v: Vec<f16> = (0..n_cache * width).map(|i| junk(i + 13)).collect();
        for (j, &cell) in perm.iter().enumerate() {
            let (dst, src) = (cell as usize * width, j * width);
            k[dst..dst + width].copy_from_slice(&c.k[src..src + width]);
            v[dst..dst + width].copy_from_slice(&c.v[src..src + width]);
        }
        let bases = vec![0; c.rows.len()];
        for isa in Isa::all_supported() {
            for n_threads in [1, 2] {
                let pool = ThreadPool::new(n_threads);
                let mut scratch = AttentionScratch::new(&c.params, n_threads, c.n_kv);
                let mut out = vec![f32::NAN; c.q.len()];
                Ops::new(isa).attention_ggml_mapped(
                    &pool,
                    &c.params,
                    &c.q,
                    &cache_of(&c.params, &k, &v),
                    &c.rows,
                    &perm,
                    &bases,
                    &mut out,
                    &mut scratch,
                );
                assert_bits(
                    &out,
                    &c.want,
                    &format!("{} scattered {isa:?} threads {n_threads}", c.name),
                );
            }
        }
    }
}

// ---- f32 dot products (mixture-of-experts routers) ----

/// `_mm512_reduce_add_ps` written out: halve 16 → 8 → 4 → 2 → 1.
fn reduce16(mut v: Vec<f32>) -> f32 {
    while v.len() > 1 {
        let h = v.len() / 2;
        v = (0..h).map(|i| v[i] + v[i + h]).collect();
    }
    v[0]
}

/// `ggml_vec_dot_f32` with AVX-512 written out from ggml's source: `GGML_F32_ARR` = 4
/// accumulators of 16 lanes over the first `n & !63` products, reduced `(0+2) + (1+3)`, then the
/// leftovers added one by one (`sumf += x[i]*y[i]`, not contracted into an FMA by ggml's
/// compiler); or llamafile's `tinyBLAS<16>` row: one accumulator.
fn dot_f32_straight(w: &[f32], x: &[f32], lanes16: bool) -> f32 {
    let n = x.len();
    if lanes16 {
        let mut acc = vec![0.0f32; 16];
        for i in (0..n).step_by(16) {
            for l in 0..16 {
                acc[l] = w[i + l].mul_add(x[i + l], acc[l]);
            }
        }
        return reduce16(acc);
    }
    let np = n & !63;
    let mut sum = vec![vec![0.0f32; 16]; 4];
    for i in (0..np).step_by(64) {
        for (j, s) in sum.iter_mut().enumerate() {
            for l in 0..16 {
                s[l] = w[i + 16 * j + l].mul_add(x[i + 16 * j + l], s[l]);
            }
        }
    }
    let s0: Vec<f32> = (0..16).map(|l| sum[0][l] + sum[2][l]).collect();
    let s1: Vec<f32> = (0..16).map(|l| sum[1][l] + sum[3][l]).collect();
    let mut s = reduce16((0..16).map(|l| s0[l] + s1[l]).collect());
    for i in np..n {
        s += w[i] * x[i];
    }
    s
}

#[test]
fn f32_dots_follow_ggmls_order_on_every_isa() {
    let mut rng = Rng::new(77);
    for n in [0usize, 1, 15, 16, 48, 63, 64, 65, 127, 128, 200, 768, 770] {
        let rows = 5;
        let w = rng.vec(rows * n, -1.0, 1.0);
        let x = rng.vec(n, -2.0, 2.0);
        for lanes16 in [false, true] {
            if lanes16 && !n.is_multiple_of(16) {
                continue;
            }
            let want: Vec<f32> = (0..rows)
                .map(|r| dot_f32_straight(&w[r * n..(r + 1) * n], &x, lanes16))
                .collect();
            for isa in Isa::all_supported() {
                let mut got = vec![f32::NAN; rows];
                Ops::new(isa).dots_f32_ggml(&w, &x, lanes16, &mut got);
                let what = format!("{isa:?} n={n} lanes16={lanes16}");
                if n == 0 {
                    assert!(got.iter().all(|&g| g == 0.0), "{what}");
                } else {
                    assert_bits(&got, &want, &what);
                }
            }
        }
    }
}
