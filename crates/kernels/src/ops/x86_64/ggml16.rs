//! The SIMD versions of `ops::ggml` written once, over a 16-lane f32 vector ([`F32x16`]): ggml's
//! orders are defined in lanes of 16 (llamafile's sgemm, `ggml_vec_dot_f16`'s 4 × 16, the
//! softmax's blocks of 16), so the control flow is the same at every width and only the
//! vector differs. AVX-512 holds one in a register (`avx512_ggml`), AVX2 in two halves
//! (`avx2_ggml`); each implements the trait with its intrinsics and wraps these bodies in its
//! `#[target_feature]` entry points, where they are inlined and compiled for that level.
//!
//! What a level's register file affords is a const parameter of the bodies, not a copy:
//! `H64`, heads of a 64-lane dot product at once (4 accumulators each), and `T`, 16-lane
//! chunks per head kept in registers while summing values.

use half::f16;

use crate::ops::generic::{Ahead, Rows};

/// A 16-lane f32 vector of one ISA level.
///
/// # Safety
/// Every method needs the CPU features of its level; the bodies below are called only from
/// that level's `#[target_feature]` entry points. Pointer arguments are valid as each method
/// says.
pub(super) trait F32x16: Copy {
    unsafe fn zero() -> Self;
    unsafe fn splat(v: f32) -> Self;
    /// 16 values at `p`.
    unsafe fn load(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// `min(r, 16)` values at `p`, zeros after.
    unsafe fn load_n(p: *const f32, r: usize) -> Self;
    /// Its first `min(r, 16)` lanes at `p`.
    unsafe fn store_n(self, p: *mut f32, r: usize);
    /// 16 f16 at `p`, widened (exactly).
    unsafe fn load_f16(p: *const f16) -> Self;
    /// How many leading lanes a partial load or store touches, in the level's own form (a
    /// mask register on AVX-512), made once outside a loop.
    type Tail: Copy;
    /// The first `min(r, 16)` lanes.
    unsafe fn tail(r: usize) -> Self::Tail;
    /// The `t` f16 at `p`, widened, zeros after.
    unsafe fn load_f16_tail(p: *const f16, t: Self::Tail) -> Self;
    /// Its lanes `t` at `p`.
    unsafe fn store_tail(self, p: *mut f32, t: Self::Tail);
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn sub(self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    unsafe fn div(self, b: Self) -> Self;
    /// `self · b + c`, rounded once.
    unsafe fn fmadd(self, b: Self, c: Self) -> Self;
    /// `ggml_v_expf` (see `ops::ggml::expf`).
    unsafe fn exp(self) -> Self;
    /// `ops::ggml::tree16` of the lanes.
    unsafe fn tree16(self) -> f32;

    /// Whether [`F32x16::tree16x16`] reduces 16 vectors faster than 16 [`F32x16::tree16`]s.
    const WIDE_REDUCE: bool = false;

    /// `out[r] = v[r].tree16()` for 16 vectors, the same additions in the same order (a
    /// level with [`F32x16::WIDE_REDUCE`] does them 16 at a time by transposing).
    #[inline(always)]
    unsafe fn tree16x16(v: &[Self; 16], out: *mut f32) {
        for (r, x) in v.iter().enumerate() {
            // SAFETY: `out` valid for 16 writes; the level's features (trait contract).
            unsafe { *out.add(r) = x.tree16() };
        }
    }
}

/// `((t0 + t4) + (t2 + t6)) + ((t1 + t5) + (t3 + t7))`: the 16-lane tree from its first level
/// (`t[i] = a[i] + a[i + 8]`), or 64 lanes' pairs `(a[i] + a[i+32]) + (a[i+16] + a[i+48])` for
/// `a = t[k]` = lane `i + 8k`.
///
/// # Safety
/// `V`'s CPU features.
#[inline(always)]
unsafe fn tree8<V: F32x16>(t: &[V; 8]) -> V {
    // SAFETY: `V`'s features (caller contract).
    unsafe { (t[0].add(t[4]).add(t[2].add(t[6]))).add(t[1].add(t[5]).add(t[3].add(t[7]))) }
}

/// `(a0 + a2) + (a1 + a3)`: `ggml_vec_dot`'s four 16-lane accumulators to one.
///
/// # Safety
/// `V`'s CPU features.
#[inline(always)]
unsafe fn reduce4<V: F32x16>(a: &[V; 4]) -> V {
    // SAFETY: `V`'s features (caller contract).
    unsafe { a[0].add(a[2]).add(a[1].add(a[3])) }
}

/// `ops::ggml::silu_mul`: `y = silu(x) · u` (`u` null: `silu(x)`), whole blocks of 16 here,
/// the tail by the scalar version.
///
/// # Safety
/// `V`'s CPU features; `x` valid for `n` reads, `y` for `n` writes (`y == x` or `y == u`
/// allowed), `u` for `n` reads when not null.
#[inline(always)]
pub(super) unsafe fn silu_mul<V: F32x16>(n: usize, x: *const f32, u: *const f32, y: *mut f32) {
    let blocks = n & !15;
    // SAFETY: `i + 16 <= n`; pointers valid for `n` elements (caller contract); each block is
    // read before it is written; `V`'s features.
    unsafe {
        let one = V::splat(1.0);
        for i in (0..blocks).step_by(16) {
            let v = V::load(x.add(i));
            let e = V::zero().sub(v).exp();
            let mut r = v.div(one.add(e));
            if !u.is_null() {
                r = r.mul(V::load(u.add(i)));
            }
            r.store(y.add(i));
        }
        crate::ops::ggml::silu_mul(
            n - blocks,
            x.add(blocks),
            if u.is_null() { u } else { u.add(blocks) },
            y.add(blocks),
        );
    }
}

/// Scores of `G` heads (`q` from head `h0`) against row `r`, 16 lanes (llamafile's sgemm):
/// each key chunk is widened once for all heads.
///
/// # Safety
/// `V`'s CPU features; `r` valid for `hd` reads, a multiple of 16; `q` holds heads
/// `h0..h0 + G` of `hd`.
#[inline(always)]
unsafe fn kq16<V: F32x16, const G: usize>(
    r: *const f16,
    q: &[f32],
    h0: usize,
    hd: usize,
) -> [f32; G] {
    assert!(q.len() >= (h0 + G) * hd);
    let qp = q.as_ptr();
    // SAFETY: `d + 16 <= hd`: inside the row (caller contract) and each head of `q`
    // (asserted); `V`'s features.
    unsafe {
        let mut acc = [V::zero(); G];
        for d in (0..hd).step_by(16) {
            let kc = V::load_f16(r.add(d));
            for (h, a) in acc.iter_mut().enumerate() {
                *a = kc.fmadd(V::load(qp.add((h0 + h) * hd + d)), *a);
            }
        }
        acc.map(|a| a.tree16())
    }
}

/// Most head size [`kq16_rows16`] widens 16 key rows of into its stack buffer.
const ROWS16_MAX_HD: usize = 256;

/// [`kq16`] for the 16 rows `rows` and every head of `q` at once: the keys widened once into
/// `kf`, then per head 16 chains of FMAs reduced together ([`F32x16::tree16x16`]) into
/// `scores[h·ld + j..][..16]`. Each score is [`kq16`]'s, bit for bit.
///
/// # Safety
/// `V`'s CPU features; each row valid for `hd` reads, `hd` a multiple of 16 and at most
/// [`ROWS16_MAX_HD`]; `q` holds `g` heads of `hd`; `scores` holds `(g − 1)·ld + j + 16`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn kq16_rows16<V: F32x16>(
    rows: &[*const f16; 16],
    q: &[f32],
    g: usize,
    hd: usize,
    kf: &mut [f32; 16 * ROWS16_MAX_HD],
    scores: &mut [f32],
    ld: usize,
    j: usize,
) {
    assert!(hd <= ROWS16_MAX_HD && q.len() >= g * hd);
    assert!(g == 0 || scores.len() >= (g - 1) * ld + j + 16);
    // SAFETY: rows hold `hd` values and `kf` 16·`hd` (asserted); `q` holds `g` heads;
    // `scores[h·ld + j..][..16]` is inside `scores` (asserted); `V`'s features.
    unsafe {
        for (r, &row) in rows.iter().enumerate() {
            for d in (0..hd).step_by(16) {
                V::load_f16(row.add(d)).store(kf.as_mut_ptr().add(r * hd + d));
            }
        }
        for h in 0..g {
            let qh = q.as_ptr().add(h * hd);
            let mut acc = [V::zero(); 16];
            for d in (0..hd).step_by(16) {
                let qc = V::load(qh.add(d));
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = V::load(kf.as_ptr().add(r * hd + d)).fmadd(qc, *a);
                }
            }
            V::tree16x16(&acc, scores.as_mut_ptr().add(h * ld + j));
        }
    }
}

/// As [`kq16`] in `ggml_vec_dot_f16`'s order: 4 × 16 lanes over `np` (a multiple of 64, at
/// most `hd`) values, the rest in f64.
///
/// # Safety
/// As [`kq16`], `hd` not necessarily a multiple of 16.
#[inline(always)]
unsafe fn kq64<V: F32x16, const G: usize>(
    r: *const f16,
    q: &[f32],
    h0: usize,
    hd: usize,
    np: usize,
) -> [f32; G] {
    assert!(q.len() >= (h0 + G) * hd && np <= hd);
    let qp = q.as_ptr();
    // SAFETY: `d + 16·i + 16 <= np <= hd`: inside the row and each head of `q`; `V`'s
    // features.
    let acc = unsafe {
        let mut acc = [[V::zero(); 4]; G];
        for d in (0..np).step_by(64) {
            for i in 0..4 {
                let kc = V::load_f16(r.add(d + 16 * i));
                for (h, a) in acc.iter_mut().enumerate() {
                    let qc = V::load(qp.add((h0 + h) * hd + d + 16 * i));
                    a[i] = kc.fmadd(qc, a[i]);
                }
            }
        }
        acc
    };
    let mut out = [0.0f32; G];
    for (h, (o, a)) in out.iter_mut().zip(&acc).enumerate() {
        // SAFETY: `V`'s features.
        let mut sum = f64::from(unsafe { reduce4(a).tree16() });
        for d in np..hd {
            // SAFETY: `d < hd`: inside the row.
            let k = unsafe { (*r.add(d)).to_f32() };
            sum += f64::from(k * q[(h0 + h) * hd + d]);
        }
        *o = sum as f32;
    }
    out
}

/// `ops::ggml::kq_dots`, 64-lane dot products `H64` heads at a time (1 to 4).
///
/// # Safety
/// `V`'s CPU features.
#[inline(always)]
pub(super) unsafe fn kq_dots<V: F32x16, const H64: usize>(
    q: &[f32],
    g: usize,
    k: &Rows<'_>,
    lanes16: bool,
    scores: &mut [f32],
    ld: usize,
    ahead: &mut Ahead<'_>,
) {
    let hd = k.hd();
    assert!(q.len() >= g * hd);
    assert!(!lanes16 || hd.is_multiple_of(16));
    let np = hd & !63;
    let mut j0 = 0;
    if lanes16 && V::WIDE_REDUCE && hd <= ROWS16_MAX_HD && k.n() >= 16 {
        let mut kf = [0.0f32; 16 * ROWS16_MAX_HD];
        while j0 + 16 <= k.n() {
            if ahead.is_active() {
                for _ in 0..16 {
                    ahead.tick();
                }
            }
            let rows: [*const f16; 16] = std::array::from_fn(|r| k.row(j0 + r).as_ptr());
            // SAFETY: each row holds `hd` values (`Rows::row`), a multiple of 16 (asserted)
            // and at most the buffer's; `q` holds `g` heads; `scores` holds
            // `(g − 1)·ld + k.n()` (the caller's contract); `V`'s features.
            unsafe { kq16_rows16::<V>(&rows, q, g, hd, &mut kf, scores, ld, j0) };
            j0 += 16;
        }
    }
    for j in j0..k.n() {
        ahead.tick();
        let r = k.row(j).as_ptr();
        let mut h0 = 0;
        while h0 < g {
            let gb = (g - h0).min(if lanes16 { 4 } else { H64.clamp(1, 4) });
            let mut put = |vals: &[f32]| {
                for (h, &v) in vals.iter().enumerate() {
                    scores[(h0 + h) * ld + j] = v;
                }
            };
            // SAFETY: `r` is a row of `hd` values (`Rows::row`), `hd` a multiple of 16 where
            // `kq16` runs; `q` holds `g >= h0 + gb` heads; `V`'s features.
            unsafe {
                match (lanes16, gb) {
                    (true, 1) => put(&kq16::<V, 1>(r, q, h0, hd)),
                    (true, 2) => put(&kq16::<V, 2>(r, q, h0, hd)),
                    (true, 3) => put(&kq16::<V, 3>(r, q, h0, hd)),
                    (true, _) => put(&kq16::<V, 4>(r, q, h0, hd)),
                    (false, 1) => put(&kq64::<V, 1>(r, q, h0, hd, np)),
                    (false, 2) => put(&kq64::<V, 2>(r, q, h0, hd, np)),
                    (false, 3) => put(&kq64::<V, 3>(r, q, h0, hd, np)),
                    (false, _) => put(&kq64::<V, 4>(r, q, h0, hd, np)),
                }
            }
            h0 += gb;
        }
    }
}

/// `ops::ggml::dots_f32`.
///
/// # Safety
/// `V`'s CPU features.
#[inline(always)]
pub(super) unsafe fn dots_f32<V: F32x16>(w: &[f32], x: &[f32], lanes16: bool, out: &mut [f32]) {
    let n = x.len();
    assert!(w.len() == out.len() * n && (!lanes16 || n.is_multiple_of(16)));
    if n == 0 {
        out.fill(0.0);
        return;
    }
    let np = if lanes16 { n } else { n & !63 };
    let xp = x.as_ptr();
    for (o, row) in out.iter_mut().zip(w.chunks_exact(n)) {
        let wp = row.as_ptr();
        // SAFETY: every chunk `d..d + 16` read lies below `np <= n`: inside the row and `x`;
        // `V`'s features.
        *o = unsafe {
            if lanes16 {
                let mut acc = V::zero();
                for d in (0..np).step_by(16) {
                    acc = V::load(wp.add(d)).fmadd(V::load(xp.add(d)), acc);
                }
                acc.tree16()
            } else {
                let mut acc = [V::zero(); 4];
                for d in (0..np).step_by(64) {
                    for (i, a) in acc.iter_mut().enumerate() {
                        let (wc, xc) = (wp.add(d + 16 * i), xp.add(d + 16 * i));
                        *a = V::load(wc).fmadd(V::load(xc), *a);
                    }
                }
                let mut s = reduce4(&acc).tree16();
                // `sumf += x[i]*y[i]`: a product, then a sum (ggml's compiler does not fuse
                // them).
                for (a, b) in row[np..].iter().zip(&x[np..]) {
                    s += a * b;
                }
                s
            }
        };
    }
}

/// `ops::ggml::exp_block_sums`.
///
/// # Safety
/// `V`'s CPU features.
#[inline(always)]
pub(super) unsafe fn exp_block_sums<V: F32x16>(x: &mut [f32], max: f32) -> f64 {
    assert!(x.len().is_multiple_of(16));
    let mut sum = 0.0f64;
    // SAFETY: each `block` holds 16 f32; `V`'s features.
    unsafe {
        let m = V::splat(max);
        for block in x.chunks_exact_mut(16) {
            let e = V::load(block.as_ptr()).sub(m).exp();
            e.store(block.as_mut_ptr());
            sum += f64::from(e.tree16());
        }
    }
    sum
}

/// Lane `lane` of the value sums for `G` heads from `h0`: the chain of FMAs over its rows
/// (`first`, `first + lanes`, …), `T` × 16 values of each head at a time in registers, into
/// `dst[(h0 + h)·stride + d]`; `ahead` ticks once per row (on the first pass over them).
///
/// # Safety
/// `V`'s CPU features.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn pv_lane<V: F32x16, const G: usize, const T: usize, const TICK: bool>(
    p: &[f32],
    ld: usize,
    h0: usize,
    v: &Rows<'_>,
    first: usize,
    lanes: usize,
    dst: &mut [f32],
    stride: usize,
    ahead: &mut Ahead<'_>,
) {
    let (hd, n) = (v.hd(), v.n());
    assert!(n == 0 || p.len() >= (h0 + G - 1) * ld + n);
    assert!(dst.len() >= (h0 + G - 1) * stride + hd);
    for d0 in (0..hd).step_by(16 * T) {
        // SAFETY: row `j < n` holds `hd` values, of which chunk `t` reads the `hd − d0 − 16t`
        // left, at most 16 (none when 0); `dst[at..at + min(16, hd − d0 − 16t)]` is inside
        // `dst` (asserted); `V`'s features.
        unsafe {
            let left: [V::Tail; T] =
                std::array::from_fn(|t| V::tail(hd.saturating_sub(d0 + 16 * t)));
            let mut a = [[V::zero(); T]; G];
            let mut j = first;
            while j < n {
                if TICK && h0 == 0 && d0 == 0 {
                    ahead.tick();
                }
                let row = v.row(j).as_ptr();
                let vc: [V; T] =
                    std::array::from_fn(|t| V::load_f16_tail(row.add(d0 + 16 * t), left[t]));
                for (h, ah) in a.iter_mut().enumerate() {
                    let w = V::splat(p[(h0 + h) * ld + j]);
                    for t in 0..T {
                        ah[t] = w.fmadd(vc[t], ah[t]);
                    }
                }
                j += lanes;
            }
            for (h, ah) in a.iter().enumerate() {
                for t in 0..T {
                    let at = (h0 + h) * stride + d0 + 16 * t;
                    ah[t].store_tail(dst.as_mut_ptr().add(at), left[t]);
                }
            }
        }
    }
}

/// `y[h][d] = op(x[h][0..k][d])` for `g` heads of `k ≤ 8` rows of `hd` (`x`: `[g][k][hd]`;
/// head `h` of `y` at `y_at(h)`), 16 values at a time.
///
/// # Safety
/// `V`'s CPU features.
#[inline(always)]
unsafe fn combine<V: F32x16>(
    x: &[f32],
    k: usize,
    g: usize,
    hd: usize,
    y: &mut [f32],
    y_at: impl Fn(usize) -> usize,
    op: impl Fn(&[V; 8]) -> V,
) {
    assert!(k <= 8 && x.len() >= g * k * hd);
    for h in 0..g {
        let yh = y_at(h);
        assert!(y.len() >= yh + hd);
        for d in (0..hd).step_by(16) {
            // SAFETY: row `r < k` of head `h` holds `hd` values at `(h·k + r)·hd`, of which at
            // most `hd − d` are read; `y[yh + d..yh + hd]` is inside `y` (asserted), at most
            // `hd − d` written; `V`'s features.
            unsafe {
                let mut t = [V::zero(); 8];
                for (r, tr) in t.iter_mut().enumerate().take(k) {
                    *tr = V::load_n(x.as_ptr().add((h * k + r) * hd + d), hd - d);
                }
                op(&t).store_n(y.as_mut_ptr().add(yh + d), hd - d);
            }
        }
    }
}

/// `ops::ggml::pv`: lanes a few at a time — those that meet first in the reduction tree — so
/// the per-lane sums stay in a small buffer (`acc`: `[g][8][hd]` of lane sums, then
/// `[g][8][hd]` of the tree's first level); `T` 16-lane chunks per head in registers; `ahead`
/// ticks once per row read while it has lines left.
///
/// # Safety
/// `V`'s CPU features.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) unsafe fn pv<V: F32x16, const T: usize>(
    p: &[f32],
    ld: usize,
    g: usize,
    v: &Rows<'_>,
    lane0: usize,
    lanes: usize,
    acc: &mut [f32],
    out: &mut [f32],
    ahead: &mut Ahead<'_>,
) {
    // The loops tick only while there is something to fetch (`TICK` is a const: the other
    // loops have no trace of it).
    // SAFETY: `V`'s features (caller contract).
    unsafe {
        if ahead.is_active() {
            pv_ticking::<V, T, true>(p, ld, g, v, lane0, lanes, acc, out, ahead);
        } else {
            pv_ticking::<V, T, false>(p, ld, g, v, lane0, lanes, acc, out, ahead);
        }
    }
}

/// [`pv`], ticking `ahead` once per row when `TICK`.
///
/// # Safety
/// `V`'s CPU features.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn pv_ticking<V: F32x16, const T: usize, const TICK: bool>(
    p: &[f32],
    ld: usize,
    g: usize,
    v: &Rows<'_>,
    lane0: usize,
    lanes: usize,
    acc: &mut [f32],
    out: &mut [f32],
    ahead: &mut Ahead<'_>,
) {
    let hd = v.hd();
    assert!((lanes == 16 || lanes == 64) && lane0 < lanes);
    // Lanes `i + 8k`, `k < nl`, reduce to level-one node `i` of the 16-lane tree.
    let nl = lanes / 8;
    let (tmp, b) = acc[..2 * g * 8 * hd].split_at_mut(g * 8 * hd);
    // SAFETY: `V`'s features (caller contract) for every call below.
    unsafe {
        for i in 0..8 {
            for k in 0..nl {
                let first = (i + 8 * k + lanes - lane0) % lanes;
                let dst = &mut tmp[k * hd..];
                let mut h0 = 0;
                while h0 < g {
                    let gb = (g - h0).min(4);
                    match gb {
                        1 => pv_lane::<V, 1, T, TICK>(
                            p,
                            ld,
                            h0,
                            v,
                            first,
                            lanes,
                            dst,
                            nl * hd,
                            ahead,
                        ),
                        2 => pv_lane::<V, 2, T, TICK>(
                            p,
                            ld,
                            h0,
                            v,
                            first,
                            lanes,
                            dst,
                            nl * hd,
                            ahead,
                        ),
                        3 => pv_lane::<V, 3, T, TICK>(
                            p,
                            ld,
                            h0,
                            v,
                            first,
                            lanes,
                            dst,
                            nl * hd,
                            ahead,
                        ),
                        _ => pv_lane::<V, 4, T, TICK>(
                            p,
                            ld,
                            h0,
                            v,
                            first,
                            lanes,
                            dst,
                            nl * hd,
                            ahead,
                        ),
                    }
                    h0 += gb;
                }
            }
            let node = |h| (h * 8 + i) * hd;
            if nl == 2 {
                combine(tmp, 2, g, hd, b, node, |t: &[V; 8]| t[0].add(t[1]));
            } else {
                combine(tmp, 8, g, hd, b, node, |t: &[V; 8]| tree8(t));
            }
        }
        combine(b, 8, g, hd, out, |h| h * hd, |t: &[V; 8]| tree8(t));
    }
}
