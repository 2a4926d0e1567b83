//! Elementwise f32 kernels the models need — norms, softmax, activations, rope, f16/bf16 rows —
//! and attention over an f16 KV cache, each with a scalar twin and AVX2/AVX-512 versions.
//!
//! [`Ops`] is the entry point: a `Copy` handle holding the instruction-set level and that
//! level's table of kernel function pointers, resolved once when it is made (through
//! `Isa::dispatch`, as every kernel family in the crate is: see [`crate::isa`]), whose methods
//! call into `generic` (the scalar reference, which follows ggml's CPU formulas and operation
//! order), `x86_64::avx2` or `x86_64::avx512` through it: one indirect call per kernel. [`rope`] holds rope's parameters and angle cache, [`attention`] the
//! attention kernels (serial per head, and parallel over a [`crate::pool::ThreadPool`]).
//!
//! Precision: reductions that ggml does in f64 (sums of squares, softmax sums) are done in f64
//! here too; SIMD `exp` is within 2 ulp of `f32::exp`. Results of different levels agree to a
//! few ulp, not bit for bit (summation order differs), and every level is tested against f64.
//!
//! The `_ggml` methods ([`Ops::gelu_ggml`], [`Ops::swiglu_ggml`], [`Ops::attention_ggml`], …)
//! instead reproduce ggml's CPU arithmetic bit for bit — its f16 roundings, its vector `exp`, its
//! summation orders — as its AVX-512 build computes it, with the same bits at every level (see
//! `ggml`). They exist because llama.cpp's outputs are the reference a model is checked against,
//! and small models amplify ulp-level differences.
//!
//! Lengths are the caller's responsibility: methods panic when slices that must match do not
//! (a programming error — model files never choose these lengths unchecked).

pub mod attention;
mod generic;
pub mod ggml;
pub mod rope;
#[cfg(target_arch = "x86_64")]
mod x86_64;

use half::{bf16, f16};

use crate::isa::{Dispatch, Isa};
use generic::{Ahead, Rows};
#[cfg(target_arch = "x86_64")]
use x86_64::{avx2, avx2_ggml, avx512, avx512_ggml};

/// The kernels at one instruction-set level (see the module docs).
#[derive(Clone, Copy)]
pub struct Ops {
    /// Never above what the CPU supports (`new` lowers it).
    isa: Isa,
    /// The level's kernels, resolved once by [`Kernels::for_isa`].
    k: &'static Kernels,
}

impl PartialEq for Ops {
    fn eq(&self, other: &Ops) -> bool {
        self.isa == other.isa
    }
}

impl Eq for Ops {}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops").field("isa", &self.isa).finish()
    }
}

/// One level's elementwise kernels as function pointers: what an [`Ops`] holds, resolved once
/// per handle by [`Kernels::for_isa`] (the crate's one ISA dispatch: see [`crate::isa`]).
///
/// The pointers are `unsafe fn`s because the SIMD kernels need their CPU features; that those
/// are present is [`Isa::dispatch`]'s argument (a `Kernels` is one of the statics below, handed
/// out only for a level the CPU runs). The kernels that take raw pointers have their own
/// `# Safety` lists (`generic::scale_mul_add`, `generic::act_mul`, `ggml::gelu_mul`,
/// `ggml::silu_mul`); the others take slices and values only.
struct Kernels {
    sum_squares: unsafe fn(&[f32]) -> f64,
    sum: unsafe fn(&[f32]) -> f64,
    sum_squared_deviations: unsafe fn(&[f32], f32) -> f64,
    scale_mul_add: unsafe fn(usize, *const f32, f32, f32, *const f32, *const f32, *mut f32),
    max: unsafe fn(&[f32]) -> f32,
    exp_sub_sum: unsafe fn(&mut [f32], f32) -> f64,
    scale: unsafe fn(&mut [f32], f32),
    act_mul: unsafe fn(usize, bool, *const f32, *const f32, *mut f32),
    add: unsafe fn(&mut [f32], &[f32]),
    mul: unsafe fn(&mut [f32], &[f32]),
    f16_to_f32: unsafe fn(&mut [f32], &[f16]),
    f32_to_f16: unsafe fn(&mut [f16], &[f32]),
    bf16_to_f32: unsafe fn(&mut [f32], &[bf16]),
    f32_to_bf16: unsafe fn(&mut [bf16], &[f32]),
    dot_f16: unsafe fn(&[f32], &[f16]) -> f32,
    axpy_f16: unsafe fn(&mut [f32], f32, &[f16]),
    attn_scores: unsafe fn(&[f32], usize, &Rows<'_>, f32, &mut [f32], usize),
    attn_accum: unsafe fn(&[f32], usize, usize, &Rows<'_>, &mut [f32]),
    rope_rotate: unsafe fn(&mut [f32], &[f32], &[f32], usize, bool),
    // ggml's arithmetic (`ggml` and the `*_ggml` SIMD modules).
    gelu_mul_ggml: unsafe fn(usize, *const f32, *const f32, *mut f32),
    silu_mul_ggml: unsafe fn(usize, *const f32, *const f32, *mut f32),
    dots_f32_ggml: unsafe fn(&[f32], &[f32], bool, &mut [f32]),
    #[allow(clippy::type_complexity)]
    kq_dots_ggml: unsafe fn(&[f32], usize, &Rows<'_>, bool, &mut [f32], usize, &mut Ahead<'_>),
    exp_block_sums_ggml: unsafe fn(&mut [f32], f32) -> f64,
    #[allow(clippy::type_complexity)]
    #[allow(clippy::type_complexity)]
    pv_ggml: unsafe fn(
        &[f32],
        usize,
        usize,
        &Rows<'_>,
        usize,
        usize,
        &mut [f32],
        &mut [f32],
        &mut Ahead<'_>,
    ),
}

/// The table of one level: the kernels of module `$m` and, for ggml's arithmetic, of `$g`.
macro_rules! kernels {
    ($m:ident, $g:ident) => {
        Kernels {
            sum_squares: $m::sum_squares,
            sum: $m::sum,
            sum_squared_deviations: $m::sum_squared_deviations,
            scale_mul_add: $m::scale_mul_add,
            max: $m::max,
            exp_sub_sum: $m::exp_sub_sum,
            scale: $m::scale,
            act_mul: $m::act_mul,
            add: $m::add,
            mul: $m::mul,
            f16_to_f32: $m::f16_to_f32,
            f32_to_f16: $m::f32_to_f16,
            bf16_to_f32: $m::bf16_to_f32,
            f32_to_bf16: $m::f32_to_bf16,
            dot_f16: $m::dot_f16,
            axpy_f16: $m::axpy_f16,
            attn_scores: $m::attn_scores,
            attn_accum: $m::attn_accum,
            rope_rotate: $m::rope_rotate,
            gelu_mul_ggml: $g::gelu_mul,
            silu_mul_ggml: $g::silu_mul,
            dots_f32_ggml: $g::dots_f32,
            kq_dots_ggml: $g::kq_dots,
            exp_block_sums_ggml: $g::exp_block_sums,
            pv_ggml: $g::pv,
        }
    };
}

static GENERIC: Kernels = kernels!(generic, ggml);
#[cfg(target_arch = "x86_64")]
static AVX2: Kernels = kernels!(avx2, avx2_ggml);
#[cfg(target_arch = "x86_64")]
static AVX512: Kernels = kernels!(avx512, avx512_ggml);

impl Kernels {
    /// The elementwise kernels of level `isa` (lowered to what the CPU runs).
    fn for_isa(isa: Isa) -> &'static Kernels {
        match isa.dispatch() {
            Dispatch::Generic => &GENERIC,
            #[cfg(target_arch = "x86_64")]
            Dispatch::Avx2 => &AVX2,
            #[cfg(target_arch = "x86_64")]
            Dispatch::Avx512 | Dispatch::Avx512Vnni => &AVX512,
        }
    }
}

/// Calls kernel `$f` of `$ops`'s table, for the kernels that take only slices and values.
macro_rules! call {
    ($ops:expr, $f:ident($($arg:expr),* $(,)?)) => {
        // SAFETY: the table was resolved through `Isa::dispatch` (see `Kernels`), and these
        // kernels have no other precondition.
        unsafe { ($ops.k.$f)($($arg),*) }
    };
}

/// Calls kernel `$f` of `$ops`'s table, for the kernels that take raw pointers: inside the
/// caller's `unsafe` block, whose `// SAFETY:` comment states the pointers' bounds (the CPU
/// features are `Kernels`'s argument).
macro_rules! call_ptr {
    ($ops:expr, $f:ident($($arg:expr),* $(,)?)) => {
        ($ops.k.$f)($($arg),*)
    };
}

fn opt_ptr(x: Option<&[f32]>, n: usize, what: &str) -> *const f32 {
    match x {
        Some(s) => {
            assert_eq!(s.len(), n, "{what} length");
            s.as_ptr()
        }
        None => std::ptr::null(),
    }
}

impl Ops {
    /// Kernels at `isa`, lowered to the best level this CPU supports.
    pub fn new(isa: Isa) -> Ops {
        Ops {
            isa: isa.min(Isa::best_supported()),
            k: Kernels::for_isa(isa),
        }
    }

    /// Kernels at [`Isa::detected`] (the best level, unless `HEARTH_ISA` lowers it).
    pub fn detected() -> Ops {
        Ops::new(Isa::detected())
    }

    /// The level these kernels run at.
    pub fn isa(self) -> Isa {
        self.isa
    }

    /// RMS norm fused with the weight multiply: `out = x / sqrt(mean(x²) + eps) · w`
    /// (`x · scale · w`, left to right, as ggml's fused `rms_norm` + `mul`).
    ///
    /// # Panics
    /// If `out`, `x`, `w` differ in length.
    pub fn rms_norm(self, out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
        assert_eq!(out.len(), x.len(), "rms_norm: out and x lengths");
        assert_eq!(w.len(), x.len(), "rms_norm: w and x lengths");
        let s = self.rms_scale(x, eps);
        // SAFETY: all three slices hold `x.len()` elements; `out` does not overlap `x` (borrow
        // rules), which the kernel allows anyway.
        unsafe {
            call_ptr!(
                self,
                scale_mul_add(
                    x.len(),
                    x.as_ptr(),
                    s,
                    0.0,
                    w.as_ptr(),
                    std::ptr::null(),
                    out.as_mut_ptr()
                )
            )
        }
    }

    /// [`rms_norm`](Self::rms_norm) in place.
    pub fn rms_norm_inplace(self, x: &mut [f32], w: &[f32], eps: f32) {
        assert_eq!(w.len(), x.len(), "rms_norm: w and x lengths");
        let s = self.rms_scale(x, eps);
        let p = x.as_mut_ptr();
        // SAFETY: `x` and `w` hold `x.len()` elements; input and output are the same buffer,
        // which the kernel allows (it reads element `i` before writing it).
        unsafe {
            call_ptr!(
                self,
                scale_mul_add(x.len(), p, s, 0.0, w.as_ptr(), std::ptr::null(), p)
            )
        }
    }

    fn rms_scale(self, x: &[f32], eps: f32) -> f32 {
        if x.is_empty() {
            return 0.0;
        }
        let ss = call!(self, sum_squares(x));
        let mean = (ss / x.len() as f64) as f32;
        1.0 / (mean + eps).sqrt()
    }

    /// Layer norm: `out = (x − mean) / sqrt(var + eps) · w + b` (`w`, `b` optional), with
    /// ggml's `norm` rounding (mean in f32 from an f64 sum, variance summed in f64).
    ///
    /// # Panics
    /// If `out`, `x` and the given `w`, `b` differ in length.
    pub fn layer_norm(
        self,
        out: &mut [f32],
        x: &[f32],
        w: Option<&[f32]>,
        b: Option<&[f32]>,
        eps: f32,
    ) {
        assert_eq!(out.len(), x.len(), "layer_norm: out and x lengths");
        let (mean, s) = self.norm_stats(x, eps);
        let (wp, bp) = (
            opt_ptr(w, x.len(), "layer_norm: w"),
            opt_ptr(b, x.len(), "layer_norm: b"),
        );
        // SAFETY: `x`, `out` and the non-null `w`, `b` hold `x.len()` elements.
        unsafe {
            call_ptr!(
                self,
                scale_mul_add(x.len(), x.as_ptr(), s, mean, wp, bp, out.as_mut_ptr())
            )
        }
    }

    /// [`layer_norm`](Self::layer_norm) in place.
    pub fn layer_norm_inplace(self, x: &mut [f32], w: Option<&[f32]>, b: Option<&[f32]>, eps: f32) {
        let (mean, s) = self.norm_stats(x, eps);
        let (wp, bp) = (
            opt_ptr(w, x.len(), "layer_norm: w"),
            opt_ptr(b, x.len(), "layer_norm: b"),
        );
        let p = x.as_mut_ptr();
        // SAFETY: as in `layer_norm`, with input and output the same buffer (allowed).
        unsafe { call_ptr!(self, scale_mul_add(x.len(), p, s, mean, wp, bp, p)) }
    }

    fn norm_stats(self, x: &[f32], eps: f32) -> (f32, f32) {
        if x.is_empty() {
            return (0.0, 0.0);
        }
        let n = x.len();
        let mean = call!(self, sum(x)) as f32 / n as f32;
        let var = (call!(self, sum_squared_deviations(x, mean)) / n as f64) as f32;
        (mean, 1.0 / (var + eps).sqrt())
    }

    /// Softmax in place, stable (the maximum is subtracted first), sum in f64. `-inf` entries
    /// become 0; if every entry is `-inf` the result is NaN.
    pub fn softmax(self, x: &mut [f32]) {
        if x.is_empty() {
            return;
        }
        let m = call!(self, max(x));
        let sum = call!(self, exp_sub_sum(x, m));
        call!(self, scale(x, (1.0 / sum) as f32));
    }

    /// `x = e^(x − m)`, returning the f64 sum (softmax's numerator step).
    pub(crate) fn exp_sub_sum(self, x: &mut [f32], m: f32) -> f64 {
        call!(self, exp_sub_sum(x, m))
    }

    /// The largest element (`-inf` for an empty slice).
    pub fn max(self, x: &[f32]) -> f32 {
        call!(self, max(x))
    }

    /// `x = x / (1 + e^(−x))` in place.
    pub fn silu(self, x: &mut [f32]) {
        let p = x.as_mut_ptr();
        // SAFETY: in and out are the same `x.len()` elements (allowed); no `u`.
        unsafe { call_ptr!(self, act_mul(x.len(), false, p, std::ptr::null(), p)) }
    }

    /// GELU, tanh approximation, in place: `0.5·x·(1 + tanh(√(2/π)·x·(1 + 0.044715·x²)))`.
    /// (ggml's CPU path rounds `x` to f16 and looks the result up in an f16 table; this is the
    /// formula itself.)
    pub fn gelu(self, x: &mut [f32]) {
        let p = x.as_mut_ptr();
        // SAFETY: in and out are the same `x.len()` elements (allowed); no `u`.
        unsafe { call_ptr!(self, act_mul(x.len(), true, p, std::ptr::null(), p)) }
    }

    /// SwiGLU in place: `gate = silu(gate) · up`.
    ///
    /// # Panics
    /// If `gate` and `up` differ in length.
    pub fn swiglu(self, gate: &mut [f32], up: &[f32]) {
        self.glu(false, gate, up);
    }

    /// GeGLU in place: `gate = gelu(gate) · up`.
    ///
    /// # Panics
    /// If `gate` and `up` differ in length.
    pub fn geglu(self, gate: &mut [f32], up: &[f32]) {
        self.glu(true, gate, up);
    }

    fn glu(self, gelu: bool, gate: &mut [f32], up: &[f32]) {
        assert_eq!(gate.len(), up.len(), "glu: gate and up lengths");
        let p = gate.as_mut_ptr();
        // SAFETY: `gate` and `up` hold `gate.len()` elements; out is `gate` itself (allowed).
        unsafe { call_ptr!(self, act_mul(gate.len(), gelu, p, up.as_ptr(), p)) }
    }

    /// `out = silu(gate) · up`.
    ///
    /// # Panics
    /// If the three lengths differ.
    pub fn swiglu_to(self, out: &mut [f32], gate: &[f32], up: &[f32]) {
        self.glu_to(false, out, gate, up);
    }

    /// `out = gelu(gate) · up`.
    ///
    /// # Panics
    /// If the three lengths differ.
    pub fn geglu_to(self, out: &mut [f32], gate: &[f32], up: &[f32]) {
        self.glu_to(true, out, gate, up);
    }

    fn glu_to(self, gelu: bool, out: &mut [f32], gate: &[f32], up: &[f32]) {
        assert_eq!(gate.len(), up.len(), "glu: gate and up lengths");
        assert_eq!(out.len(), gate.len(), "glu: out and gate lengths");
        // SAFETY: all three hold `gate.len()` elements.
        unsafe {
            call_ptr!(
                self,
                act_mul(
                    gate.len(),
                    gelu,
                    gate.as_ptr(),
                    up.as_ptr(),
                    out.as_mut_ptr()
                )
            )
        }
    }

    /// Builds the table behind [`gelu_ggml`](Self::gelu_ggml) and
    /// [`geglu_ggml`](Self::geglu_ggml) now (128 KiB, a few milliseconds) rather than on their
    /// first call.
    pub fn init_ggml_tables() {
        ggml::init_gelu_table();
    }

    /// GELU in place as ggml's CPU backend computes it (`GGML_GELU_FP16`): `x ≤ −10 → 0`,
    /// `x ≥ 10 → x`, otherwise `x` rounded to f16 looks up `f16(gelu(x))` in a table, so the
    /// result is the f16 value nearest the tanh-approximation formula. Same bits at every level
    /// (the SIMD levels convert to f16 and back in vectors; the lookup is per element).
    pub fn gelu_ggml(self, x: &mut [f32]) {
        let p = x.as_mut_ptr();
        // SAFETY: in and out are the same `x.len()` elements (allowed); no `u`.
        unsafe { call_ptr!(self, gelu_mul_ggml(x.len(), p, std::ptr::null(), p)) }
    }

    /// GeGLU in place as ggml's `ggml_vec_geglu_f32`: `gate = gelu_ggml(gate) · up` (for
    /// `|gate| ≥ 10`: `0`, or `gate · up`).
    ///
    /// # Panics
    /// If `gate` and `up` differ in length.
    pub fn geglu_ggml(self, gate: &mut [f32], up: &[f32]) {
        assert_eq!(gate.len(), up.len(), "glu: gate and up lengths");
        let p = gate.as_mut_ptr();
        // SAFETY: `gate` and `up` hold `gate.len()` elements; out is `gate` itself (allowed).
        unsafe { call_ptr!(self, gelu_mul_ggml(gate.len(), p, up.as_ptr(), p)) }
    }

    /// `out = gelu_ggml(gate) · up`, as [`geglu_ggml`](Self::geglu_ggml).
    ///
    /// # Panics
    /// If the three lengths differ.
    pub fn geglu_ggml_to(self, out: &mut [f32], gate: &[f32], up: &[f32]) {
        assert_eq!(gate.len(), up.len(), "glu: gate and up lengths");
        assert_eq!(out.len(), gate.len(), "glu: out and gate lengths");
        // SAFETY: all three hold `gate.len()` elements.
        unsafe {
            call_ptr!(
                self,
                gelu_mul_ggml(gate.len(), gate.as_ptr(), up.as_ptr(), out.as_mut_ptr())
            )
        }
    }

    /// SiLU in place as ggml's `ggml_vec_silu_f32` (AVX-512 build): `x / (1 + e^−x)` with
    /// ggml's vector `exp` on whole blocks of 16 and libm's `expf` on the rest. The blocks
    /// start at `x[0]`: pass one row (e.g. `n_ff` values) at a time, as ggml splits its work.
    /// Same bits at every level.
    pub fn silu_ggml(self, x: &mut [f32]) {
        let p = x.as_mut_ptr();
        // SAFETY: in and out are the same `x.len()` elements (allowed); no `u`.
        unsafe { call_ptr!(self, silu_mul_ggml(x.len(), p, std::ptr::null(), p)) }
    }

    /// SwiGLU in place as ggml's `ggml_vec_swiglu_f32`: `gate = silu_ggml(gate) · up`, one row
    /// per call (see [`silu_ggml`](Self::silu_ggml)).
    ///
    /// # Panics
    /// If `gate` and `up` differ in length.
    pub fn swiglu_ggml(self, gate: &mut [f32], up: &[f32]) {
        assert_eq!(gate.len(), up.len(), "glu: gate and up lengths");
        let p = gate.as_mut_ptr();
        // SAFETY: `gate` and `up` hold `gate.len()` elements; out is `gate` itself (allowed).
        unsafe { call_ptr!(self, silu_mul_ggml(gate.len(), p, up.as_ptr(), p)) }
    }

    /// `out = silu_ggml(gate) · up`, as [`swiglu_ggml`](Self::swiglu_ggml).
    ///
    /// # Panics
    /// If the three lengths differ.
    pub fn swiglu_ggml_to(self, out: &mut [f32], gate: &[f32], up: &[f32]) {
        assert_eq!(gate.len(), up.len(), "glu: gate and up lengths");
        assert_eq!(out.len(), gate.len(), "glu: out and gate lengths");
        // SAFETY: all three hold `gate.len()` elements.
        unsafe {
            call_ptr!(
                self,
                silu_mul_ggml(gate.len(), gate.as_ptr(), up.as_ptr(), out.as_mut_ptr())
            )
        }
    }

    /// `acc += x` elementwise (residual connections).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn add(self, acc: &mut [f32], x: &[f32]) {
        assert_eq!(acc.len(), x.len(), "add: lengths");
        call!(self, add(acc, x));
    }

    /// `acc *= x` elementwise.
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn mul(self, acc: &mut [f32], x: &[f32]) {
        assert_eq!(acc.len(), x.len(), "mul: lengths");
        call!(self, mul(acc, x));
    }

    /// `x *= s`.
    pub fn scale(self, x: &mut [f32], s: f32) {
        call!(self, scale(x, s));
    }

    /// Widens an f16 row (exact).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn f16_to_f32(self, out: &mut [f32], x: &[f16]) {
        assert_eq!(out.len(), x.len(), "f16_to_f32: lengths");
        call!(self, f16_to_f32(out, x));
    }

    /// Rounds an f32 row to f16 (to nearest even, as `half::f16::from_f32`).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn f32_to_f16(self, out: &mut [f16], x: &[f32]) {
        assert_eq!(out.len(), x.len(), "f32_to_f16: lengths");
        call!(self, f32_to_f16(out, x));
    }

    /// Widens a bf16 row (exact).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn bf16_to_f32(self, out: &mut [f32], x: &[bf16]) {
        assert_eq!(out.len(), x.len(), "bf16_to_f32: lengths");
        call!(self, bf16_to_f32(out, x));
    }

    /// Rounds an f32 row to bf16 (to nearest even, as `half::bf16::from_f32`).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn f32_to_bf16(self, out: &mut [bf16], x: &[f32]) {
        assert_eq!(out.len(), x.len(), "f32_to_bf16: lengths");
        call!(self, f32_to_bf16(out, x));
    }

    /// `Σ q[i]·k[i]` of an f32 query and an f16 key row (widened exactly; f32 products and sum).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn dot_f16(self, q: &[f32], k: &[f16]) -> f32 {
        assert_eq!(q.len(), k.len(), "dot_f16: lengths");
        call!(self, dot_f16(q, k))
    }

    /// `acc += w · v` for an f16 value row (widened exactly, f32 multiply-add).
    ///
    /// # Panics
    /// If the lengths differ.
    pub fn axpy_f16(self, acc: &mut [f32], w: f32, v: &[f16]) {
        assert_eq!(acc.len(), v.len(), "axpy_f16: lengths");
        call!(self, axpy_f16(acc, w, v));
    }

    /// Attention scores of `g` heads against a block of key rows (see `generic::attn_scores`).
    pub(crate) fn attn_scores(
        self,
        q: &[f32],
        g: usize,
        k: &Rows<'_>,
        scale: f32,
        scores: &mut [f32],
        ld: usize,
    ) {
        call!(self, attn_scores(q, g, k, scale, scores, ld));
    }

    /// Weighted sum of a block of value rows into `g` heads (see `generic::attn_accum`).
    pub(crate) fn attn_accum(self, p: &[f32], ld: usize, g: usize, v: &Rows<'_>, out: &mut [f32]) {
        call!(self, attn_accum(p, ld, g, v, out));
    }

    /// `out[r] = w_r · x` for the rows of `w` (each `x.len()` wide) in ggml's f32 order: 16
    /// lanes (`lanes16`, llamafile's sgemm) or `ggml_vec_dot_f32`'s 64 (see `ggml::dots_f32`).
    ///
    /// # Panics
    /// If `w` does not hold `out.len()` rows of `x.len()`, or `lanes16` with a width that is not
    /// a multiple of 16.
    pub fn dots_f32_ggml(self, w: &[f32], x: &[f32], lanes16: bool, out: &mut [f32]) {
        assert_eq!(
            w.len(),
            out.len() * x.len(),
            "dots_f32: w must hold out.len() rows"
        );
        assert!(
            !lanes16 || x.len().is_multiple_of(16),
            "dots_f32: 16 lanes need a width of 16s"
        );
        call!(self, dots_f32_ggml(w, x, lanes16, out));
    }

    /// f16 attention scores in ggml's order (see `ggml::kq_dots`), ticking `ahead`.
    #[allow(clippy::too_many_arguments)]
    fn kq_dots_ggml(
        self,
        q: &[f32],
        g: usize,
        k: &Rows<'_>,
        lanes16: bool,
        scores: &mut [f32],
        ld: usize,
        ahead: &mut Ahead<'_>,
    ) {
        call!(self, kq_dots_ggml(q, g, k, lanes16, scores, ld, ahead));
    }

    /// ggml's softmax numerator over whole blocks of 16 (see `ggml::exp_block_sums`).
    fn exp_block_sums_ggml(self, x: &mut [f32], max: f32) -> f64 {
        call!(self, exp_block_sums_ggml(x, max))
    }

    /// Attention's value sums in ggml's order (see `ggml::pv`), ticking `ahead`.
    #[allow(clippy::too_many_arguments)]
    fn pv_ggml(
        self,
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
        call!(self, pv_ggml(p, ld, g, v, lane0, lanes, acc, out, ahead));
    }

    /// Rotates the first `n_rot` values of one head (cache layout: `generic::rope_rotate`).
    fn rope_rotate(self, head: &mut [f32], cos: &[f32], sin: &[f32], n_rot: usize, neox: bool) {
        call!(self, rope_rotate(head, cos, sin, n_rot, neox));
    }
}
