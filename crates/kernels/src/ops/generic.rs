//! Portable scalar twins of every elementwise kernel: the reference the SIMD versions are tested
//! against, and the code that runs where no SIMD level is available.
//!
//! They follow ggml's CPU formulas and operation order (sums of squares and softmax sums in
//! f64, `x * scale * w` left to right), so they can also be read as the specification.
//!
//! Kernels that may run in place take raw pointers: `y` may equal `x` (element `i` is read
//! before element `i` is written) but must not overlap it otherwise.

use half::{bf16, f16};

/// Σ x², each square in f32, summed in f64 (as ggml's `rms_norm`).
pub fn sum_squares(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v * v)).sum()
}

/// Σ x in f64.
pub fn sum(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v)).sum()
}

/// Σ (x − mean)² in f64, each difference and square in f32.
pub fn sum_squared_deviations(x: &[f32], mean: f32) -> f64 {
    x.iter()
        .map(|&v| {
            let d = v - mean;
            f64::from(d * d)
        })
        .sum()
}

/// `y = x * s * w` (or `x * s` without `w`), then `+ b`.
///
/// # Safety
/// `x` valid for `n` reads, `y` for `n` writes (`y == x` allowed), `w`/`b` for `n` reads when
/// not null.
pub unsafe fn scale_mul_add(
    n: usize,
    x: *const f32,
    s: f32,
    shift: f32,
    w: *const f32,
    b: *const f32,
    y: *mut f32,
) {
    for i in 0..n {
        // SAFETY: `i < n` and the pointers are valid for `n` elements (caller contract).
        unsafe {
            let mut v = (*x.add(i) - shift) * s;
            if !w.is_null() {
                v *= *w.add(i);
            }
            if !b.is_null() {
                v += *b.add(i);
            }
            *y.add(i) = v;
        }
    }
}

pub fn max(x: &[f32]) -> f32 {
    x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `x[i] = exp(x[i] - max)`, returning the f64 sum of the results.
pub fn exp_sub_sum(x: &mut [f32], max: f32) -> f64 {
    let mut s = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        s += f64::from(*v);
    }
    s
}

pub fn scale(x: &mut [f32], s: f32) {
    for v in x {
        *v *= s;
    }
}

pub fn silu1(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// GELU, tanh approximation, as ggml's `ggml_gelu_f32`.
pub fn gelu1(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const GELU_COEF_A: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh())
}

/// `y = act(g) * u` (or `act(g)` when `u` is null); `gelu_act` picks GELU, otherwise SiLU.
///
/// # Safety
/// `g` valid for `n` reads, `y` for `n` writes (`y == g` or `y == u` allowed), `u` for `n` reads
/// when not null.
pub unsafe fn act_mul(n: usize, gelu_act: bool, g: *const f32, u: *const f32, y: *mut f32) {
    // One loop per activation (the choice made once, not per value: `Ops` reaches this kernel
    // through a function pointer, so `gelu_act` is not a constant here).
    // SAFETY: the caller's contract.
    unsafe {
        if gelu_act {
            act_mul_with(n, gelu1, g, u, y)
        } else {
            act_mul_with(n, silu1, g, u, y)
        }
    }
}

/// [`act_mul`] with the activation `act`.
///
/// # Safety
/// As [`act_mul`].
#[inline(always)]
unsafe fn act_mul_with(n: usize, act: fn(f32) -> f32, g: *const f32, u: *const f32, y: *mut f32) {
    for i in 0..n {
        // SAFETY: `i < n`, pointers valid for `n` elements (caller contract).
        unsafe {
            let mut v = act(*g.add(i));
            if !u.is_null() {
                v *= *u.add(i);
            }
            *y.add(i) = v;
        }
    }
}

pub fn add(acc: &mut [f32], x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += v;
    }
}

pub fn mul(acc: &mut [f32], x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a *= v;
    }
}

pub fn f16_to_f32(out: &mut [f32], x: &[f16]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = v.to_f32();
    }
}

pub fn f32_to_f16(out: &mut [f16], x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f16::from_f32(v);
    }
}

/// A plain shift into the high half, as ggml's `ggml_bf16_to_fp32` (a signalling NaN stays
/// signalling, where `half` would quiet it).
pub fn bf16_to_f32(out: &mut [f32], x: &[bf16]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f32::from_bits(u32::from(v.to_bits()) << 16);
    }
}

pub fn f32_to_bf16(out: &mut [bf16], x: &[f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = bf16::from_f32(v);
    }
}

/// Σ q·k with the f16 key widened exactly to f32; f32 products and sum.
pub fn dot_f16(q: &[f32], k: &[f16]) -> f32 {
    q.iter().zip(k).map(|(&a, &b)| a * b.to_f32()).sum()
}

/// `acc += w · v` with the f16 row widened exactly.
pub fn axpy_f16(acc: &mut [f32], w: f32, v: &[f16]) {
    for (a, &b) in acc.iter_mut().zip(v) {
        *a += w * b.to_f32();
    }
}

/// Rotates the first `n_rot` values of one head by rope's angles: `y0 = x0·c − x1·s`,
/// `y1 = x0·s + x1·c`, with the `x0` products fused into the sums (`fma(x0, c, −x1·s)`,
/// `fma(x0, s, x1·c)`) as GCC contracts ggml's `rotate_pairs` — which matters where the two
/// products nearly cancel.
///
/// Neox pairs element `k` with `k + n_rot/2` and reads `cos[k]`, `sin[k]` (`n_rot/2` each).
/// Normal pairs `2k` with `2k+1` and reads per element `cos = [c0, c0, c1, c1, …]`,
/// `sin = [−s0, s0, −s1, s1, …]` (`n_rot` each), a layout SIMD can use: even lanes are
/// `fma(x[i], cos[i], x[i^1]·sin[i])`, odd lanes `fma(x[i^1], sin[i], x[i]·cos[i])`.
pub fn rope_rotate(head: &mut [f32], cos: &[f32], sin: &[f32], n_rot: usize, neox: bool) {
    if neox {
        let half = n_rot / 2;
        for k in 0..half {
            let (x0, x1) = (head[k], head[k + half]);
            head[k] = x0.mul_add(cos[k], -(x1 * sin[k]));
            head[k + half] = x0.mul_add(sin[k], x1 * cos[k]);
        }
    } else {
        for k in (0..n_rot).step_by(2) {
            let (x0, x1) = (head[k], head[k + 1]);
            head[k] = x0.mul_add(cos[k], x1 * sin[k]);
            head[k + 1] = x0.mul_add(sin[k + 1], x1 * cos[k + 1]);
        }
    }
}

/// A block of K or V rows of one kv head: row `j < n` is `data[j * stride..][..hd]`, or, for a
/// gathered block, `data[index[j] * stride..][..hd]` (the cells of one sequence scattered over
/// a shared cache). Only the ggml-order kernels, which read rows through [`Rows::row`], take
/// gathered blocks.
pub struct Rows<'a> {
    data: &'a [f16],
    stride: usize,
    n: usize,
    hd: usize,
    index: Option<&'a [u32]>,
}

impl<'a> Rows<'a> {
    /// # Panics
    /// If the last row does not fit in `data`.
    pub fn new(data: &'a [f16], stride: usize, n: usize, hd: usize) -> Rows<'a> {
        if n > 0 {
            let end = (n - 1).checked_mul(stride).and_then(|e| e.checked_add(hd));
            assert!(
                end.is_some_and(|e| e <= data.len()),
                "attention rows outside the cache"
            );
        }
        Rows {
            data,
            stride,
            n,
            hd,
            index: None,
        }
    }

    /// Rows `index[0..]` of `data`, in that order.
    ///
    /// # Panics
    /// If a row does not fit in `data`.
    pub fn gathered(data: &'a [f16], stride: usize, index: &'a [u32], hd: usize) -> Rows<'a> {
        if let Some(&max) = index.iter().max() {
            let end = (max as usize)
                .checked_mul(stride)
                .and_then(|e| e.checked_add(hd));
            assert!(
                end.is_some_and(|e| e <= data.len()),
                "attention rows outside the cache"
            );
        }
        Rows {
            data,
            stride,
            n: index.len(),
            hd,
            index: Some(index),
        }
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn hd(&self) -> usize {
        self.hd
    }

    /// Elements between consecutive rows.
    ///
    /// # Panics
    /// For a gathered block, whose rows are not evenly spaced.
    pub fn stride(&self) -> usize {
        assert!(self.index.is_none(), "a gathered block has no stride");
        self.stride
    }

    /// Pointer to the first row; rows `0..n` of `hd` elements at `stride` are readable.
    ///
    /// # Panics
    /// For a gathered block (use [`Rows::row`]).
    pub fn ptr(&self) -> *const f16 {
        assert!(self.index.is_none(), "a gathered block has no base pointer");
        self.data.as_ptr()
    }

    #[inline]
    pub fn row(&self, j: usize) -> &[f16] {
        let at = match self.index {
            Some(ix) => ix[j] as usize,
            None => j,
        };
        &self.data[at * self.stride..][..self.hd]
    }
}

/// `scores[h·ld + j] = scale · Σ_d q[h·hd + d] · k_j[d]` for `g` heads and every row.
pub fn attn_scores(q: &[f32], g: usize, k: &Rows<'_>, scale: f32, scores: &mut [f32], ld: usize) {
    let hd = k.hd;
    for j in 0..k.n {
        let row = k.row(j);
        for h in 0..g {
            scores[h * ld + j] = dot_f16(&q[h * hd..(h + 1) * hd], row) * scale;
        }
    }
}

/// `out[h·hd + d] += Σ_j p[h·ld + j] · v_j[d]` for `g` heads, rows in order.
pub fn attn_accum(p: &[f32], ld: usize, g: usize, v: &Rows<'_>, out: &mut [f32]) {
    let hd = v.hd;
    for j in 0..v.n {
        let row = v.row(j);
        for h in 0..g {
            axpy_f16(&mut out[h * hd..(h + 1) * hd], p[h * ld + j], row);
        }
    }
}

/// Rows that a later task will read, brought into L2 a few cache lines at a time while this
/// one computes ([`Ahead::tick`], called by the attention kernels once per row they read;
/// every so many ticks fetch [`Ahead::BURST`] lines): issued all at once, the prefetches
/// would stall the thread as soon as the core's miss buffers are full.
pub struct Ahead<'a> {
    rows: [Option<Rows<'a>>; 2],
    /// Which of `rows` is being fetched (2: done), its next row, and the next line of that row.
    cur: usize,
    next: usize,
    line: usize,
    /// Lines per fetch, and ticks per fetch.
    per_fetch: usize,
    every: u32,
    count: u32,
}

impl<'a> Ahead<'a> {
    /// Nothing to fetch.
    pub fn none() -> Ahead<'a> {
        Ahead {
            rows: [None, None],
            cur: 2,
            next: 0,
            line: 0,
            per_fetch: 0,
            every: 1,
            count: 0,
        }
    }

    /// Cache lines fetched at once, at most.
    pub const BURST: usize = 16;

    /// `a` then `b` (rows of the same size), spread over `ticks` calls of [`Ahead::tick`].
    pub fn new(a: Rows<'a>, b: Rows<'a>, ticks: usize) -> Ahead<'a> {
        let lines = (a.n + b.n) * Self::lines(&a);
        let every = (ticks / lines.div_ceil(Self::BURST).max(1)).max(1);
        let fetches = (ticks / every).max(1);
        Ahead {
            rows: [Some(a), Some(b)],
            cur: if lines == 0 { 2 } else { 0 },
            next: 0,
            line: 0,
            per_fetch: lines.div_ceil(fetches),
            every: every.min(u32::MAX as usize) as u32,
            count: 0,
        }
    }

    fn lines(rows: &Rows<'_>) -> usize {
        (rows.hd * size_of::<f16>()).div_ceil(64)
    }

    /// Whether lines are left to fetch.
    #[inline(always)]
    pub fn is_active(&self) -> bool {
        self.cur < 2
    }

    /// Fetches the next share of the lines.
    #[inline(always)]
    pub fn tick(&mut self) {
        self.count += 1;
        if self.count >= self.every && self.cur < 2 {
            self.count = 0;
            self.fetch();
        }
    }

    #[inline(always)]
    fn fetch(&mut self) {
        let mut left = self.per_fetch;
        while left > 0 && self.cur < 2 {
            let Some(rows) = &self.rows[self.cur] else {
                self.cur += 1;
                continue;
            };
            if self.next == rows.n {
                (self.cur, self.next) = (self.cur + 1, 0);
                continue;
            }
            let row = rows.row(self.next).as_ptr().cast::<u8>();
            let per_row = Self::lines(rows);
            while left > 0 && self.line < per_row {
                prefetch_l2(row.wrapping_add(64 * self.line));
                self.line += 1;
                left -= 1;
            }
            if self.line == per_row {
                (self.next, self.line) = (self.next + 1, 0);
                if self.next == rows.n {
                    (self.cur, self.next) = (self.cur + 1, 0);
                }
            }
        }
    }
}

/// Asks for the cache line at `p` to be brought into L2 (a hint: no effect on results, any
/// address allowed).
#[inline(always)]
pub(crate) fn prefetch_l2(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address; SSE is part of x86-64.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T1>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of both row sets is asked for within the ticks given, in bursts of at most
    /// `BURST` lines, whatever the sizes (empty ones included).
    #[test]
    fn ahead_fetches_every_row_within_its_ticks() {
        for (n, hd, ticks) in [
            (256, 64, 512),
            (256, 256, 512),
            (3, 64, 1),
            (0, 64, 10),
            (100, 64, 7),
            (5, 64, 0),
            (40, 32, 1000),
        ] {
            let data = vec![f16::ZERO; n.max(1) * hd * 3];
            let rows = || Rows::new(&data, 3 * hd, n, hd);
            let mut ahead = Ahead::new(rows(), rows(), ticks);
            let lines = 2 * n * (hd * 2).div_ceil(64);
            let mut fetched = 0;
            for _ in 0..ticks.max(1) {
                let before = (ahead.cur, ahead.next, ahead.line);
                ahead.tick();
                let after = (ahead.cur, ahead.next, ahead.line);
                if before != after {
                    fetched += 1;
                }
            }
            assert!(
                !ahead.is_active(),
                "n {n} hd {hd} ticks {ticks}: lines left"
            );
            assert!(ahead.per_fetch <= Ahead::BURST.max(lines.div_ceil(ticks.max(1))));
            assert!(fetched <= lines.div_ceil(ahead.per_fetch.max(1)) + 2);
        }
        let mut none = Ahead::none();
        none.tick();
        assert!(!none.is_active());
    }
}
