//! `hearth quantize`: converts a GGUF model's weights to another type the way `llama-quantize`
//! does, so the bytes match what llama.cpp writes for the same input and type.
//!
//! [`plan`] decides each tensor's type ([`rules`], a port of llama.cpp's
//! `llama_tensor_get_type`: the `_S/_M/_L` mixes and the fallbacks for rows that are not whole
//! blocks); [`quantize`] converts the tensors on several threads with `kernels::quant` (ggml's
//! quantizers, with the importance-weighted searches when an [`imatrix`] is given) and streams
//! the new file to a writer one tensor at a time (memory stays at about one tensor), its
//! metadata copied from the input with `general.file_type`, `general.quantization_version` and
//! the `quantize.imatrix.*` keys set as llama-quantize sets them. Tensors are written in
//! llama.cpp's order ([`rules::llama_order`]).
#![forbid(unsafe_code)]

mod ftype;
pub mod imatrix;
pub mod rules;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use gguf::{Builder, GgmlType, Gguf, Value};

pub use ftype::{FTYPES, Ftype};
pub use imatrix::Imatrix;
use rules::{Hparams, Rules, TensorDesc};

/// ggml's `GGML_QNT_VERSION`, written to `general.quantization_version`.
pub const QUANTIZATION_VERSION: u32 = 2;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("unknown quantization type '{0}' (supported: {1})")]
    UnknownFtype(String, String),
    #[error("{0}")]
    UnsupportedFtype(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("importance matrix: {0}")]
    Imatrix(String),
    #[error(
        "tensor {tensor} is already quantized ({ty}): requantizing is disabled without \
         --allow-requantize (quality suffers compared with quantizing from 16 or 32 bits)"
    )]
    Requantize { tensor: String, ty: GgmlType },
    #[error(
        "this quantization requires an importance matrix (--imatrix): tensor {tensor} would be \
         {ty}"
    )]
    NeedsImatrix { tensor: String, ty: GgmlType },
    #[error("tensor {tensor}: {msg}")]
    Tensor { tensor: String, msg: String },
    #[error("{0}")]
    Model(String),
}

/// How to quantize (llama-quantize's options).
#[derive(Clone, Debug)]
pub struct Options {
    pub ftype: Ftype,
    /// `--allow-requantize`: quantized tensors may be converted again.
    pub allow_requantize: bool,
    /// `--output-tensor-type`: the type of `output.weight`.
    pub output_tensor_type: Option<GgmlType>,
    /// `--token-embedding-type`: the type of `token_embd.weight`.
    pub token_embedding_type: Option<GgmlType>,
    /// `--leave-output-tensor`: `output.weight` keeps its type.
    pub leave_output_tensor: bool,
    /// `--pure`: no mixes; every quantized tensor gets the file type's default type.
    pub pure: bool,
    /// Worker threads (at least 1).
    pub n_threads: usize,
}

/// An importance matrix ready for use: per-column weights by tensor name
/// ([`Imatrix::weights`]) and what llama-quantize records about it in the output.
#[derive(Clone, Debug, Default)]
pub struct ImatrixInput {
    pub weights: BTreeMap<String, Vec<f32>>,
    /// The path as given on the command line (`quantize.imatrix.file`).
    pub file: String,
    /// The first dataset (`quantize.imatrix.dataset`).
    pub dataset: Option<String>,
    /// `quantize.imatrix.chunks_count`, written when positive.
    pub chunk_count: u32,
}

impl ImatrixInput {
    /// Reads an imatrix file (GGUF or legacy) as llama-quantize loads it.
    pub fn load(path: &std::path::Path) -> Result<ImatrixInput, Error> {
        let m = Imatrix::read(path)?;
        if !m.is_legacy && !m.has_metadata {
            return Err(Error::Imatrix(format!(
                "missing imatrix metadata ({}, {}, {}) in {}",
                imatrix::KEY_DATASETS,
                imatrix::KEY_CHUNK_COUNT,
                imatrix::KEY_CHUNK_SIZE,
                path.display()
            )));
        }
        Ok(ImatrixInput {
            weights: m.weights()?,
            file: path.display().to_string(),
            dataset: m.datasets.first().cloned(),
            chunk_count: m.chunk_count,
        })
    }
}

/// One tensor's fate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorPlan {
    pub name: String,
    /// `ne`, innermost first.
    pub shape: Vec<u64>,
    pub from: GgmlType,
    pub to: GgmlType,
    /// The mix's type did not fit the row length and a fallback was taken.
    pub fallback: bool,
    /// The tensor needs an importance matrix for `to`.
    pub requires_imatrix: bool,
}

impl TensorPlan {
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }
}

/// The hyper-parameters the rules need, from the file's metadata.
pub fn hparams(file: &Gguf<'_>) -> Result<Hparams, Error> {
    let arch = file
        .architecture()
        .map_err(|e| Error::Model(format!("cannot read general.architecture: {e}")))?
        .to_string();
    let first_u32 = |key: &str| -> Option<u32> {
        let v = file.get(&format!("{arch}.{key}"))?;
        let n = match v.as_array() {
            Some(a) => a.i128_at(0)?,
            None => v.as_i128()?,
        };
        u32::try_from(n).ok()
    };
    let n_layer = first_u32("block_count")
        .ok_or_else(|| Error::Model(format!("missing {arch}.block_count")))?;
    let n_head = first_u32("attention.head_count").unwrap_or(0);
    Ok(Hparams {
        n_layer,
        n_head,
        n_head_kv: first_u32("attention.head_count_kv").unwrap_or(n_head),
        n_expert: first_u32("expert_count").unwrap_or(0),
        arch,
    })
}

/// Each tensor's type, in the order the output file holds them.
pub fn plan(file: &Gguf<'_>, opts: &Options, has_imatrix: bool) -> Result<Vec<TensorPlan>, Error> {
    let hp = hparams(file)?;
    let mut infos: Vec<&gguf::TensorInfo<'_>> = file.tensors().iter().collect();
    rules::llama_order(&mut infos, |t| &t.name);
    let descs: Vec<TensorDesc<'_>> = infos
        .iter()
        .map(|t| TensorDesc {
            name: &t.name,
            ty: t.ty,
            shape: &t.shape,
        })
        .collect();
    let r = Rules {
        ftype: opts.ftype,
        output_tensor_type: opts.output_tensor_type,
        token_embedding_type: opts.token_embedding_type,
        leave_output_tensor: opts.leave_output_tensor,
        pure: opts.pure,
        has_imatrix,
    };
    let choices = rules::choose_types(&hp, &r, &descs).map_err(Error::Model)?;
    Ok(infos
        .iter()
        .zip(choices)
        .map(|(t, c)| TensorPlan {
            name: t.name.to_string(),
            shape: t.shape.clone(),
            from: t.ty,
            to: c.ty,
            fallback: c.fallback,
            requires_imatrix: c.requires_imatrix,
        })
        .collect())
}

/// Rows per work item: at least 16384 values, as llama.cpp's `min_chunk_size`.
const MIN_CHUNK: usize = 32 * 512;

/// Converts one tensor's data (`src`, of type `t.from`) to `t.to` on `n_threads` threads.
/// `imatrix` holds `ne0` weights per expert (`ne0 × ne2`) when given.
pub fn quantize_tensor(
    t: &TensorPlan,
    src: &[u8],
    imatrix: Option<&[f32]>,
    n_threads: usize,
) -> Result<Vec<u8>, Error> {
    let err = |msg: String| Error::Tensor {
        tensor: t.name.clone(),
        msg,
    };
    let n_per_row = *t.shape.first().unwrap_or(&1) as usize;
    let n_rows = (t.n_elements() as usize) / n_per_row.max(1);
    let rows_per_expert = (*t.shape.get(1).unwrap_or(&1) as usize).max(1);
    let row_in = kernels::quant::row_bytes(t.from, n_per_row).map_err(|e| err(e.to_string()))?;
    let row_out = kernels::quant::row_bytes(t.to, n_per_row).map_err(|e| err(e.to_string()))?;
    if src.len() != row_in * n_rows {
        return Err(err(format!(
            "{} bytes of data, expected {}",
            src.len(),
            row_in * n_rows
        )));
    }
    let mut out = vec![0u8; row_out * n_rows];
    if out.is_empty() || src.is_empty() {
        return Ok(out);
    }
    let n_experts = n_rows / rows_per_expert;
    if let Some(w) = imatrix
        && w.len() != n_per_row * n_experts
    {
        return Err(err(format!(
            "{} importance weights, expected {} ({n_experts} × {n_per_row})",
            w.len(),
            n_per_row * n_experts
        )));
    }
    let rows_per_chunk = MIN_CHUNK.div_ceil(n_per_row.max(1)).max(1);
    // Work items never cross an expert boundary: each expert has its own importance weights.
    let mut items = Vec::new();
    for (e, (src_e, dst_e)) in src
        .chunks(row_in * rows_per_expert)
        .zip(out.chunks_mut(row_out * rows_per_expert))
        .enumerate()
    {
        let qw = imatrix.map(|w| &w[e * n_per_row..(e + 1) * n_per_row]);
        for (s, d) in src_e
            .chunks(row_in * rows_per_chunk)
            .zip(dst_e.chunks_mut(row_out * rows_per_chunk))
        {
            items.push((s, d, qw));
        }
    }
    let queue = Mutex::new(items.into_iter());
    let failure: Mutex<Option<String>> = Mutex::new(None);
    let work = || {
        let mut f32s = Vec::new();
        loop {
            let next = queue.lock().map(|mut q| q.next()).unwrap_or(None);
            let Some((s, d, qw)) = next else { break };
            let n = s.len() / row_in * n_per_row;
            f32s.resize(n, 0.0);
            let r = kernels::quant::dequantize_row(t.from, s, &mut f32s)
                .and_then(|()| kernels::quant::quantize_chunk(t.to, &f32s, n_per_row, qw, d));
            if let Err(e) = r {
                if let Ok(mut f) = failure.lock() {
                    f.get_or_insert(e.to_string());
                }
                break;
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..n_threads.max(1) {
            s.spawn(work);
        }
        work();
    });
    if let Some(msg) = failure.into_inner().unwrap_or(None) {
        return Err(err(msg));
    }
    Ok(out)
}

/// Progress of [`quantize`], reported after each tensor.
pub struct Progress<'p> {
    /// 1-based.
    pub index: usize,
    pub total: usize,
    pub tensor: &'p TensorPlan,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// What [`quantize`] wrote.
pub struct Output {
    pub plan: Vec<TensorPlan>,
    /// Bytes of the whole file.
    pub bytes_written: u64,
    /// Tensor data bytes before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Total elements of all tensors (for bits per weight).
    pub n_elements: u64,
    /// Tensors whose mix type did not fit and fell back.
    pub n_fallback: usize,
    /// Quantized tensors the importance matrix had no entry for.
    pub missing_imatrix: Vec<String>,
}

/// Whether hearth can produce type `ty` (ggml's quantizer for it is in `kernels::quant`).
fn can_write(ty: GgmlType) -> bool {
    kernels::quant::is_supported(ty)
}

/// Quantizes `file` as `opts` says and writes the new GGUF file to `out`, one tensor at a time;
/// `on_tensor` is called after each tensor. Everything that can be checked before the long work
/// (types, requantization, the importance matrix) is checked before the first byte is written.
pub fn quantize<'a>(
    file: &Gguf<'a>,
    opts: &Options,
    imatrix: Option<&ImatrixInput>,
    out: impl Write,
    mut on_tensor: impl FnMut(&Progress<'_>),
) -> Result<Output, Error> {
    let plan = plan(file, opts, imatrix.is_some())?;

    // Check everything before the long work: requantization, types, importance weights.
    let mut weights: Vec<Option<&[f32]>> = Vec::with_capacity(plan.len());
    let mut missing_imatrix = Vec::new();
    for t in &plan {
        let mut w = None;
        if t.from != t.to {
            if t.from.is_quantized() && !opts.allow_requantize {
                return Err(Error::Requantize {
                    tensor: t.name.clone(),
                    ty: t.from,
                });
            }
            if !can_write(t.to) {
                return Err(Error::Tensor {
                    tensor: t.name.clone(),
                    msg: format!("type {} cannot be written by hearth yet", t.to),
                });
            }
            if t.from != GgmlType::F32 && !can_write(t.from) {
                return Err(Error::Tensor {
                    tensor: t.name.clone(),
                    msg: format!("type {} cannot be read (converted to f32) yet", t.from),
                });
            }
            if let Some(m) = imatrix {
                let ne0 = t.shape.first().copied().unwrap_or(1);
                let ne2 = t.shape.get(2).copied().unwrap_or(1);
                match m.weights.get(&t.name) {
                    None => missing_imatrix.push(t.name.clone()),
                    Some(v) if v.len() as u64 == ne0 * ne2 => w = Some(v.as_slice()),
                    Some(v) => {
                        if !(t.name == "token_embd.weight"
                            || t.name == "per_layer_token_embd.weight")
                        {
                            return Err(Error::Imatrix(format!(
                                "imatrix size {} is different from tensor size {} for {}",
                                v.len(),
                                ne0 * ne2,
                                t.name
                            )));
                        }
                    }
                }
            }
            if w.is_none() && t.requires_imatrix {
                return Err(Error::NeedsImatrix {
                    tensor: t.name.clone(),
                    ty: t.to,
                });
            }
        }
        weights.push(w);
    }

    let mut b = Builder::new();
    for (k, v) in file.metadata() {
        b.set(k.to_string(), v.clone())
            .map_err(|e| Error::Model(format!("metadata key {k}: {e}")))?;
    }
    // As gguf_set_val_*: the key is removed and appended.
    let put = |b: &mut Builder<'a>, k: &str, v: Value<'a>| -> Result<(), Error> {
        b.remove(k);
        b.set(k, v)
            .map_err(|e| Error::Model(format!("metadata key {k}: {e}")))
    };
    put(
        &mut b,
        "general.quantization_version",
        Value::U32(QUANTIZATION_VERSION),
    )?;
    put(&mut b, "general.file_type", Value::U32(opts.ftype.id()))?;
    for k in ["split.no", "split.count", "split.tensors.count"] {
        b.remove(k);
    }
    if let Some(m) = imatrix
        && !m.weights.is_empty()
    {
        put(
            &mut b,
            "quantize.imatrix.file",
            Value::string(truncate(&m.file, 127)),
        )?;
        if let Some(d) = &m.dataset {
            put(
                &mut b,
                "quantize.imatrix.dataset",
                Value::string(truncate(d, 127)),
            )?;
        }
        put(
            &mut b,
            "quantize.imatrix.entries_count",
            Value::U32(m.weights.len() as u32),
        )?;
        if m.chunk_count > 0 {
            put(
                &mut b,
                "quantize.imatrix.chunks_count",
                Value::U32(m.chunk_count),
            )?;
        }
    }

    let (mut before, mut after, mut n_elements) = (0u64, 0u64, 0u64);
    let total = plan.len();
    let layout: Vec<gguf::TensorPlan> = plan
        .iter()
        .map(|t| gguf::TensorPlan {
            name: t.name.clone(),
            ty: t.to,
            // As ggml writes a tensor: trailing dimensions of 1 dropped (`ggml_n_dims`), so a
            // `[n, 1]` vector (Qwen2-MoE's `ffn_gate_inp_shexp`) comes out as `[n]`.
            shape: rules::ggml_shape(&t.shape).to_vec(),
        })
        .collect();
    // The first failure inside the writer's callback, returned as itself rather than as I/O.
    let mut failure: Option<Error> = None;
    let written = b.write_streaming(&layout, out, |i| {
        let t = &plan[i];
        let result = (|| {
            let info = file
                .tensor(&t.name)
                .ok_or_else(|| Error::Model(format!("tensor {} vanished", t.name)))?;
            let src = file.tensor_data(info);
            let data = if t.from == t.to {
                src.to_vec()
            } else {
                quantize_tensor(t, src, weights[i], opts.n_threads)?
            };
            Ok::<_, Error>((src.len() as u64, data))
        })();
        let (bytes_in, data) = match result {
            Ok(v) => v,
            Err(e) => {
                let msg = e.to_string();
                failure = Some(e);
                return Err(std::io::Error::other(msg));
            }
        };
        let bytes_out = data.len() as u64;
        before += bytes_in;
        after += bytes_out;
        n_elements += t.n_elements();
        on_tensor(&Progress {
            index: i + 1,
            total,
            tensor: t,
            bytes_in,
            bytes_out,
        });
        Ok(data)
    });
    let bytes_written = match (written, failure) {
        (_, Some(e)) => return Err(e),
        (Err(e), None) => return Err(Error::Io("cannot write the output".into(), e)),
        (Ok(n), None) => n,
    };
    let n_fallback = plan.iter().filter(|t| t.fallback).count();
    Ok(Output {
        plan,
        bytes_written,
        bytes_before: before,
        bytes_after: after,
        n_elements,
        n_fallback,
        missing_imatrix,
    })
}

/// At most `max` bytes of `s`, cut at a character boundary (llama-quantize copies 127 bytes).
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
