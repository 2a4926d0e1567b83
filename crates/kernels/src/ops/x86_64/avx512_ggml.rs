//! AVX-512 twins of the kernels in `ops::ggml` (ggml's own arithmetic): the same operations in
//! the same order as the scalar versions, so the results are the same bits.
//!
//! Every function carries `#[target_feature]` for the whole `Isa::Avx512` set; callers must have
//! checked that the CPU has it (`Ops::new` resolves them, once, through `Isa::dispatch`).

use std::arch::x86_64::*;

use half::f16;

use crate::ops::generic::Rows;
use crate::ops::ggml::expc::*;

/// Lanes `0..r` set (`r < 16`), or all for `r >= 16`.
#[inline]
fn mask(r: usize) -> __mmask16 {
    if r >= 16 {
        0xFFFF
    } else {
        ((1u32 << r) - 1) as u16
    }
}

/// 16 f16 from `p`, widened (exactly).
///
/// # Safety
/// The CPU supports the `Isa::Avx512` set; `p` is valid for 16 reads.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn load_f16(p: *const f16) -> __m512 {
    // SAFETY: 16 f16 = 32 bytes readable at `p` (caller contract).
    _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.cast()) })
}

/// `ggml_v_expf` (see `ops::ggml::expf`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn exp(x: __m512) -> __m512 {
    let r = _mm512_set1_ps(SHIFT);
    let z = _mm512_fmadd_ps(x, _mm512_set1_ps(LOG2E), r);
    let n = _mm512_sub_ps(z, r);
    let b = _mm512_fnmadd_ps(
        n,
        _mm512_set1_ps(LN2_LO),
        _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x),
    );
    let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
    let u = _mm512_mul_ps(b, b);
    let j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(
            _mm512_fmadd_ps(_mm512_set1_ps(C5), b, _mm512_set1_ps(C4)),
            u,
            _mm512_fmadd_ps(_mm512_set1_ps(C3), b, _mm512_set1_ps(C2)),
        ),
        u,
        _mm512_fmadd_ps(_mm512_set1_ps(C1), b, _mm512_set1_ps(1.0)),
    );
    let res = _mm512_scalef_ps(j, n);
    if big == 0 {
        return res;
    }
    let zero = _mm512_setzero_ps();
    let neg = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, zero);
    let alt = _mm512_mask_blend_ps(neg, _mm512_set1_ps(f32::INFINITY), zero);
    _mm512_mask_blend_ps(big, res, alt)
}

/// `ops::ggml::tree16` of the 16 lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn tree16(v: __m512) -> f32 {
    let s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps::<1>(v));
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_permute_ps::<0b01_00_11_10>(s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
}

/// `y = silu(x) · u` (`u` null: `silu(x)`), as `ops::ggml::silu_mul`.
///
/// # Safety
/// The CPU supports the `Isa::Avx512` set; `x` valid for `n` reads, `y` for `n` writes
/// (`y == x` or `y == u` allowed), `u` for `n` reads when not null.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn silu_mul(n: usize, x: *const f32, u: *const f32, y: *mut f32) {
    let blocks = n & !15;
    let one = _mm512_set1_ps(1.0);
    for i in (0..blocks).step_by(16) {
        // SAFETY: `i + 16 <= n`; pointers valid for `n` elements (caller contract); each block
        // is read before it is written.
        unsafe {
            let v = _mm512_loadu_ps(x.add(i));
            let e = exp(_mm512_sub_ps(_mm512_setzero_ps(), v));
            let mut r = _mm512_div_ps(v, _mm512_add_ps(one, e));
            if !u.is_null() {
                r = _mm512_mul_ps(r, _mm512_loadu_ps(u.add(i)));
            }
            _mm512_storeu_ps(y.add(i), r);
        }
    }
    // SAFETY: the tail `blocks..n` under the same contract.
    unsafe {
        crate::ops::ggml::silu_mul(
            n - blocks,
            x.add(blocks),
            if u.is_null() { u } else { u.add(blocks) },
            y.add(blocks),
        );
    }
}

/// `y = gelu(x) · u` (`u` null: `gelu(x)`), as `ops::ggml::gelu_mul`: conversion to f16,
/// table lookup (a 32-bit gather at each entry, of which the low half is kept) and conversion
/// back in vectors.
///
/// # Safety
/// The CPU supports the `Isa::Avx512` set; `x` valid for `n` reads, `y` for `n` writes
/// (`y == x` or `y == u` allowed), `u` for `n` reads when not null.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub unsafe fn gelu_mul(n: usize, x: *const f32, u: *const f32, y: *mut f32) {
    let table: *const crate::ops::ggml::GeluTable = crate::ops::ggml::gelu_table();
    let (lo, hi) = (_mm512_set1_ps(-10.0), _mm512_set1_ps(10.0));
    let full = n & !15;
    for i in (0..full).step_by(16) {
        // SAFETY: `i + 16 <= n`; pointers valid for `n` elements (caller contract); each block
        // is read before it is written.
        unsafe {
            let v = _mm512_loadu_ps(x.add(i));
            let idx = _mm512_cvtepu16_epi32(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v));
            // Entry `i` and the next (or the padding): 4 bytes inside the table.
            let t = _mm512_i32gather_epi32::<2>(idx, table.cast());
            let mut r = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(t));
            r = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, hi), r, v);
            if !u.is_null() {
                r = _mm512_mul_ps(r, _mm512_loadu_ps(u.add(i)));
            }
            r = _mm512_maskz_mov_ps(!_mm512_cmp_ps_mask::<_CMP_LE_OQ>(v, lo), r);
            _mm512_storeu_ps(y.add(i), r);
        }
    }
    // SAFETY: the tail `full..n` under the same contract.
    unsafe {
        crate::ops::ggml::gelu_mul(
            n - full,
            x.add(full),
            if u.is_null() { u } else { u.add(full) },
            y.add(full),
        );
    }
}

/// Scores of `G` heads (`q` from head `h0`) against row `r`, 16 lanes (see `kq_dots`): each
/// key chunk is widened once for all heads.
///
/// # Safety
/// The CPU supports the `Isa::Avx512` set; `r` is valid for `hd` reads, a multiple of 16;
/// `q` holds heads `h0..h0 + G` of `hd`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn kq16<const G: usize>(r: *const f16, q: &[f32], h0: usize, hd: usize) -> [f32; G] {
    assert!(q.len() >= (h0 + G) * hd);
    let qp = q.as_ptr();
    let mut acc = [_mm512_setzero_ps(); G];
    for d in (0..hd).step_by(16) {
        // SAFETY: `d + 16 <= hd`: inside the row (caller contract) and each head of `q`.
        unsafe {
            let kc = load_f16(r.add(d));
            for (h, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(kc, _mm512_loadu_ps(qp.add((h0 + h) * hd + d)), *a);
            }
        }
    }
    acc.map(|a| tree16(a))
}

/// As `kq16` in `ggml_vec_dot_f16`'s order: 4 × 16 lanes over `np` (a multiple of 64, at most
/// `hd`) values, the rest in f64.
///
/// # Safety
/// As `kq16`, `hd` not necessarily a multiple of 16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
unsafe fn kq64<const G: usize>(
    r: *const f16,
    q: &[f32],
    h0: usize,
    hd: usize,
    np: usize,
) -> [f32; G] {
    assert!(q.len() >= (h0 + G) * hd && np <= hd);
    let qp = q.as_ptr();
    let mut acc = [[_mm512_setzero_ps(); 4]; G];
    for d in (0..np).step_by(64) {
        for i in 0..4 {
            // SAFETY: `d + 16·i + 16 <= np <= hd`: inside the row and each head of `q`.
            unsafe {
                let kc = load_f16(r.add(d + 16 * i));
                for (h, a) in acc.iter_mut().enumerate() {
                    let qc = _mm512_loadu_ps(qp.add((h0 + h) * hd + d + 16 * i));
                    a[i] = _mm512_fmadd_ps(kc, qc, a[i]);
                }
            }
        }
    }
    let mut out = [0.0f32; G];
    for (h, (o, a)) in out.iter_mut().zip(&acc).enumerate() {
        let s = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
        let mut sum = f64::from(tree16(s));
        for d in np..hd {
            // SAFETY: `d < hd`: inside the row.
            let k = unsafe { (*r.add(d)).to_f32() };
            sum += f64::from(k * q[(h0 + h) * hd + d]);
        }
        *o = sum as f32;
    }
    out
}

/// `ops::ggml::kq_dots`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn kq_dots(q: &[f32], g: usize, k: &Rows<'_>, lanes16: bool, scores: &mut [f32], ld: usize) {
    let hd = k.hd();
    assert!(q.len() >= g * hd);
    assert!(!lanes16 || hd.is_multiple_of(16));
    let np = hd & !63;
    for j in 0..k.n() {
        let r = k.row(j).as_ptr();
        let mut h0 = 0;
        while h0 < g {
            let gb = (g - h0).min(4);
            let mut put = |vals: &[f32]| {
                for (h, &v) in vals.iter().enumerate() {
                    scores[(h0 + h) * ld + j] = v;
                }
            };
            // SAFETY: `r` is a row of `hd` values (`Rows::row`), `hd` a multiple of 16 where
            // `kq16` runs; `q` holds `g >= h0 + gb` heads.
            unsafe {
                match (lanes16, gb) {
                    (true, 1) => put(&kq16::<1>(r, q, h0, hd)),
                    (true, 2) => put(&kq16::<2>(r, q, h0, hd)),
                    (true, 3) => put(&kq16::<3>(r, q, h0, hd)),
                    (true, _) => put(&kq16::<4>(r, q, h0, hd)),
                    (false, 1) => put(&kq64::<1>(r, q, h0, hd, np)),
                    (false, 2) => put(&kq64::<2>(r, q, h0, hd, np)),
                    (false, 3) => put(&kq64::<3>(r, q, h0, hd, np)),
                    (false, _) => put(&kq64::<4>(r, q, h0, hd, np)),
                }
            }
            h0 += gb;
        }
    }
}

/// `ops::ggml::dots_f32`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn dots_f32(w: &[f32], x: &[f32], lanes16: bool, out: &mut [f32]) {
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
        *o = if lanes16 {
            let mut acc = _mm512_setzero_ps();
            for d in (0..np).step_by(16) {
                // SAFETY: `d + 16 <= n`: inside the row and `x`.
                unsafe {
                    acc = _mm512_fmadd_ps(
                        _mm512_loadu_ps(wp.add(d)),
                        _mm512_loadu_ps(xp.add(d)),
                        acc,
                    );
                }
            }
            tree16(acc)
        } else {
            let mut acc = [_mm512_setzero_ps(); 4];
            for d in (0..np).step_by(64) {
                for (i, a) in acc.iter_mut().enumerate() {
                    // SAFETY: `d + 16·i + 16 <= np <= n`: inside the row and `x`.
                    unsafe {
                        let (wc, xc) = (wp.add(d + 16 * i), xp.add(d + 16 * i));
                        *a = _mm512_fmadd_ps(_mm512_loadu_ps(wc), _mm512_loadu_ps(xc), *a);
                    }
                }
            }
            let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
            let mut s = tree16(s);
            // `sumf += x[i]*y[i]`: a product, then a sum (ggml's compiler does not fuse them).
            for (a, b) in row[np..].iter().zip(&x[np..]) {
                s += a * b;
            }
            s
        };
    }
}

/// `ops::ggml::exp_block_sums`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn exp_block_sums(x: &mut [f32], max: f32) -> f64 {
    assert!(x.len().is_multiple_of(16));
    let m = _mm512_set1_ps(max);
    let mut sum = 0.0f64;
    for block in x.chunks_exact_mut(16) {
        // SAFETY: `block` holds 16 f32.
        unsafe {
            let e = exp(_mm512_sub_ps(_mm512_loadu_ps(block.as_ptr()), m));
            _mm512_storeu_ps(block.as_mut_ptr(), e);
            sum += f64::from(tree16(e));
        }
    }
    sum
}

/// Lane `lane` of the value sums for `G` heads from `h0`: the chain of FMAs over its rows
/// (`j ≡ lane − lane0 mod lanes`), 4 × 16 values of each head at a time in registers, into
/// `dst[(h0 + h)·stride + d]`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn pv_lane<const G: usize>(
    p: &[f32],
    ld: usize,
    h0: usize,
    v: &Rows<'_>,
    first: usize,
    lanes: usize,
    dst: &mut [f32],
    stride: usize,
) {
    let (hd, n) = (v.hd(), v.n());
    assert!(n == 0 || p.len() >= (h0 + G - 1) * ld + n);
    assert!(dst.len() >= (h0 + G - 1) * stride + hd);
    for d0 in (0..hd).step_by(64) {
        let m: [__mmask16; 4] = std::array::from_fn(|t| mask(hd.saturating_sub(d0 + 16 * t)));
        let mut a = [[_mm512_setzero_ps(); 4]; G];
        let mut j = first;
        while j < n {
            let row = v.row(j).as_ptr();
            // SAFETY: `j < n`, a row of `hd` values; each mask keeps its load inside them (an
            // empty mask reads nothing).
            let vc: [__m512; 4] = std::array::from_fn(|t| unsafe {
                _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m[t], row.add(d0 + 16 * t).cast()))
            });
            for (h, ah) in a.iter_mut().enumerate() {
                let w = _mm512_set1_ps(p[(h0 + h) * ld + j]);
                for t in 0..4 {
                    ah[t] = _mm512_fmadd_ps(w, vc[t], ah[t]);
                }
            }
            j += lanes;
        }
        for (h, ah) in a.iter().enumerate() {
            for t in 0..4 {
                let at = (h0 + h) * stride + d0 + 16 * t;
                // SAFETY: the mask selects `dst[at..at + min(16, hd − d)]`, inside `dst`
                // (asserted); an empty mask writes nothing.
                unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr().add(at), m[t], ah[t]) };
            }
        }
    }
}

/// `y[h][d] = op(x[h][0..k][d])` for `g` heads of `k ≤ 8` rows of `hd` (`x`: `[g][k][hd]`;
/// head `h` of `y` at `y_at(h)`), 16 values at a time.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn combine(
    x: &[f32],
    k: usize,
    g: usize,
    hd: usize,
    y: &mut [f32],
    y_at: impl Fn(usize) -> usize,
    op: impl Fn(&[__m512; 8]) -> __m512,
) {
    assert!(k <= 8 && x.len() >= g * k * hd);
    for h in 0..g {
        let yh = y_at(h);
        assert!(y.len() >= yh + hd);
        for d in (0..hd).step_by(16) {
            let m = mask(hd - d);
            let mut t = [_mm512_setzero_ps(); 8];
            for (r, tr) in t.iter_mut().enumerate().take(k) {
                // SAFETY: row `r < k` of head `h` holds `hd` values at `(h·k + r)·hd`; the
                // mask keeps the load inside them.
                *tr = unsafe { _mm512_maskz_loadu_ps(m, x.as_ptr().add((h * k + r) * hd + d)) };
            }
            // SAFETY: `y[yh + d..yh + hd]` is inside `y` (asserted); the mask selects it.
            unsafe { _mm512_mask_storeu_ps(y.as_mut_ptr().add(yh + d), m, op(&t)) };
        }
    }
}

/// The 16-lane tree from its first level `t[0..8]` (`t[i] = a[i] + a[i + 8]`), or 64 lanes'
/// `(a[i] + a[i+32]) + (a[i+16] + a[i+48])` pairs for `a = t[k] = lane i + 8k`: both are
/// `((t0 + t4) + (t2 + t6)) + ((t1 + t5) + (t3 + t7))`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
fn tree8(t: &[__m512; 8]) -> __m512 {
    let add = |a, b| _mm512_add_ps(a, b);
    add(
        add(add(t[0], t[4]), add(t[2], t[6])),
        add(add(t[1], t[5]), add(t[3], t[7])),
    )
}

/// `ops::ggml::pv`: lanes a few at a time — those that meet first in the reduction tree — so
/// the per-lane sums stay in a small buffer (`acc`: `[g][8][hd]` of lane sums, then
/// `[g][8][hd]` of the tree's first level).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn pv(
    p: &[f32],
    ld: usize,
    g: usize,
    v: &Rows<'_>,
    lane0: usize,
    lanes: usize,
    acc: &mut [f32],
    out: &mut [f32],
) {
    let hd = v.hd();
    assert!((lanes == 16 || lanes == 64) && lane0 < lanes);
    // Lanes `i + 8k`, `k < nl`, reduce to level-one node `i` of the 16-lane tree.
    let nl = lanes / 8;
    let (tmp, b) = acc[..2 * g * 8 * hd].split_at_mut(g * 8 * hd);
    for i in 0..8 {
        for k in 0..nl {
            let first = (i + 8 * k + lanes - lane0) % lanes;
            let dst = &mut tmp[k * hd..];
            let mut h0 = 0;
            while h0 < g {
                let gb = (g - h0).min(4);
                match gb {
                    1 => pv_lane::<1>(p, ld, h0, v, first, lanes, dst, nl * hd),
                    2 => pv_lane::<2>(p, ld, h0, v, first, lanes, dst, nl * hd),
                    3 => pv_lane::<3>(p, ld, h0, v, first, lanes, dst, nl * hd),
                    _ => pv_lane::<4>(p, ld, h0, v, first, lanes, dst, nl * hd),
                }
                h0 += gb;
            }
        }
        let node = |h| (h * 8 + i) * hd;
        if nl == 2 {
            combine(tmp, 2, g, hd, b, node, |t| _mm512_add_ps(t[0], t[1]));
        } else {
            combine(tmp, 8, g, hd, b, node, |t| tree8(t));
        }
    }
    combine(b, 8, g, hd, out, |h| h * hd, |t| tree8(t));
}
