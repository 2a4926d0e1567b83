//! [`Context`]: sequences being evaluated over a shared [`Model`] — the [`KvStore`] of their
//! cells, a [`Workspace`] of preallocated activations, and the process's thread pool.
//!
//! Two ways in:
//! - [`Context::decode_batch`] runs a [`Batch`] of entries from any sequences through one
//!   forward pass (split into `n_batch`-token pieces), llama.cpp's `llama_decode`; the
//!   sequence operations (`seq_rm`, `seq_cp`, `seq_keep`, `seq_add`) manage the cells. The
//!   caller keeps track of each sequence's tokens (as llama-server does).
//! - The single-sequence methods (`decode`, `decode_with`, `tokens`, `truncate`, `shift`) drive
//!   sequence 0 and keep its tokens — for `hearth run`, `chat`, perplexity and tests.
//!
//! The LM head runs only for the entries whose logits are wanted, a few rows at a time so that
//! the logits buffer stays small even for a 262,144-token vocabulary. Every buffer is sized in
//! [`Context::new`] (the outputs of `decode_batch` grow to the most ever asked for at once);
//! decoding allocates nothing else.

use std::ops::Range;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use kernels::ops::Ops;
use kernels::pool::ThreadPool;

use crate::arch;
use crate::batch::{Batch, MAX_SEQ, SeqId, SeqSet};
use crate::exec::{Buf, Cpu, MatmulObserver, Workspace};
use crate::kv_cache::{KvShape, KvStore};
use crate::model::Model;

/// Settings of a context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextParams {
    /// Cells of the KV store: positions of all sequences together.
    pub n_ctx: usize,
    /// Most tokens run through the layers at once.
    pub n_batch: usize,
    /// Threads for compute, the caller included.
    pub n_threads: usize,
    /// Compute every token exactly as it would be computed alone. Off (the default), a single
    /// token's attention and Q4_K/Q6_K products sum in the order llama.cpp uses for single
    /// tokens, so output equals llama.cpp's wherever the kernels follow its arithmetic — and, as
    /// in llama.cpp, logits can then differ in the last bits between a prompt fed in one batch
    /// and token by token. On, results never depend on how tokens are split into calls or on
    /// which other sequences share a batch — the setting for serving.
    pub batch_invariant: bool,
    /// Sequences the context can hold (ids `0..n_seq_max`), at most 64.
    pub n_seq_max: usize,
    /// The most cells one sequence may use, when the caller holds each to a share (llama.cpp's
    /// `n_ctx_seq` without `kv_unified`, e.g. a server's per-slot context); `None`: all of
    /// `n_ctx`. Only what the model derives from the context size depends on it (LongRoPE's
    /// factors, [`arch::PerContext`]).
    pub n_ctx_seq: Option<usize>,
}

impl Default for ContextParams {
    fn default() -> Self {
        ContextParams {
            n_ctx: 4096,
            n_batch: 512,
            n_threads: default_threads(),
            batch_invariant: false,
            n_seq_max: 1,
            n_ctx_seq: None,
        }
    }
}

/// One thread per available core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// The process's thread pool of `n_threads` threads, shared by every context that asks for that
/// many (a pool is made when none is alive).
pub fn shared_pool(n_threads: usize) -> Arc<ThreadPool> {
    static POOLS: OnceLock<Mutex<Vec<Weak<ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    pools.retain(|p| p.strong_count() > 0);
    if let Some(p) = pools
        .iter()
        .filter_map(Weak::upgrade)
        .find(|p| p.n_threads() == n_threads)
    {
        return p;
    }
    let p = Arc::new(ThreadPool::new(n_threads));
    pools.push(Arc::downgrade(&p));
    p
}

/// Rows of logits computed at once.
const OUTPUT_CHUNK: usize = 16;

/// Which positions of a call to [`Context::decode_with`] produce logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outputs {
    /// Only the last token's.
    Last,
    /// Every token's (for perplexity and tests).
    All,
}

/// Why a context could not be made or tokens could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    #[error("invalid context setting: {0}")]
    BadParams(String),
    #[error("the context is full: {n_past} of {n_ctx} positions used, {n_new} more needed")]
    ContextFull {
        n_past: usize,
        n_new: usize,
        n_ctx: usize,
    },
    #[error("the KV store has {free} free cells of {n_ctx}; this batch needs {needed}")]
    NoFreeCells {
        needed: usize,
        free: usize,
        n_ctx: usize,
    },
    #[error("token id {id} is outside the vocabulary of {n_vocab} tokens")]
    InvalidToken { id: u32, n_vocab: usize },
    #[error("sequence id {seq} is outside this context's {n_seq_max} sequences")]
    InvalidSequence { seq: usize, n_seq_max: usize },
    #[error("nothing to decode: no tokens given")]
    Empty,
}

/// Sequences being evaluated.
pub struct Context {
    model: Arc<Model>,
    params: ContextParams,
    ws: Workspace,
    kv: KvStore,
    /// Sequence 0's tokens, kept by the single-sequence methods.
    tokens: Vec<u32>,
    /// Rows of `ws.logits` holding the last single-sequence call's final logits.
    last_logits: Range<usize>,
    /// Logits of the last `decode_batch`'s requested entries, `n_vocab` each, and which
    /// row each entry's are in.
    outputs: Vec<f32>,
    output_row: Vec<Option<usize>>,
    /// The batch the single-sequence methods build.
    single: Batch,
    /// Rows of the current piece whose logits are wanted.
    head_rows: Vec<usize>,
    /// What this context's size decides about the model (LongRoPE's factors).
    per_context: arch::PerContext,
}

impl Context {
    /// A context for `model`; every buffer is allocated here.
    pub fn new(model: Arc<Model>, params: ContextParams) -> Result<Context, ContextError> {
        let bad = |m: String| Err(ContextError::BadParams(m));
        if params.n_ctx == 0 {
            return bad("the context size must be at least 1".into());
        }
        if params.n_batch == 0 {
            return bad("the batch size must be at least 1".into());
        }
        if params.n_threads == 0 || params.n_threads > 1024 {
            return bad(format!(
                "{} threads is not a usable thread count",
                params.n_threads
            ));
        }
        if params.n_seq_max == 0 || params.n_seq_max > MAX_SEQ {
            return bad(format!(
                "{} sequences is outside 1..={MAX_SEQ}",
                params.n_seq_max
            ));
        }
        const MAX_CTX: usize = 1 << 22;
        if params.n_ctx > MAX_CTX {
            return bad(format!(
                "context size {} is above the limit of {MAX_CTX}",
                params.n_ctx
            ));
        }
        let hp = &model.hparams;
        let nb = params.n_batch.min(params.n_ctx);
        let ws = Workspace::new(
            hp,
            shared_pool(params.n_threads),
            nb,
            params.n_ctx,
            OUTPUT_CHUNK,
            params.batch_invariant,
        );
        let shapes: Vec<KvShape> = (hp.layers.iter().enumerate())
            .map(|(il, l)| {
                if l.has_kv(il) {
                    KvShape::new(l.n_head_kv, l.head_dim)
                } else {
                    KvShape::default()
                }
            })
            .collect();
        let kv = KvStore::with_shapes(params.n_ctx, &shapes);
        let params = ContextParams {
            n_batch: nb,
            ..params
        };
        Ok(Context {
            per_context: arch::PerContext::new(hp, params.n_ctx_seq.unwrap_or(params.n_ctx)),
            tokens: Vec::with_capacity(params.n_ctx),
            last_logits: 0..0,
            outputs: vec![0.0; params.n_seq_max * hp.n_vocab],
            output_row: Vec::with_capacity(nb),
            single: Batch::with_capacity(nb),
            head_rows: Vec::with_capacity(nb),
            model,
            params,
            ws,
            kv,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn params(&self) -> &ContextParams {
        &self.params
    }

    pub fn n_ctx(&self) -> usize {
        self.params.n_ctx
    }

    /// The cell table.
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// Cells in use by any sequence.
    pub fn kv_cells_used(&self) -> usize {
        self.kv.used()
    }

    // ---- many sequences ----

    /// Runs every entry of `batch` through the model: each token attends to the cells of its
    /// first sequence with positions up to its own, and is stored in a new cell shared by all
    /// its sequences. The logits of entries that asked for them are then in
    /// [`Context::batch_logits`]. On error nothing has changed.
    pub fn decode_batch(&mut self, batch: &Batch) -> Result<(), ContextError> {
        self.decode_batch_with(batch, None)
    }

    /// [`Context::decode_batch`], showing `observer` the input of every weight product of the
    /// layers (the LM head's excepted), piece by piece of up to `n_batch` tokens.
    pub fn decode_batch_observed(
        &mut self,
        batch: &Batch,
        observer: &mut dyn MatmulObserver,
    ) -> Result<(), ContextError> {
        self.decode_batch_with(batch, Some(observer))
    }

    fn decode_batch_with(
        &mut self,
        batch: &Batch,
        mut observer: Option<&mut dyn MatmulObserver>,
    ) -> Result<(), ContextError> {
        let n_vocab = self.model.hparams.n_vocab;
        if batch.is_empty() {
            return Err(ContextError::Empty);
        }
        if let Some(&id) = batch.tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(ContextError::InvalidToken { id, n_vocab });
        }
        let n_seq_max = self.params.n_seq_max;
        let bad_seq = batch.bad_seq.or_else(|| {
            batch.seqs.iter().find_map(|s| match s.iter().last() {
                None => Some(usize::MAX),
                Some(m) if m >= n_seq_max => Some(m),
                _ => None,
            })
        });
        if let Some(seq) = bad_seq {
            return Err(ContextError::InvalidSequence { seq, n_seq_max });
        }
        self.check_room(batch.len())?;
        let n_out = batch.logits.iter().filter(|&&l| l).count();
        if self.outputs.len() < n_out * n_vocab {
            self.outputs.resize(n_out * n_vocab, 0.0);
        }
        self.output_row.clear();
        let mut next_row = 0;
        for &want in &batch.logits {
            self.output_row.push(want.then(|| {
                next_row += 1;
                next_row - 1
            }));
        }
        self.last_logits = 0..0;
        let nb = self.params.n_batch;
        for start in (0..batch.len()).step_by(nb) {
            let piece = start..(start + nb).min(batch.len());
            let observer: Option<&mut dyn MatmulObserver> = match &mut observer {
                Some(o) => Some(&mut **o),
                None => None,
            };
            self.forward(batch, piece.clone(), observer);
            self.head_rows.clear();
            self.head_rows.extend(
                piece
                    .clone()
                    .filter(|&i| batch.logits[i])
                    .map(|i| i - start),
            );
            for chunk in 0..self.head_rows.len().div_ceil(OUTPUT_CHUNK) {
                let rows =
                    chunk * OUTPUT_CHUNK..((chunk + 1) * OUTPUT_CHUNK).min(self.head_rows.len());
                self.head(rows.clone());
                for (k, r) in rows.enumerate() {
                    let i = start + self.head_rows[r];
                    let Some(o) = self.output_row[i] else {
                        continue;
                    };
                    self.outputs[o * n_vocab..(o + 1) * n_vocab]
                        .copy_from_slice(&self.ws.logits[k * n_vocab..(k + 1) * n_vocab]);
                }
            }
        }
        Ok(())
    }

    /// Logits of entry `i` of the last [`Context::decode_batch`].
    ///
    /// # Panics
    /// If entry `i` did not ask for logits.
    pub fn batch_logits(&self, i: usize) -> &[f32] {
        let n_vocab = self.model.hparams.n_vocab;
        match self.output_row.get(i).copied().flatten() {
            Some(o) => &self.outputs[o * n_vocab..(o + 1) * n_vocab],
            None => panic!("batch entry {i} did not ask for logits"),
        }
    }

    /// Removes `seq`'s positions `p0..p1` (`None`: to the end). Ids outside the context are
    /// ignored, as are the operations below.
    pub fn seq_rm(&mut self, seq: SeqId, p0: usize, p1: Option<usize>) {
        if seq < self.params.n_seq_max {
            self.kv.seq_rm(seq, p0, p1);
            if seq == 0 {
                self.sync_tokens(p0, p1);
            }
        }
    }

    /// Makes `dst` share `src`'s cells with positions in `p0..p1`, without copying data.
    pub fn seq_cp(&mut self, src: SeqId, dst: SeqId, p0: usize, p1: Option<usize>) {
        if src.max(dst) < self.params.n_seq_max {
            self.kv.seq_cp(src, dst, p0, p1);
        }
    }

    /// Frees every cell `seq` does not use.
    pub fn seq_keep(&mut self, seq: SeqId) {
        if seq < self.params.n_seq_max {
            self.kv.seq_keep(seq);
            if seq != 0 {
                self.tokens.clear();
            }
        }
    }

    /// Moves `seq`'s positions `p0..p1` by `delta` (cells falling below 0 are freed); cached
    /// keys are re-rotated with RoPE before the next decode, as llama.cpp's K-shift does.
    pub fn seq_add(&mut self, seq: SeqId, p0: usize, p1: Option<usize>, delta: isize) {
        if seq < self.params.n_seq_max {
            self.kv.seq_add(seq, p0, p1, delta);
        }
    }

    /// The largest position of `seq`, if it has any.
    pub fn seq_pos_max(&self, seq: SeqId) -> Option<usize> {
        self.kv.seq_pos_max(seq)
    }

    // ---- one sequence (sequence 0) ----

    /// Positions of sequence 0 in the KV store.
    pub fn n_past(&self) -> usize {
        self.tokens.len()
    }

    /// Sequence 0's tokens, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets every position of sequence 0 after the first `n` (to reuse a shared prefix).
    pub fn truncate(&mut self, n: usize) {
        self.kv.seq_rm(0, n, None);
        self.tokens.truncate(n);
        self.last_logits = 0..0;
    }

    /// Forgets every sequence.
    pub fn clear(&mut self) {
        self.kv.clear();
        self.tokens.clear();
        self.last_logits = 0..0;
    }

    /// Drops sequence 0's tokens `keep..keep + n_discard` and moves the later ones back, by
    /// re-rotating their cached keys (llama.cpp's context shift) rather than re-evaluating.
    pub fn shift(&mut self, keep: usize, n_discard: usize) {
        let keep = keep.min(self.tokens.len());
        let n_discard = n_discard.min(self.tokens.len() - keep);
        if n_discard == 0 {
            return;
        }
        self.kv.seq_rm(0, keep, Some(keep + n_discard));
        self.kv
            .seq_add(0, keep + n_discard, None, -(n_discard as isize));
        self.tokens.drain(keep..keep + n_discard);
        self.last_logits = 0..0;
    }

    /// Appends `tokens` to sequence 0. With [`Outputs::Last`], the last token's logits are
    /// then in [`Context::logits`]; with [`Outputs::All`], `on_logits(i, logits)` is called for
    /// every token `i` of `tokens` in order (and the last one's also stay in `logits`).
    pub fn decode_with(
        &mut self,
        tokens: &[u32],
        outputs: Outputs,
        mut on_logits: impl FnMut(usize, &[f32]),
    ) -> Result<(), ContextError> {
        let n_vocab = self.model.hparams.n_vocab;
        if tokens.is_empty() {
            return Err(ContextError::Empty);
        }
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
            return Err(ContextError::InvalidToken { id, n_vocab });
        }
        if self.n_past() + tokens.len() > self.params.n_ctx {
            return Err(ContextError::ContextFull {
                n_past: self.n_past(),
                n_new: tokens.len(),
                n_ctx: self.params.n_ctx,
            });
        }
        self.check_room(tokens.len())?;
        let mut single = std::mem::take(&mut self.single);
        let mut done = 0;
        for chunk in tokens.chunks(self.params.n_batch) {
            single.clear();
            let pos0 = self.n_past();
            for (i, &t) in chunk.iter().enumerate() {
                single.push(t, pos0 + i, &[0], false);
            }
            self.forward(&single, 0..chunk.len(), None);
            self.tokens.extend_from_slice(chunk);
            let is_final = done + chunk.len() == tokens.len();
            let rows = match outputs {
                Outputs::All => 0..chunk.len(),
                Outputs::Last if is_final => chunk.len() - 1..chunk.len(),
                Outputs::Last => 0..0,
            };
            for start in rows.clone().step_by(OUTPUT_CHUNK) {
                let r = start..(start + OUTPUT_CHUNK).min(rows.end);
                self.head_rows.clear();
                self.head_rows.extend(r.clone());
                self.head(0..r.len());
                if outputs == Outputs::All {
                    for (i, row) in self
                        .ws
                        .logits
                        .chunks_exact(n_vocab)
                        .take(r.len())
                        .enumerate()
                    {
                        on_logits(done + r.start + i, row);
                    }
                }
                self.last_logits = (r.len() - 1) * n_vocab..r.len() * n_vocab;
            }
            done += chunk.len();
        }
        self.single = single;
        Ok(())
    }

    /// Appends `tokens` to sequence 0; the last one's logits are then in [`Context::logits`].
    pub fn decode(&mut self, tokens: &[u32]) -> Result<(), ContextError> {
        self.decode_with(tokens, Outputs::Last, |_, _| {})
    }

    /// Logits of the last token of the last single-sequence decode (`n_vocab` values; empty
    /// before any).
    pub fn logits(&self) -> &[f32] {
        &self.ws.logits[self.last_logits.clone()]
    }

    // ---- the machinery ----

    fn check_room(&self, n: usize) -> Result<(), ContextError> {
        let free = self.kv.n_ctx() - self.kv.used();
        if n > free {
            return Err(ContextError::NoFreeCells {
                needed: n,
                free,
                n_ctx: self.kv.n_ctx(),
            });
        }
        Ok(())
    }

    /// Keeps sequence 0's token list in step with a removal of its positions `p0..p1`.
    fn sync_tokens(&mut self, p0: usize, p1: Option<usize>) {
        let len = self.tokens.len();
        let (a, b) = (p0.min(len), p1.unwrap_or(len).clamp(p0.min(len), len));
        if b == len {
            self.tokens.truncate(a);
        } else {
            self.tokens.drain(a..b);
        }
        self.last_logits = 0..0;
    }

    /// Entries `piece` of `batch` (at most `n_batch`) through the layers: cells allocated,
    /// keys and values stored, final hidden states in `X`. The caller checked room and ids.
    fn forward(
        &mut self,
        batch: &Batch,
        piece: Range<usize>,
        observer: Option<&mut dyn MatmulObserver>,
    ) {
        self.apply_shifts();
        let n = piece.len();
        let ws = &mut self.ws;
        ws.tokens.clear();
        ws.tokens.extend_from_slice(&batch.tokens[piece.clone()]);
        ws.positions.clear();
        ws.positions
            .extend(batch.pos[piece.clone()].iter().map(|&p| p as i32));
        let (pos, seqs) = (&batch.pos[piece.clone()], &batch.seqs[piece.clone()]);
        if let Err(e) = self.kv.allocate(n, |i| pos[i], |i| seqs[i], &mut ws.cells) {
            // `check_room` counted the cells for the whole batch.
            panic!("KV cells vanished between the check and the allocation: {e:?}");
        }
        build_maps(ws, &self.kv, seqs);
        let hp = &self.model.hparams;
        let mut cpu = Cpu::new(hp, ws, &mut self.kv, n);
        // Reborrowed for the forward (the match shortens the trait object's lifetime).
        cpu.observer = match observer {
            Some(o) => Some(o),
            None => None,
        };
        arch::forward(hp, &self.model.weights, &self.per_context, &mut cpu);
    }

    /// Output norm and LM head for `head_rows[rows]` (rows of the last forward), into
    /// `ws.logits` rows `0..rows.len()`.
    fn head(&mut self, rows: Range<usize>) {
        let _t = crate::profile::scope(crate::profile::Op::Head);
        let model = &*self.model;
        let hp = &model.hparams;
        let d = hp.n_embd;
        let (norm, lm_head) = model.weights.head();
        let ops = Ops::detected();
        let n = rows.len();
        let ws = &mut self.ws;
        for (k, &r) in self.head_rows[rows].iter().enumerate() {
            ops.rms_norm(
                &mut ws.head_in[k * d..(k + 1) * d],
                &ws.bufs[Buf::X as usize][r * d..(r + 1) * d],
                norm,
                hp.rms_eps,
            );
        }
        let result = kernels::matmul::matmul(
            &ws.pool,
            &lm_head.matrix,
            &ws.head_in[..n * d],
            n,
            &mut ws.logits[..n * hp.n_vocab],
            &mut ws.scratch,
        );
        if let Err(e) = result {
            panic!("LM head: {e}");
        }
        if let Some(cap) = model.weights.logit_softcap() {
            // ggml's order: scale by 1/cap, tanh, scale by cap
            let inv = 1.0 / cap;
            for v in &mut ws.logits[..n * hp.n_vocab] {
                *v = (*v * inv).tanh() * cap;
            }
        }
    }

    /// Re-rotates the cached keys of cells whose positions moved (K-shift).
    fn apply_shifts(&mut self) {
        let ws = &mut self.ws;
        self.kv.take_shifts(&mut ws.shifts);
        if ws.shifts.is_empty() {
            return;
        }
        let hp = &self.model.hparams;
        let ops = Ops::detected();
        for il in 0..hp.n_layer {
            let l = hp.layer(il);
            let kw = self.kv.shape(il).width();
            if kw == 0 {
                continue;
            }
            let Some(rope) = self.model.weights.layer_rope(il, &self.per_context) else {
                continue;
            };
            for chunk in ws.shifts.chunks(self.params.n_batch) {
                let buf = &mut ws.bufs[Buf::K as usize][..chunk.len() * kw];
                for (row, &(c, _)) in buf.chunks_exact_mut(kw).zip(chunk) {
                    self.kv.read_keys(il, c as usize, row);
                }
                ws.positions.clear();
                ws.positions.extend(
                    chunk
                        .iter()
                        .map(|&(_, d)| d.clamp(i32::MIN.into(), i32::MAX.into()) as i32),
                );
                ops.rope_shift(rope, buf, l.n_head_kv, l.head_dim, &ws.positions);
                for (row, &(c, _)) in buf.chunks_exact(kw).zip(chunk) {
                    self.kv.write_keys(il, c as usize, row);
                }
            }
        }
    }
}

/// Lists the cells of each sequence the piece's tokens attend in (their first), and which list
/// each token reads.
fn build_maps(ws: &mut Workspace, kv: &KvStore, seqs: &[SeqSet]) {
    ws.seq_cells.clear();
    ws.maps.clear();
    ws.map_base.clear();
    let mut done: [Option<Range<usize>>; MAX_SEQ] = std::array::from_fn(|_| None);
    for set in seqs {
        let s = set.first().unwrap_or(0);
        let range = match &done[s] {
            Some(r) => r.clone(),
            None => {
                let start = ws.seq_cells.len();
                kv.seq_cells(s, &mut ws.seq_cells);
                let r = start..ws.seq_cells.len();
                done[s] = Some(r.clone());
                r
            }
        };
        ws.map_base.push(range.start);
        ws.maps.push(range);
    }
    // One sequence in cells 0..n in order: the kernel can read the cache rows directly.
    ws.identity_maps = done.iter().flatten().count() == 1
        && ws
            .seq_cells
            .iter()
            .enumerate()
            .all(|(i, &c)| c as usize == i);
}
