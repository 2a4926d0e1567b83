//! AVX2 twins of the kernels in `ops::ggml` (ggml's arithmetic as its AVX-512 build does it):
//! a 16-lane accumulator is two 8-lane halves, AVX-512's `scalef` is two exact-then-rounding
//! multiplications, so the results are the same bits as the scalar versions.
//!
//! Every function carries `#[target_feature]` for the whole `Isa::Avx2` set; callers must have
//! checked that the CPU has it (`Ops` does, once, when it is built).

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

/// `ops::ggml::kq_dots`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn kq_dots(q16: &[f16], g: usize, k: &Rows<'_>, lanes16: bool, scores: &mut [f32], ld: usize) {
    let hd = k.hd();
    assert!(q16.len() >= g * hd);
    assert!(!lanes16 || hd.is_multiple_of(16));
    let np = hd & !63;
    for j in 0..k.n() {
        let row = k.row(j);
        for h in 0..g {
            let q = &q16[h * hd..(h + 1) * hd];
            let (r, qp) = (row.as_ptr(), q.as_ptr());
            let fma = |at: usize, a: __m256| {
                // SAFETY: both arms below load `at..at + 8` with `at + 8 <= hd` (a multiple
                // of 16, or at most `np`), inside `row` and `q`.
                unsafe { _mm256_fmadd_ps(load_f16(r.add(at)), load_f16(qp.add(at)), a) }
            };
            scores[h * ld + j] = if lanes16 {
                let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
                for d in (0..hd).step_by(16) {
                    lo = fma(d, lo);
                    hi = fma(d + 8, hi);
                }
                tree16(lo, hi)
            } else {
                // Lane block `i` (8 lanes) holds the indices `≡ 8i..8i+8 mod 64`.
                let mut acc = [_mm256_setzero_ps(); 8];
                for d in (0..np).step_by(64) {
                    for (i, a) in acc.iter_mut().enumerate() {
                        *a = fma(d + 8 * i, *a);
                    }
                }
                let lo =
                    _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
                let hi =
                    _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
                let mut sum = f64::from(tree16(lo, hi));
                for (a, b) in row[np..].iter().zip(&q[np..]) {
                    sum += f64::from(a.to_f32() * b.to_f32());
                }
                sum as f32
            };
        }
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

/// `ops::ggml::pv_accum`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn pv_accum(
    p16: &[f16],
    ld: usize,
    g: usize,
    v: &Rows<'_>,
    lane0: usize,
    lanes: usize,
    acc: &mut [f32],
) {
    let hd = v.hd();
    assert!(acc.len() >= g * lanes * hd);
    let full = hd & !7;
    for j in 0..v.n() {
        let row = v.row(j);
        let lane = (lane0 + j) % lanes;
        for h in 0..g {
            let w = _mm256_set1_ps(p16[h * ld + j].to_f32());
            let a = acc[(h * lanes + lane) * hd..][..hd].as_mut_ptr();
            for d in (0..full).step_by(8) {
                // SAFETY: `d + 8 <= hd`, inside the row and `a`.
                unsafe {
                    let s = _mm256_fmadd_ps(
                        w,
                        load_f16(row.as_ptr().add(d)),
                        _mm256_loadu_ps(a.add(d)),
                    );
                    _mm256_storeu_ps(a.add(d), s);
                }
            }
            if full < hd {
                let m = tail_mask(hd - full);
                let vv = load_f16_tail(row, full);
                // SAFETY: the mask selects `full..hd` of `a`; masked-out lanes are not accessed.
                unsafe {
                    let s = _mm256_fmadd_ps(w, vv, _mm256_maskload_ps(a.add(full), m));
                    _mm256_maskstore_ps(a.add(full), m, s);
                }
            }
        }
    }
}

/// `ops::ggml::pv_reduce`.
#[target_feature(enable = "avx2,fma,f16c")]
pub fn pv_reduce(acc: &[f32], lanes: usize, out: &mut [f32]) {
    let hd = out.len();
    assert!(acc.len() >= lanes * hd && (lanes == 16 || lanes == 64));
    let a = acc.as_ptr();
    for d in (0..hd).step_by(8) {
        let m = tail_mask((hd - d).min(8));
        let all = hd - d >= 8;
        // SAFETY: lane `l` reads `acc[l·hd + d..]`, 8 values or the masked tail of the row,
        // inside `acc`; masked-out lanes are not accessed.
        let ld = |l: usize| unsafe {
            if all {
                _mm256_loadu_ps(a.add(l * hd + d))
            } else {
                _mm256_maskload_ps(a.add(l * hd + d), m)
            }
        };
        let s: [__m256; 16] = if lanes == 16 {
            std::array::from_fn(ld)
        } else {
            std::array::from_fn(|i| {
                _mm256_add_ps(
                    _mm256_add_ps(ld(i), ld(i + 32)),
                    _mm256_add_ps(ld(i + 16), ld(i + 48)),
                )
            })
        };
        let b: [__m256; 8] = std::array::from_fn(|i| _mm256_add_ps(s[i], s[i + 8]));
        let c: [__m256; 4] = std::array::from_fn(|i| _mm256_add_ps(b[i], b[i + 4]));
        let r = _mm256_add_ps(_mm256_add_ps(c[0], c[2]), _mm256_add_ps(c[1], c[3]));
        // SAFETY: as for the loads, on `out[d..hd]`.
        unsafe {
            if all {
                _mm256_storeu_ps(out.as_mut_ptr().add(d), r);
            } else {
                _mm256_maskstore_ps(out.as_mut_ptr().add(d), m, r);
            }
        }
    }
}
