//! Dot-product kernels, one module per instruction set, chosen at run time.
//!
//! Three kinds of kernel, each looked up once per matrix by a resolver that matches on
//! [`Isa::dispatch`] (the crate's one ISA dispatch, see [`crate::isa`]; the matmul code keeps
//! the function pointer, so no call re-checks CPU features):
//! - *row kernels* ([`RowsFn`], [`rows_kernel`]) for every weight type: dot products of
//!   consecutive weight rows in ggml layout (straight from the file) with one activation row
//!   quantized to the type's [`vec_dot_type`](crate::quant::vec_dot_type). `generic` holds the
//!   scalar reference for every type and stays forever; `x86_64::avx2` holds AVX2 and AVX-512
//!   VNNI versions, `x86_64::avx512` 512-bit float ones — all with differential tests.
//! - *packed kernels* ([`PackedFn`], [`packed_kernel`]) for the 16-row interleaved layouts of
//!   `matmul::repack`: 16 rows × up to 8 tokens per call, each weight block unpacked once for
//!   all tokens (`x86_64::avx512` with VNNI, `x86_64::avx2_packed`).
//! - *tile kernels* ([`TileFn`], [`tile_kernel`]): 4 × 4 register tiles for float weights in a
//!   batch.
//!
//! For `Q4_1`, `Q5_1`, `Q5_0`, `Q8_0`, `Q4_K`, `Q6_K`, `MXFP4`, `IQ4_NL` and the IQ lattice types
//! (`IQ2_XXS` … `IQ1_M`), row and packed kernels that sum in llama.cpp's own float order also
//! exist ([`rows_kernel_ggml`], [`packed_kernel_ggml`]; the
//! matmul option `ggml_order`), one per code path llama.cpp takes for the type ([`GgmlPath`]):
//! their results equal llama.cpp's bit for bit. The default kernels sum each row's blocks into
//! one float.
//!
//! An `aarch64::neon` module would sit beside `x86_64`, a `Dispatch` variant and an arm in each
//! resolver here; it is not written yet, so other targets run `generic` (never compiled or
//! tested here).
//!
//! Activations arrive as an [`ActRow`] / [`ActTile`]: for the 8-bit formats, the `i8` values,
//! one `f32` scale per block and integer block sums, in separate arrays (not ggml's interleaved
//! `block_q8_0`) so SIMD code loads them with plain vector loads. The numbers are those of
//! llama.cpp's x86 run-time quantizers, not of its `_ref` ones (which `crate::quant`'s
//! `quantize_row` keeps for files): for `Q8_0`/`Q8_1` (`quantize_row_q8_0`/`_q8_1` in
//! `ggml-cpu/arch/x86/quants.c`) per block of 32 `amax = max|x|`, the scale `d = amax / 127`
//! stored rounded to f16, `q = round_half_even(x · 127/amax)` (`127/amax`, not `1/d` as the
//! reference has, and ties to even, not away from zero), and `Q8_1`'s `s = f16(d · Σq)` with the
//! unrounded `d` — the `Q4_1`/`Q5_1` kernels take their min term as `m · s` from it, as ggml's
//! dot products do; for `Q8_K` ggml calls its reference quantizer at run time (`d = 1/iscale` in
//! f32, `iscale = −127/max` with the signed max, nearest-even rounding). The model's logits are
//! sensitive enough to every such rounding that matching llama.cpp needs its exact numbers.

// Kernels take raw pointers and strides (one argument each) and index parallel arrays of one
// block by the same position.
#![allow(clippy::too_many_arguments, clippy::needless_range_loop)]

pub(crate) mod generic;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

use crate::isa::{Dispatch, Isa};
use crate::quant::GgmlType;
#[cfg(target_arch = "x86_64")]
use x86_64::{avx2, avx2_packed, avx512, avx512_iq};

/// Sums stored per `Q8K` super-block: 16 per-16 sums, then 8 per-32 sums.
pub(crate) const Q8K_SUMS: usize = 24;

/// How activations are prepared for a weight type (the internal form of its `vec_dot_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ActKind {
    /// Plain `f32` rows (for `F32`, `F16`, `BF16` weights).
    F32,
    /// 8-bit values in blocks of 32 with an f16-rounded scale and the block's integer sum (the
    /// numbers of ggml's `Q8_0`/`Q8_1`).
    Q8,
    /// 8-bit values in blocks of 256 with an `f32` scale and sums of each 16 (ggml's `Q8_K`).
    Q8K,
    /// `f32` rows whose values are rounded to f16 (ggml's `vec_dot_type` of `F16` weights,
    /// `ggml_cpu_fp32_to_fp16`): the activations of `F16` matrices in llama.cpp's order.
    /// Stored one value per "block" in the `d` array.
    F16,
    /// `f32` rows whose values are rounded to bf16 (`ggml_cpu_fp32_to_bf16`, nearest even),
    /// for `BF16` matrices in llama.cpp's order; stored like [`ActKind::F16`].
    Bf16,
}

impl ActKind {
    /// The forms prepared from `f32` input into a [`Scratch`](crate::matmul::Scratch) buffer
    /// (every one but `F32`).
    pub(crate) const PREPARED: [ActKind; 4] =
        [ActKind::Q8, ActKind::Q8K, ActKind::F16, ActKind::Bf16];

    /// The activation form for weights of type `ty`, if they can be multiplied at all.
    pub(crate) fn for_weight(ty: GgmlType) -> Option<ActKind> {
        match crate::quant::vec_dot_type(ty)? {
            GgmlType::F32 => Some(ActKind::F32),
            GgmlType::Q8_0 | GgmlType::Q8_1 => Some(ActKind::Q8),
            GgmlType::Q8_K => Some(ActKind::Q8K),
            _ => None,
        }
    }

    /// Values per scale (1 for `F32`).
    pub(crate) fn block(self) -> usize {
        match self {
            ActKind::F32 | ActKind::F16 | ActKind::Bf16 => 1,
            ActKind::Q8 => 32,
            ActKind::Q8K => 256,
        }
    }

    /// Integer sums stored per block: `Q8` one (the block's); `Q8K` 24: the sums of each 16
    /// values (ggml's `bsums`), then of each 32.
    pub(crate) fn sums_per_block(self) -> usize {
        match self {
            ActKind::F32 | ActKind::F16 | ActKind::Bf16 => 0,
            ActKind::Q8 => 1,
            ActKind::Q8K => Q8K_SUMS,
        }
    }
}

/// One activation row as kernels read it (raw pointers: kernels are `unsafe fn`s).
///
/// For [`ActKind::F32`] only `f` is used; for the 8-bit kinds `qs` (one `i8` per value), `d`
/// (one scale per block) and `sums` ([`ActKind::sums_per_block`] `i16` per block); for
/// [`ActKind::Q8`] also `s`, one per block: ggml's `block_q8_1.s`, `f16(d_unrounded · Σq)` as
/// `f32` (the min term of `Q4_1`/`Q5_1` dots).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActRow {
    pub f: *const f32,
    pub qs: *const i8,
    pub d: *const f32,
    pub sums: *const i16,
    pub s: *const f32,
}

/// Row kernel: for `r < nrows`, `y[r] = dot(W[r], a)` over `n` values, where `W[r]` is the
/// `row_bytes` bytes at `w + r·row_bytes`.
///
/// # Safety
/// `w` is valid for `nrows·row_bytes` reads, `row_bytes` is the size of `n` values of the
/// kernel's type, `n` is a whole number of blocks; `a` points at an activation row of `n`
/// values of the kernel's [`ActKind`]; `y` is valid for `nrows` writes; the CPU supports the
/// instruction set the kernel was chosen for (guaranteed when it came from [`rows_kernel`]:
/// resolved through [`Isa::dispatch`]).
pub(crate) type RowsFn =
    unsafe fn(n: usize, w: *const u8, row_bytes: usize, nrows: usize, a: ActRow, y: *mut f32);

/// Float tile kernel: 4 weight rows × 4 `f32` activation rows,
/// `y[t·ys + r] = dot(W[r], x[t])` for `r, t < 4`, with `W[r]` at `w + r·row_bytes` and `x[t]` at
/// `x + t·xs`, `n` values each.
///
/// # Safety
/// The four weight rows and four activation rows are readable for `n` values; `y` is valid for
/// writes at `t·ys + r`; the CPU supports the kernel's instruction set.
pub(crate) type TileFn = unsafe fn(
    n: usize,
    w: *const u8,
    row_bytes: usize,
    x: *const f32,
    xs: usize,
    y: *mut f32,
    ys: usize,
);

/// The 4×4 tile kernel for float weights of type `ty` at level `isa`, where one exists
/// (AVX-512).
pub(crate) fn tile_kernel(isa: Isa, ty: GgmlType) -> Option<TileFn> {
    match isa.dispatch() {
        Dispatch::Generic => None,
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx2 => None,
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx512 | Dispatch::Avx512Vnni => avx512::tile_kernel(ty),
    }
}

/// The 4×4 tile kernel for float weights of type `ty` in llama.cpp's sgemm order
/// ([`GgmlPath::Sgemm`]: each output as that row kernel sums it) at level `isa`, where one
/// exists (AVX-512).
pub(crate) fn tile_kernel_ggml(isa: Isa, ty: GgmlType) -> Option<TileFn> {
    match isa.dispatch() {
        Dispatch::Generic => None,
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx2 => None,
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx512 | Dispatch::Avx512Vnni => {
            x86_64::float_ggml::tile_kernel(ty, Isa::has_bf16())
        }
    }
}

/// Consecutive activation rows for the packed kernels: row `t` of each array starts
/// `t · stride` elements after the given pointer (`s`, one per block like `d`, uses
/// `d_stride`; `offs`, [`STEP_OFFS`] per block, uses `d_stride · STEP_OFFS`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActTile {
    pub qs: *const i8,
    pub qs_stride: usize,
    pub d: *const f32,
    pub d_stride: usize,
    pub sums: *const i16,
    pub sums_stride: usize,
    pub s: *const f32,
    /// [`ActKind::Q8`] only (else dangling): per block, `−16·Σ` then `−128·Σ` of the four
    /// bytes of each 4-value step (eight each): the starting sums of a `vpdpbusd` that folds
    /// the value offset of a `Q5_0` or `Q8_0` weight into each step's own integer sum, read
    /// with one broadcast load each by the ggml-order kernels.
    pub offs: *const i32,
}

/// `i32` step offsets per [`ActKind::Q8`] block in [`ActTile::offs`].
pub(crate) const STEP_OFFS: usize = 16;

/// The step offsets of one 32-value block of activation bytes `qs` (see [`ActTile::offs`]).
pub(crate) fn step_offs(qs: &[i8; 32]) -> [i32; STEP_OFFS] {
    let mut out = [0; STEP_OFFS];
    for s in 0..8 {
        let sum: i32 = qs[4 * s..4 * s + 4].iter().map(|&q| i32::from(q)).sum();
        out[s] = -16 * sum;
        out[8 + s] = -128 * sum;
    }
    out
}

impl ActTile {
    /// The same rows from block `k0` on.
    #[inline(always)]
    pub(crate) fn skip_blocks(self, k0: usize, kind: ActKind) -> ActTile {
        ActTile {
            qs: self.qs.wrapping_add(k0 * kind.block()),
            d: self.d.wrapping_add(k0),
            s: self.s.wrapping_add(k0),
            sums: self.sums.wrapping_add(k0 * kind.sums_per_block()),
            offs: self.offs.wrapping_add(k0 * STEP_OFFS),
            ..self
        }
    }
}

/// Packed kernel: `ngroups` groups of 16 interleaved weight rows (group `g` is `nb` block
/// columns at `w + g·gbytes`, layout of `matmul::repack`) against `ny` activation rows:
/// `y[t·ys + 16g + r] = dot(W[16g + r], a[t])` for `r < 16`, `t < ny` — or, with `add`,
/// `y[…] += dot(…)` (a batch splits long rows into column ranges so activation tiles stay in L1;
/// the running sums continue exactly as in one pass).
///
/// # Safety
/// `w` holds `ngroups` groups of `nb` packed block columns of the kernel's type; `a` holds `ny`
/// rows of `nb` blocks of the kernel's activation kind; `1 ≤ ny ≤` the kernel's maximum; `y` is
/// valid for writes at `t·ys + 16g + r`; the CPU supports the kernel's instruction set.
pub(crate) type PackedFn = unsafe fn(
    nb: usize,
    w: *const u8,
    gbytes: usize,
    ngroups: usize,
    a: ActTile,
    ny: usize,
    y: *mut f32,
    ys: usize,
    add: bool,
);

/// Quantizes one activation row of `x.len()` values (a whole number of blocks).
///
/// # Safety
/// `qs` is valid for `x.len()` writes, `d` and `s` for one per block, `sums` for one per sum
/// group (`s` is written only by the [`ActKind::Q8`] quantizers); the CPU supports the kernel's
/// instruction set.
pub(crate) type QuantizeActsFn =
    unsafe fn(x: &[f32], qs: *mut i8, d: *mut f32, sums: *mut i16, s: *mut f32);

/// The row kernel for weights of type `ty` at level `isa`, or `None` for unsupported types.
/// A level the CPU lacks falls back to the best one it has.
pub(crate) fn rows_kernel(isa: Isa, ty: GgmlType) -> Option<RowsFn> {
    let simd = match isa.dispatch() {
        Dispatch::Generic => None,
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx2 => avx2::plain::rows_kernel(ty),
        // The float row kernels need no VNNI, and must be the tile kernels' (512-bit) order:
        // a token's outputs may not depend on whether it comes alone or in a batch.
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx512 => avx512::rows_kernel(ty).or_else(|| avx2::plain::rows_kernel(ty)),
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx512Vnni => avx512::rows_kernel(ty).or_else(|| avx2::vnni::rows_kernel(ty)),
    };
    simd.or_else(|| generic::rows_kernel(ty))
}

/// The packed kernel for `ty` at level `isa` and the most activation rows it takes per call, or
/// `None` when the level has no packed kernel for the type (its matrices stay in ggml layout).
pub(crate) fn packed_kernel(isa: Isa, ty: GgmlType) -> Option<(PackedFn, usize)> {
    match isa.dispatch() {
        Dispatch::Generic => None,
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx2 | Dispatch::Avx512 => {
            avx2_packed::packed_kernel(ty).or_else(|| avx2::plain::packed_kernel(ty))
        }
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx512Vnni => avx512::packed_kernel(ty)
            .or_else(|| avx512_iq::packed_kernel(ty))
            .or_else(|| avx2::vnni::packed_kernel(ty)),
    }
}

/// One of llama.cpp's x86 code paths for a quantized matrix product. Each sums in its own float
/// order, so a kernel that follows llama.cpp's arithmetic follows one path; which path llama.cpp
/// takes depends on the weight type, on whether its loader repacked the weights, and on the
/// number of tokens in the product (see `matmul`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GgmlPath {
    /// `ggml_vec_dot_<type>_q8_<x>`, one weight row at a time: the 32-value formats' only order
    /// (llamafile's `tinyBLAS` sums their batches the same way), and that of k-quant weights
    /// left in ggml layout in products of fewer than 8 tokens. Eight float lanes per row.
    VecDot,
    /// llama.cpp's tiled k-quant mat-mul (`ggml-cpu/tiled`): k-quant weights left in ggml layout
    /// in products of 8 tokens or more. One float sum per row, `fma(r, d_x, acc)` per
    /// super-block.
    Tiled,
    /// `ggml_gemv_q4_K_8x8_q8_K`: repacked `Q4_K`, for single tokens and the last `n % 4` tokens
    /// of a product. Also `ggml_gemv_mxfp4_8x8_q8_0`: repacked `MXFP4`, for every token (its
    /// gemm sums in the same order).
    Gemv,
    /// `ggml_gemm_q4_K_8x8_q8_K`: repacked `Q4_K`, for the tokens in whole groups of four from
    /// the start of a product.
    Gemm,
    /// llamafile's `tinyBLAS` for float weights (`F32`, `F16`, `BF16`): products of 2+ tokens
    /// whose row count is a multiple of 4 and width a multiple of its step. One 16-lane
    /// accumulator per output (their `VecDot` has four, or two for `BF16`).
    Sgemm,
}

/// The packed kernel for `ty` at level `isa` that sums in the order of llama.cpp's code path
/// `path` (see [`rows_kernel_ggml`]), the most activation rows it takes per call, and whether
/// a batch may split its rows into column ranges (`add` calls: only where the running state is
/// the output itself); `None` where the level has none.
pub(crate) fn packed_kernel_ggml(
    isa: Isa,
    ty: GgmlType,
    path: GgmlPath,
) -> Option<(PackedFn, usize, bool)> {
    match isa.dispatch() {
        Dispatch::Generic => None,
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx2 | Dispatch::Avx512 => avx2::plain::packed_kernel_ggml(ty, path),
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx512Vnni => {
            let tiled = || match path {
                // The lattice types' 512-bit tiles sum in the tiled mat-mul's order.
                GgmlPath::Tiled => {
                    avx512_iq::packed_kernel(ty).map(|(f, max_ny)| (f, max_ny, true))
                }
                GgmlPath::VecDot => avx512_iq::packed_kernel_vecdot(ty),
                _ => None,
            };
            avx512::packed_kernel_ggml(ty, path)
                .or_else(tiled)
                .or_else(|| avx2::vnni::packed_kernel_ggml(ty, path))
        }
    }
}

/// The row kernel for `ty` at level `isa` that sums in the order of llama.cpp's code path
/// `path`, giving its results bit for bit from equal inputs, where one exists (the x86 levels):
/// for `Q4_1`, `Q5_1`, `Q5_0`, `Q8_0` ([`GgmlPath::VecDot`]) 256-bit kernels that keep ggml's
/// eight lane accumulators (each `fma(d_w·d_x, float(signed sum of its 4 values), acc)` per
/// block), its separate `m·s` sum and its final `hsum_float_8`; for `Q4_K`, `Q6_K`, `MXFP4`
/// and the IQ lattice types one kernel per path llama.cpp takes for them; for `IQ4_NL`
/// `vec_dot`'s order and that of its repacked `iq4_nl_8x8` gemv/gemm. (Other types, `Q4_0`
/// among them — repacked by llama.cpp into a layout whose order is not followed here — have
/// none, and the scalar level sums sequentially.)
///
/// The float types (`F32`, `F16`, `BF16`: [`GgmlPath::VecDot`] and [`GgmlPath::Sgemm`]) have
/// them at every level, the scalar one included (`generic::float_ggml`), and read activations
/// of [`float_act_kind`].
pub(crate) fn rows_kernel_ggml(isa: Isa, ty: GgmlType, path: GgmlPath) -> Option<RowsFn> {
    let float = float_act_kind(ty).is_some();
    match isa.dispatch() {
        Dispatch::Generic if float => generic::float_ggml::rows_kernel(ty, path),
        Dispatch::Generic => None,
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx2 if float => x86_64::float_ggml::rows_kernel(ty, path, false, false),
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx512 | Dispatch::Avx512Vnni if float => {
            x86_64::float_ggml::rows_kernel(ty, path, true, Isa::has_bf16())
        }
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx2 | Dispatch::Avx512 => avx2::plain::rows_kernel_ggml(ty, path),
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx512Vnni => avx2::vnni::rows_kernel_ggml(ty, path),
    }
}

/// For the float weight types, the activation form of llama.cpp's order (the weight type's
/// `vec_dot_type`): `F32` stays, `F16` and `BF16` round to their type.
pub(crate) fn float_act_kind(ty: GgmlType) -> Option<ActKind> {
    match ty {
        GgmlType::F32 => Some(ActKind::F32),
        GgmlType::F16 => Some(ActKind::F16),
        GgmlType::BF16 => Some(ActKind::Bf16),
        _ => None,
    }
}

/// The width step of llamafile's sgemm for float weights of `ty` (its `KN`: 16 f32 or f16
/// values, 32 bf16 values with AVX512-BF16): a product takes [`GgmlPath::Sgemm`] only when its
/// width is a multiple of it.
pub(crate) fn sgemm_step(ty: GgmlType) -> usize {
    if ty == GgmlType::BF16 { 32 } else { 16 }
}

/// The activation quantizer for `kind` at level `isa` (`None` for [`ActKind::F32`]). Every
/// level produces the same bytes as the scalar one.
pub(crate) fn quantize_acts_kernel(isa: Isa, kind: ActKind) -> Option<QuantizeActsFn> {
    let simd = match isa.dispatch() {
        Dispatch::Generic => None,
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx2 | Dispatch::Avx512 => avx2::plain::quantize_acts_kernel(kind),
        #[cfg(target_arch = "x86_64")]
        Dispatch::Avx512Vnni => avx2::vnni::quantize_acts_kernel(kind),
    };
    simd.or_else(|| generic::quantize_acts_kernel(kind))
}
