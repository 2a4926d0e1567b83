//! Binding weights by name: every tensor an architecture needs is looked up with its expected
//! shape, and a missing or mis-shaped tensor is an error naming it.
//!
//! Matrices stay in the mapped file ([`MatRef`] is a byte range, no copy); the small vectors
//! (norm weights, biases) are converted to `Vec<f32>` once at load.

use std::ops::Range;
use std::sync::Arc;

use gguf::{GgmlType, Gguf, TensorInfo};
use kernels::matmul::{Matrix, MatrixOptions};
use kernels::mmap::Mmap;

use super::LoadError;

/// A weight matrix, ggml layout: `rows` rows of `cols` contiguous elements, with its kernel
/// [`Matrix`] built once at load — repacked into memory of its own for types with a faster
/// interleaved layout, otherwise reading the mapped file in place.
#[derive(Clone, Debug)]
pub struct MatRef {
    pub name: String,
    pub ty: GgmlType,
    /// Output features (`ne1`).
    pub rows: usize,
    /// Input features (`ne0`).
    pub cols: usize,
    /// Byte range of the data within the whole file.
    pub range: Range<usize>,
    /// The kernel matrix (shared by clones, e.g. a tied embedding and LM head).
    pub matrix: Arc<Matrix<'static>>,
}

/// A 3-D weight tensor: `experts.len()` matrices of `rows × cols` (see [`Binder::experts`]).
#[derive(Clone, Debug)]
pub struct ExpertMats {
    pub name: String,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub experts: Vec<MatRef>,
}

/// Whether a tensor is a mixture-of-experts router (bound with [`Binder::dense_f32`], not as
/// a kernel matrix).
fn is_router(name: &str) -> bool {
    name.ends_with("ffn_gate_inp.weight") || name.ends_with("ffn_gate_inp_shexp.weight")
}

/// Looks tensors up in a parsed file and checks their shapes.
pub struct Binder<'g, 'a> {
    file: &'g Gguf<'a>,
    /// The mapping `file` was parsed from, which unpacked matrices keep reading.
    map: &'g Arc<Mmap>,
    /// Called with the file range of each matrix once it has been repacked into memory of its
    /// own, so the mapped pages can be dropped (the process then holds one copy, not two).
    release: &'g (dyn Fn(Range<usize>) + Sync),
    /// Sum the products in llama.cpp's float order (see [`Binder::new`]).
    ggml_order: bool,
}

impl<'g, 'a> Binder<'g, 'a> {
    /// A binder over `file`. When every matrix of the file has a type whose products the
    /// kernels can sum in llama.cpp's own float order, they do: the model's outputs then equal
    /// llama.cpp's bit for bit for the same batch (at some cost in prompt speed). With any other
    /// type in the file, or without `llama_order`, the fastest order is used throughout.
    pub fn new(
        file: &'g Gguf<'a>,
        map: &'g Arc<Mmap>,
        release: &'g (dyn Fn(Range<usize>) + Sync),
        llama_order: bool,
    ) -> Self {
        let ggml_order = llama_order
            && file
                .tensors()
                .iter()
                .filter(|t| t.shape.iter().filter(|&&d| d > 1).count() >= 2)
                .filter(|t| !is_router(&t.name))
                .all(|t| Matrix::ggml_order_available(t.ty));
        Binder {
            file,
            map,
            release,
            ggml_order,
        }
    }

    /// Runs `a` on a thread of its own while this thread runs `b` (binding repacks weights, the
    /// bulk of load time, so the token embedding and the layers load side by side).
    pub fn join<A: Send, B>(
        &self,
        a: impl FnOnce() -> Result<A, LoadError> + Send,
        b: impl FnOnce() -> Result<B, LoadError>,
    ) -> Result<(A, B), LoadError> {
        std::thread::scope(|s| {
            let a = s.spawn(a);
            let b = b();
            let a = a.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
            Ok((a?, b?))
        })
    }

    /// `f(0..n)` in order, computed on up to `threads` threads.
    pub fn par_map<T: Send>(
        &self,
        n: usize,
        threads: usize,
        f: impl Fn(usize) -> Result<T, LoadError> + Sync,
    ) -> Result<Vec<T>, LoadError> {
        let threads = threads.clamp(1, n.max(1));
        let mut parts: Vec<Vec<(usize, Result<T, LoadError>)>> = std::thread::scope(|s| {
            let f = &f;
            let handles: Vec<_> = (0..threads)
                .map(|t| s.spawn(move || (t..n).step_by(threads).map(|i| (i, f(i))).collect()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let mut all: Vec<(usize, Result<T, LoadError>)> = parts.drain(..).flatten().collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, r)| r).collect()
    }

    /// Whether matrices sum in llama.cpp's float order.
    pub fn ggml_order(&self) -> bool {
        self.ggml_order
    }

    fn find(&self, name: &str) -> Result<&'g TensorInfo<'a>, LoadError> {
        self.file
            .tensor(name)
            .ok_or_else(|| LoadError::MissingTensor(name.to_owned()))
    }

    fn check_shape(t: &TensorInfo<'_>, expected: &[usize]) -> Result<(), LoadError> {
        // Trailing dimensions of 1 may be present or absent.
        let mut found: Vec<u64> = t.shape.clone();
        while found.len() > expected.len() && found.last() == Some(&1) {
            found.pop();
        }
        while found.len() < expected.len() && expected[found.len()..].iter().all(|&d| d == 1) {
            found.push(1);
        }
        let want: Vec<u64> = expected.iter().map(|&d| d as u64).collect();
        if found != want {
            return Err(LoadError::TensorShape {
                name: t.name.to_string(),
                found: t.shape.clone(),
                expected: want,
            });
        }
        Ok(())
    }

    fn range(&self, t: &TensorInfo<'_>) -> Range<usize> {
        // The reader checked offset + size against the file; both fit in usize on 64-bit.
        let start = self.file.data_offset() as usize + t.offset as usize;
        start..start + t.n_bytes() as usize
    }

    /// A required matrix of `rows` × `cols` (GGUF shape `[cols, rows]`), repacked for the fast
    /// kernels where its type has such a layout.
    pub fn mat(&self, name: &str, rows: usize, cols: usize) -> Result<MatRef, LoadError> {
        self.mat_with(name, rows, cols, true, true)
    }

    /// The token embedding: its rows are looked up one by one, and it is often the LM head
    /// too. Repacked (and its mapped pages released) when rows can be read back from the packed
    /// layout, so the LM head gets the fast kernels without a second copy; otherwise kept in the
    /// file's layout.
    pub fn embedding(&self, name: &str, rows: usize, cols: usize) -> Result<MatRef, LoadError> {
        let t = self.find(name)?;
        let mut probe = vec![0.0f32; cols];
        let packable = Matrix::packs_row_lookup(t.ty);
        // llama.cpp never repacks the token embedding (it looks rows up from it).
        let m = self.mat_with(name, rows, cols, packable, false)?;
        {
            // Checked once here so lookups during decoding cannot fail.
            m.matrix
                .dequantize_row(0, &mut probe)
                .map_err(|_| LoadError::UnsupportedType {
                    name: name.to_owned(),
                    ty: t.ty,
                })?;
        }
        Ok(m)
    }

    /// A table only ever read row by row (Gemma 4's per-layer token embeddings, billions of
    /// values in the E models): never repacked, its rows read from the mapped file as needed.
    pub fn lookup_table(&self, name: &str, rows: usize, cols: usize) -> Result<MatRef, LoadError> {
        let t = self.find(name)?;
        let m = self.mat_with(name, rows, cols, false, false)?;
        let mut probe = vec![0.0f32; cols];
        // Checked once here so lookups during decoding cannot fail.
        m.matrix
            .dequantize_row(0, &mut probe)
            .map_err(|_| LoadError::UnsupportedType {
                name: name.to_owned(),
                ty: t.ty,
            })?;
        Ok(m)
    }

    fn mat_with(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
        repack: bool,
        llama_repacked: bool,
    ) -> Result<MatRef, LoadError> {
        let t = self.find(name)?;
        Self::check_shape(t, &[cols, rows])?;
        let data = self.file.tensor_data(t);
        self.build(
            name,
            t.ty,
            rows,
            cols,
            data,
            self.range(t),
            repack,
            llama_repacked,
        )
    }

    /// The kernel matrix over `data`, which is bytes `range` of the file.
    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        name: &str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &[u8],
        range: Range<usize>,
        repack: bool,
        llama_repacked: bool,
    ) -> Result<MatRef, LoadError> {
        let unsupported = |_| LoadError::UnsupportedType {
            name: name.to_owned(),
            ty,
        };
        let options = MatrixOptions {
            repack,
            ggml_order: self.ggml_order,
            llama_repacked,
            ..MatrixOptions::default()
        };
        // Mapped pages are dropped while the matrix is repacked, so the process never holds
        // both copies; a matrix that is not repacked keeps reading them.
        let release = |r: Range<usize>| (self.release)(range.start + r.start..range.start + r.end);
        let m = Matrix::with_options_releasing(ty, rows, cols, data, options, &release)
            .map_err(unsupported)?;
        let matrix = Arc::new(m.into_mapped(self.map.clone(), range.start));
        Ok(MatRef {
            name: name.to_owned(),
            ty,
            rows,
            cols,
            range,
            matrix,
        })
    }

    /// A stack of `n_expert` matrices of `rows` × `cols` in one 3-D tensor (GGUF shape
    /// `[cols, rows, n_expert]`, a mixture-of-experts layer's `ffn_{gate,up,down}_exps`): each
    /// expert becomes a kernel matrix of its own over its slice of the tensor.
    pub fn experts(
        &self,
        name: &str,
        n_expert: usize,
        rows: usize,
        cols: usize,
    ) -> Result<ExpertMats, LoadError> {
        let t = self.find(name)?;
        Self::check_shape(t, &[cols, rows, n_expert])?;
        let data = self.file.tensor_data(t);
        let range = self.range(t);
        let per = data.len() / n_expert.max(1);
        let experts = (0..n_expert)
            .map(|e| {
                let at = e * per;
                self.build(
                    &format!("{name}[{e}]"),
                    t.ty,
                    rows,
                    cols,
                    &data[at..at + per],
                    range.start + at..range.start + at + per,
                    true,
                    true,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ExpertMats {
            name: name.to_owned(),
            ty: t.ty,
            rows,
            cols,
            experts,
        })
    }

    /// A fused stack of `n_expert` pairs of `rows` × `cols` matrices (GGUF shape
    /// `[cols, 2·rows, n_expert]`, `ffn_gate_up_exps`): each expert's first `rows` rows and its
    /// last `rows` rows, as two stacks over the same bytes, both named `name`.
    pub fn experts_halves(
        &self,
        name: &str,
        n_expert: usize,
        rows: usize,
        cols: usize,
    ) -> Result<[ExpertMats; 2], LoadError> {
        let t = self.find(name)?;
        let fused_rows = rows.checked_mul(2).ok_or_else(|| LoadError::TensorShape {
            name: name.to_owned(),
            found: t.shape.clone(),
            expected: vec![cols as u64, u64::MAX, n_expert as u64],
        })?;
        Self::check_shape(t, &[cols, fused_rows, n_expert])?;
        let data = self.file.tensor_data(t);
        let range = self.range(t);
        let per = data.len() / n_expert.max(1);
        let half = per / 2;
        let part = |h: usize| -> Result<ExpertMats, LoadError> {
            let experts = (0..n_expert)
                .map(|e| {
                    let at = e * per + h * half;
                    self.build(
                        &format!("{name}[{e}]"),
                        t.ty,
                        rows,
                        cols,
                        &data[at..at + half],
                        range.start + at..range.start + at + half,
                        true,
                        true,
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ExpertMats {
                name: name.to_owned(),
                ty: t.ty,
                rows,
                cols,
                experts,
            })
        };
        Ok([part(0)?, part(1)?])
    }

    /// A matrix fused from several along its rows (GGUF shape `[cols, Σ parts]`: Phi-3's
    /// `attn_qkv`, its `ffn_up` holding gate and up), as one kernel matrix per part over its
    /// rows, each named `name`. A row's product does not depend on the rows beside it, so the
    /// parts compute what the fused matrix would.
    pub fn mat_parts<const N: usize>(
        &self,
        name: &str,
        parts: [usize; N],
        cols: usize,
    ) -> Result<[MatRef; N], LoadError> {
        let t = self.find(name)?;
        let rows = parts
            .iter()
            .try_fold(0usize, |a, &p| a.checked_add(p))
            .ok_or_else(|| LoadError::TensorShape {
                name: name.to_owned(),
                found: t.shape.clone(),
                expected: vec![cols as u64, u64::MAX],
            })?;
        Self::check_shape(t, &[cols, rows])?;
        let data = self.file.tensor_data(t);
        let range = self.range(t);
        let row_bytes = data.len() / rows.max(1);
        let mut at = 0;
        let mats = parts
            .iter()
            .map(|&p| {
                let bytes = at..at + p * row_bytes;
                at = bytes.end;
                self.build(
                    name,
                    t.ty,
                    p,
                    cols,
                    &data[bytes.clone()],
                    range.start + bytes.start..range.start + bytes.end,
                    true,
                    true,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Ok(mats) = <[MatRef; N]>::try_from(mats) else {
            unreachable!("one matrix per part")
        };
        Ok(mats)
    }

    /// Whether the file has a tensor called `name`.
    pub fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }

    /// An optional matrix: `None` when absent, an error when present with another shape.
    pub fn opt_mat(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Option<MatRef>, LoadError> {
        match self.file.tensor(name) {
            None => Ok(None),
            Some(_) => self.mat(name, rows, cols).map(Some),
        }
    }

    /// A small dense matrix of `rows` × `cols` (GGUF shape `[cols, rows]`) converted to f32,
    /// row-major: a mixture-of-experts router (`ffn_gate_inp`), whose products the engine
    /// computes itself in llama.cpp's f32 order rather than through a kernel matrix.
    pub fn dense_f32(&self, name: &str, rows: usize, cols: usize) -> Result<Vec<f32>, LoadError> {
        let t = self.find(name)?;
        Self::check_shape(t, &[cols, rows])?;
        let mut out = vec![0.0f32; rows * cols];
        let bytes = self.file.tensor_data(t);
        let unsupported = |_| LoadError::UnsupportedType {
            name: name.to_owned(),
            ty: t.ty,
        };
        let rb = kernels::quant::row_bytes(t.ty, cols).map_err(unsupported)?;
        for (r, row) in out.chunks_exact_mut(cols.max(1)).enumerate() {
            kernels::quant::dequantize_row(t.ty, &bytes[r * rb..(r + 1) * rb], row)
                .map_err(unsupported)?;
        }
        Ok(out)
    }

    /// A required vector of `len` values, converted to f32.
    pub fn vec(&self, name: &str, len: usize) -> Result<Vec<f32>, LoadError> {
        let t = self.find(name)?;
        Self::check_shape(t, &[len])?;
        let mut out = vec![0.0f32; len];
        let bytes = self.file.tensor_data(t);
        kernels::quant::dequantize_row(t.ty, bytes, &mut out).map_err(|_| {
            LoadError::UnsupportedType {
                name: name.to_owned(),
                ty: t.ty,
            }
        })?;
        Ok(out)
    }

    /// An optional vector of `len` values.
    pub fn opt_vec(&self, name: &str, len: usize) -> Result<Option<Vec<f32>>, LoadError> {
        match self.file.tensor(name) {
            None => Ok(None),
            Some(_) => self.vec(name, len).map(Some),
        }
    }
}
