//! Scalar twins of the kernels that reproduce ggml's CPU arithmetic bit for bit — the `_ggml`
//! methods of [`Ops`](super::Ops) and [`Ops::attention_ggml`](super::Ops::attention_ggml).
//!
//! Where ggml's CPU backend rounds through f16, approximates a function or sums in a particular
//! order, the result differs from exact f32 math by an ulp or (through f16) by 1e-3 relative, and
//! a model can amplify that. These kernels redo ggml's steps, as built for x86-64 with AVX-512 —
//! the build llama.cpp's reference logits come from — at every instruction-set level:
//!
//! - **GELU** (`GGML_GELU_FP16`): `x ≤ −10 → 0`, `x ≥ 10 → x`, otherwise `x` rounded to f16
//!   indexes a 65536-entry f16 table of `gelu(f16 value)` ([`gelu_mul`]).
//! - **`exp`** in SiLU and softmax: `ggml_v_expf`, a degree-5 polynomial with `scalef`
//!   (within 2 ulp of `expf`; [`expf`]), on whole 16-element blocks of a row; the tail of a row
//!   that is not a multiple of 16 uses libm's `expf`, as ggml's scalar loop does.
//! - **Dot products** of `mul_mat` on f16 operands: the f32 side is rounded to f16 first, then
//!   products are fused-multiply-added into 16 f32 lanes (llamafile's sgemm, batches of 2+
//!   columns) or 4 × 16 lanes (`ggml_vec_dot_f16`, one column), reduced in a fixed tree
//!   ([`tree16`]).
//!
//! Lane `l` of a dot product always holds the elements whose index is `l` modulo the lane count;
//! for attention's value sum the index is the cache row, counted from row 0 (see
//! [`attention`](super::attention)).

use std::sync::OnceLock;

use half::f16;

use super::generic::{Ahead, Rows};

// ---- GELU through ggml's f16 table ----

/// `ggml_gelu_f32` as ggml-cpu is compiled (GCC contracts `1 + a·x·x` into one FMA), with
/// `tanh` evaluated in f64 and rounded: after the table's rounding to f16 this equals glibc's
/// `tanhf` result for every entry (the test against ggml's own table checks all of them).
fn gelu_for_table(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const GELU_COEF_A: f32 = 0.044_715;
    let inner = (GELU_COEF_A * x).mul_add(x, 1.0);
    let t = f64::from(SQRT_2_OVER_PI * x * inner).tanh() as f32;
    0.5 * x * (1.0 + t)
}

/// `ggml_table_gelu_f16`: entry `i` is `f16(gelu(f16::from_bits(i)))`.
#[repr(C)]
pub(crate) struct GeluTable {
    pub(crate) entries: [f16; 65536],
    /// Lets a 32-bit gather at the last entry stay inside the allocation.
    _pad: f16,
}

/// The table, built on first use.
pub(crate) fn gelu_table() -> &'static GeluTable {
    static TABLE: OnceLock<Box<GeluTable>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = Box::new(GeluTable {
            entries: [f16::ZERO; 65536],
            _pad: f16::ZERO,
        });
        for (i, e) in t.entries.iter_mut().enumerate() {
            *e = f16::from_f32(gelu_for_table(f16::from_bits(i as u16).to_f32()));
        }
        t
    })
}

/// Forces the table now, so that the first GELU in a hot loop does not build it.
pub fn init_gelu_table() {
    gelu_table();
}

/// `y = gelu(x) · u` (`u` null: `gelu(x)`) as `ggml_vec_geglu_f32` / `ggml_vec_gelu_f32`
/// (for `x ≥ 10`: `x · u`; for `x ≤ −10`: 0, not `0 · u`).
///
/// # Safety
/// `x` valid for `n` reads, `y` for `n` writes (`y == x` or `y == u` allowed), `u` for `n`
/// reads when not null.
pub unsafe fn gelu_mul(n: usize, x: *const f32, u: *const f32, y: *mut f32) {
    let table = &gelu_table().entries;
    for i in 0..n {
        // SAFETY: `i < n`, pointers valid for `n` elements (caller contract).
        unsafe {
            let v = *x.add(i);
            *y.add(i) = if v <= -10.0 {
                0.0
            } else {
                let r = if v >= 10.0 {
                    v
                } else {
                    table[usize::from(f16::from_f32(v).to_bits())].to_f32()
                };
                if u.is_null() { r } else { r * *u.add(i) }
            };
        }
    }
}

// ---- ggml_v_expf ----

/// ggml_v_expf's constants (Arm optimized-routines `expf`): rounding shifter `1.5·2^23`,
/// `log2 e`, `ln 2` split in two, and the polynomial coefficients `c5..c1`.
pub(crate) mod expc {
    pub const SHIFT: f32 = f32::from_bits(0x4B40_0000);
    pub const LOG2E: f32 = f32::from_bits(0x3FB8_AA3B);
    pub const LN2_HI: f32 = f32::from_bits(0x3F31_7200);
    pub const LN2_LO: f32 = f32::from_bits(0x35BF_BE8E);
    pub const C5: f32 = f32::from_bits(0x3C07_2010);
    pub const C4: f32 = f32::from_bits(0x3D2B_9F17);
    pub const C3: f32 = f32::from_bits(0x3E2A_AF33);
    pub const C2: f32 = f32::from_bits(0x3EFF_FEDB);
    pub const C1: f32 = f32::from_bits(0x3F7F_FFF6);
}

/// `2^k` for `|k| ≤ 126`.
fn pow2(k: i32) -> f32 {
    f32::from_bits(((k + 127) as u32) << 23)
}

/// `ggml_v_expf` (AVX-512 version) for one lane: `x = n·ln2 + b`, `e^b` by a polynomial,
/// `scalef(j, n)`; `|n| > 192` gives 0 or +inf. `scalef`'s single rounding of `j · 2^n` is
/// reproduced as `(j · 2^h) · 2^(n−h)`, `h = n/2`: the first product is exact (normal range),
/// the second rounds once (also into subnormals).
pub fn expf(x: f32) -> f32 {
    use expc::*;
    let z = x.mul_add(LOG2E, SHIFT);
    let n = z - SHIFT;
    let b = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let u = b * b;
    let j = C5
        .mul_add(b, C4)
        .mul_add(u, C3.mul_add(b, C2))
        .mul_add(u, C1.mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // NaN `n` casts to 0 and `j` is NaN: the result stays NaN.
    let k = n as i32;
    let h = k >> 1;
    j * pow2(h) * pow2(k - h)
}

/// `y = silu(x) · u` (`u` null: `silu(x)`) as `ggml_vec_swiglu_f32` / `ggml_vec_silu_f32`:
/// `x / (1 + ggml_v_expf(−x))` on whole blocks of 16, libm's `expf` on the tail.
///
/// # Safety
/// `x` valid for `n` reads, `y` for `n` writes (`y == x` or `y == u` allowed), `u` for `n`
/// reads when not null.
pub unsafe fn silu_mul(n: usize, x: *const f32, u: *const f32, y: *mut f32) {
    let blocks = n & !15;
    for i in 0..n {
        // SAFETY: `i < n`, pointers valid for `n` elements (caller contract).
        unsafe {
            let v = *x.add(i);
            let e = if i < blocks { expf(-v) } else { (-v).exp() };
            let r = v / (1.0 + e);
            *y.add(i) = if u.is_null() { r } else { r * *u.add(i) };
        }
    }
}

// ---- reductions and dot products ----

/// `_mm512_reduce_add_ps` as GCC expands it: halves added pairwise down to one lane.
#[inline]
pub fn tree16(a: &[f32; 16]) -> f32 {
    let b: [f32; 8] = std::array::from_fn(|i| a[i] + a[i + 8]);
    let c: [f32; 4] = std::array::from_fn(|i| b[i] + b[i + 4]);
    (c[0] + c[2]) + (c[1] + c[3])
}

/// `ggml_vec_dot_f16`'s reduction of its four 16-lane accumulators (lane `l` of the 64 holds
/// the indices `≡ l mod 64`): `(acc0 + acc2) + (acc1 + acc3)`, then [`tree16`].
#[inline]
pub fn tree64(a: &[f32; 64]) -> f32 {
    let s: [f32; 16] = std::array::from_fn(|i| (a[i] + a[i + 32]) + (a[i + 16] + a[i + 48]));
    tree16(&s)
}

/// `out[r] = w_r · x` for the rows `w_r` of `w` (each `x.len()` wide), as ggml's `mul_mat`
/// computes an f32 product on x86 with AVX-512: `lanes16` (llamafile's sgemm, taken for a
/// product of 2+ tokens whose width is a multiple of 16): one 16-lane FMA accumulator over the
/// row in order, reduced by [`tree16`]; otherwise `ggml_vec_dot_f32`: the first `n & !63`
/// products FMA'd into 64 lanes (four 16-lane accumulators) reduced by [`tree64`], then the
/// remaining products added one by one (multiplied, then added: not fused).
pub fn dots_f32(w: &[f32], x: &[f32], lanes16: bool, out: &mut [f32]) {
    let n = x.len();
    debug_assert!(w.len() == out.len() * n && (!lanes16 || n.is_multiple_of(16)));
    if n == 0 {
        out.fill(0.0);
        return;
    }
    for (o, row) in out.iter_mut().zip(w.chunks_exact(n)) {
        *o = if lanes16 {
            let mut acc = [0.0f32; 16];
            for (wc, xc) in row.chunks_exact(16).zip(x.chunks_exact(16)) {
                for l in 0..16 {
                    acc[l] = wc[l].mul_add(xc[l], acc[l]);
                }
            }
            tree16(&acc)
        } else {
            let np = n & !63;
            let mut acc = [0.0f32; 64];
            for (wc, xc) in row[..np].chunks_exact(64).zip(x[..np].chunks_exact(64)) {
                for l in 0..64 {
                    acc[l] = wc[l].mul_add(xc[l], acc[l]);
                }
            }
            let mut s = tree64(&acc);
            // `sumf += x[i]*y[i]`: a product, then a sum (ggml's compiler does not fuse them).
            for (a, b) in row[np..].iter().zip(&x[np..]) {
                s += a * b;
            }
            s
        };
    }
}

/// llamafile sgemm's f16 dot: `n` (a multiple of 16) products FMA'd into 16 lanes, [`tree16`].
/// `y` holds f16 values widened to f32.
pub fn dot16(x: &[f16], y: &[f32]) -> f32 {
    debug_assert!(x.len() == y.len() && x.len().is_multiple_of(16));
    let mut acc = [0.0f32; 16];
    for (xc, yc) in x.chunks_exact(16).zip(y.chunks_exact(16)) {
        for l in 0..16 {
            acc[l] = xc[l].to_f32().mul_add(yc[l], acc[l]);
        }
    }
    tree16(&acc)
}

/// `ggml_vec_dot_f16`: the first `n & !63` products FMA'd into 64 lanes and reduced by
/// [`tree64`], the rest added one by one in f64 (each product rounded to f32 first). `y` holds
/// f16 values widened to f32.
pub fn dot64(x: &[f16], y: &[f32]) -> f32 {
    debug_assert_eq!(x.len(), y.len());
    let np = x.len() & !63;
    let mut acc = [0.0f32; 64];
    for (xc, yc) in x[..np].chunks_exact(64).zip(y[..np].chunks_exact(64)) {
        for l in 0..64 {
            acc[l] = xc[l].to_f32().mul_add(yc[l], acc[l]);
        }
    }
    let mut s = f64::from(tree64(&acc));
    for (a, b) in x[np..].iter().zip(&y[np..]) {
        s += f64::from(a.to_f32() * b);
    }
    s as f32
}

/// `scores[h·ld + j] = q_h · k_j` for `g` query heads (`q`: `[g][hd]`, f16 values as f32) and
/// every row, by [`dot16`] (`lanes16`) or [`dot64`].
pub fn kq_dots(
    q: &[f32],
    g: usize,
    k: &Rows<'_>,
    lanes16: bool,
    scores: &mut [f32],
    ld: usize,
    ahead: &mut Ahead<'_>,
) {
    let hd = k.hd();
    for j in 0..k.n() {
        ahead.tick();
        let row = k.row(j);
        for h in 0..g {
            let qh = &q[h * hd..(h + 1) * hd];
            scores[h * ld + j] = if lanes16 {
                dot16(row, qh)
            } else {
                dot64(row, qh)
            };
        }
    }
}

/// Softmax's numerator as `ggml_vec_soft_max_f32`: `x[i] = ggml_v_expf(x[i] − max)` over whole
/// blocks of 16 (`x.len()` is a multiple of 16), each block summed by [`tree16`] into an f64
/// total, which is returned.
pub fn exp_block_sums(x: &mut [f32], max: f32) -> f64 {
    debug_assert!(x.len().is_multiple_of(16));
    let mut sum = 0.0f64;
    for block in x.chunks_exact_mut(16) {
        let mut e = [0.0f32; 16];
        for (o, v) in e.iter_mut().zip(block.iter_mut()) {
            *v = expf(*v - max);
            *o = *v;
        }
        sum += f64::from(tree16(&e));
    }
    sum
}

/// The value side of attention: `out[h][d] = Σ_j p[h·ld + j] · v_j[d]` for `g` heads (`out`:
/// `[g][hd]`; `p`: f16 values as f32) in `mul_mat`'s order: row `j` goes to lane
/// `(lane0 + j) % lanes` (`lanes` 16 or 64), each lane a chain of FMAs over its rows in order,
/// the lanes reduced by [`tree16`] or [`tree64`]. `acc` is room for `[g][lanes][hd]`.
#[allow(clippy::too_many_arguments)]
pub fn pv(
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
    let acc = &mut acc[..g * lanes * hd];
    acc.fill(0.0);
    for j in 0..v.n() {
        ahead.tick();
        let row = v.row(j);
        let lane = (lane0 + j) % lanes;
        for h in 0..g {
            let w = p[h * ld + j];
            let a = &mut acc[(h * lanes + lane) * hd..][..hd];
            for (ad, vd) in a.iter_mut().zip(row) {
                *ad = w.mul_add(vd.to_f32(), *ad);
            }
        }
    }
    for h in 0..g {
        let a = &acc[h * lanes * hd..];
        for (d, o) in out[h * hd..(h + 1) * hd].iter_mut().enumerate() {
            *o = if lanes == 16 {
                tree16(&std::array::from_fn(|l| a[l * hd + d]))
            } else {
                tree64(&std::array::from_fn(|l| a[l * hd + d]))
            };
        }
    }
}
