//! Attention over an f16 cache against a naive f64 implementation: MHA, GQA, MQA, groups larger
//! than one kernel pass, causal prefill, sliding windows, decode, contexts spanning many blocks,
//! a head-major cache layout, soft-capping; on every ISA level and at several thread counts.

use std::ops::Range;

use half::f16;
use kernels::isa::Isa;
use kernels::ops::Ops;
use kernels::ops::attention::{AttentionParams, BLOCK, KvCache};
use kernels::pool::ThreadPool;

use crate::ops_util::Rng;

/// `softmax(scale · q·k)·v` per (token, head) in f64, straight from the definition.
fn attention_f64(
    p: &AttentionParams,
    q: &[f32],
    c: &KvCache<'_>,
    rows: &[Range<usize>],
) -> Vec<f64> {
    let hd = p.head_dim;
    let g = p.n_head / p.n_head_kv;
    let mut out = vec![0.0f64; q.len()];
    for (t, r) in rows.iter().enumerate() {
        for h in 0..p.n_head {
            let kvh = h / g;
            let qv = &q[(t * p.n_head + h) * hd..][..hd];
            let at = |j: usize| j * c.pos_stride + kvh * c.head_stride;
            let scores: Vec<f64> = r
                .clone()
                .map(|j| {
                    let k = &c.k[at(j)..at(j) + hd];
                    let mut s: f64 = qv
                        .iter()
                        .zip(k)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b.to_f32()))
                        .sum();
                    s *= f64::from(p.scale);
                    if p.softcap != 0.0 {
                        let cap = f64::from(p.softcap);
                        s = cap * (s / cap).tanh();
                    }
                    s
                })
                .collect();
            let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
            let z: f64 = e.iter().sum();
            let o = &mut out[(t * p.n_head + h) * hd..][..hd];
            for (w, j) in e.iter().zip(r.clone()) {
                let v = &c.v[at(j)..at(j) + hd];
                for (od, &vd) in o.iter_mut().zip(v) {
                    *od += w / z * f64::from(vd.to_f32());
                }
            }
        }
    }
    out
}

struct Setup {
    params: AttentionParams,
    n_ctx: usize,
    head_major: bool,
}

fn run_case(name: &str, s: &Setup, rows: &[Range<usize>], seed: u64) {
    let p = &s.params;
    let hd = p.head_dim;
    let mut rng = Rng::new(seed);
    let n = s.n_ctx * p.n_head_kv * hd;
    // Keys drift upward along the context so later rows score higher: the running maximum keeps
    // growing across blocks, exercising the rescaling.
    let k: Vec<f16> = (0..n)
        .map(|i| {
            let pos = if s.head_major {
                i / hd % s.n_ctx
            } else {
                i / (p.n_head_kv * hd)
            };
            f16::from_f32(rng.uniform(-1.0, 1.0) + pos as f32 * 0.002)
        })
        .collect();
    let v = rng.vec_f16(n, -2.0, 2.0);
    let cache = if s.head_major {
        KvCache {
            k: &k,
            v: &v,
            pos_stride: hd,
            head_stride: s.n_ctx * hd,
        }
    } else {
        KvCache {
            k: &k,
            v: &v,
            pos_stride: p.n_head_kv * hd,
            head_stride: hd,
        }
    };
    let q = rng.vec(rows.len() * p.n_head * hd, -1.5, 1.5);
    let want = attention_f64(p, &q, &cache, rows);

    let mut first: Option<Vec<f32>> = None;
    for isa in Isa::all_supported() {
        let ops = Ops::new(isa);
        for n_threads in [1, 2, 3] {
            let pool = ThreadPool::new(n_threads);
            let mut out = vec![f32::NAN; q.len()];
            ops.attention(&pool, p, &q, &cache, rows, &mut out);
            for (i, (&g, &w)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(g) - w).abs() <= 2e-6 + 1e-5 * w.abs(),
                    "{name} {isa:?} threads={n_threads}: element {i} (token {}, head {}): got {g}, want {w}",
                    i / (p.n_head * hd),
                    i / hd % p.n_head
                );
            }
            // Same level, any thread count: the same bits.
            match &first {
                Some(f) if n_threads > 1 => {
                    assert_eq!(f, &out, "{name} {isa:?}: thread count changed the result")
                }
                _ => first = Some(out),
            }
        }
        first = None;
    }
}

fn params(n_head: usize, n_head_kv: usize, head_dim: usize) -> AttentionParams {
    AttentionParams {
        n_head,
        n_head_kv,
        head_dim,
        scale: 1.0 / (head_dim as f32).sqrt(),
        softcap: 0.0,
    }
}

/// Causal rows for tokens at `positions`, optionally within a sliding window.
fn causal(positions: Range<usize>, window: Option<usize>) -> Vec<Range<usize>> {
    positions
        .map(|p| {
            let start = window.map_or(0, |w| (p + 1).saturating_sub(w));
            start..p + 1
        })
        .collect()
}

#[test]
fn mha_causal_prefill() {
    let s = Setup {
        params: params(2, 2, 64),
        n_ctx: 40,
        head_major: false,
    };
    run_case("mha", &s, &causal(0..33, None), 21);
}

#[test]
fn gqa_smollm2_shape_prefill_and_decode() {
    // SmolLM2-135M: 9 query heads over 3 kv heads of 64.
    let s = Setup {
        params: params(9, 3, 64),
        n_ctx: 300,
        head_major: false,
    };
    run_case("gqa prefill", &s, &causal(0..21, None), 22);
    run_case("gqa prefill continued", &s, &causal(250..261, None), 23);
    run_case("gqa decode", &s, &causal(299..300, None), 24);
}

#[test]
fn mqa_gemma3_shape_with_sliding_window() {
    // Gemma 3 270M: 4 query heads over 1 kv head of 256; local layers see a window.
    let s = Setup {
        params: params(4, 1, 256),
        n_ctx: 2 * BLOCK + 50,
        head_major: false,
    };
    run_case("mqa window prefill", &s, &causal(100..140, Some(64)), 25);
    run_case(
        "mqa window decode",
        &s,
        &causal(2 * BLOCK + 49..2 * BLOCK + 50, Some(128)),
        26,
    );
    run_case(
        "mqa long decode",
        &s,
        &causal(2 * BLOCK + 49..2 * BLOCK + 50, None),
        27,
    );
}

#[test]
fn large_group_and_odd_head_dim() {
    // 12 query heads per kv head: more than one kernel pass (MAX_GROUP) per group; head size 72
    // is not a multiple of the vector width.
    let s = Setup {
        params: params(24, 2, 72),
        n_ctx: 3 * BLOCK + 7,
        head_major: false,
    };
    run_case(
        "large group long",
        &s,
        &causal(3 * BLOCK + 3..3 * BLOCK + 7, None),
        28,
    );
    run_case("large group prefill", &s, &causal(0..9, None), 29);
}

#[test]
fn head_major_layout_and_softcap() {
    let mut p = params(6, 2, 48);
    p.softcap = 2.0;
    p.scale = 1.3;
    let s = Setup {
        params: p,
        n_ctx: BLOCK + 20,
        head_major: true,
    };
    run_case(
        "head-major softcap",
        &s,
        &causal(BLOCK..BLOCK + 20, Some(100)),
        30,
    );
}

#[test]
fn empty_rows_give_zeros_and_single_head_matches() {
    let p = params(2, 1, 32);
    let mut rng = Rng::new(31);
    let k = rng.vec_f16(10 * 32, -1.0, 1.0);
    let v = rng.vec_f16(10 * 32, -1.0, 1.0);
    let cache = KvCache {
        k: &k,
        v: &v,
        pos_stride: 32,
        head_stride: 32,
    };
    let q = rng.vec(2 * 2 * 32, -1.0, 1.0);
    let rows = [3..3, 2..9];
    for isa in Isa::all_supported() {
        let ops = Ops::new(isa);
        let mut out = vec![f32::NAN; q.len()];
        ops.attention(&ThreadPool::new(2), &p, &q, &cache, &rows, &mut out);
        assert!(out[..64].iter().all(|&x| x == 0.0), "{isa:?}: empty range");
        // The one-head entry point computes the same thing for one (token, head).
        let mut one = vec![0.0f32; 32];
        ops.attention_head(&p, &q[96..128], &cache, 0, 2..9, &mut one);
        assert_eq!(&one[..], &out[96..128], "{isa:?}: attention_head");
    }
}

#[test]
#[should_panic(expected = "reach past the K/V buffers")]
fn rows_outside_the_cache_panic() {
    let p = params(1, 1, 16);
    let k = vec![f16::ZERO; 4 * 16];
    let cache = KvCache {
        k: &k,
        v: &k,
        pos_stride: 16,
        head_stride: 16,
    };
    let mut out = vec![0.0; 16];
    Ops::new(Isa::Generic).attention(
        &ThreadPool::new(1),
        &p,
        &[0.0; 16],
        &cache,
        &[Range { start: 0, end: 5 }],
        &mut out,
    );
}
