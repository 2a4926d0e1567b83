//! Weight matrix × activation rows: the decode mat-vec and the prompt mat-mat.
//!
//! A [`Matrix`] is a weight tensor in ggml layout — `rows` output features (ggml `ne1`), each a
//! row of `cols` input values (`ne0`) stored contiguously in its type — checked once when made
//! and, by default, repacked into the 16-row interleaved layout of `repack` when the instruction
//! set has a packed kernel for the type. [`matmul`] computes `y[t][r] = Σ_c W[r][c]·x[t][c]` for
//! `n_tokens` rows of `x`: it quantizes the activations once into the caller's [`Scratch`] (to
//! the type's `vec_dot_type`), then runs one [`ThreadPool::run`] in which every thread takes a
//! contiguous share of the 16-row groups. [`matmul_many`] does the same for several matrices
//! reading one input (Q/K/V, FFN gate+up): one quantization, one hand-off.
//!
//! Within a thread, weights are walked in chunks of about 256 KB (L2), each chunk applied to
//! every tile of up to 8 tokens before moving on; a packed kernel unpacks each weight block once
//! per tile, and in a batch long rows are split into 2048-value column ranges so the tile's
//! activations stay in L1. So a batch reads its weights from memory once, and decode
//! (`n_tokens == 1`) streams them with no extra pass.
//!
//! Activations are quantized as llama.cpp quantizes them at run time on x86 (see
//! [`quantize_activations`]). With [`MatrixOptions::ggml_order`] the `Q4_1`, `Q5_1`, `Q5_0`,
//! `Q8_0`, `Q4_K`, `Q6_K`, `MXFP4` and `IQ4_NL` products also sum in llama.cpp's order, so they equal
//! llama.cpp's bit for bit; by default each row's blocks are summed into one float, a few
//! roundings away. Float weights (`F32`, `F16`, `BF16`) in `ggml_order` take activations rounded
//! to their `vec_dot_type` (f16, bf16) and sum as `ggml_vec_dot_*` for one token and llamafile's
//! sgemm for 2+ (where its shape rules allow; `BatchRule::AtLeast2`); by default they dot f32
//! activations. The IQ lattice types' default row kernels already sum as llama.cpp's
//! `vec_dot` does (its path for products of fewer than 8 tokens); `ggml_order` adds its tiled
//! mat-mul's order for larger products.
//!
//! llama.cpp sums k-quant products in a different order depending on the batch: for `Q4_K`
//! weights its loader repacks (`q4_K_8x8`), the tokens of a product in whole groups of four
//! go through `ggml_gemm_q4_K_8x8_q8_K` and the last `n % 4` through `ggml_gemv_q4_K_8x8_q8_K`;
//! for `Q6_K` (never repacked on x86), unrepacked `Q4_K` and the IQ lattice types, products of
//! fewer than 8 tokens go through `ggml_vec_dot_*_q8_K` and larger ones through its tiled
//! k-quant mat-mul; repacked `MXFP4` and `IQ4_NL` (`mxfp4_8x8`, `iq4_nl_8x8`) sum alike in
//! their gemv and gemm, unrepacked ones through `vec_dot`. In
//! `ggml_order` each token follows the path llama.cpp would take for it in a product of the
//! same size (`BatchRule`) — so, as in llama.cpp, a token's result depends on the batch it
//! is in — unless the [`Scratch`] is [`Scratch::batch_invariant`].

mod acts;
pub(crate) mod buf;
mod repack;

pub use acts::Scratch;

use crate::dot::{self, ActKind, GgmlPath, PackedFn, QuantizeActsFn, RowsFn, TileFn};
use crate::isa::Isa;
use crate::mmap::Mmap;
use crate::pool::ThreadPool;
use crate::quant::{GgmlType, KernelError, is_supported, row_bytes};
use acts::{ActBuf, ActsRef, SyncPtr};
use buf::AlignedBytes;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Rows are dealt to threads in groups of this many (the interleave of repacked layouts).
const ROW_GROUP: usize = repack::GROUP;

/// Values per column range of a batched packed product: 8 tokens × 2048 activation bytes stay
/// in L1.
const K_BLOCK: usize = 2048;

/// Tokens of a batch taken together through a weight chunk (their activations and outputs stay
/// in L2 beside it; more tokens only re-read each chunk once per block).
const TOKEN_BLOCK: usize = 256;

/// Weight bytes a thread works through for all tokens of a batch before moving on (fits L2).
const CHUNK_BYTES: usize = 256 * 1024;

/// Where a matrix's bytes live.
#[derive(Debug)]
enum Storage<'a> {
    /// In the caller's buffer (usually the mapped model file), ggml layout.
    Borrowed(&'a [u8]),
    /// Copied into a buffer owned by the matrix, ggml layout.
    Owned(AlignedBytes),
    /// In a shared file mapping, ggml layout (`range` of the mapping).
    Mapped(Arc<Mmap>, Range<usize>),
    /// Repacked into 16-row groups (see `repack`), owned.
    Packed(Packed),
}

/// A packed kernel: its function, the most tokens it takes per call, and whether a batch may
/// walk rows in column ranges (`add` calls; not for most ggml-order kernels, whose running state
/// is more than the output).
#[derive(Clone, Copy)]
struct PackedKernel {
    f: PackedFn,
    max_ny: usize,
    split: bool,
}

/// A repacked matrix: `groups` groups of 16 rows, then the remaining rows in ggml layout.
struct Packed {
    buf: AlignedBytes,
    groups: usize,
    group_bytes: usize,
    /// The kernels of the two paths of [`Matrix::rule`] (the same one twice for most types).
    kernels: [PackedKernel; 2],
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Packed({} groups of 16 rows, {:?})",
            self.groups, self.buf
        )
    }
}

/// How a [`Matrix`] is prepared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixOptions {
    /// Whose kernels to use (lowered to what the CPU supports). Default: [`Isa::detected`].
    pub isa: Isa,
    /// Copy the weights into the interleaved layout of the level's fast kernels where one exists
    /// for the type (the matrix then owns its data). Default: true. With `false` the matrix
    /// always reads the caller's bytes in place.
    pub repack: bool,
    /// Sum dot products in llama.cpp's own float order where this crate can (`Q4_1`, `Q5_1`,
    /// `Q5_0`, `Q8_0`, `Q4_K`, `Q6_K`, `MXFP4` and the IQ lattice types at the x86 levels; `F32`,
    /// `F16` and `BF16` at every level, their activations first rounded to f16/bf16 as ggml
    /// converts them): with equal inputs the results then equal llama.cpp's bit for bit. At the `Avx512` level these matrices are repacked for
    /// kernels that keep ggml's accumulators (for the 32-value formats eight lanes per row:
    /// decode speed about the same, prompt mat-mat about half of the default kernels'); at
    /// `Avx2` they stay in ggml layout for the row kernels. Other types are unaffected.
    /// Default: false. Results are independent of the thread count either way; with
    /// `ggml_order`, `Q4_K`, `Q6_K` and IQ lattice results depend on the batch as llama.cpp's do (see the
    /// module documentation and [`Scratch::batch_invariant`]).
    pub ggml_order: bool,
    /// With `ggml_order`: whether llama.cpp's model loader would hold this matrix repacked in
    /// its CPU buffer (its default for weights used only in matrix products, when their rows
    /// are a multiple of 8 — not for a token embedding, which it also looks rows up from). It
    /// decides which of llama.cpp's `Q4_K` kernels the products follow. Default: true.
    pub llama_repacked: bool,
}

impl Default for MatrixOptions {
    fn default() -> MatrixOptions {
        MatrixOptions {
            isa: Isa::detected(),
            repack: true,
            ggml_order: false,
            llama_repacked: true,
        }
    }
}

/// How llama.cpp chooses between the two code paths of a matrix for the tokens of one product
/// (the paths are [`Matrix`]'s kernels `[0]`, for single tokens, and `[1]`, for batches).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchRule {
    /// Path 0 for every token.
    Uniform,
    /// The first `n − n % 4` tokens of a product of `n` take path 1, the rest path 0 (repacked
    /// `Q4_K`: `ggml_gemm_q4_K_8x8_q8_K`, then `ggml_gemv_q4_K_8x8_q8_K`).
    GroupsOf4,
    /// Every token of a product of 8 tokens or more takes path 1, of a smaller one path 0
    /// (k-quants in ggml layout and the IQ lattice types: the tiled k-quant mat-mul, else
    /// `ggml_vec_dot_*_q8_K`).
    AtLeast8,
    /// Every token of a product of 2 tokens or more takes path 1 (float weights: llamafile's
    /// sgemm, where the shape allows it), of a single token path 0 (`ggml_vec_dot_*`).
    AtLeast2,
}

impl BatchRule {
    /// The paths of llama.cpp for a matrix of `ty` with `rows` rows (`repacked`: held in its
    /// repacked buffer when it can be): the rule, and the path of each of the two kernel slots.
    fn ggml(ty: GgmlType, rows: usize, cols: usize, repacked: bool) -> (BatchRule, [GgmlPath; 2]) {
        use GgmlPath as P;
        match ty {
            // llamafile's sgemm takes float products of 2+ tokens when the rows are a multiple
            // of 4 and the width of its step; `mul_mat` falls back to `vec_dot` otherwise.
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16
                if rows.is_multiple_of(4) && cols.is_multiple_of(dot::sgemm_step(ty)) =>
            {
                (BatchRule::AtLeast2, [P::VecDot, P::Sgemm])
            }
            GgmlType::Q4_K if repacked && rows.is_multiple_of(8) => {
                (BatchRule::GroupsOf4, [P::Gemv, P::Gemm])
            }
            GgmlType::Q4_K
            | GgmlType::Q6_K
            | GgmlType::IQ2_XXS
            | GgmlType::IQ2_XS
            | GgmlType::IQ2_S
            | GgmlType::IQ3_XXS
            | GgmlType::IQ3_S
            | GgmlType::IQ1_S
            | GgmlType::IQ1_M => (BatchRule::AtLeast8, [P::VecDot, P::Tiled]),
            // Repacked `MXFP4` and `IQ4_NL` (`mxfp4_8x8`, `iq4_nl_8x8`, one template): gemv
            // and gemm sum alike, whole blocks per fma.
            GgmlType::MXFP4 | GgmlType::IQ4_NL if repacked && rows.is_multiple_of(8) => {
                (BatchRule::Uniform, [P::Gemv, P::Gemv])
            }
            _ => (BatchRule::Uniform, [P::VecDot, P::VecDot]),
        }
    }

    /// The tokens `0..n` of a product cut into runs that take one kernel slot each: up to two
    /// (token range, slot) pairs, in order.
    fn runs(self, n: usize, batch_invariant: bool) -> [(Range<usize>, usize); 2] {
        let none = (n..n, 0);
        match self {
            _ if batch_invariant => [(0..n, 0), none],
            BatchRule::Uniform => [(0..n, 0), none],
            BatchRule::GroupsOf4 => {
                let g = n - n % 4;
                [(0..g, 1), (g..n, 0)]
            }
            BatchRule::AtLeast8 => [(0..n, usize::from(n >= 8)), none],
            BatchRule::AtLeast2 => [(0..n, usize::from(n >= 2)), none],
        }
    }
}

/// A weight matrix in ggml layout: `rows` (output features, ggml `ne1`) × `cols` (input
/// features, `ne0`, contiguous), of one [`GgmlType`], with its kernels chosen.
pub struct Matrix<'a> {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Storage<'a>,
    isa: Isa,
    kind: ActKind,
    /// Which kernel slot each token of a product takes.
    rule: BatchRule,
    /// The row kernels of the two slots (the same one twice unless `rule` tells them apart).
    rows_fns: [RowsFn; 2],
    /// The 4×4 tile kernels of the two slots, where the slot's order has one.
    tile_fns: [Option<TileFn>; 2],
    quantize_fn: Option<QuantizeActsFn>,
}

impl std::fmt::Debug for Matrix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matrix")
            .field("ty", &self.ty)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("isa", &self.isa)
            .field("data", &self.data)
            .finish()
    }
}

impl<'a> Matrix<'a> {
    /// A `rows × cols` matrix of type `ty` over `data` (`rows` rows of `cols` values each, in
    /// ggml's block layout) with the default [`MatrixOptions`]: the detected instruction set,
    /// repacked into its fast layout where the type has one (a copy: `data` is not needed
    /// afterwards). Checks that the type is supported, that `cols` is a whole number of blocks
    /// and that `data` has exactly the matrix's size.
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Matrix<'a>, KernelError> {
        Matrix::with_options(ty, rows, cols, data, MatrixOptions::default())
    }

    /// As [`Matrix::new`] with explicit options (instruction set, repacking).
    pub fn with_options(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
        options: MatrixOptions,
    ) -> Result<Matrix<'a>, KernelError> {
        Matrix::build(ty, rows, cols, data, options, None)
    }

    /// As [`Matrix::with_options`], calling `release(range)` as repacking finishes with each
    /// part of `data` (ranges of `data`, growing from the start, possibly overlapping), so a
    /// caller repacking from a mapped file can drop those pages while it goes and never holds
    /// two copies of a large matrix.
    pub fn with_options_releasing(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
        options: MatrixOptions,
        release: &dyn Fn(Range<usize>),
    ) -> Result<Matrix<'a>, KernelError> {
        Matrix::build(ty, rows, cols, data, options, Some(release))
    }

    fn build(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
        options: MatrixOptions,
        release: Option<&dyn Fn(Range<usize>)>,
    ) -> Result<Matrix<'a>, KernelError> {
        let isa = options.isa.min(Isa::best_supported());
        let (kind, rows_fn) = match (ActKind::for_weight(ty), dot::rows_kernel(isa, ty)) {
            (Some(k), Some(f)) if is_supported(ty) => (k, f),
            _ => return Err(KernelError::UnsupportedType(ty)),
        };
        let row_bytes = row_bytes(ty, cols)?;
        if !cols.is_multiple_of(kind.block()) {
            return Err(KernelError::PartialBlock { ty, n: cols });
        }
        check_len("matrix data", rows, row_bytes, data.len())?;
        // llama.cpp's paths for this matrix, when its order is wanted and followed here.
        let ggml = options
            .ggml_order
            .then(|| BatchRule::ggml(ty, rows, cols, options.llama_repacked))
            .and_then(|(rule, paths)| {
                let rows_fns = [
                    dot::rows_kernel_ggml(isa, ty, paths[0])?,
                    dot::rows_kernel_ggml(isa, ty, paths[1])?,
                ];
                Some((rule, paths, rows_fns))
            });
        // Float weights in llama.cpp's order read activations rounded to their `vec_dot_type`
        // and take no 4×4 tiles (their order is a kernel's per output).
        let float_ggml = ggml.as_ref().and(dot::float_act_kind(ty));
        let kind = float_ggml.unwrap_or(kind);
        let (rule, rows_fns, kernels) = match ggml {
            Some((rule, paths, rows_fns)) => {
                // Repack only for kernels that sum in ggml's order too.
                let kernel =
                    |path| {
                        dot::packed_kernel_ggml(isa, ty, path)
                            .map(|(f, max_ny, split)| PackedKernel { f, max_ny, split })
                    };
                let kernels = kernel(paths[0]).zip(kernel(paths[1])).map(|(a, b)| [a, b]);
                (rule, rows_fns, kernels)
            }
            None => {
                let kernels = dot::packed_kernel(isa, ty).map(|(f, max_ny)| {
                    let k = PackedKernel {
                        f,
                        max_ny,
                        split: true,
                    };
                    [k, k]
                });
                (BatchRule::Uniform, [rows_fn, rows_fn], kernels)
            }
        };
        let packed = match kernels {
            Some(kernels) if options.repack && rows >= repack::GROUP => {
                Some(pack(ty, rows, cols, row_bytes, data, kernels, release))
            }
            _ => None,
        };
        Ok(Matrix {
            ty,
            rows,
            cols,
            row_bytes,
            data: match packed {
                Some(p) => Storage::Packed(p),
                None => Storage::Borrowed(data),
            },
            isa,
            kind,
            rule,
            rows_fns,
            // Float weights in llama.cpp's order: tiles only in its sgemm order (slot 1).
            tile_fns: match float_ggml {
                Some(_) if rule == BatchRule::AtLeast2 => [None, dot::tile_kernel_ggml(isa, ty)],
                Some(_) => [None, None],
                None => [dot::tile_kernel(isa, ty); 2],
            },
            quantize_fn: dot::quantize_acts_kernel(isa, kind),
        })
    }

    /// The element type.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Output features (ggml `ne1`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features (ggml `ne0`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The instruction set whose kernels this matrix uses.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// This matrix without a borrow: a packed or owned matrix is moved, a borrowed one copies
    /// its bytes (for holding matrices next to the file they came from).
    pub fn into_owned(self) -> Matrix<'static> {
        self.map_storage(|data| match data {
            Storage::Borrowed(b) => {
                let mut buf = AlignedBytes::for_weights(b.len());
                buf.as_mut_slice().copy_from_slice(b);
                Storage::Owned(buf)
            }
            Storage::Owned(b) => Storage::Owned(b),
            Storage::Mapped(m, r) => Storage::Mapped(m, r),
            Storage::Packed(p) => Storage::Packed(p),
        })
    }

    /// This matrix without a borrow, where the bytes it was built over are bytes
    /// `offset..offset + len` of `map`: a matrix reading the caller's bytes now reads them from
    /// the shared mapping (no copy); a packed or owned matrix is moved.
    ///
    /// # Panics
    /// If the matrix borrows bytes that are not that range of `map`.
    pub fn into_mapped(self, map: Arc<Mmap>, offset: usize) -> Matrix<'static> {
        self.map_storage(|data| match data {
            Storage::Borrowed(b) => {
                let range = offset..offset + b.len();
                assert!(
                    map.get(range.clone()).is_some_and(|m| std::ptr::eq(m, b)),
                    "into_mapped: the matrix's bytes are not that range of the mapping"
                );
                Storage::Mapped(map, range)
            }
            Storage::Owned(b) => Storage::Owned(b),
            Storage::Mapped(m, r) => Storage::Mapped(m, r),
            Storage::Packed(p) => Storage::Packed(p),
        })
    }

    fn map_storage<'b>(self, f: impl FnOnce(Storage<'a>) -> Storage<'b>) -> Matrix<'b> {
        let Matrix {
            ty,
            rows,
            cols,
            row_bytes,
            data,
            isa,
            kind,
            rule,
            rows_fns,
            tile_fns,
            quantize_fn,
        } = self;
        Matrix {
            ty,
            rows,
            cols,
            row_bytes,
            data: f(data),
            isa,
            kind,
            rule,
            rows_fns,
            tile_fns,
            quantize_fn,
        }
    }

    /// Whether [`MatrixOptions::ggml_order`] changes how matrices of `ty` sum at the detected
    /// instruction-set level (i.e. whether their results can equal llama.cpp's bit for bit,
    /// on every code path llama.cpp may take for the type).
    pub fn ggml_order_available(ty: GgmlType) -> bool {
        let isa = Isa::detected();
        // The paths of a matrix llama.cpp repacks and of one it leaves in ggml layout.
        [true, false].into_iter().all(|repacked| {
            let (_, paths) = BatchRule::ggml(ty, 8, 256, repacked);
            paths
                .iter()
                .all(|&p| dot::rows_kernel_ggml(isa, ty, p).is_some())
        })
    }

    /// Whether [`Matrix::dequantize_row`] can read rows of `ty` back from a repacked matrix.
    pub fn packs_row_lookup(ty: GgmlType) -> bool {
        ty == GgmlType::Q8_0 || repack::keeps_blocks(ty)
    }

    /// Row `r` as `f32` values (`out.len() == cols`), from whichever layout the matrix holds —
    /// so an embedding table can be looked up from its repacked copy. Packed `Q8_0` and every
    /// unpacked type are supported; other packed types give [`KernelError::UnsupportedType`].
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<(), KernelError> {
        if r >= self.rows {
            return Err(KernelError::ShapeMismatch("row index past the matrix"));
        }
        if out.len() != self.cols {
            return Err(KernelError::LengthMismatch {
                what: "dequantized row",
                expected: self.cols,
                actual: out.len(),
            });
        }
        let rb = self.row_bytes;
        match &self.data {
            Storage::Borrowed(b) => {
                crate::quant::dequantize_row(self.ty, &b[r * rb..(r + 1) * rb], out)
            }
            Storage::Owned(b) => {
                crate::quant::dequantize_row(self.ty, &b.as_slice()[r * rb..(r + 1) * rb], out)
            }
            Storage::Mapped(m, range) => {
                crate::quant::dequantize_row(self.ty, &m[range.clone()][r * rb..(r + 1) * rb], out)
            }
            Storage::Packed(p) if r >= p.groups * repack::GROUP => {
                let at = p.groups * p.group_bytes + (r - p.groups * repack::GROUP) * rb;
                crate::quant::dequantize_row(self.ty, &p.buf.as_slice()[at..at + rb], out)
            }
            Storage::Packed(p) if self.ty == GgmlType::Q8_0 => {
                let nb = self.cols / 32;
                let col_bytes = p.group_bytes / nb.max(1);
                let group = &p.buf.as_slice()[r / repack::GROUP * p.group_bytes..];
                for (b, o) in out.chunks_exact_mut(32).enumerate() {
                    let blk = repack::q8_0_block_of_row(
                        &group[b * col_bytes..(b + 1) * col_bytes],
                        r % repack::GROUP,
                    );
                    let d = blk.d.get();
                    for (v, &q) in o.iter_mut().zip(&blk.qs) {
                        *v = d * f32::from(q);
                    }
                }
                Ok(())
            }
            Storage::Packed(p) if repack::keeps_blocks(self.ty) => {
                // Each block column holds the group's 16 blocks as stored.
                let size = self.ty.type_size() as usize;
                let group = &p.buf.as_slice()[r / repack::GROUP * p.group_bytes..];
                let block = self.ty.block_size() as usize;
                for (b, o) in out.chunks_exact_mut(block).enumerate() {
                    let at = (repack::GROUP * b + r % repack::GROUP) * size;
                    crate::quant::dequantize_row(self.ty, &group[at..at + size], o)?;
                }
                Ok(())
            }
            Storage::Packed(_) => Err(KernelError::UnsupportedType(self.ty)),
        }
    }

    /// Whether the weights were repacked into an interleaved layout.
    pub fn is_packed(&self) -> bool {
        matches!(self.data, Storage::Packed(_))
    }

    /// Computes rows `r0..r1` of `y` (row stride `self.rows`) for `n_tokens` activation rows,
    /// each token with the kernel llama.cpp's path for it in this product follows (see
    /// [`BatchRule`]; slot 0 for all when `batch_invariant`).
    ///
    /// # Safety
    /// `acts` holds `n_tokens` rows of this matrix's activation kind and width; `y` is valid
    /// for `n_tokens × self.rows` values and no other thread writes rows `r0..r1` of it;
    /// `r0 ≤ r1 ≤ self.rows`, and `r0` is a multiple of 16.
    unsafe fn mul_rows(
        &self,
        acts: &ActsRef,
        n_tokens: usize,
        batch_invariant: bool,
        y: SyncPtr<f32>,
        r0: usize,
        r1: usize,
    ) {
        for (tokens, slot) in self.rule.runs(n_tokens, batch_invariant) {
            if tokens.is_empty() {
                continue;
            }
            let rows_fn = self.rows_fns[slot];
            let tile = self.tile_fns[slot];
            match &self.data {
                // SAFETY: forwarded caller contract.
                Storage::Borrowed(b) => unsafe {
                    self.mul_plain(b.as_ptr(), (rows_fn, tile), acts, tokens, y, r0..r1)
                },
                // SAFETY: as above.
                Storage::Owned(b) => unsafe {
                    self.mul_plain(
                        b.as_slice().as_ptr(),
                        (rows_fn, tile),
                        acts,
                        tokens,
                        y,
                        r0..r1,
                    )
                },
                // SAFETY: as above; `build` checked the range's length.
                Storage::Mapped(m, range) => unsafe {
                    let w = m[range.clone()].as_ptr();
                    self.mul_plain(w, (rows_fn, tile), acts, tokens, y, r0..r1)
                },
                Storage::Packed(p) => {
                    let g0 = r0 / repack::GROUP;
                    let g1 = (r1 / repack::GROUP).min(p.groups);
                    let kernel = p.kernels[slot];
                    // SAFETY: forwarded caller contract; groups `g0..g1` are inside the buffer.
                    unsafe { self.mul_packed(p, kernel, acts, tokens.clone(), y, g0..g1) };
                    let t0 = r0.max(p.groups * repack::GROUP);
                    if t0 < r1 {
                        // The rows after the last whole group, in ggml layout after the groups.
                        let tail = p.buf.as_slice()[p.groups * p.group_bytes..].as_ptr();
                        let base = tail.wrapping_sub(p.groups * repack::GROUP * self.row_bytes);
                        // SAFETY: `base + r·row_bytes` is inside the tail for rows `t0..r1`.
                        unsafe { self.mul_plain(base, (rows_fn, tile), acts, tokens, y, t0..r1) };
                    }
                }
            }
        }
    }

    /// The 16-row groups `groups` of a packed matrix for the tokens `tokens` with `kernel`:
    /// cache-sized chunks of groups, each applied to every tile of up to `max_ny` tokens before
    /// moving on.
    ///
    /// # Safety
    /// As [`Matrix::mul_rows`] for the groups' rows, with `tokens` inside `0..n_tokens`.
    unsafe fn mul_packed(
        &self,
        p: &Packed,
        kernel: PackedKernel,
        acts: &ActsRef,
        tokens: Range<usize>,
        y: SyncPtr<f32>,
        groups: Range<usize>,
    ) {
        let (g0, g1) = (groups.start, groups.end);
        let block = self.ty.block_size() as usize;
        let nb = self.cols / block;
        let col_bytes = p.group_bytes / nb.max(1);
        // A batch walks long rows in column ranges whose activation tile stays in L1.
        let kc = if tokens.len() > 1 && kernel.split {
            (K_BLOCK / block).max(1)
        } else {
            nb.max(1)
        };
        let chunk = (CHUNK_BYTES / p.group_bytes.max(1)).max(1);
        let base = p.buf.as_slice().as_ptr();
        // Token blocks keep a block's activations and outputs in L2 beside the weight chunk.
        for tb0 in tokens.clone().step_by(TOKEN_BLOCK) {
            let tb1 = (tb0 + TOKEN_BLOCK).min(tokens.end);
            let mut c0 = g0;
            while c0 < g1 {
                let c1 = (c0 + chunk).min(g1);
                let mut t = tb0;
                while t < tb1 {
                    let ny = kernel.max_ny.min(tb1 - t);
                    let mut k0 = 0;
                    while k0 < nb {
                        let kn = kc.min(nb - k0);
                        // SAFETY: groups `c0..c1` and block columns `k0..k0 + kn` are inside the
                        // buffer, tokens `t..t + ny` and their blocks `k0..` inside the
                        // activations, and the outputs inside `y` (caller).
                        unsafe {
                            (kernel.f)(
                                kn,
                                base.add(c0 * p.group_bytes + k0 * col_bytes),
                                p.group_bytes,
                                c1 - c0,
                                acts.tile(t).skip_blocks(k0, self.kind),
                                ny,
                                y.0.add(t * self.rows + c0 * repack::GROUP),
                                self.rows,
                                k0 > 0,
                            );
                        }
                        k0 += kn;
                    }
                    t += ny;
                }
                c0 = c1;
            }
        }
    }

    /// The rows `rows` in ggml layout, row `r` at `w + r·row_bytes`, for the tokens `tokens`
    /// (quantized weights through `rows_fn`; float weights in 4×4 `tile`s where given, then
    /// `rows_fn`).
    ///
    /// # Safety
    /// As [`Matrix::mul_rows`], with the rows readable at `w`, `tokens` inside `0..n_tokens`
    /// and `rows_fn` one of this matrix's row kernels.
    unsafe fn mul_plain(
        &self,
        w: *const u8,
        (rows_fn, tile): (RowsFn, Option<TileFn>),
        acts: &ActsRef,
        tokens: Range<usize>,
        y: SyncPtr<f32>,
        rows: Range<usize>,
    ) {
        let (r0, r1) = (rows.start, rows.end);
        let chunk = (CHUNK_BYTES / self.row_bytes.max(1)).max(4);
        let mut c0 = r0;
        while c0 < r1 {
            let c1 = (c0 + chunk).min(r1);
            // Float weights in a batch: 4×4 register tiles first, the row kernel for the rest.
            let (mut t_done, mut r_done) = (tokens.start, c0);
            if let Some(tile) = tile
                && tokens.len() >= 4
            {
                let x = acts.row(0).f;
                r_done = c0 + (c1 - c0) / 4 * 4;
                while t_done + 4 <= tokens.end {
                    for r in (c0..r_done).step_by(4) {
                        // SAFETY: rows `r..r + 4` and tokens `t_done..t_done + 4` exist; the
                        // outputs are this thread's (caller).
                        unsafe {
                            tile(
                                self.cols,
                                w.wrapping_add(r * self.row_bytes),
                                self.row_bytes,
                                x.add(t_done * self.cols),
                                self.cols,
                                y.0.add(t_done * self.rows + r),
                                self.rows,
                            );
                        }
                    }
                    t_done += 4;
                }
            }
            for t in tokens.clone() {
                // Rows the tiles covered for this token are skipped.
                let c0 = if t < t_done { r_done } else { c0 };
                if c0 == c1 {
                    continue;
                }
                // SAFETY: rows `c0..c1` lie inside the matrix data; the kernel matches the
                // type and activation kind (both chosen in `with_options`); the caller guarantees
                // the activation rows and the output region.
                unsafe {
                    rows_fn(
                        self.cols,
                        w.wrapping_add(c0 * self.row_bytes),
                        self.row_bytes,
                        c1 - c0,
                        acts.row(t),
                        y.0.add(t * self.rows + c0),
                    );
                }
            }
            c0 = c1;
        }
    }
}

/// `y[t][r] = Σ_c w[r][c]·x[t][c]` for `t < n_tokens`: `x` holds `n_tokens` rows of
/// `w.cols()` values, `y` receives `n_tokens` rows of `w.rows()` values. `n_tokens == 1` is
/// the decode mat-vec. Activations are quantized once into `scratch`; the work is one
/// [`ThreadPool::run`] (a batch of more than 64 Ki input values is quantized in one more).
/// Each output depends only on its weight row and token — and, for `Q4_K`, `Q6_K` and IQ
/// lattice matrices made with [`MatrixOptions::ggml_order`], on the token's place in a batch of `n_tokens`, as in
/// llama.cpp, unless `scratch` is [`Scratch::batch_invariant`]: results are bit-identical
/// whatever the thread count.
pub fn matmul(
    pool: &ThreadPool,
    w: &Matrix<'_>,
    x: &[f32],
    n_tokens: usize,
    y: &mut [f32],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    matmul_many(pool, &[w], x, n_tokens, &mut [y], scratch)
}

/// [`matmul`] for several matrices sharing one input (`ws[i]` writes `ys[i]`): the input is
/// quantized once per activation form and all products run in a single
/// [`ThreadPool::run`], each thread taking its share of every matrix's rows.
pub fn matmul_many(
    pool: &ThreadPool,
    ws: &[&Matrix<'_>],
    x: &[f32],
    n_tokens: usize,
    ys: &mut [&mut [f32]],
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    if ws.len() != ys.len() {
        return Err(KernelError::ShapeMismatch("one output per matrix"));
    }
    if ws.len() > MAX_MANY {
        return Err(KernelError::ShapeMismatch(
            "too many matrices in one matmul_many",
        ));
    }
    let Some(first) = ws.first() else {
        return Ok(());
    };
    let cols = first.cols;
    if ws.iter().any(|w| w.cols != cols) {
        return Err(KernelError::ShapeMismatch(
            "matrices sharing an input need equal cols",
        ));
    }
    check_len("input", n_tokens, cols, x.len())?;
    for (w, y) in ws.iter().zip(ys.iter()) {
        if y.len() != n_tokens * w.rows {
            return Err(KernelError::LengthMismatch {
                what: "output",
                expected: n_tokens * w.rows,
                actual: y.len(),
            });
        }
    }
    if n_tokens == 0 {
        return Ok(());
    }
    if cols == 0 {
        // Empty rows: every dot product is zero (no kernel runs).
        ys.iter_mut().for_each(|y| y.fill(0.0));
        return Ok(());
    }

    // Quantize once per activation form the matrices need.
    for kind in ActKind::PREPARED {
        if let Some(w) = ws.iter().find(|w| w.kind == kind)
            && let Some(q) = w.quantize_fn
        {
            scratch
                .buf_mut(kind)
                .quantize(kind, q, pool, x, n_tokens, cols);
        }
    }
    let acts_for = |kind: ActKind| match kind {
        ActKind::F32 => ActsRef::f32_rows(x, cols),
        k => scratch.buf(k).view(),
    };
    let jobs: [Option<(ActsRef, SyncPtr<f32>)>; MAX_MANY] = std::array::from_fn(|i| {
        let w = ws.get(i)?;
        let y = ys.get_mut(i)?;
        Some((acts_for(w.kind), SyncPtr(y.as_mut_ptr())))
    });
    let jobs = &jobs;
    let batch_invariant = scratch.batch_invariant;
    let units =
        WorkUnits::<MAX_MANY>::new(ws.iter().map(|w| (w.rows, w.row_bytes)), pool.n_threads());
    let next = AtomicUsize::new(0);
    pool.run(|_, _| {
        // Threads take units (a run of 16-row groups of one matrix) until none is left, so a
        // thread that starts late or runs slower gets less, and the result is the same whoever
        // computes which unit.
        loop {
            let u = next.fetch_add(1, Ordering::Relaxed);
            let Some((i, r0, r1)) = units.get(u) else {
                break;
            };
            let (Some(w), Some(Some((acts, y)))) = (ws.get(i), jobs.get(i)) else {
                break;
            };
            // SAFETY: `acts` holds `n_tokens` rows of the matrix's kind and width (quantized
            // above or the checked input), `y` was checked to hold `n_tokens × rows` values,
            // `r0` is a multiple of 16, and each unit (disjoint rows) is taken by one thread.
            unsafe { w.mul_rows(acts, n_tokens, batch_invariant, *y, r0, r1) };
        }
    });
    Ok(())
}

/// The work of one [`matmul_many`] or [`matmul_grouped`] call (up to `N` matrices) cut into
/// units: for matrix `i`, `count` units of `groups[i]` 16-row groups each (the last one
/// shorter), numbered `ends[i - 1]..ends[i]` (from 0 for the first matrix).
struct WorkUnits<const N: usize> {
    ends: [usize; N],
    groups: [usize; N],
    rows: [usize; N],
    len: usize,
}

impl<const N: usize> WorkUnits<N> {
    /// Units of about 32 KB of weights (larger for big matrices: at most 16 per thread), and
    /// at least one per thread when the matrix has that many groups. Matrices past the `N`th
    /// are left out.
    /// `sizes`: each matrix's (rows, bytes per row).
    fn new(sizes: impl Iterator<Item = (usize, usize)>, n_threads: usize) -> Self {
        const UNIT_BYTES: usize = 32 * 1024;
        let mut units = WorkUnits {
            ends: [0; N],
            groups: [1; N],
            rows: [0; N],
            len: 0,
        };
        let mut end = 0;
        for (i, (rows, row_bytes)) in sizes.enumerate().take(N) {
            let total = rows.div_ceil(ROW_GROUP);
            let bytes = rows * row_bytes;
            let unit_bytes = UNIT_BYTES.max(bytes / (16 * n_threads));
            if total > 0 {
                let count = bytes
                    .div_ceil(unit_bytes.max(1))
                    .clamp(n_threads.min(total).max(1), total);
                units.groups[i] = total.div_ceil(count);
                end += total.div_ceil(units.groups[i]);
            }
            units.ends[i] = end;
            units.rows[i] = rows;
            units.len = i + 1;
        }
        units
    }

    /// Unit `u` as (matrix, first row, end row), or `None` past the last unit.
    fn get(&self, u: usize) -> Option<(usize, usize, usize)> {
        let i = self.ends[..self.len].iter().position(|&e| u < e)?;
        let first = if i == 0 { 0 } else { self.ends[i - 1] };
        let g0 = (u - first) * self.groups[i];
        let r0 = (g0 * ROW_GROUP).min(self.rows[i]);
        let r1 = ((g0 + self.groups[i]) * ROW_GROUP).min(self.rows[i]);
        Some((i, r0, r1))
    }
}

/// `actual` must be `a × b` (the length of `what`).
fn check_len(what: &'static str, a: usize, b: usize, actual: usize) -> Result<(), KernelError> {
    let expected = a
        .checked_mul(b)
        .ok_or(KernelError::ShapeMismatch("size overflows"))?;
    if actual != expected {
        return Err(KernelError::LengthMismatch {
            what,
            expected,
            actual,
        });
    }
    Ok(())
}

/// Most matrices one [`matmul_many`] call takes.
pub const MAX_MANY: usize = 8;

/// One product of [`matmul_grouped`]: `y = w · x[rows]`.
pub struct Product<'p, 'm> {
    pub w: &'p Matrix<'m>,
    /// The rows (tokens) of the call's input that `w` multiplies.
    pub rows: Range<usize>,
    /// `rows.len() × w.rows` outputs.
    pub y: &'p mut [f32],
    /// Take the single-token kernel for every token (see [`Scratch::batch_invariant`]).
    pub batch_invariant: bool,
}

/// Most products one pool hand-off of [`matmul_grouped`] takes (more are run in turns).
pub const MAX_GROUPED: usize = 32;

/// Independent products, each of a matrix with a range of rows of one input `x` (`n_tokens`
/// rows of `cols`), in as few pool hand-offs as possible (one per [`MAX_GROUPED`] products):
/// the input is quantized once for every activation form the matrices need, then all threads
/// share the units of every product of a hand-off (as [`matmul_many`] shares those of its
/// matrices). Each product's results equal those of [`matmul`] with the same matrix, rows and
/// batch-invariance — grouping only saves hand-offs, which is what small products (the chosen
/// experts of a decode step, each on its own tokens) spend most time on. `products` is an
/// iterator so the caller needs no allocation to list them.
///
/// # Errors
/// A shape mismatch: `x` not `n_tokens × cols`, a matrix of another width, rows outside
/// `0..n_tokens`, an output of the wrong length. Products before the faulty one's hand-off may
/// have been computed.
pub fn matmul_grouped<'p, 'm: 'p>(
    pool: &ThreadPool,
    x: &[f32],
    n_tokens: usize,
    cols: usize,
    products: impl IntoIterator<Item = Product<'p, 'm>>,
    scratch: &mut Scratch,
) -> Result<(), KernelError> {
    check_len("input", n_tokens, cols, x.len())?;
    let mut products = products.into_iter();
    let mut quantized = [false; ActKind::PREPARED.len()];
    loop {
        let mut chunk: [Option<Product>; MAX_GROUPED] = std::array::from_fn(|_| None);
        let mut len = 0;
        for slot in chunk.iter_mut() {
            let Some(p) = products.next() else { break };
            if p.w.cols != cols {
                return Err(KernelError::ShapeMismatch(
                    "matrices sharing an input need equal cols",
                ));
            }
            if p.rows.start > p.rows.end || p.rows.end > n_tokens {
                return Err(KernelError::ShapeMismatch("product rows outside the input"));
            }
            if p.y.len() != p.rows.len() * p.w.rows {
                return Err(KernelError::LengthMismatch {
                    what: "output",
                    expected: p.rows.len() * p.w.rows,
                    actual: p.y.len(),
                });
            }
            *slot = Some(p);
            len += 1;
        }
        if len == 0 {
            return Ok(());
        }
        let chunk = &mut chunk[..len];
        if cols == 0 {
            chunk.iter_mut().flatten().for_each(|p| p.y.fill(0.0));
            continue;
        }
        // Quantize once per activation form the matrices need.
        for (form, kind) in ActKind::PREPARED.into_iter().enumerate() {
            if !quantized[form]
                && let Some(p) = chunk.iter().flatten().find(|p| p.w.kind == kind)
                && let Some(q) = p.w.quantize_fn
            {
                quantized[form] = true;
                scratch
                    .buf_mut(kind)
                    .quantize(kind, q, pool, x, n_tokens, cols);
            }
        }
        let jobs: [Option<(ActsRef, SyncPtr<f32>)>; MAX_GROUPED] = std::array::from_fn(|i| {
            let p = chunk.get_mut(i)?.as_mut()?;
            let acts = match p.w.kind {
                ActKind::F32 => ActsRef::f32_rows(x, cols),
                k => scratch.buf(k).view(),
            };
            Some((acts.skip_rows(p.rows.start), SyncPtr(p.y.as_mut_ptr())))
        });
        let chunk = &*chunk;
        // A product without rows gets no units.
        let units = WorkUnits::<MAX_GROUPED>::new(
            chunk.iter().flatten().map(|p| match p.rows.len() {
                0 => (0, 0),
                _ => (p.w.rows, p.w.row_bytes),
            }),
            pool.n_threads(),
        );
        let jobs = &jobs;
        let next = AtomicUsize::new(0);
        pool.run(|_, _| {
            loop {
                let u = next.fetch_add(1, Ordering::Relaxed);
                let Some((i, r0, r1)) = units.get(u) else {
                    break;
                };
                let (Some(Some(p)), Some(Some((acts, y)))) = (chunk.get(i), jobs.get(i)) else {
                    break;
                };
                // SAFETY: `acts` views rows `p.rows` of the input (quantized above or the
                // checked `x`), `y` was checked to hold `p.rows.len() × rows` values, `r0` is a
                // multiple of 16, and each unit (disjoint rows of one product's output) is taken
                // by one thread.
                unsafe {
                    p.w.mul_rows(acts, p.rows.len(), p.batch_invariant, *y, r0, r1)
                };
            }
        });
    }
}

/// The dot product of one weight row of type `ty` with `x`, through the same kernels and
/// activation quantization as [`matmul`] at level `isa`: for tests and one-off products
/// (it allocates).
pub fn dot_row(isa: Isa, ty: GgmlType, w_row: &[u8], x: &[f32]) -> Result<f32, KernelError> {
    let options = MatrixOptions {
        isa,
        repack: false,
        ..MatrixOptions::default()
    };
    let m = Matrix::with_options(ty, 1, x.len(), w_row, options)?;
    let mut y = [0.0f32];
    matmul(&ThreadPool::new(1), &m, x, 1, &mut y, &mut Scratch::new())?;
    Ok(y[0])
}

/// One activation row in the 8-bit form kernels read (see [`quantize_activations`]).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedRow {
    /// One `i8` per value.
    pub qs: Vec<i8>,
    /// One scale per block (32 values for `Q8_0`/`Q8_1`, 256 for `Q8_K`).
    pub d: Vec<f32>,
    /// Integer sums: one per block of 32 for `Q8_0`/`Q8_1`; for `Q8_K`, 24 per block of 256:
    /// the sums of each 16 values (ggml's `bsums`), then of each 32.
    pub sums: Vec<i16>,
    /// For `Q8_0`/`Q8_1`, one per block: ggml's `block_q8_1.s`, `f16(d · Σq)` with the
    /// unrounded `d`, as `f32` (the `Q4_1`/`Q5_1` dots use it for their min term); empty for
    /// `Q8_K`.
    pub s: Vec<f32>,
}

/// Quantizes `x` as [`matmul`] does for weights of type `weight_ty` at level `isa` (for tests
/// and inspection). `None` inside `Ok` means the type's activations stay `f32`.
///
/// These are llama.cpp's *run-time* activation quantizers on x86 (identical at every level),
/// which differ from the reference ones that [`quantize_row`](crate::quant::quantize_row)
/// follows for `Q8_0`/`Q8_1`: the values are `round_half_even(x · 127/amax)` where the
/// reference has `round_half_away(x · 1/d)`, and `Q8_1`'s `s` keeps ggml's rounding. `Q8_K` is
/// the same in both.
pub fn quantize_activations(
    isa: Isa,
    weight_ty: GgmlType,
    x: &[f32],
) -> Result<Option<QuantizedRow>, KernelError> {
    let kind = ActKind::for_weight(weight_ty).ok_or(KernelError::UnsupportedType(weight_ty))?;
    let Some(q) = dot::quantize_acts_kernel(isa, kind) else {
        return Ok(None);
    };
    if !x.len().is_multiple_of(kind.block()) {
        return Err(KernelError::PartialBlock {
            ty: weight_ty,
            n: x.len(),
        });
    }
    let mut buf = ActBuf::default();
    buf.quantize(kind, q, &ThreadPool::new(1), x, 1, x.len());
    let v = buf.view();
    let row = v.row(0);
    // SAFETY: `quantize` just wrote one row of `x.len()` values of this kind.
    let (qs, d, sums, s) = unsafe {
        (
            std::slice::from_raw_parts(row.qs, x.len()).to_vec(),
            std::slice::from_raw_parts(row.d, x.len() / kind.block()).to_vec(),
            std::slice::from_raw_parts(row.sums, x.len() / kind.block() * kind.sums_per_block())
                .to_vec(),
            match kind {
                ActKind::Q8 => std::slice::from_raw_parts(row.s, x.len() / kind.block()).to_vec(),
                _ => Vec::new(),
            },
        )
    };
    Ok(Some(QuantizedRow { qs, d, sums, s }))
}

/// Repacks `rows` rows of `data` into 16-row groups plus a ggml-layout tail, for `kernels`,
/// handing the source ranges it is done with to `release` (see
/// [`Matrix::with_options_releasing`]).
fn pack(
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: &[u8],
    kernels: [PackedKernel; 2],
    release: Option<&dyn Fn(Range<usize>)>,
) -> Packed {
    /// Source bytes repacked between two calls of `release`.
    const RELEASE_EVERY: usize = 4 << 20;
    let mut released = 0;
    let nb = cols / ty.block_size() as usize;
    let col_bytes = repack::bytes_per_column(ty).unwrap_or(0);
    let group_bytes = nb * col_bytes;
    let groups = rows / repack::GROUP;
    let tail_rows = rows - groups * repack::GROUP;
    let mut buf = AlignedBytes::for_weights(groups * group_bytes + tail_rows * row_bytes);
    let out = buf.as_mut_slice();
    let (packed, tail) = out.split_at_mut(groups * group_bytes);
    for (g, out) in packed
        .chunks_exact_mut(group_bytes.max(1))
        .enumerate()
        .take(groups)
    {
        let first = g * repack::GROUP;
        let rows: [&[u8]; repack::GROUP] =
            std::array::from_fn(|r| &data[(first + r) * row_bytes..(first + r + 1) * row_bytes]);
        repack::repack_group(ty, &rows, nb, out);
        let done = (first + repack::GROUP) * row_bytes;
        if let Some(release) = release
            && done - released >= RELEASE_EVERY
        {
            release(released..done);
            released = done;
        }
    }
    tail.copy_from_slice(&data[groups * repack::GROUP * row_bytes..]);
    if let Some(release) = release {
        release(released..data.len());
    }
    Packed {
        buf,
        groups,
        group_bytes,
        kernels,
    }
}
