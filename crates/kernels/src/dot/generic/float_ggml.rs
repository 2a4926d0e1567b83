//! Scalar twins of llama.cpp's float mat-mul: `F32`, `F16` and `BF16` weights in its order and
//! rounding, as ggml-cpu runs them on x86-64 built with AVX-512 and AVX512-BF16 (the build the
//! project's reference logits come from).
//!
//! ggml first converts the activations to the weight type's `vec_dot_type` (`F16` → f16 by
//! `ggml_cpu_fp32_to_fp16`, `BF16` → bf16 by `ggml_cpu_fp32_to_bf16`, both nearest-even;
//! [`round_acts_f16`], [`round_acts_bf16`] keep the rounded values as `f32`, an exact
//! widening). Then one of two orders:
//! - [`GgmlPath::VecDot`] — `ggml_vec_dot_f32` / `ggml_vec_dot_f16`: the first `n & !63`
//!   products FMA'd into 64 lanes (four 16-lane accumulators), reduced by [`tree64`]; the rest
//!   added one by one (f32: `sumf += x·y` in f32; f16: in f64, each product rounded to f32).
//!   `ggml_vec_dot_bf16` (AVX512-BF16): two 16-lane accumulators over steps of 64 values, each
//!   lane taking a pair of values per `VDPBF16PS` ([`dpbf16`]); each reduced by [`tree16`] and
//!   added in f64; the rest as f16's.
//! - [`GgmlPath::Sgemm`] — llamafile's `tinyBLAS`: one 16-lane accumulator per output, FMA (f32,
//!   f16: 16 values per step) or `VDPBF16PS` (bf16: 32 values per step), reduced by [`tree16`].
//!
//! Lane `l` holds the values whose index is `l` modulo the lane count (for `VDPBF16PS`, lane `l`
//! of a 32-value step the values `2l` and `2l + 1`).

use crate::dot::{ActRow, GgmlPath, RowsFn};
use crate::ops::ggml::{tree16, tree64};
use crate::quant::GgmlType;

/// An f32 subnormal flushed to a zero of its sign (VDPBF16PS's FTZ on output, DAZ on input).
#[inline(always)]
pub(crate) fn ftz(v: f32) -> f32 {
    if v.is_subnormal() {
        f32::from_bits(v.to_bits() & 0x8000_0000)
    } else {
        v
    }
}

/// bf16 bits widened to f32.
#[inline(always)]
fn bf16(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// One lane of `VDPBF16PS`: `acc += a1·b1`, then `acc += a0·b0` (the odd value of the pair
/// first), each an FMA rounded to nearest with bf16 inputs, the accumulator and each result
/// flushed to zero when subnormal (checked against the instruction on random and extreme
/// values).
#[inline(always)]
pub(crate) fn dpbf16(acc: f32, a1: f32, b1: f32, a0: f32, b0: f32) -> f32 {
    let s = ftz(ftz(a1).mul_add(ftz(b1), ftz(acc)));
    ftz(ftz(a0).mul_add(ftz(b0), s))
}

/// `ggml_compute_fp32_to_bf16`: nearest even, NaN kept quiet.
#[inline(always)]
pub(crate) fn round_bf16(x: f32) -> f32 {
    let u = x.to_bits();
    let h = if (u & 0x7fff_ffff) > 0x7f80_0000 {
        (u >> 16) | 64
    } else {
        u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16
    };
    bf16(h as u16)
}

/// The activation rounding of `F16` weights (an [`crate::dot::QuantizeActsFn`]): `d[i]` is
/// `x[i]` rounded to f16, as f32.
///
/// # Safety
/// `d` is valid for `x.len()` writes.
pub(crate) unsafe fn round_acts_f16(
    x: &[f32],
    _qs: *mut i8,
    d: *mut f32,
    _sums: *mut i16,
    _s: *mut f32,
) {
    for (i, &v) in x.iter().enumerate() {
        // SAFETY: `i < x.len()` (caller).
        unsafe { *d.add(i) = half::f16::from_f32(v).to_f32() };
    }
}

/// The activation rounding of `BF16` weights: `d[i]` is `x[i]` rounded to bf16
/// ([`round_bf16`]), as f32.
///
/// # Safety
/// `d` is valid for `x.len()` writes.
pub(crate) unsafe fn round_acts_bf16(
    x: &[f32],
    _qs: *mut i8,
    d: *mut f32,
    _sums: *mut i16,
    _s: *mut f32,
) {
    for (i, &v) in x.iter().enumerate() {
        // SAFETY: `i < x.len()` (caller).
        unsafe { *d.add(i) = round_bf16(v) };
    }
}

/// Value `i` of a weight row of `ty` as f32.
#[inline(always)]
fn value(ty: GgmlType, w: &[u8], i: usize) -> f32 {
    match ty {
        GgmlType::F32 => f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]]),
        GgmlType::F16 => {
            half::f16::from_bits(u16::from_le_bytes([w[2 * i], w[2 * i + 1]])).to_f32()
        }
        _ => bf16(u16::from_le_bytes([w[2 * i], w[2 * i + 1]])),
    }
}

/// `ggml_vec_dot_f32` (`f64_tail` false) or `ggml_vec_dot_f16` (true) of `w` and `x`.
fn vec_dot(w: impl Fn(usize) -> f32, x: &[f32], f64_tail: bool) -> f32 {
    let np = x.len() & !63;
    let mut acc = [0.0f32; 64];
    for i in (0..np).step_by(64) {
        for l in 0..64 {
            acc[l] = w(i + l).mul_add(x[i + l], acc[l]);
        }
    }
    let tail = (np..x.len()).map(&w).zip(&x[np..]);
    if f64_tail {
        let mut s = f64::from(tree64(&acc));
        for (a, b) in tail {
            s += f64::from(a * b);
        }
        s as f32
    } else {
        let mut s = tree64(&acc);
        // A product, then a sum (ggml's compiler does not fuse them).
        for (a, b) in tail {
            s += a * b;
        }
        s
    }
}

/// `ggml_vec_dot_bf16` with AVX512-BF16.
fn vec_dot_bf16(w: impl Fn(usize) -> f32, x: &[f32]) -> f32 {
    let np = x.len() / 64 * 64;
    let mut c = [[0.0f32; 16]; 2];
    for i0 in (0..np).step_by(64) {
        for (h, acc) in c.iter_mut().enumerate() {
            for l in 0..16 {
                let i = i0 + 32 * h + 2 * l;
                acc[l] = dpbf16(acc[l], w(i + 1), x[i + 1], w(i), x[i]);
            }
        }
    }
    let mut s = f64::from(tree16(&c[0]));
    s += f64::from(tree16(&c[1]));
    for i in np..x.len() {
        s += f64::from(w(i) * x[i]);
    }
    s as f32
}

/// tinyBLAS's dot of `w` and `x` (a width of whole steps).
fn sgemm_dot(w: impl Fn(usize) -> f32, x: &[f32], bf16_pairs: bool) -> f32 {
    let mut acc = [0.0f32; 16];
    if bf16_pairs {
        for i0 in (0..x.len() / 32 * 32).step_by(32) {
            for l in 0..16 {
                let i = i0 + 2 * l;
                acc[l] = dpbf16(acc[l], w(i + 1), x[i + 1], w(i), x[i]);
            }
        }
    } else {
        for i0 in (0..x.len() / 16 * 16).step_by(16) {
            for l in 0..16 {
                acc[l] = w(i0 + l).mul_add(x[i0 + l], acc[l]);
            }
        }
    }
    tree16(&acc)
}

/// The scalar dot of one weight row of `ty` (bytes) with the rounded activations `x` in the
/// order of `path`.
pub(crate) fn dot(ty: GgmlType, path: GgmlPath, w: &[u8], x: &[f32]) -> f32 {
    let w = |i| value(ty, w, i);
    match (ty, path) {
        (GgmlType::BF16, GgmlPath::Sgemm) => sgemm_dot(w, x, true),
        (_, GgmlPath::Sgemm) => sgemm_dot(w, x, false),
        (GgmlType::BF16, _) => vec_dot_bf16(w, x),
        (GgmlType::F16, _) => vec_dot(w, x, true),
        _ => vec_dot(w, x, false),
    }
}

macro_rules! float_rows {
    ($( $name:ident => $ty:ident, $path:ident; )*) => {
        $(
            /// Row kernel (see [`RowsFn`]) over rounded activations.
            ///
            /// # Safety
            /// The [`RowsFn`] contract.
            unsafe fn $name(
                n: usize,
                w: *const u8,
                row_bytes: usize,
                nrows: usize,
                a: ActRow,
                y: *mut f32,
            ) {
                // SAFETY: the caller passes a row of `n` values.
                let x = unsafe { std::slice::from_raw_parts(a.f, n) };
                for r in 0..nrows {
                    // SAFETY: row `r` lies inside the `nrows·row_bytes` bytes at `w`, and `y`
                    // has room for `nrows` results.
                    unsafe {
                        let row = std::slice::from_raw_parts(w.add(r * row_bytes), row_bytes);
                        *y.add(r) = dot(GgmlType::$ty, GgmlPath::$path, row, x);
                    }
                }
            }
        )*
    };
}

float_rows! {
    f32_vecdot => F32, VecDot;
    f32_sgemm => F32, Sgemm;
    f16_vecdot => F16, VecDot;
    f16_sgemm => F16, Sgemm;
    bf16_vecdot => BF16, VecDot;
    bf16_sgemm => BF16, Sgemm;
}

/// The scalar row kernel of float type `ty` in the order of `path` (`VecDot` or `Sgemm`).
pub(crate) fn rows_kernel(ty: GgmlType, path: GgmlPath) -> Option<RowsFn> {
    use GgmlPath as P;
    use GgmlType as T;
    Some(match (ty, path) {
        (T::F32, P::VecDot) => f32_vecdot,
        (T::F32, P::Sgemm) => f32_sgemm,
        (T::F16, P::VecDot) => f16_vecdot,
        (T::F16, P::Sgemm) => f16_sgemm,
        (T::BF16, P::VecDot) => bf16_vecdot,
        (T::BF16, P::Sgemm) => bf16_sgemm,
        _ => return None,
    })
}
