//! [`Scratch`]: the caller-owned buffers activations are quantized into, once per matmul call.

use super::buf::AlignedBytes;
use crate::dot::{ActKind, ActRow, ActTile, QuantizeActsFn, STEP_OFFS, step_offs};
use crate::pool::ThreadPool;

/// Quantized activation rows of one [`ActKind`], row-major: `qs` rows start on 64-byte
/// boundaries; `d`, `s` (both one per block, `s` only filled for [`ActKind::Q8`]), `sums` and
/// `offs` (the step offsets of [`ActTile::offs`], [`ActKind::Q8`] only) rows are dense.
#[derive(Debug, Default)]
pub(crate) struct ActBuf {
    qs: AlignedBytes,
    d: Vec<f32>,
    s: Vec<f32>,
    sums: Vec<i16>,
    offs: Vec<i32>,
    qs_stride: usize,
    d_stride: usize,
    sums_stride: usize,
}

/// Work space for [`matmul`](super::matmul): activations quantized to the 8-bit forms the weight
/// types dot against (and, for float weights in llama.cpp's order, rounded to f16 or bf16).
/// Size it once with [`Scratch::with_capacity`] for the largest call (tokens × input width) and
/// no matmul allocates; a larger call grows it. (The rounded float forms are not reserved
/// there — most models have no float matrices — but on first use, once.)
#[derive(Debug, Default)]
pub struct Scratch {
    pub(crate) q8: ActBuf,
    pub(crate) q8k: ActBuf,
    /// Activations rounded to f16 / bf16 (float weights in llama.cpp's order).
    pub(crate) f16: ActBuf,
    pub(crate) bf16: ActBuf,
    /// See [`Scratch::batch_invariant`].
    pub(crate) batch_invariant: bool,
}

impl Scratch {
    /// An empty scratch; the first calls allocate.
    pub fn new() -> Scratch {
        Scratch::default()
    }

    /// A scratch big enough for calls of up to `max_tokens` rows of `max_cols` values.
    pub fn with_capacity(max_tokens: usize, max_cols: usize) -> Scratch {
        let mut s = Scratch::default();
        let cols = max_cols.next_multiple_of(256);
        s.q8.reserve(ActKind::Q8, max_tokens, cols);
        s.q8k.reserve(ActKind::Q8K, max_tokens, cols);
        s
    }

    /// This scratch, making the matmuls that use it batch-invariant: every token of a batch
    /// then takes the kernel llama.cpp uses for a single token (`ggml_vec_dot` or `ggml_gemv`)
    /// even where llama.cpp itself would switch to a batch kernel (only `Q4_K` and `Q6_K`
    /// matrices with `MatrixOptions::ggml_order` ever switch). Results then never depend on how
    /// tokens are split into calls, and still equal llama.cpp's for single-token calls.
    pub fn batch_invariant(self) -> Scratch {
        Scratch {
            batch_invariant: true,
            ..self
        }
    }

    pub(crate) fn buf(&self, kind: ActKind) -> &ActBuf {
        match kind {
            ActKind::Q8K => &self.q8k,
            ActKind::F16 => &self.f16,
            ActKind::Bf16 => &self.bf16,
            _ => &self.q8,
        }
    }

    pub(crate) fn buf_mut(&mut self, kind: ActKind) -> &mut ActBuf {
        match kind {
            ActKind::Q8K => &mut self.q8k,
            ActKind::F16 => &mut self.f16,
            ActKind::Bf16 => &mut self.bf16,
            _ => &mut self.q8,
        }
    }
}

/// A raw pointer that may cross to pool threads; users guarantee disjoint access.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T>(pub *mut T);
// SAFETY: only used to hand disjoint regions of one buffer to pool threads, which finish
// before the buffer's borrow ends.
unsafe impl<T> Sync for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Send for SyncPtr<T> {}

/// Activation rows as kernels read them: the quantized buffer or the caller's `f32` rows.
#[derive(Clone, Copy)]
pub(crate) struct ActsRef {
    f: *const f32,
    f_stride: usize,
    qs: *const i8,
    d: *const f32,
    sums: *const i16,
    s: *const f32,
    offs: *const i32,
    qs_stride: usize,
    d_stride: usize,
    sums_stride: usize,
}
// SAFETY: read-only views of buffers that outlive the pool run using them.
unsafe impl Sync for ActsRef {}
// SAFETY: as above.
unsafe impl Send for ActsRef {}

impl ActsRef {
    /// Plain `f32` rows of `cols` values.
    pub(crate) fn f32_rows(x: &[f32], cols: usize) -> ActsRef {
        ActsRef {
            f: x.as_ptr(),
            f_stride: cols,
            qs: std::ptr::null(),
            d: std::ptr::null(),
            sums: std::ptr::null(),
            s: std::ptr::null(),
            offs: std::ptr::null(),
            qs_stride: 0,
            d_stride: 0,
            sums_stride: 0,
        }
    }

    /// The same rows from row `t` on (the caller keeps `t` within the rows the view was made
    /// for).
    pub(crate) fn skip_rows(&self, t: usize) -> ActsRef {
        ActsRef {
            f: self.f.wrapping_add(t * self.f_stride),
            qs: self.qs.wrapping_add(t * self.qs_stride),
            d: self.d.wrapping_add(t * self.d_stride),
            sums: self.sums.wrapping_add(t * self.sums_stride),
            s: self.s.wrapping_add(t * self.d_stride),
            offs: self.offs.wrapping_add(t * self.d_stride * STEP_OFFS),
            ..*self
        }
    }

    /// Rows `t..` as a tile for the packed kernels (8-bit kinds only).
    #[inline(always)]
    pub(crate) fn tile(&self, t: usize) -> ActTile {
        ActTile {
            qs: self.qs.wrapping_add(t * self.qs_stride),
            qs_stride: self.qs_stride,
            d: self.d.wrapping_add(t * self.d_stride),
            d_stride: self.d_stride,
            sums: self.sums.wrapping_add(t * self.sums_stride),
            sums_stride: self.sums_stride,
            s: self.s.wrapping_add(t * self.d_stride),
            offs: self.offs.wrapping_add(t * self.d_stride * STEP_OFFS),
        }
    }

    /// Row `t` (the caller keeps `t` below the number of rows the view was made for).
    #[inline(always)]
    pub(crate) fn row(&self, t: usize) -> ActRow {
        ActRow {
            f: self.f.wrapping_add(t * self.f_stride),
            qs: self.qs.wrapping_add(t * self.qs_stride),
            d: self.d.wrapping_add(t * self.d_stride),
            sums: self.sums.wrapping_add(t * self.sums_stride),
            s: self.s.wrapping_add(t * self.d_stride),
        }
    }
}

impl ActBuf {
    fn reserve(&mut self, kind: ActKind, tokens: usize, cols: usize) {
        // The rounded float forms keep their values in `d` alone.
        let float = matches!(kind, ActKind::F16 | ActKind::Bf16);
        self.qs_stride = if float { 0 } else { cols.next_multiple_of(64) };
        self.d_stride = cols / kind.block();
        self.sums_stride = cols / kind.block() * kind.sums_per_block();
        self.qs.ensure(tokens * self.qs_stride);
        if self.d.len() < tokens * self.d_stride {
            self.d.resize(tokens * self.d_stride, 0.0);
        }
        if !float && self.s.len() < tokens * self.d_stride {
            self.s.resize(tokens * self.d_stride, 0.0);
        }
        if self.sums.len() < tokens * self.sums_stride {
            self.sums.resize(tokens * self.sums_stride, 0);
        }
        if kind == ActKind::Q8 && self.offs.len() < tokens * self.d_stride * STEP_OFFS {
            self.offs.resize(tokens * self.d_stride * STEP_OFFS, 0);
        }
    }

    /// Quantizes `tokens` rows of `cols` values (`cols` a whole number of `kind` blocks) with
    /// `quantize`, splitting rows over `pool` when there are many.
    pub(crate) fn quantize(
        &mut self,
        kind: ActKind,
        quantize: QuantizeActsFn,
        pool: &ThreadPool,
        x: &[f32],
        tokens: usize,
        cols: usize,
    ) {
        self.reserve(kind, tokens, cols);
        let (qs_stride, d_stride, sums_stride) = (self.qs_stride, self.d_stride, self.sums_stride);
        let qs = SyncPtr(self.qs.as_mut_slice().as_mut_ptr().cast::<i8>());
        let d = SyncPtr(self.d.as_mut_ptr());
        let sums = SyncPtr(self.sums.as_mut_ptr());
        let s = SyncPtr(self.s.as_mut_ptr());
        let offs = SyncPtr(self.offs.as_mut_ptr());
        let with_offs = kind == ActKind::Q8;
        let work = |t0: usize, t1: usize| {
            let (qs, d, sums, s, offs) = (qs, d, sums, s, offs);
            for t in t0..t1 {
                // SAFETY: `reserve` sized every buffer the kind writes for `tokens` rows of these
                // strides (the rounded float forms write only `d`; the others' pointers are
                // never dereferenced), row `t` of `x` has `cols` values, each thread writes
                // only its own rows, and the kernel's instruction set was checked when it was
                // chosen.
                unsafe {
                    quantize(
                        &x[t * cols..(t + 1) * cols],
                        qs.0.wrapping_add(t * qs_stride),
                        d.0.add(t * d_stride),
                        sums.0.wrapping_add(t * sums_stride),
                        s.0.wrapping_add(t * d_stride),
                    );
                }
                if with_offs {
                    for b in 0..cols / 32 {
                        // SAFETY: row `t`'s bytes were just written (block `b` is inside the
                        // row) and `reserve` sized `offs` for `tokens` rows of `d_stride`
                        // blocks; each thread touches only its own rows.
                        unsafe {
                            let q = &*qs.0.add(t * qs_stride + 32 * b).cast::<[i8; 32]>();
                            offs.0
                                .add((t * d_stride + b) * STEP_OFFS)
                                .cast::<[i32; STEP_OFFS]>()
                                .write_unaligned(step_offs(q));
                        }
                    }
                }
            }
        };
        // Below this many values the hand-off costs more than the work.
        const PARALLEL_MIN: usize = 1 << 16;
        if pool.n_threads() > 1 && tokens > 1 && tokens * cols >= PARALLEL_MIN {
            pool.run(|i, n| work(tokens * i / n, tokens * (i + 1) / n));
        } else {
            work(0, tokens);
        }
    }

    /// A view of the rows last quantized (for the rounded float forms, `f` reads their values
    /// in `d`).
    pub(crate) fn view(&self) -> ActsRef {
        ActsRef {
            f: self.d.as_ptr(),
            f_stride: self.d_stride,
            qs: self.qs.as_slice().as_ptr().cast::<i8>(),
            d: self.d.as_ptr(),
            sums: self.sums.as_ptr(),
            s: self.s.as_ptr(),
            offs: self.offs.as_ptr(),
            qs_stride: self.qs_stride,
            d_stride: self.d_stride,
            sums_stride: self.sums_stride,
        }
    }
}
