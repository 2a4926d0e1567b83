//! The scalar reference kernels: one dot product per weight type and the activation
//! quantizers. Plain integer arithmetic per block, then one float scaling per block (per
//! super-block for the k-quants), as ggml's `*_generic` functions. These stay forever: every
//! SIMD kernel is tested against them, and they run where no SIMD level applies.

pub(crate) mod float_ggml;

use super::{ActKind, ActRow, Q8K_SUMS, QuantizeActsFn, RowsFn};
use crate::quant::{
    BlockIq1M, BlockIq1S, BlockIq2S, BlockIq2Xs, BlockIq2Xxs, BlockIq3S, BlockIq3Xxs, BlockMxfp4,
    IQ1_DELTA, MXFP4_VALUES, e8m0_half, unpack_iq1m, unpack_iq1s, unpack_iq2s, unpack_iq2xs,
    unpack_iq2xxs, unpack_iq3s, unpack_iq3xxs,
};
use crate::quant::{
    BlockIq4Nl, BlockIq4Xs, BlockQ2K, BlockQ3K, BlockQ4_0, BlockQ4_1, BlockQ4K, BlockQ5_0,
    BlockQ5_1, BlockQ5K, BlockQ6K, BlockQ8_0, F16Bytes, GgmlType, IQ4_NL_VALUES, as_blocks,
    iq4xs_scale, q3k_scales, q8k_block, scale_min_k4, unpack_nibbles, unpack_q2k, unpack_q3k,
    unpack_q4k, unpack_q5, unpack_q5k, unpack_q6k,
};

/// An activation row as safe slices.
struct Acts<'a> {
    f: &'a [f32],
    qs: &'a [i8],
    d: &'a [f32],
    sums: &'a [i16],
    /// `Q8` only: ggml's `block_q8_1.s` per block.
    s: &'a [f32],
}

impl Acts<'_> {
    /// # Safety
    /// `a` points at a row of `n` values of form `kind` (see [`ActRow`]).
    unsafe fn new<'a>(a: ActRow, n: usize, kind: ActKind) -> Acts<'a> {
        // SAFETY: the caller guarantees the arrays `kind` uses are valid for these lengths;
        // the others are never read and are made empty.
        unsafe {
            match kind {
                ActKind::F32 | ActKind::F16 | ActKind::Bf16 => Acts {
                    f: std::slice::from_raw_parts(a.f, n),
                    qs: &[],
                    d: &[],
                    sums: &[],
                    s: &[],
                },
                ActKind::Q8 | ActKind::Q8K => Acts {
                    f: &[],
                    qs: std::slice::from_raw_parts(a.qs, n),
                    d: std::slice::from_raw_parts(a.d, n / kind.block()),
                    sums: std::slice::from_raw_parts(
                        a.sums,
                        n / kind.block() * kind.sums_per_block(),
                    ),
                    s: if kind == ActKind::Q8 {
                        std::slice::from_raw_parts(a.s, n / kind.block())
                    } else {
                        &[]
                    },
                },
            }
        }
    }
}

/// Σ w·x over one block, with weights already as integers.
#[inline(always)]
fn idot<W: Copy + Into<i32>>(w: &[W], x: &[i8]) -> i32 {
    w.iter()
        .zip(x)
        .map(|(&w, &x)| w.into() * i32::from(x))
        .sum()
}

fn dot_f32(w: &[u8], a: &Acts) -> f32 {
    w.chunks_exact(4).zip(a.f).fold(0.0, |s, (b, &x)| {
        s + f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * x
    })
}

fn dot_f16(w: &[u8], a: &Acts) -> f32 {
    w.chunks_exact(2).zip(a.f).fold(0.0, |s, (b, &x)| {
        s + half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32() * x
    })
}

fn dot_bf16(w: &[u8], a: &Acts) -> f32 {
    w.chunks_exact(2).zip(a.f).fold(0.0, |s, (b, &x)| {
        s + f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16) * x
    })
}

fn dot_q4_0(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockQ4_0>(w).iter().enumerate() {
        let q = unpack_nibbles(&b.qs).map(|q| i32::from(q) - 8);
        let isum = idot(&q, &a.qs[32 * i..32 * i + 32]);
        acc += b.d.get() * a.d[i] * isum as f32;
    }
    acc
}

fn dot_q4_1(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockQ4_1>(w).iter().enumerate() {
        let isum = idot(&unpack_nibbles(&b.qs), &a.qs[32 * i..32 * i + 32]);
        acc += b.d.get() * a.d[i] * isum as f32 + b.m.get() * a.s[i];
    }
    acc
}

fn dot_q5_0(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockQ5_0>(w).iter().enumerate() {
        let q = unpack_q5(b.qh, &b.qs).map(|q| i32::from(q) - 16);
        let isum = idot(&q, &a.qs[32 * i..32 * i + 32]);
        acc += b.d.get() * a.d[i] * isum as f32;
    }
    acc
}

fn dot_q5_1(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockQ5_1>(w).iter().enumerate() {
        let isum = idot(&unpack_q5(b.qh, &b.qs), &a.qs[32 * i..32 * i + 32]);
        acc += b.d.get() * a.d[i] * isum as f32 + b.m.get() * a.s[i];
    }
    acc
}

fn dot_q8_0(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockQ8_0>(w).iter().enumerate() {
        let isum = idot(&b.qs, &a.qs[32 * i..32 * i + 32]);
        acc += b.d.get() * a.d[i] * isum as f32;
    }
    acc
}

fn dot_iq4_nl(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockIq4Nl>(w).iter().enumerate() {
        let q = unpack_nibbles(&b.qs).map(|q| IQ4_NL_VALUES[usize::from(q)]);
        let isum = idot(&q, &a.qs[32 * i..32 * i + 32]);
        acc += b.d.get() * a.d[i] * isum as f32;
    }
    acc
}

fn dot_q2_k(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockQ2K>(w).iter().enumerate() {
        let q = unpack_q2k(b);
        let x = &a.qs[256 * i..256 * i + 256];
        let (mut isum, mut summ) = (0i32, 0i32);
        for g in 0..16 {
            let sc = i32::from(b.scales[g] & 0xF);
            let m = i32::from(b.scales[g] >> 4);
            isum += sc * idot(&q[16 * g..16 * g + 16], &x[16 * g..16 * g + 16]);
            summ += m * i32::from(a.sums[Q8K_SUMS * i + g]);
        }
        acc += a.d[i] * b.d.get() * isum as f32 - a.d[i] * b.dmin.get() * summ as f32;
    }
    acc
}

fn dot_q3_k(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockQ3K>(w).iter().enumerate() {
        let q = unpack_q3k(b);
        let sc = q3k_scales(&b.scales);
        let x = &a.qs[256 * i..256 * i + 256];
        let mut isum = 0i32;
        for g in 0..16 {
            isum +=
                (i32::from(sc[g]) - 32) * idot(&q[16 * g..16 * g + 16], &x[16 * g..16 * g + 16]);
        }
        acc += a.d[i] * b.d.get() * isum as f32;
    }
    acc
}

/// `Q4_K` and `Q5_K` share everything but the unpacking.
#[inline(always)]
fn dot_k32(q: &[u8; 256], scales: &[u8; 12], d: f32, dmin: f32, a: &Acts, i: usize) -> f32 {
    let x = &a.qs[256 * i..256 * i + 256];
    let (mut isum, mut summ) = (0i32, 0i32);
    for g in 0..8 {
        let (sc, m) = scale_min_k4(g, scales);
        isum += i32::from(sc) * idot(&q[32 * g..32 * g + 32], &x[32 * g..32 * g + 32]);
        let bsum = i32::from(a.sums[Q8K_SUMS * i + 16 + g]);
        summ += i32::from(m) * bsum;
    }
    a.d[i] * d * isum as f32 - a.d[i] * dmin * summ as f32
}

fn dot_q4_k(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockQ4K>(w).iter().enumerate() {
        acc += dot_k32(&unpack_q4k(b), &b.scales, b.d.get(), b.dmin.get(), a, i);
    }
    acc
}

fn dot_q5_k(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockQ5K>(w).iter().enumerate() {
        acc += dot_k32(&unpack_q5k(b), &b.scales, b.d.get(), b.dmin.get(), a, i);
    }
    acc
}

fn dot_q6_k(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockQ6K>(w).iter().enumerate() {
        let q = unpack_q6k(b);
        let x = &a.qs[256 * i..256 * i + 256];
        let mut isum = 0i32;
        for g in 0..16 {
            isum += i32::from(b.scales[g]) * idot(&q[16 * g..16 * g + 16], &x[16 * g..16 * g + 16]);
        }
        acc += a.d[i] * b.d.get() * isum as f32;
    }
    acc
}

fn dot_iq4_xs(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockIq4Xs>(w).iter().enumerate() {
        let x = &a.qs[256 * i..256 * i + 256];
        let mut isum = 0i32;
        for g in 0..8 {
            let qs = &b.qs[16 * g..16 * g + 16];
            let q: [i8; 32] = std::array::from_fn(|j| {
                let nibble = if j < 16 { qs[j] & 0xF } else { qs[j - 16] >> 4 };
                IQ4_NL_VALUES[usize::from(nibble)]
            });
            isum += (i32::from(iq4xs_scale(b, g)) - 32) * idot(&q, &x[32 * g..32 * g + 32]);
        }
        acc += a.d[i] * b.d.get() * isum as f32;
    }
    acc
}

/// ggml's `ggml_vec_dot_mxfp4_q8_0_generic`: per block `d_x · e8m0_half(e)` times the integer
/// sum, summed in one float.
fn dot_mxfp4(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockMxfp4>(w).iter().enumerate() {
        let q = unpack_nibbles(&b.qs).map(|q| MXFP4_VALUES[usize::from(q)]);
        let isum = idot(&q, &a.qs[32 * i..32 * i + 32]);
        acc += a.d[i] * e8m0_half(b.e) * isum as f32;
    }
    acc
}

/// Σ_g (2·sc[g] + 1) · (group `g`'s integer dot) over groups of `G` values of a super-block.
#[inline(always)]
fn iq_isum<const G: usize>(q: &[i8; 256], sc: &[u8], x: &[i8]) -> i32 {
    (0..256 / G)
        .map(|g| (2 * i32::from(sc[g]) + 1) * idot(&q[G * g..G * g + G], &x[G * g..G * g + G]))
        .sum()
}

/// Group scales in a 16-entry array (types with 8 groups use the first 8).
#[inline(always)]
fn widen<const N: usize>(sc: [u8; N]) -> [u8; 16] {
    std::array::from_fn(|g| if g < N { sc[g] } else { 0 })
}

/// The IQ2/IQ3 types as ggml's `ggml_vec_dot_iq*_q8_K_generic`: per super-block
/// `d_w · d_x · isum` summed in one float, times `k` (the grids' common factor: 1/8 for IQ2,
/// 1/4 for `IQ3_XXS`, 1 for `IQ3_S`).
#[inline(always)]
fn dot_iq_grid<B: crate::quant::Block, const G: usize>(
    w: &[u8],
    a: &Acts,
    k: f32,
    unpack: impl Fn(&B) -> ([i8; 256], F16Bytes, [u8; 16]),
) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<B>(w).iter().enumerate() {
        let (q, d, sc) = unpack(b);
        let isum = iq_isum::<G>(&q, &sc, &a.qs[256 * i..256 * i + 256]);
        acc += d.get() * a.d[i] * isum as f32;
    }
    k * acc
}

fn dot_iq2_xxs(w: &[u8], a: &Acts) -> f32 {
    dot_iq_grid::<BlockIq2Xxs, 32>(w, a, 0.125, |b| {
        let (q, sc) = unpack_iq2xxs(b);
        (q, b.d, widen(sc))
    })
}

fn dot_iq2_xs(w: &[u8], a: &Acts) -> f32 {
    dot_iq_grid::<BlockIq2Xs, 16>(w, a, 0.125, |b| {
        let (q, sc) = unpack_iq2xs(b);
        (q, b.d, widen(sc))
    })
}

fn dot_iq2_s(w: &[u8], a: &Acts) -> f32 {
    dot_iq_grid::<BlockIq2S, 16>(w, a, 0.125, |b| {
        let (q, sc) = unpack_iq2s(b);
        (q, b.d, widen(sc))
    })
}

fn dot_iq3_xxs(w: &[u8], a: &Acts) -> f32 {
    dot_iq_grid::<BlockIq3Xxs, 32>(w, a, 0.25, |b| {
        let (q, sc) = unpack_iq3xxs(b);
        (q, b.d, widen(sc))
    })
}

fn dot_iq3_s(w: &[u8], a: &Acts) -> f32 {
    dot_iq_grid::<BlockIq3S, 32>(w, a, 1.0, |b| {
        let (q, sc) = unpack_iq3s(b);
        (q, b.d, widen(sc))
    })
}

/// ggml's `ggml_vec_dot_iq1_s_q8_K_generic`: per super-block
/// `d_w · d_x · (isum + 1/8 · Σ_g ±(2·sc + 1)·bsum_g)`, the shift term from the activation sums.
fn dot_iq1_s(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockIq1S>(w).iter().enumerate() {
        let (q, sc, delta) = unpack_iq1s(b);
        let isum = iq_isum::<32>(&q, &sc, &a.qs[256 * i..256 * i + 256]);
        let shift: i32 = (0..8)
            .map(|g| {
                let ls = 2 * i32::from(sc[g]) + 1;
                ls * i32::from(delta[g]) * i32::from(a.sums[Q8K_SUMS * i + 16 + g])
            })
            .sum();
        acc += b.d.get() * a.d[i] * (isum as f32 + IQ1_DELTA * shift as f32);
    }
    acc
}

/// ggml's `ggml_vec_dot_iq1_m_q8_K_generic`: as [`dot_iq1_s`] with 16-value scales and the
/// shift's sign per grid point of 8 (its sums taken from the activation values).
fn dot_iq1_m(w: &[u8], a: &Acts) -> f32 {
    let mut acc = 0.0f32;
    for (i, b) in as_blocks::<BlockIq1M>(w).iter().enumerate() {
        let (q, sc, delta, d) = unpack_iq1m(b);
        let x = &a.qs[256 * i..256 * i + 256];
        let isum = iq_isum::<16>(&q, &sc, x);
        let shift: i32 = (0..32)
            .map(|p| {
                let s: i32 = x[8 * p..8 * p + 8].iter().map(|&v| i32::from(v)).sum();
                (2 * i32::from(sc[p / 2]) + 1) * i32::from(delta[p]) * s
            })
            .sum();
        acc += d.get() * a.d[i] * (isum as f32 + IQ1_DELTA * shift as f32);
    }
    acc
}

macro_rules! rows_fns {
    ($( $name:ident => $dot:ident, $kind:ident; )*) => {
        $(
            /// Row kernel (see [`RowsFn`]).
            ///
            /// # Safety
            /// The [`RowsFn`] contract.
            unsafe fn $name(n: usize, w: *const u8, row_bytes: usize, nrows: usize, a: ActRow, y: *mut f32) {
                // SAFETY: the caller passes a row of `n` values of this kind.
                let acts = unsafe { Acts::new(a, n, ActKind::$kind) };
                for r in 0..nrows {
                    // SAFETY: row `r` lies inside the `nrows·row_bytes` bytes at `w`, and `y`
                    // has room for `nrows` results.
                    unsafe {
                        let row = std::slice::from_raw_parts(w.add(r * row_bytes), row_bytes);
                        *y.add(r) = $dot(row, &acts);
                    }
                }
            }
        )*
    };
}

rows_fns! {
    rows_f32 => dot_f32, F32;
    rows_f16 => dot_f16, F32;
    rows_bf16 => dot_bf16, F32;
    rows_q4_0 => dot_q4_0, Q8;
    rows_q4_1 => dot_q4_1, Q8;
    rows_q5_0 => dot_q5_0, Q8;
    rows_q5_1 => dot_q5_1, Q8;
    rows_q8_0 => dot_q8_0, Q8;
    rows_iq4_nl => dot_iq4_nl, Q8;
    rows_q2_k => dot_q2_k, Q8K;
    rows_q3_k => dot_q3_k, Q8K;
    rows_q4_k => dot_q4_k, Q8K;
    rows_q5_k => dot_q5_k, Q8K;
    rows_q6_k => dot_q6_k, Q8K;
    rows_iq4_xs => dot_iq4_xs, Q8K;
    rows_mxfp4 => dot_mxfp4, Q8;
    rows_iq2_xxs => dot_iq2_xxs, Q8K;
    rows_iq2_xs => dot_iq2_xs, Q8K;
    rows_iq2_s => dot_iq2_s, Q8K;
    rows_iq3_xxs => dot_iq3_xxs, Q8K;
    rows_iq3_s => dot_iq3_s, Q8K;
    rows_iq1_s => dot_iq1_s, Q8K;
    rows_iq1_m => dot_iq1_m, Q8K;
}

pub(crate) fn rows_kernel(ty: GgmlType) -> Option<RowsFn> {
    use GgmlType as T;
    Some(match ty {
        T::F32 => rows_f32,
        T::F16 => rows_f16,
        T::BF16 => rows_bf16,
        T::Q4_0 => rows_q4_0,
        T::Q4_1 => rows_q4_1,
        T::Q5_0 => rows_q5_0,
        T::Q5_1 => rows_q5_1,
        T::Q8_0 => rows_q8_0,
        T::IQ4_NL => rows_iq4_nl,
        T::Q2_K => rows_q2_k,
        T::Q3_K => rows_q3_k,
        T::Q4_K => rows_q4_k,
        T::Q5_K => rows_q5_k,
        T::Q6_K => rows_q6_k,
        T::IQ4_XS => rows_iq4_xs,
        T::MXFP4 => rows_mxfp4,
        T::IQ2_XXS => rows_iq2_xxs,
        T::IQ2_XS => rows_iq2_xs,
        T::IQ2_S => rows_iq2_s,
        T::IQ3_XXS => rows_iq3_xxs,
        T::IQ3_S => rows_iq3_s,
        T::IQ1_S => rows_iq1_s,
        T::IQ1_M => rows_iq1_m,
        _ => return None,
    })
}

/// Quantizes 32 values as llama.cpp's x86 `quantize_row_q8_0`/`quantize_row_q8_1` do at run
/// time: `(d, q)` with the unrounded scale `d = amax / 127` and `q = x · (127 / amax)` rounded
/// half to even (`_mm256_round_ps(_MM_ROUND_NEAREST)`) — not the reference quantizer's
/// `x · (1 / d)` rounded half away from zero.
#[inline(always)]
pub(crate) fn q8_block_runtime(x: &[f32]) -> (f32, [i8; 32]) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    (
        d,
        std::array::from_fn(|j| (x[j] * id).round_ties_even() as i8),
    )
}

/// Quantizes one row to the [`ActKind::Q8`] form with [`q8_block_runtime`]: the scale rounded
/// to f16 (as `block_q8_0` stores it), each block's integer sum, and `block_q8_1`'s
/// `s = f16(d · Σq)` (unrounded `d`).
///
/// # Safety
/// The [`QuantizeActsFn`] contract.
pub(crate) unsafe fn quantize_acts_q8(
    x: &[f32],
    qs: *mut i8,
    d: *mut f32,
    sums: *mut i16,
    s: *mut f32,
) {
    for (i, xb) in x.chunks_exact(32).enumerate() {
        let (scale, q) = q8_block_runtime(xb);
        let sum: i16 = q.iter().map(|&v| i16::from(v)).sum();
        // SAFETY: block `i` of a row of `x.len()` values lies inside the caller's buffers.
        unsafe {
            std::ptr::copy_nonoverlapping(q.as_ptr(), qs.add(32 * i), 32);
            *d.add(i) = F16Bytes::from_f32(scale).get();
            *sums.add(i) = sum;
            *s.add(i) = F16Bytes::from_f32(scale * f32::from(sum)).get();
        }
    }
}

/// Quantizes one row to the [`ActKind::Q8K`] form: ggml's `quantize_row_q8_K_ref`, which is
/// also what its x86 `quantize_row_q8_K` runs.
///
/// # Safety
/// The [`QuantizeActsFn`] contract.
pub(crate) unsafe fn quantize_acts_q8k(
    x: &[f32],
    qs: *mut i8,
    d: *mut f32,
    sums: *mut i16,
    _s: *mut f32,
) {
    for (i, xb) in x.chunks_exact(256).enumerate() {
        let (scale, q, bsums) = q8k_block(xb);
        // SAFETY: super-block `i` lies inside the caller's buffers.
        unsafe {
            std::ptr::copy_nonoverlapping(q.as_ptr(), qs.add(256 * i), 256);
            *d.add(i) = scale;
            let s = sums.add(Q8K_SUMS * i);
            std::ptr::copy_nonoverlapping(bsums.as_ptr(), s, 16);
            for g in 0..8 {
                *s.add(16 + g) = bsums[2 * g] + bsums[2 * g + 1];
            }
        }
    }
}

pub(crate) fn quantize_acts_kernel(kind: ActKind) -> Option<QuantizeActsFn> {
    match kind {
        ActKind::F32 => None,
        ActKind::Q8 => Some(quantize_acts_q8),
        ActKind::Q8K => Some(quantize_acts_q8k),
        ActKind::F16 => Some(float_ggml::round_acts_f16),
        ActKind::Bf16 => Some(float_ggml::round_acts_bf16),
    }
}
