//! The importance matrix `llama-imatrix` collects, in its GGUF file format.
//!
//! For every weight matrix of the layers, an [`Entry`] holds the sum over all tokens of the
//! square of each input column (`in_sum2`, `cols` values per matrix) and how many rows were
//! summed (`counts`); a 3-D expert tensor has one such row of sums and one count per expert.
//! The quantizer weighs each column's error by these sums.
//!
//! [`Collector`] is a [`MatmulObserver`]: attached to [`Context::decode_batch_observed`], it
//! sums the inputs of the products llama.cpp's collector takes by default — matrices named
//! `blk.*` (not the LM head), in products of at least 16 rows (llama.cpp skips smaller ones),
//! in f32 as llama.cpp does; expert products always count, per expert. [`collect`] drives a
//! text through a context the way `llama-imatrix` does (chunks of `n_chunk_tokens` from
//! scratch, the first token of each replaced by BOS, `n_batch` tokens per call, several chunks
//! as sequences of one call, each call cut into llama.cpp's micro-batches) and measures the
//! perplexity of the second half of each chunk on the way.
//!
//! [`IMatrix`] is the file: [`IMatrix::to_gguf`] writes what `llama-imatrix` writes (key for
//! key, tensor for tensor: a file read by [`IMatrix::from_gguf`] and written again is the same
//! bytes), and [`IMatrix::add`] combines files as its `--in-file` does.

use std::collections::BTreeMap;

use gguf::{Array, Builder, GgmlType, Gguf, Value};

use crate::batch::Batch;
use crate::context::{Context, ContextError};
use crate::exec::MatmulObserver;
use crate::model::{ExpertMats, MatRef};
use crate::perplexity::{self, Perplexity};

/// `general.type` of an imatrix file.
pub const FILE_TYPE: &str = "imatrix";
pub const KEY_DATASETS: &str = "imatrix.datasets";
pub const KEY_CHUNK_COUNT: &str = "imatrix.chunk_count";
pub const KEY_CHUNK_SIZE: &str = "imatrix.chunk_size";
const SUFFIX_SUMS: &str = ".in_sum2";
const SUFFIX_COUNTS: &str = ".counts";

/// llama.cpp's collector ignores products of fewer rows than this.
pub const MIN_ROWS: usize = 16;

/// Why an importance matrix could not be collected, read or combined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImatrixError {
    #[error(
        "the text has {n_tokens} tokens; a context of {n_chunk_tokens} (-c) needs at least {} (two chunks, as llama-imatrix): use a longer text or a smaller -c",
        2 * n_chunk_tokens
    )]
    TooShort {
        n_tokens: usize,
        n_chunk_tokens: usize,
    },
    #[error(
        "skipping {skip} chunks of {n_chunk_tokens} leaves too few of the text's {n_tokens} tokens"
    )]
    SkipTooFar {
        skip: usize,
        n_chunk_tokens: usize,
        n_tokens: usize,
    },
    #[error("a chunk needs at least 4 tokens, not {0}")]
    ChunkTooSmall(usize),
    #[error("non-finite activations summed for {0}")]
    NonFinite(String),
    #[error(
        "inconsistent sizes for {name}: {found} values and {found_counts} counts against {expected} and {expected_counts}"
    )]
    Inconsistent {
        name: String,
        found: usize,
        found_counts: usize,
        expected: usize,
        expected_counts: usize,
    },
    #[error("expert {expert} of {name}, which has {n_expert}")]
    BadExpert {
        name: String,
        expert: usize,
        n_expert: usize,
    },
    #[error("not an imatrix file: {0}")]
    Format(String),
    #[error(transparent)]
    Gguf(#[from] gguf::Error),
    #[error(transparent)]
    Context(#[from] ContextError),
}

/// One matrix's statistics: `counts.len()` matrices (experts) of `sums.len() / counts.len()`
/// columns each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Entry {
    /// Sum of the squared inputs per column, matrix after matrix.
    pub sums: Vec<f32>,
    /// Rows summed, per matrix.
    pub counts: Vec<u64>,
}

impl Entry {
    /// Columns per matrix.
    pub fn cols(&self) -> usize {
        self.sums.len().checked_div(self.counts.len()).unwrap_or(0)
    }
}

/// An importance matrix: entries by tensor name, and the file's metadata.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct IMatrix {
    pub entries: BTreeMap<String, Entry>,
    /// The texts it was collected on (`imatrix.datasets`).
    pub datasets: Vec<String>,
    /// Tokens per chunk (`imatrix.chunk_size`).
    pub chunk_size: u32,
    /// Chunks read from a file's `imatrix.chunk_count` (0 when absent). Written files carry
    /// [`IMatrix::chunk_count`] instead, computed from the counts as llama.cpp does.
    pub file_chunk_count: u32,
}

impl IMatrix {
    /// An empty matrix for chunks of `chunk_size` tokens.
    pub fn new(chunk_size: u32) -> IMatrix {
        IMatrix {
            chunk_size,
            ..IMatrix::default()
        }
    }

    /// Whole chunks the largest count amounts to (llama.cpp's `imatrix.chunk_count`).
    pub fn chunk_count(&self) -> u32 {
        let max = self
            .entries
            .values()
            .flat_map(|e| e.counts.iter().copied())
            .max()
            .unwrap_or(0);
        let n = max.checked_div(u64::from(self.chunk_size)).unwrap_or(0);
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Entries some of whose matrices (experts) saw no rows: name and the share that did.
    pub fn partial_entries(&self) -> Vec<(&str, f64)> {
        self.entries
            .iter()
            .filter_map(|(name, e)| {
                let zeros = e.counts.iter().filter(|&&c| c == 0).count();
                (zeros > 0).then(|| {
                    let n = e.counts.len() as f64;
                    (name.as_str(), (n - zeros as f64) / n)
                })
            })
            .collect()
    }

    /// The file `llama-imatrix` writes: `general.type`, the datasets, chunk count and size,
    /// then per entry in name order `NAME.in_sum2` (f32 `[cols, n_mat]`) and `NAME.counts`
    /// (f32 `[1, n_mat]`), trailing dimensions of 1 dropped as ggml does.
    pub fn to_gguf(&self) -> Result<Builder<'static>, ImatrixError> {
        let mut b = Builder::new();
        b.set("general.type", Value::string(FILE_TYPE))?;
        b.set(KEY_DATASETS, Value::Array(Array::from_strs(&self.datasets)))?;
        b.set(KEY_CHUNK_COUNT, Value::U32(self.chunk_count()))?;
        b.set(KEY_CHUNK_SIZE, Value::U32(self.chunk_size))?;
        for (name, e) in &self.entries {
            let n_mat = e.counts.len();
            if e.sums.is_empty() || n_mat == 0 {
                continue;
            }
            let cols = e.cols();
            let trim = |shape: [u64; 2]| -> Vec<u64> {
                if shape[1] == 1 {
                    vec![shape[0]]
                } else {
                    shape.to_vec()
                }
            };
            let sums: Vec<u8> = e.sums.iter().flat_map(|v| v.to_le_bytes()).collect();
            let counts: Vec<u8> = e
                .counts
                .iter()
                .flat_map(|&c| (c as f32).to_le_bytes())
                .collect();
            b.add_tensor(
                format!("{name}{SUFFIX_SUMS}"),
                GgmlType::F32,
                &trim([cols as u64, n_mat as u64]),
                sums,
            )?;
            b.add_tensor(
                format!("{name}{SUFFIX_COUNTS}"),
                GgmlType::F32,
                &trim([1, n_mat as u64]),
                counts,
            )?;
        }
        Ok(b)
    }

    /// Reads a GGUF imatrix file as llama.cpp's `common_imatrix_load` does: every `NAME.in_sum2`
    /// with its `NAME.counts` (both f32; counts rounded to integers), the datasets, chunk count
    /// and size when present.
    pub fn from_gguf(file: &Gguf<'_>) -> Result<IMatrix, ImatrixError> {
        let bad = |m: String| Err(ImatrixError::Format(m));
        if file.tensors().is_empty() {
            return bad("no tensors".into());
        }
        let datasets = match file.get(KEY_DATASETS) {
            Some(Value::Array(a)) => a
                .strs()
                .map(|v| v.into_iter().map(str::to_owned).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let chunk_count = file.get_opt::<u32>(KEY_CHUNK_COUNT)?.unwrap_or(0);
        let chunk_size = file.get_opt::<u32>(KEY_CHUNK_SIZE)?.unwrap_or(0);
        let mut pairs: BTreeMap<&str, [Option<&gguf::TensorInfo<'_>>; 2]> = BTreeMap::new();
        for t in file.tensors() {
            if let Some(name) = t.name.strip_suffix(SUFFIX_SUMS) {
                pairs.entry(name).or_default()[0] = Some(t);
            } else if let Some(name) = t.name.strip_suffix(SUFFIX_COUNTS) {
                pairs.entry(name).or_default()[1] = Some(t);
            }
        }
        let mut entries = BTreeMap::new();
        for (name, pair) in pairs {
            let [Some(s), Some(c)] = pair else {
                return bad(format!("{name} lacks its in_sum2 or its counts"));
            };
            if s.ty != GgmlType::F32 || c.ty != GgmlType::F32 {
                return bad(format!("the sums and counts of {name} must be F32"));
            }
            let floats = |t: &gguf::TensorInfo<'_>| -> Vec<f32> {
                file.tensor_data(t)
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            };
            let sums = floats(s);
            let counts_f = floats(c);
            if counts_f.is_empty() || sums.len() % counts_f.len() != 0 {
                return bad(format!(
                    "{name} has {} sums for {} counts",
                    sums.len(),
                    counts_f.len()
                ));
            }
            let mut counts = Vec::with_capacity(counts_f.len());
            for v in counts_f {
                if !(v.is_finite() && v >= 0.0) {
                    return bad(format!("{name} has a count of {v}"));
                }
                counts.push(v.round() as u64);
            }
            entries.insert(name.to_owned(), Entry { sums, counts });
        }
        if entries.is_empty() {
            return bad("no in_sum2/counts tensors".into());
        }
        Ok(IMatrix {
            entries,
            datasets,
            chunk_size,
            file_chunk_count: chunk_count,
        })
    }

    /// Adds `other`'s sums and counts to this one's and appends its datasets (`llama-imatrix
    /// --in-file`): a single count meets per-expert counts by being repeated; any other
    /// difference in size is an error.
    pub fn add(&mut self, other: &IMatrix) -> Result<(), ImatrixError> {
        for (name, o) in &other.entries {
            let e = self.entries.entry(name.clone()).or_default();
            if e.sums.is_empty() {
                e.sums = vec![0.0; o.sums.len()];
            }
            if e.counts.is_empty() {
                e.counts = vec![0; o.counts.len()];
            } else if e.counts.len() == 1 && o.counts.len() > 1 {
                e.counts = vec![e.counts[0]; o.counts.len()];
            }
            if e.sums.len() != o.sums.len() || e.counts.len() != o.counts.len() {
                return Err(ImatrixError::Inconsistent {
                    name: name.clone(),
                    found: o.sums.len(),
                    found_counts: o.counts.len(),
                    expected: e.sums.len(),
                    expected_counts: e.counts.len(),
                });
            }
            for (a, b) in e.sums.iter_mut().zip(&o.sums) {
                *a += b;
            }
            for (a, b) in e.counts.iter_mut().zip(&o.counts) {
                *a += b;
            }
        }
        self.datasets.extend(other.datasets.iter().cloned());
        Ok(())
    }
}

/// Sums the inputs of the layers' weight products into an [`IMatrix`] (see the module
/// documentation for which products count).
#[derive(Debug)]
pub struct Collector {
    pub imatrix: IMatrix,
    /// The first inconsistency met (llama.cpp exits there); reported by [`collect`].
    error: Option<ImatrixError>,
}

impl Collector {
    /// A collector adding to `imatrix` (empty, or loaded from earlier files).
    pub fn new(imatrix: IMatrix) -> Collector {
        Collector {
            imatrix,
            error: None,
        }
    }

    /// The first error met while collecting, if any.
    pub fn take_error(&mut self) -> Option<ImatrixError> {
        self.error.take()
    }

    fn entry(&mut self, name: &str) -> &mut Entry {
        // Only the first sight of a name allocates it.
        if !self.imatrix.entries.contains_key(name) {
            self.imatrix
                .entries
                .insert(name.to_owned(), Entry::default());
        }
        match self.imatrix.entries.get_mut(name) {
            Some(e) => e,
            None => unreachable!("inserted above"),
        }
    }

    fn fail(&mut self, e: ImatrixError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }
}

/// `acc[j] += x[j]²` for every row of `input`, in row order and in f32 (llama.cpp's
/// arithmetic: a product, then a sum, no fused multiply-add).
fn add_squares(acc: &mut [f32], input: &[f32]) {
    for row in input.chunks_exact(acc.len()) {
        for (a, &x) in acc.iter_mut().zip(row) {
            *a += x * x;
        }
    }
}

impl MatmulObserver for Collector {
    fn matmul(&mut self, w: &MatRef, input: &[f32]) {
        let cols = w.cols;
        let rows = input.len() / cols.max(1);
        if rows < MIN_ROWS || !w.name.starts_with("blk.") || self.error.is_some() {
            return;
        }
        let e = self.entry(&w.name);
        // One count per dense matrix (files combined from per-expert counts may hold several
        // equal ones).
        if e.counts.len() > 1 && e.counts.iter().all(|&c| c == e.counts[0]) {
            e.counts.truncate(1);
        }
        if e.sums.is_empty() {
            e.sums = vec![0.0; cols];
            e.counts = vec![0];
        }
        if e.sums.len() != cols {
            let err = ImatrixError::Inconsistent {
                name: w.name.clone(),
                found: cols,
                found_counts: 1,
                expected: e.sums.len(),
                expected_counts: e.counts.len(),
            };
            self.fail(err);
            return;
        }
        add_squares(&mut e.sums, input);
        for c in &mut e.counts {
            *c += rows as u64;
        }
        if !e.sums.iter().all(|v| v.is_finite()) {
            self.fail(ImatrixError::NonFinite(w.name.clone()));
        }
    }

    fn expert_matmul(&mut self, w: &ExpertMats, expert: usize, input: &[f32]) {
        let (cols, n_as) = (w.cols, w.experts.len());
        if self.error.is_some() || cols == 0 {
            return;
        }
        if expert >= n_as {
            self.fail(ImatrixError::BadExpert {
                name: w.name.clone(),
                expert,
                n_expert: n_as,
            });
            return;
        }
        let rows = input.len() / cols;
        let e = self.entry(&w.name);
        if e.counts.len() == 1 && n_as > 1 {
            e.counts = vec![e.counts[0]; n_as];
        }
        if e.sums.is_empty() {
            e.sums = vec![0.0; cols * n_as];
            e.counts = vec![0; n_as];
        }
        if e.sums.len() != cols * n_as || e.counts.len() != n_as {
            let err = ImatrixError::Inconsistent {
                name: w.name.clone(),
                found: cols * n_as,
                found_counts: n_as,
                expected: e.sums.len(),
                expected_counts: e.counts.len(),
            };
            self.fail(err);
            return;
        }
        let acc = &mut e.sums[expert * cols..(expert + 1) * cols];
        add_squares(acc, input);
        e.counts[expert] += rows as u64;
        if !acc.iter().all(|v| v.is_finite()) {
            self.fail(ImatrixError::NonFinite(w.name.clone()));
        }
    }
}

/// How [`collect`] walks a text (`llama-imatrix`'s settings).
#[derive(Clone, Debug)]
pub struct CollectParams {
    /// Tokens per chunk (`-c`).
    pub n_chunk_tokens: usize,
    /// Tokens per call (`-b`): below `n_chunk_tokens`, each chunk takes several calls; a
    /// multiple of it evaluates that many chunks together as sequences.
    pub n_batch: usize,
    /// Collect at most this many chunks (`--chunks`).
    pub max_chunks: Option<usize>,
    /// Skip this many chunks at the start of the text (`--chunk`).
    pub skip_chunks: usize,
    /// Replaces the first token of each chunk when given.
    pub bos: Option<u32>,
    /// Score the second half of each chunk (llama-imatrix does unless `--no-ppl`).
    pub compute_ppl: bool,
}

/// Progress after a group of chunks: how many are done of how many, and the running
/// perplexity estimate (when measured).
pub struct Progress<'a> {
    pub chunks_done: usize,
    pub n_chunks: usize,
    pub ppl: Option<&'a Perplexity>,
}

/// How many chunks of `n` tokens a walk over `n_tokens` tokens collects (after checking that
/// the text is long enough, as llama-imatrix does).
pub fn n_chunks(n_tokens: usize, p: &CollectParams) -> Result<usize, ImatrixError> {
    let n = p.n_chunk_tokens;
    if n < 4 {
        return Err(ImatrixError::ChunkTooSmall(n));
    }
    let mut left = n_tokens;
    if p.skip_chunks > 0 {
        if (p.skip_chunks + 2).saturating_mul(n) >= n_tokens {
            return Err(ImatrixError::SkipTooFar {
                skip: p.skip_chunks,
                n_chunk_tokens: n,
                n_tokens,
            });
        }
        left -= p.skip_chunks * n;
    }
    if left < 2 * n {
        return Err(ImatrixError::TooShort {
            n_tokens: left,
            n_chunk_tokens: n,
        });
    }
    let all = left / n;
    Ok(p.max_chunks.map_or(all, |m| m.min(all)))
}

/// Chunks evaluated together as sequences of one call for these settings (`n_batch / n`,
/// at least 1), before the context's own limit.
pub fn n_seq(p: &CollectParams) -> usize {
    (p.n_batch / p.n_chunk_tokens.max(1)).max(1)
}

/// Runs the chunks of `tokens` through `ctx` as `llama-imatrix` does, adding every observed
/// product to `collector`; `on_progress` is called after each group of chunks. Returns the
/// perplexity of the chunks' second halves (empty without `compute_ppl`). The callback also
/// sees the matrix collected so far (to save it as it goes).
///
/// `ctx` needs [`n_seq`] sequences (clamped to its `n_seq_max`) of `n_chunk_tokens` cells.
pub fn collect(
    ctx: &mut Context,
    tokens: &[u32],
    p: &CollectParams,
    collector: &mut Collector,
    mut on_progress: impl FnMut(Progress<'_>, &IMatrix),
) -> Result<Perplexity, ImatrixError> {
    let n = p.n_chunk_tokens;
    let n_chunk = n_chunks(tokens.len(), p)?;
    let tokens = &tokens[p.skip_chunks * n..];
    let n_seq = n_seq(p).min(ctx.params().n_seq_max).min(n_chunk);
    if ctx.n_ctx() < n_seq * n {
        return Err(ContextError::BadParams(format!(
            "{n_seq} chunks of {n} tokens need {} cells, the context has {}",
            n_seq * n,
            ctx.n_ctx()
        ))
        .into());
    }
    // Below one chunk per call, a chunk takes several calls of `n_batch` tokens.
    let n_batch = p.n_batch.clamp(1, n);
    let n_calls = n.div_ceil(n_batch);
    let n_ubatch = ctx.params().n_batch;
    let first = n / 2;
    let mut ppl = Perplexity::default();
    let mut batch = Batch::with_capacity(n_seq * n_batch.min(n_ubatch));
    // Per sequence of a group, its scored tokens' negative log-likelihoods (added chunk by
    // chunk, as llama.cpp adds them).
    let mut nlls: Vec<Vec<f64>> = vec![Vec::new(); n_seq];
    for group in (0..n_chunk).step_by(n_seq) {
        let seqs = n_seq.min(n_chunk - group);
        let chunk = |s: usize| &tokens[(group + s) * n..(group + s + 1) * n];
        ctx.clear();
        nlls.iter_mut().for_each(Vec::clear);
        for j in 0..n_calls {
            let call = j * n_batch..(j * n_batch + n_batch).min(n);
            // llama.cpp's micro-batches of the call, each one forward pass: for one sequence,
            // pieces of `n_ubatch` (the context cuts them); for several, its `split_equal` —
            // the same positions of every sequence, sequence after sequence.
            let step = if seqs == 1 {
                call.len()
            } else {
                (n_ubatch / seqs).max(1)
            };
            for q0 in call.clone().step_by(step) {
                let span = q0..(q0 + step).min(call.end);
                batch.clear();
                for s in 0..seqs {
                    for pos in span.clone() {
                        let t = match p.bos {
                            Some(b) if pos == 0 => b,
                            _ => chunk(s)[pos],
                        };
                        let scored = p.compute_ppl && pos >= first && pos + 1 < n;
                        batch.push(t, pos, &[s], scored);
                    }
                }
                ctx.decode_batch_observed(&batch, collector)?;
                if let Some(e) = collector.take_error() {
                    return Err(e);
                }
                if p.compute_ppl {
                    for (s, nll) in nlls.iter_mut().enumerate().take(seqs) {
                        for (k, pos) in span.clone().enumerate() {
                            if pos >= first && pos + 1 < n {
                                let logits = ctx.batch_logits(s * span.len() + k);
                                let next = chunk(s)[pos + 1];
                                nll.push(-perplexity::log_softmax(logits, next).0);
                            }
                        }
                    }
                }
            }
        }
        nlls.iter().flatten().for_each(|&v| ppl.add(v));
        let progress = Progress {
            chunks_done: group + seqs,
            n_chunks: n_chunk,
            ppl: p.compute_ppl.then_some(&ppl),
        };
        on_progress(progress, &collector.imatrix);
    }
    Ok(ppl)
}

/// One tensor's line of `llama-imatrix --show-statistics`, over its mean squared activations
/// (`in_sum2 / count` of every matrix that saw rows), in f32 as llama.cpp computes them.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorStats {
    pub name: String,
    /// Σ, minimum, maximum, mean and standard deviation of the mean squared activations.
    pub total: f32,
    pub min: f32,
    pub max: f32,
    pub mean: f32,
    pub stddev: f32,
    /// Share of values above 1e-5.
    pub active: f32,
    pub elements: usize,
    /// Entropy (bits) of the values as a distribution.
    pub entropy: f32,
    /// Share of values more than one standard deviation above the mean.
    pub zd: f32,
    /// Cosine similarity of the raw sums with the same tensor of the previous layer (0 when
    /// there is none).
    pub cossim: f32,
}

/// The layer number (`blk.N.`) and short name (the part before `.weight`) of a tensor name.
pub fn split_name(name: &str) -> (Option<i64>, &str) {
    let parts: Vec<&str> = name.split('.').collect();
    let layer = parts
        .iter()
        .position(|&p| p == "blk")
        .and_then(|i| parts.get(i + 1))
        .and_then(|l| l.parse().ok());
    let short = parts
        .iter()
        .position(|&p| p == "weight")
        .filter(|&i| i > 0)
        .map_or(name, |i| parts[i - 1]);
    (layer, short)
}

/// [`TensorStats`] of every entry with data, sorted as llama.cpp prints them: by short name,
/// then by decreasing Σ.
pub fn statistics(m: &IMatrix) -> Vec<TensorStats> {
    let mut out: Vec<TensorStats> = Vec::new();
    for (name, e) in &m.entries {
        let cols = e.cols();
        if cols == 0 {
            continue;
        }
        let acts: Vec<f32> = e
            .counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c > 0)
            .flat_map(|(i, &c)| {
                e.sums[i * cols..(i + 1) * cols]
                    .iter()
                    .map(move |&v| v / c as f32)
            })
            .collect();
        if acts.is_empty() {
            continue;
        }
        let n = acts.len() as f32;
        let total = acts.iter().fold(0.0f32, |a, &v| a + v);
        let max = acts.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let min = acts.iter().copied().fold(f32::INFINITY, f32::min);
        let mean = total / n;
        let sq = acts.iter().fold(0.0f32, |a, &v| a + v * v);
        let stddev = (sq / n - mean * mean).max(0.0).sqrt();
        let inactive = acts.iter().filter(|v| v.abs() <= 1e-5).count();
        let active = 1.0 - inactive as f32 / n;
        let mut entropy = 0.0f32;
        if total > 0.0 {
            for &v in &acts {
                let p = v / total;
                if p > 0.0 {
                    entropy -= p * p.log2();
                }
            }
        }
        let z = if stddev > 0.0 {
            acts.iter().filter(|&&v| (v - mean) / stddev > 1.0).count()
        } else {
            0
        };
        out.push(TensorStats {
            name: name.clone(),
            total,
            min,
            max,
            mean,
            stddev,
            active,
            elements: acts.len(),
            entropy,
            zd: z as f32 / n,
            cossim: 0.0,
        });
    }
    // Cosine similarity with the previous layer's tensor of the same name.
    for s in &mut out {
        let (Some(layer), _) = split_name(&s.name) else {
            continue;
        };
        let prev_name =
            s.name
                .replacen(&format!("blk.{layer}."), &format!("blk.{}.", layer - 1), 1);
        let (Some(cur), Some(prev)) = (m.entries.get(&s.name), m.entries.get(&prev_name)) else {
            continue;
        };
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0.0f32, |s, (x, y)| s + x * y);
        let (a, b) = (&cur.sums, &prev.sums);
        s.cossim = dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt());
    }
    out.sort_by(|a, b| {
        split_name(&a.name)
            .1
            .cmp(split_name(&b.name).1)
            .then(b.total.total_cmp(&a.total))
    });
    out
}

/// Per-layer averages of [`TensorStats`], weighted by element counts.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStats {
    pub layer: i64,
    pub mean_total: f32,
    pub mean_zd: f32,
    pub mean_cossim: f32,
}

/// The per-layer table of `--show-statistics` (tensors outside `blk.N.` are left out).
pub fn layer_statistics(stats: &[TensorStats]) -> Vec<LayerStats> {
    let mut by_layer: BTreeMap<i64, (f32, f32, f32, usize)> = BTreeMap::new();
    for s in stats {
        let Some(layer) = split_name(&s.name).0 else {
            continue;
        };
        let w = s.elements as f32;
        let e = by_layer.entry(layer).or_default();
        e.0 += w * s.total;
        e.1 += w * s.zd;
        e.2 += w * s.cossim;
        e.3 += s.elements;
    }
    by_layer
        .into_iter()
        .filter(|(_, v)| v.3 > 0)
        .map(|(layer, (t, z, c, n))| {
            let n = n as f32;
            LayerStats {
                layer,
                mean_total: t / n,
                mean_zd: z / n,
                mean_cossim: c / n,
            }
        })
        .collect()
}

/// The text `llama-imatrix --show-statistics` prints for `m` (read from `file`), character for
/// character.
pub fn statistics_table(file: &str, m: &IMatrix) -> String {
    use std::fmt::Write as _;
    let stats = statistics(m);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\nComputing statistics for {file} ({} tensors)",
        stats.len()
    );
    let _ = writeln!(
        o,
        "\n Layer\t       Tensor\t          Σ(Act²)\t  Min\t            Max\t           μ\t   σ\t % Active\tN\t   Entropy\tE (norm)\tZD\t  CosSim"
    );
    let _ = writeln!(o, "{}", "=".repeat(169));
    for s in &stats {
        let (layer, short) = split_name(&s.name);
        let layer = layer.map_or_else(|| "-".to_owned(), |l| l.to_string());
        let e_norm = if s.elements > 0 {
            100.0 * (s.entropy / (s.elements as f32).log2())
        } else {
            0.0
        };
        let _ = writeln!(
            o,
            "{layer:>5}\t{short:<20}\t{:10.2}\t{:8.4}\t{:11.4}\t{:6.2}\t{:6.2}\t{:8.2}%\t{:6}\t{:10.4}\t{:6.2}%\t{:10.2}%\t{:8.4}",
            s.total,
            s.min,
            s.max,
            s.mean,
            s.stddev,
            s.active * 100.0,
            s.elements,
            s.entropy,
            e_norm,
            100.0 * s.zd,
            s.cossim
        );
    }
    let layers = layer_statistics(&stats);
    let _ = writeln!(
        o,
        "\nComputing weighted average statistics per layer ({} layers)",
        layers.len()
    );
    let _ = writeln!(o, "\n  Layer\t     μΣ(Act²)\t      μZD\tμCosSim");
    let _ = writeln!(o, "{}", "=".repeat(48));
    for l in &layers {
        let _ = writeln!(
            o,
            "{:5}\t{:14.2}\t{:10.4}%\t{:6.4}",
            l.layer,
            l.mean_total,
            100.0 * l.mean_zd,
            l.mean_cossim
        );
    }
    o.push('\n');
    o
}
