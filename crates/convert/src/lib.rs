//! transformers checkpoints to GGUF, as llama.cpp's `convert_hf_to_gguf.py` writes them.
//!
//! [`Conversion::plan`] reads a checkpoint folder — `config.json`, the safetensors weights
//! (`model.safetensors`, or shards named by `model.safetensors.index.json`), `tokenizer.json`,
//! `tokenizer_config.json`, `chat_template.jinja` — and decides everything but the tensor bytes:
//! the metadata (a [`gguf::Builder`]) and, for every tensor, its GGUF name, type and shape.
//! [`Conversion::write_to`] then streams the file: each tensor is read from the mapped
//! safetensors, widened to f32, transformed as llama.cpp does (the Q/K row permutation of
//! `llama`, Gemma's `norm + 1`), converted to its output type and written, one at a time.
//!
//! The pieces: `checkpoint` (config and safetensors shards, validated), `arch` (one mapping
//! table per architecture: HF tensor names to GGUF names, expected shapes, hyper-parameter
//! keys), `vocab` (the tokenizer metadata, with llama.cpp's pre-tokenizer fingerprint), `tensor`
//! (element conversions and llama.cpp's rule for which tensors stay f32).

#![forbid(unsafe_code)]

mod arch;
mod checkpoint;
mod error;
mod naming;
mod spm;
mod tensor;
mod vocab;

use std::io::Write;
use std::path::Path;

use gguf::{Builder, GgmlType, TensorPlan, Value};

pub use arch::{Arch, SUPPORTED};
pub use error::Error;

use checkpoint::Checkpoint;

/// The `--outtype` of llama.cpp's converter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outtype {
    F32,
    F16,
    Bf16,
    Q8_0,
    /// llama.cpp's `auto`: bf16 when the first matrix stored as bf16 or f16 is bf16, else f16.
    Auto,
}

impl Outtype {
    /// Parses `f32`, `f16`, `bf16`, `q8_0` or `auto`.
    pub fn from_name(name: &str) -> Option<Outtype> {
        Some(match name.to_ascii_lowercase().as_str() {
            "f32" => Outtype::F32,
            "f16" => Outtype::F16,
            "bf16" => Outtype::Bf16,
            "q8_0" => Outtype::Q8_0,
            "auto" => Outtype::Auto,
            _ => return None,
        })
    }

    /// llama.cpp's `general.file_type` (`llama_ftype`) and the type of the quantizable tensors.
    fn file_type(self) -> (u32, GgmlType) {
        match self {
            Outtype::F32 => (0, GgmlType::F32),
            Outtype::F16 | Outtype::Auto => (1, GgmlType::F16),
            Outtype::Q8_0 => (7, GgmlType::Q8_0),
            Outtype::Bf16 => (32, GgmlType::BF16),
        }
    }

    /// The name llama.cpp gives files of this type (`F32`, `F16`, `BF16`, `Q8_0`).
    pub fn label(self) -> &'static str {
        match self {
            Outtype::F32 => "F32",
            Outtype::F16 | Outtype::Auto => "F16",
            Outtype::Bf16 => "BF16",
            Outtype::Q8_0 => "Q8_0",
        }
    }
}

/// One tensor of the output: where it comes from and what becomes of it.
#[derive(Debug, Clone)]
struct Job {
    source: Source,
    transform: arch::Transform,
    /// Dimensions of the transformers tensor (a vector stays f32).
    n_dims: usize,
    plan: TensorPlan,
}

#[derive(Debug, Clone)]
enum Source {
    /// Index into the checkpoint's tensors.
    Checkpoint(usize),
    /// Checkpoint tensors of one shape stacked along a new outermost axis (a layer's experts).
    Stack(Vec<usize>),
    /// An MXFP4 `_blocks`/`_scales` pair repacked into ggml's MXFP4 blocks, keeping every
    /// other row from `rows` when it is `Some` (gpt-oss's interleaved gate and up).
    Mxfp4 {
        blocks: usize,
        scales: usize,
        rows: Option<usize>,
    },
    /// Computed from config.json (llama.cpp's `generate_extra_tensors`).
    Generated(Vec<f32>),
}

/// A planned conversion: the metadata and every output tensor decided, the bytes not yet read.
pub struct Conversion {
    metadata: Builder<'static>,
    jobs: Vec<Job>,
    checkpoint: Checkpoint,
    outtype: Outtype,
    arch: Arch,
    /// Some tensors are written as the checkpoint's MXFP4 (gpt-oss as released).
    keeps_mxfp4: bool,
}

/// llama.cpp's `LLAMA_FTYPE_MOSTLY_MXFP4_MOE`.
const MOSTLY_MXFP4_MOE: u32 = 38;

impl Conversion {
    /// Reads and checks the checkpoint in `dir` and plans its conversion to `outtype`.
    pub fn plan(dir: &Path, outtype: Outtype) -> Result<Conversion, Error> {
        let checkpoint = Checkpoint::open(dir)?;
        let arch = Arch::from_config(&checkpoint.config)?;
        let hp = arch::HParams::read(arch, &checkpoint.config)?;
        let outtype = match outtype {
            Outtype::Auto => checkpoint.auto_outtype(),
            o => o,
        };
        let (mut file_type, base_type) = outtype.file_type();
        let vocab = vocab::Vocab::load(dir, &checkpoint.config, hp.n_vocab, arch)?;

        let mut jobs = Vec::new();
        for (name, values) in arch::extra_tensors(arch, &checkpoint.config)? {
            let shape = vec![values.len() as u64];
            jobs.push(Job {
                source: Source::Generated(values),
                n_dims: 1,
                transform: arch::Transform::default(),
                plan: TensorPlan {
                    name,
                    ty: GgmlType::F32,
                    shape,
                },
            });
        }
        // Per layer, the checkpoint index of each expert's matrices (EXPERT_PROJS order).
        let mut experts: std::collections::BTreeMap<usize, [Vec<Option<usize>>; 3]> =
            Default::default();
        // MXFP4 pairs, by layer and name: (blocks, scales) as they are found. llama.cpp writes
        // them first (from `generate_extra_tensors`), in the order their pairs complete.
        let mut mxfp4: std::collections::BTreeMap<(usize, String), [Option<usize>; 2]> =
            Default::default();
        let mut mxfp4_jobs = Vec::new();
        let is_mxfp4 = checkpoint
            .config
            .get("quantization_config")
            .and_then(|q| q.get("quant_method"))
            .and_then(serde_json::Value::as_str)
            == Some("mxfp4");
        for (source, t) in checkpoint.tensors.iter().enumerate() {
            let ms = match arch::map_tensor(arch, &hp, &t.name, &t.shape, vocab.n_vocab_real)? {
                arch::Mapping::Drop => continue,
                arch::Mapping::One(m) => vec![m],
                arch::Mapping::Split(ms) => ms,
                arch::Mapping::Mxfp4 {
                    bid,
                    key,
                    blocks,
                    split,
                    shape,
                } => {
                    if !is_mxfp4 || t.dtype != safetensors::Dtype::U8 {
                        return Err(Error::tensor(
                            &t.name,
                            "is an MXFP4 block or scale tensor, but config.json's \
                             quantization_config is not mxfp4 or the tensor is not U8",
                        ));
                    }
                    let pair = mxfp4.entry((bid, key.clone())).or_default();
                    pair[usize::from(!blocks)] = Some(source);
                    if let [Some(b), Some(sc)] = *pair {
                        mxfp4.remove(&(bid, key.clone()));
                        let (e, rows, cols) = (shape[0], shape[1], shape[2]);
                        let outs: Vec<(String, Option<usize>)> = if split {
                            vec![
                                (format!("blk.{bid}.ffn_gate_exps.weight"), Some(0)),
                                (format!("blk.{bid}.ffn_up_exps.weight"), Some(1)),
                            ]
                        } else {
                            vec![(format!("blk.{bid}.ffn_{key}_exps.weight"), None)]
                        };
                        for (name, sel) in outs {
                            let rows = if sel.is_some() { rows / 2 } else { rows };
                            mxfp4_jobs.push(Job {
                                source: Source::Mxfp4 {
                                    blocks: b,
                                    scales: sc,
                                    rows: sel,
                                },
                                n_dims: 3,
                                transform: arch::Transform::default(),
                                plan: TensorPlan {
                                    name,
                                    ty: GgmlType::MXFP4,
                                    shape: vec![cols as u64, rows as u64, e as u64],
                                },
                            });
                        }
                    }
                    continue;
                }
                arch::Mapping::Expert { bid, xid, proj } => {
                    let n_expert = hp.n_expert.unwrap_or(0);
                    let layer = experts
                        .entry(bid)
                        .or_insert_with(|| std::array::from_fn(|_| vec![None; n_expert]));
                    layer[proj][xid] = Some(source);
                    if layer.iter().flatten().all(Option::is_some) {
                        let layer = experts.remove(&bid).unwrap_or_default();
                        for (proj, sources) in layer.into_iter().enumerate() {
                            let sources: Vec<usize> = sources.into_iter().flatten().collect();
                            let one = &checkpoint.tensors[sources[0]].shape;
                            let name = format!("blk.{bid}.{}.weight", arch::EXPERT_PROJS[proj].1);
                            let ty = tensor::output_type(&name, 3, one[1], base_type);
                            let shape = vec![one[1] as u64, one[0] as u64, sources.len() as u64];
                            jobs.push(Job {
                                source: Source::Stack(sources),
                                n_dims: 3,
                                transform: arch::Transform::default(),
                                plan: TensorPlan { name, ty, shape },
                            });
                        }
                    }
                    continue;
                }
            };
            for m in ms {
                let ne0 = m.shape.last().copied().unwrap_or(1);
                let ty = tensor::output_type(&m.name, m.shape.len(), ne0, base_type);
                let mut shape: Vec<u64> = m.shape.iter().rev().map(|&d| d as u64).collect();
                if shape.is_empty() {
                    shape.push(1);
                }
                jobs.push(Job {
                    source: Source::Checkpoint(source),
                    n_dims: m.shape.len(),
                    transform: m.transform,
                    plan: TensorPlan {
                        name: m.name,
                        ty,
                        shape,
                    },
                });
            }
        }
        if let Some(((bid, key), _)) = mxfp4.first_key_value() {
            return Err(Error::tensor(
                &format!("model.layers.{bid}.mlp.experts.{key}_proj"),
                "has MXFP4 blocks without scales, or scales without blocks",
            ));
        }
        // prepare_metadata: a checkpoint that keeps MXFP4 tensors is MOSTLY_MXFP4_MOE unless
        // it is quantized further.
        let keeps_mxfp4 = !mxfp4_jobs.is_empty();
        if keeps_mxfp4 && outtype != Outtype::Q8_0 {
            file_type = MOSTLY_MXFP4_MOE;
        }
        let n_extra = jobs
            .iter()
            .take_while(|j| matches!(j.source, Source::Generated(_)))
            .count();
        jobs.splice(n_extra..n_extra, mxfp4_jobs);
        if let Some((bid, _)) = experts.first_key_value() {
            return Err(Error::tensor(
                &format!("model.layers.{bid}.mlp.experts"),
                "some experts' matrices are missing from the checkpoint",
            ));
        }

        let n_params: u64 = jobs
            .iter()
            .map(|j| j.plan.shape.iter().product::<u64>())
            .sum();
        let mut b = Builder::new();
        let set = |b: &mut Builder<'static>, k: &str, v: Value<'static>| b.set(k, v);
        set(&mut b, "general.architecture", Value::string(arch.name()))?;
        // llama.cpp generates the extra tensors before the metadata: their keys come first.
        for (key, value) in arch::extra_metadata(arch, &checkpoint.config)? {
            set(&mut b, &key, value)?;
        }
        set(&mut b, "general.type", Value::string("model"))?;
        let gen_config = dir.join("generation_config.json");
        if gen_config.is_file() {
            naming::write_sampling(&mut b, &checkpoint::read_json(&gen_config)?)?;
        }
        let names = naming::derive(&folder_name(dir), &checkpoint.config, n_params);
        let name = names.name.unwrap_or_else(|| folder_name(dir));
        set(&mut b, "general.name", Value::string(name))?;
        for (key, value) in [
            ("general.version", names.version),
            ("general.organization", names.organization),
            ("general.finetune", names.finetune),
            ("general.basename", names.basename),
        ] {
            if let Some(v) = value {
                set(&mut b, key, Value::string(v))?;
            }
        }
        let size = names.size_label.unwrap_or_else(|| moe_size_label(&jobs));
        set(&mut b, "general.size_label", Value::string(size))?;
        arch::write_hparams(arch, &hp, &checkpoint.config, file_type, &mut b)?;
        set(&mut b, "general.quantization_version", Value::U32(2))?;
        vocab.write(&mut b, arch)?;
        Ok(Conversion {
            metadata: b,
            jobs,
            checkpoint,
            outtype,
            arch,
            keeps_mxfp4,
        })
    }

    /// Changes the output type of a planned conversion (cheaper than planning again: the
    /// tokenizer is not read twice).
    pub fn set_outtype(&mut self, outtype: Outtype) -> Result<(), Error> {
        let outtype = match outtype {
            Outtype::Auto => self.checkpoint.auto_outtype(),
            o => o,
        };
        let (mut file_type, base_type) = outtype.file_type();
        if self.keeps_mxfp4 && outtype != Outtype::Q8_0 {
            file_type = MOSTLY_MXFP4_MOE;
        }
        for job in &mut self.jobs {
            if matches!(job.source, Source::Mxfp4 { .. }) {
                continue;
            }
            let ne0 = job.plan.shape.first().copied().unwrap_or(1) as usize;
            job.plan.ty = tensor::output_type(&job.plan.name, job.n_dims, ne0, base_type);
        }
        self.metadata
            .set("general.file_type", Value::U32(file_type))?;
        self.outtype = outtype;
        Ok(())
    }

    /// The metadata to be written.
    pub fn metadata(&self) -> &Builder<'static> {
        &self.metadata
    }

    /// Every output tensor's name, type and shape (innermost first), in file order.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorPlan> {
        self.jobs.iter().map(|j| &j.plan)
    }

    /// The output type (`auto` resolved).
    pub fn outtype(&self) -> Outtype {
        self.outtype
    }

    /// The architecture.
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// The default output file name, llama.cpp's: `{name}-{size}-{TYPE}.gguf`.
    pub fn default_file_name(&self) -> String {
        let get = |k| {
            self.metadata
                .metadata()
                .iter()
                .find(|(key, _)| key == k)
                .and_then(|(_, v)| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let name = get("general.name").trim().replace([' ', '/'], "-");
        format!(
            "{name}-{}-{}.gguf",
            get("general.size_label"),
            if self.keeps_mxfp4 && self.outtype != Outtype::Q8_0 {
                "MXFP4_MOE"
            } else {
                self.outtype.label()
            }
        )
    }

    /// Writes the GGUF file, calling `progress(i, n, name)` before tensor `i` of `n`; returns
    /// the number of bytes written. Only one tensor's data is in memory at a time.
    pub fn write_to(
        &self,
        w: impl Write,
        mut progress: impl FnMut(usize, usize, &str),
    ) -> Result<u64, Error> {
        let plans: Vec<TensorPlan> = self.jobs.iter().map(|j| j.plan.clone()).collect();
        let n = self.jobs.len();
        let result = self.metadata.write_streaming(&plans, w, |i| {
            let job = &self.jobs[i];
            progress(i, n, &job.plan.name);
            self.tensor_bytes(job).map_err(std::io::Error::other)
        });
        match result {
            Ok(n) => Ok(n),
            Err(e) => match e.downcast::<Error>() {
                Ok(e) => Err(e),
                Err(e) => Err(Error::Write(e)),
            },
        }
    }

    /// The whole file in memory (`hearth run DIR`, tests).
    pub fn to_bytes(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        self.write_to(&mut out, |_, _, _| {})?;
        Ok(out)
    }

    fn tensor_bytes(&self, job: &Job) -> Result<Vec<u8>, Error> {
        let src = match &job.source {
            Source::Checkpoint(i) => &self.checkpoint.tensors[*i],
            Source::Generated(values) => {
                return tensor::encode(&job.plan.name, values, job.plan.ty);
            }
            Source::Mxfp4 {
                blocks,
                scales,
                rows,
            } => {
                let (b, s) = (
                    &self.checkpoint.tensors[*blocks],
                    &self.checkpoint.tensors[*scales],
                );
                let out = tensor::repack_mxfp4(
                    self.checkpoint.data(b),
                    self.checkpoint.data(s),
                    &b.shape,
                    *rows,
                );
                self.checkpoint.release(b);
                self.checkpoint.release(s);
                return Ok(out);
            }
            Source::Stack(sources) => {
                let mut values = Vec::new();
                for &i in sources {
                    let src = &self.checkpoint.tensors[i];
                    values.extend(tensor::to_f32(
                        &src.name,
                        src.dtype,
                        self.checkpoint.data(src),
                    )?);
                    self.checkpoint.release(src);
                }
                return tensor::encode(&job.plan.name, &values, job.plan.ty);
            }
        };
        let mut values = tensor::to_f32(&src.name, src.dtype, self.checkpoint.data(src))?;
        self.checkpoint.release(src);
        arch::apply(&job.transform, &mut values, &src.shape, &src.name)?;
        tensor::encode(&job.plan.name, &values, job.plan.ty)
    }
}

/// The checkpoint folder's own name (of its canonical path, so `.` names the folder).
fn folder_name(dir: &Path) -> String {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_owned())
}

/// gguf-py's `size_label`: for a mixture of experts `{n_expert}x{size}`, the size counting
/// one expert's share of each `_exps` tensor; else the dense [`size_label`].
fn moe_size_label(jobs: &[Job]) -> String {
    let (mut total, mut shared, mut expert, mut expert_sum, mut n_exp) = (0, 0, 0, 0, 0);
    for j in jobs {
        let shape = &j.plan.shape;
        let size: u64 = shape.iter().product();
        total += size;
        if j.plan.name.contains("_exps.") && shape.len() >= 3 {
            // gguf-py's shape is outermost first: experts are `[-3]`, or `[-2]` for a bias.
            let count = if j.plan.name.contains(".bias") {
                shape[1]
            } else {
                shape[2]
            };
            expert += size / count.max(1);
            expert_sum += count;
            n_exp += 1;
        } else {
            shared += size;
        }
    }
    if n_exp == 0 {
        return size_label(total);
    }
    format!("{}x{}", expert_sum / n_exp, size_label(shared + expert))
}

/// gguf-py's `size_label` for a dense model: `1.6M`, `135M`, `8.0B`.
pub fn size_label(n_params: u64) -> String {
    let n = n_params as f64;
    let (scaled, suffix) = if n > 1e12 {
        (n * 1e-12, "T")
    } else if n > 1e9 {
        (n * 1e-9, "B")
    } else if n > 1e6 {
        (n * 1e-6, "M")
    } else {
        (n * 1e-3, "K")
    };
    // Python's round() is half-to-even; only the number of digits matters here.
    let digits = format!("{}", scaled.round_ties_even() as u64);
    let digits = digits.trim_start_matches('0').len();
    let fix = 2usize.saturating_sub(digits);
    format!("{scaled:.fix$}{suffix}")
}
