//! AVX2 twins of the kernels in `ops::ggml` (ggml's arithmetic as its AVX-512 build does it):
//! a 16-lane accumulator is two 8-lane halves, AVX-512's `scalef` is two exact-then-rounding
//! multiplications, so the results are the same bits as the scalar versions.
//!
//! Every function carries `#[target_feature]` for the whole `Isa::Avx2` set; callers must have
//! checked that the CPU has it (`Ops::new` resolves them, once, through `Isa::dispatch`).

use std::arch::x86_64::*;

use half::f16;

use crate::ops::generic::Rows;
use crate::ops::ggml::expc::*;

/// All-ones in lanes `0..r` (`r < 8`) as a `vmaskmovps` mask.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tail_mask(r: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(r as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// 8 f16 from `p`, widened (exactly).
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set; `p` is valid for 8 reads.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_f16(p: *const f16) -> __m256 {
    // SAFETY: 8 f16 = 16 bytes readable at `p` (caller contract).
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(p.cast()) })
}

/// Up to 8 f16 from `x[i..]`, widened, zeros past the end.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_f16_tail(x: &[f16], i: usize) -> __m256 {
    if i + 8 <= x.len() {
        // SAFETY: 8 elements from `i` are inside `x`.
        unsafe { load_f16(x.as_ptr().add(i)) }
    } else {
        let mut t = [f16::ZERO; 8];
        let src = &x[i..];
        t[..src.len()].copy_from_slice(src);
        // SAFETY: `t` holds 8 f16.
        unsafe { load_f16(t.as_ptr()) }
    }
}

/// `2^k` for 8 lanes of integers in `−126..=127`, built in the exponent field.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pow2(k: __m256i) -> __m256 {
    _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        k,
        _mm256_set1_epi32(127),
    )))
}

/// `ggml_v_expf` as its AVX-512 version computes it (see `ops::ggml::expf`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn exp(x: __m256) -> __m256 {
    let r = _mm256_set1_ps(SHIFT);
    let z = _mm256_fmadd_ps(x, _mm256_set1_ps(LOG2E), r);
    let n = _mm256_sub_ps(z, r);
    let b = _mm256_fnmadd_ps(
        n,
        _mm256_set1_ps(LN2_LO),
        _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), x),
    );
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let big = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(_mm256_set1_ps(C5), b, _mm256_set1_ps(C4)),
            u,
            _mm256_fmadd_ps(_mm256_set1_ps(C3), b, _mm256_set1_ps(C2)),
        ),
        u,
        _mm256_fmadd_ps(_mm256_set1_ps(C1), b, _mm256_set1_ps(1.0)),
    );
    // scalef(j, n) for |n| <= 192: the first product is exact, the second rounds once. Lanes
    // with a larger or NaN `n` get garbage here: they are replaced below, or `j` is NaN.
    let k = _mm256_cvtps_epi32(n);
    let h = _mm256_srai_epi32::<1>(k);
    let res = _mm256_mul_ps(_mm256_mul_ps(j, pow2(h)), pow2(_mm256_sub_epi32(k, h)));
    if _mm256_movemask_ps(big) == 0 {
        return res;
    }
    let neg = _mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps());
    let alt = _mm256_andnot_ps(neg, _mm256_set1_ps(f32::INFINITY));
    _mm256_blendv_ps(res, alt, big)
}

/// `ops::ggml::tree16` of lanes `lo` (0..8) and `hi` (8..16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tree16(lo: __m256, hi: __m256) -> f32 {
    let s8 = _mm256_add_ps(lo, hi);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_permute_ps::<0b01_00_11_10>(s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)))
}

/// `y = silu(x) · u` (`u` null: `silu(x)`), as `ops::ggml::silu_mul`.
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set; `x` valid for `n` reads, `y` for `n` writes
/// (`y == x` or `y == u` allowed), `u` for `n` reads when not null.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn silu_mul(n: usize, x: *const f32, u: *const f32, y: *mut f32) {
    // Whole 16-blocks get ggml_v_expf; being elementwise, they can go 8 at a time.
    let blocks = n & !15;
    let one = _mm256_set1_ps(1.0);
    for i in (0..blocks).step_by(8) {
        // SAFETY: `i + 8 <= n`; pointers valid for `n` elements (caller contract); each chunk
        // is read before it is written.
        unsafe {
            let v = _mm256_loadu_ps(x.add(i));
            let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), v));
            let mut r = _mm256_div_ps(v, _mm256_add_ps(one, e));
            if !u.is_null() {
                r = _mm256_mul_ps(r, _mm256_loadu_ps(u.add(i)));
            }
            _mm256_storeu_ps(y.add(i), r);
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

/// `y = gelu(x) · u` (`u` null: `gelu(x)`), as `ops::ggml::gelu_mul`: conversion to f16 and
/// back in vectors, the table looked up per element.
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set; `x` valid for `n` reads, `y` for `n` writes
/// (`y == x` or `y == u` allowed), `u` for `n` reads when not null.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn gelu_mul(n: usize, x: *const f32, u: *const f32, y: *mut f32) {
    let table = &crate::ops::ggml::gelu_table().entries;
    let (lo, hi) = (_mm256_set1_ps(-10.0), _mm256_set1_ps(10.0));
    let full = n & !7;
    for i in (0..full).step_by(8) {
        // SAFETY: `i + 8 <= n`; pointers valid for `n` elements (caller contract); each chunk
        // is read before it is written.
        unsafe {
            let v = _mm256_loadu_ps(x.add(i));
            let mut idx = [0u16; 8];
            _mm_storeu_si128(
                idx.as_mut_ptr().cast(),
                _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v),
            );
            let t: [f16; 8] = std::array::from_fn(|l| table[usize::from(idx[l])]);
            let mut r = load_f16(t.as_ptr());
            r = _mm256_blendv_ps(r, v, _mm256_cmp_ps::<_CMP_GE_OQ>(v, hi));
            if !u.is_null() {
                r = _mm256_mul_ps(r, _mm256_loadu_ps(u.add(i)));
            }
            r = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LE_OQ>(v, lo), r);
            _mm256_storeu_ps(y.add(i), r);
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

/// Scores of `G` heads (`q` from head `h0`) against row `r`, 16 lanes as two halves (see
/// `kq_dots`): each key chunk is widened once for all heads.
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set; `r` is valid for `hd` reads, a multiple of 16; `q`
/// holds heads `h0..h0 + G` of `hd`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kq16<const G: usize>(r: *const f16, q: &[f32], h0: usize, hd: usize) -> [f32; G] {
    assert!(q.len() >= (h0 + G) * hd);
    let qp = q.as_ptr();
    let mut acc = [[_mm256_setzero_ps(); 2]; G];
    for d in (0..hd).step_by(16) {
        // SAFETY: `d + 16 <= hd`: inside the row (caller contract) and each head of `q`.
        unsafe {
            let (k0, k1) = (load_f16(r.add(d)), load_f16(r.add(d + 8)));
            for (h, a) in acc.iter_mut().enumerate() {
                let at = (h0 + h) * hd + d;
                a[0] = _mm256_fmadd_ps(k0, _mm256_loadu_ps(qp.add(at)), a[0]);
                a[1] = _mm256_fmadd_ps(k1, _mm256_loadu_ps(qp.add(at + 8)), a[1]);
            }
        }
    }
    acc.map(|a| tree16(a[0], a[1]))
}

/// One head's score in `ggml_vec_dot_f16`'s order: 64 lanes (8 blocks of 8) over `np` (a
/// multiple of 64, at most `hd`) values, the rest in f64.
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set; `r` and `q` are valid for `hd` reads.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kq64(r: *const f16, q: *const f32, hd: usize, np: usize) -> f32 {
    // Block `i` holds the indices `≡ 8i..8i+8 mod 64`.
    let mut acc = [_mm256_setzero_ps(); 8];
    for d in (0..np).step_by(64) {
        for (i, a) in acc.iter_mut().enumerate() {
            let at = d + 8 * i;
            // SAFETY: `at + 8 <= np <= hd`: inside the row and `q`.
            *a = unsafe { _mm256_fmadd_ps(load_f16(r.add(at)), _mm256_loadu_ps(q.add(at)), *a) };
        }
    }
    let lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
    let hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
    let mut sum = f64::from(tree16(lo, hi));
    for d in np..hd {
        // SAFETY: `d < hd`: inside the row and `q`.
        sum += f64::from(unsafe { (*r.add(d)).to_f32() * *q.add(d) });
    }
    sum as f32
}

/// `ops::ggml::kq_dots`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn kq_dots(q: &[f32], g: usize, k: &Rows<'_>, lanes16: bool, scores: &mut [f32], ld: usize) {
    let hd = k.hd();
    assert!(q.len() >= g * hd);
    assert!(!lanes16 || hd.is_multiple_of(16));
    let np = hd & !63;
    for j in 0..k.n() {
        let r = k.row(j).as_ptr();
        if !lanes16 {
            for h in 0..g {
                // SAFETY: `r` is a row of `hd` values (`Rows::row`); head `h < g` of `q`
                // holds `hd`.
                scores[h * ld + j] = unsafe { kq64(r, q.as_ptr().add(h * hd), hd, np) };
            }
            continue;
        }
        let mut h0 = 0;
        while h0 < g {
            let gb = (g - h0).min(4);
            let mut put = |vals: &[f32]| {
                for (h, &v) in vals.iter().enumerate() {
                    scores[(h0 + h) * ld + j] = v;
                }
            };
            // SAFETY: `r` is a row of `hd` values, a multiple of 16 (asserted); `q` holds
            // `g >= h0 + gb` heads.
            unsafe {
                match gb {
                    1 => put(&kq16::<1>(r, q, h0, hd)),
                    2 => put(&kq16::<2>(r, q, h0, hd)),
                    3 => put(&kq16::<3>(r, q, h0, hd)),
                    _ => put(&kq16::<4>(r, q, h0, hd)),
                }
            }
            h0 += gb;
        }
    }
}

/// `ops::ggml::dots_f32` (a 16-lane accumulator as two 8-lane halves).
#[target_feature(enable = "avx2,fma,f16c")]
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
        // Four 16-lane accumulators (one for `lanes16`), each as (low, high) halves.
        let mut acc = [(_mm256_setzero_ps(), _mm256_setzero_ps()); 4];
        let (step, k) = if lanes16 { (16, 1) } else { (64, 4) };
        for d in (0..np).step_by(step) {
            for (i, a) in acc.iter_mut().take(k).enumerate() {
                // SAFETY: `d + 16·i + 16 <= np <= n`: inside the row and `x`.
                unsafe {
                    let (wc, xc) = (wp.add(d + 16 * i), xp.add(d + 16 * i));
                    a.0 = _mm256_fmadd_ps(_mm256_loadu_ps(wc), _mm256_loadu_ps(xc), a.0);
                    a.1 = _mm256_fmadd_ps(
                        _mm256_loadu_ps(wc.add(8)),
                        _mm256_loadu_ps(xc.add(8)),
                        a.1,
                    );
                }
            }
        }
        *o = if lanes16 {
            tree16(acc[0].0, acc[0].1)
        } else {
            let half = |h: fn(&(__m256, __m256)) -> __m256| {
                _mm256_add_ps(
                    _mm256_add_ps(h(&acc[0]), h(&acc[2])),
                    _mm256_add_ps(h(&acc[1]), h(&acc[3])),
                )
            };
            let mut s = tree16(half(|a| a.0), half(|a| a.1));
            // `sumf += x[i]*y[i]`: a product, then a sum (ggml's compiler does not fuse them).
            for (a, b) in row[np..].iter().zip(&x[np..]) {
                s += a * b;
            }
            s
        };
    }
}

/// `ops::ggml::exp_block_sums`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn exp_block_sums(x: &mut [f32], max: f32) -> f64 {
    assert!(x.len().is_multiple_of(16));
    let m = _mm256_set1_ps(max);
    let mut sum = 0.0f64;
    for block in x.chunks_exact_mut(16) {
        let p = block.as_mut_ptr();
        // SAFETY: `block` holds 16 f32.
        unsafe {
            let lo = exp(_mm256_sub_ps(_mm256_loadu_ps(p), m));
            let hi = exp(_mm256_sub_ps(_mm256_loadu_ps(p.add(8)), m));
            _mm256_storeu_ps(p, lo);
            _mm256_storeu_ps(p.add(8), hi);
            sum += f64::from(tree16(lo, hi));
        }
    }
    sum
}

/// Up to 8 f32 at `p` (`r` of them, `r <= 8`), zeros after.
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set; `p` is valid for `r` reads.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load_n(p: *const f32, r: usize) -> __m256 {
    // SAFETY: 8 or, under the mask, `r` values readable (caller contract).
    unsafe {
        if r >= 8 {
            _mm256_loadu_ps(p)
        } else {
            _mm256_maskload_ps(p, tail_mask(r))
        }
    }
}

/// Stores the first `r` lanes (`r` capped at 8) of `v` at `p`.
///
/// # Safety
/// The CPU supports the `Isa::Avx2` set; `p` is valid for `min(r, 8)` writes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store_n(p: *mut f32, r: usize, v: __m256) {
    // SAFETY: as in `load_n`, for writes.
    unsafe {
        if r >= 8 {
            _mm256_storeu_ps(p, v);
        } else if r > 0 {
            _mm256_maskstore_ps(p, tail_mask(r), v);
        }
    }
}

/// Lane `lane` of the value sums for `G` heads from `h0`: the chain of FMAs over its rows
/// (`first`, `first + lanes`, …), 2 × 8 values of each head at a time in registers, into
/// `dst[(h0 + h)·stride + d]`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
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
    for d0 in (0..hd).step_by(16) {
        let mut a = [[_mm256_setzero_ps(); 2]; G];
        let mut j = first;
        while j < n {
            let row = v.row(j);
            let vc = [load_f16_tail(row, d0), {
                if d0 + 8 < hd {
                    load_f16_tail(row, d0 + 8)
                } else {
                    _mm256_setzero_ps()
                }
            }];
            for (h, ah) in a.iter_mut().enumerate() {
                let w = _mm256_set1_ps(p[(h0 + h) * ld + j]);
                ah[0] = _mm256_fmadd_ps(w, vc[0], ah[0]);
                ah[1] = _mm256_fmadd_ps(w, vc[1], ah[1]);
            }
            j += lanes;
        }
        for (h, ah) in a.iter().enumerate() {
            let at = (h0 + h) * stride + d0;
            // SAFETY: `dst[at..at + min(16, hd − d0)]` is inside `dst` (asserted).
            unsafe {
                store_n(dst.as_mut_ptr().add(at), hd - d0, ah[0]);
                store_n(
                    dst.as_mut_ptr().add(at + 8),
                    (hd - d0).saturating_sub(8),
                    ah[1],
                );
            }
        }
    }
}

/// `y[h][d] = op(x[h][0..k][d])` for `g` heads of `k ≤ 8` rows of `hd` (`x`: `[g][k][hd]`;
/// head `h` of `y` at `y_at(h)`), 8 values at a time.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn combine(
    x: &[f32],
    k: usize,
    g: usize,
    hd: usize,
    y: &mut [f32],
    y_at: impl Fn(usize) -> usize,
    op: impl Fn(&[__m256; 8]) -> __m256,
) {
    assert!(k <= 8 && x.len() >= g * k * hd);
    for h in 0..g {
        let yh = y_at(h);
        assert!(y.len() >= yh + hd);
        for d in (0..hd).step_by(8) {
            let mut t = [_mm256_setzero_ps(); 8];
            for (r, tr) in t.iter_mut().enumerate().take(k) {
                // SAFETY: row `r < k` of head `h` holds `hd` values at `(h·k + r)·hd`; at
                // most `hd − d` of them are read.
                *tr = unsafe { load_n(x.as_ptr().add((h * k + r) * hd + d), hd - d) };
            }
            // SAFETY: `y[yh + d..yh + hd]` is inside `y` (asserted); at most `hd − d` written.
            unsafe { store_n(y.as_mut_ptr().add(yh + d), hd - d, op(&t)) };
        }
    }
}

/// `((t0 + t4) + (t2 + t6)) + ((t1 + t5) + (t3 + t7))` (see the AVX-512 `tree8`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tree8(t: &[__m256; 8]) -> __m256 {
    let add = |a, b| _mm256_add_ps(a, b);
    add(
        add(add(t[0], t[4]), add(t[2], t[6])),
        add(add(t[1], t[5]), add(t[3], t[7])),
    )
}

/// `ops::ggml::pv`, as the AVX-512 version: lanes meeting first in the reduction tree are
/// summed together, so the per-lane sums stay in a small buffer (`acc`: `[g][8][hd]` of lane
/// sums, then `[g][8][hd]` of the tree's first level).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
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
            combine(tmp, 2, g, hd, b, node, |t| _mm256_add_ps(t[0], t[1]));
        } else {
            combine(tmp, 8, g, hd, b, node, |t| tree8(t));
        }
    }
    combine(b, 8, g, hd, out, |h| h * hd, |t| tree8(t));
}
