//! AVX-512 twins of the kernels in `ops::ggml` (ggml's own arithmetic): the same operations in
//! the same order as the scalar versions, so the results are the same bits.
//!
//! Every function carries `#[target_feature]` for the whole `Isa::Avx512` set; callers must have
//! checked that the CPU has it (`Ops` does, once, when it is built).

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

/// `ops::ggml::kq_dots`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
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
            scores[h * ld + j] = if lanes16 {
                let mut acc = _mm512_setzero_ps();
                for d in (0..hd).step_by(16) {
                    // SAFETY: `d + 16 <= hd` (hd is a multiple of 16), inside `row` and `q`.
                    acc = unsafe { _mm512_fmadd_ps(load_f16(r.add(d)), load_f16(qp.add(d)), acc) };
                }
                tree16(acc)
            } else {
                let mut acc = [_mm512_setzero_ps(); 4];
                for d in (0..np).step_by(64) {
                    for (i, a) in acc.iter_mut().enumerate() {
                        let at = d + 16 * i;
                        // SAFETY: `at + 16 <= np <= hd`, inside `row` and `q`.
                        *a = unsafe {
                            _mm512_fmadd_ps(load_f16(r.add(at)), load_f16(qp.add(at)), *a)
                        };
                    }
                }
                let s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]));
                let mut sum = f64::from(tree16(s));
                for (a, b) in row[np..].iter().zip(&q[np..]) {
                    sum += f64::from(a.to_f32() * b.to_f32());
                }
                sum as f32
            };
        }
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

/// `ops::ggml::pv_accum`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
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
    for j in 0..v.n() {
        let row = v.row(j).as_ptr();
        let lane = (lane0 + j) % lanes;
        for h in 0..g {
            let w = _mm512_set1_ps(p16[h * ld + j].to_f32());
            let a = acc[(h * lanes + lane) * hd..][..hd].as_mut_ptr();
            for d in (0..hd).step_by(16) {
                let m = mask(hd - d);
                // SAFETY: the mask selects lanes `d..hd` only, inside the row and `a`;
                // masked-out lanes are not accessed.
                unsafe {
                    let vv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row.add(d).cast()));
                    let s = _mm512_fmadd_ps(w, vv, _mm512_maskz_loadu_ps(m, a.add(d)));
                    _mm512_mask_storeu_ps(a.add(d), m, s);
                }
            }
        }
    }
}

/// `ops::ggml::pv_reduce`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")]
pub fn pv_reduce(acc: &[f32], lanes: usize, out: &mut [f32]) {
    let hd = out.len();
    assert!(acc.len() >= lanes * hd && (lanes == 16 || lanes == 64));
    let a = acc.as_ptr();
    for d in (0..hd).step_by(16) {
        let m = mask(hd - d);
        // SAFETY: lane `l` reads `acc[l·hd + d..]` under the mask, inside `acc`.
        let ld = |l: usize| unsafe { _mm512_maskz_loadu_ps(m, a.add(l * hd + d)) };
        let s: [__m512; 16] = if lanes == 16 {
            std::array::from_fn(ld)
        } else {
            std::array::from_fn(|i| {
                _mm512_add_ps(
                    _mm512_add_ps(ld(i), ld(i + 32)),
                    _mm512_add_ps(ld(i + 16), ld(i + 48)),
                )
            })
        };
        let b: [__m512; 8] = std::array::from_fn(|i| _mm512_add_ps(s[i], s[i + 8]));
        let c: [__m512; 4] = std::array::from_fn(|i| _mm512_add_ps(b[i], b[i + 4]));
        let r = _mm512_add_ps(_mm512_add_ps(c[0], c[2]), _mm512_add_ps(c[1], c[3]));
        // SAFETY: the mask selects `out[d..hd]`.
        unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr().add(d), m, r) };
    }
}
