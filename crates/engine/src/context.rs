//! [`Context`]: one sequence being evaluated — the KV cache, the preallocated activations and
//! the thread pool — over a shared [`Model`].
//!
//! `decode` splits the tokens into batches of at most `n_batch`, runs each through the
//! architecture's layers, then the output norm and LM head only for the rows whose logits are
//! wanted, a few rows at a time so that the logits buffer stays small even for a 262,144-token
//! vocabulary. Every buffer is sized in [`Context::new`]; decoding allocates nothing.

use std::ops::Range;
use std::sync::Arc;

use kernels::ops::attention::AttentionScratch;
use kernels::pool::ThreadPool;

use crate::arch;
use crate::compute::{self, MatmulScratch};
use crate::kv_cache::KvCache;
use crate::model::Model;

/// Settings of a context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextParams {
    /// Positions the KV cache holds (prompt and generated tokens together).
    pub n_ctx: usize,
    /// Most tokens run through the layers at once.
    pub n_batch: usize,
    /// Threads for compute, the caller included.
    pub n_threads: usize,
    /// Compute a single-token call exactly as a token inside a batch. Off (the default), a
    /// single token's attention sums in the order llama.cpp uses for single tokens, so output
    /// equals llama.cpp's wherever the kernels follow its arithmetic — and, as in llama.cpp,
    /// logits can then differ in the last bits between a prompt fed in one batch and token by
    /// token. On, results never depend on how tokens are split into calls.
    pub batch_invariant: bool,
}

impl Default for ContextParams {
    fn default() -> Self {
        ContextParams {
            n_ctx: 4096,
            n_batch: 512,
            n_threads: default_threads(),
            batch_invariant: false,
        }
    }
}

/// One thread per available core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Rows of logits computed at once when every position's logits are wanted.
const OUTPUT_CHUNK: usize = 16;

/// Which positions of a call to [`Context::decode`] produce logits.
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
    #[error("token id {id} is outside the vocabulary of {n_vocab} tokens")]
    InvalidToken { id: u32, n_vocab: usize },
    #[error("nothing to decode: no tokens given")]
    Empty,
}

/// The tokens of one forward pass and where they go.
pub struct Batch<'t> {
    pub tokens: &'t [u32],
    /// Position of `tokens[0]`; the others follow consecutively.
    pub pos0: usize,
}

/// Preallocated activations and compute resources, used by the architectures' `forward`.
pub struct State {
    pub pool: ThreadPool,
    pub scratch: MatmulScratch,
    pub kv: KvCache,
    /// Residual stream, `n_batch × n_embd`.
    pub x: Vec<f32>,
    /// Normed input / output of the current block, `n_batch × n_embd`.
    pub h: Vec<f32>,
    /// Queries, keys, values of the batch, `n_batch ×` their widths.
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    /// Attention output before its projection, `n_batch × n_head·head_dim_v`.
    pub att: Vec<f32>,
    /// Feed-forward hidden activations, `n_batch × n_ff` each.
    pub ff_a: Vec<f32>,
    pub ff_b: Vec<f32>,
    /// Logits of up to `OUTPUT_CHUNK` rows, `× n_vocab`.
    pub logits: Vec<f32>,
    /// Output-norm rows feeding the LM head.
    head_in: Vec<f32>,
    /// Position of each token of the batch.
    pub positions: Vec<i32>,
    /// Cache rows each query of the batch attends to.
    pub attn_rows: Vec<Range<usize>>,
    /// Per-thread scores and probabilities of the attention kernel.
    pub attn_scratch: AttentionScratch,
}

/// A sequence being evaluated.
pub struct Context {
    model: Arc<Model>,
    params: ContextParams,
    st: State,
    /// The tokens in the KV cache, in order.
    tokens: Vec<u32>,
    /// Rows of `st.logits` holding the last call's final logits.
    last_logits: Range<usize>,
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
        const MAX_CTX: usize = 1 << 22;
        if params.n_ctx > MAX_CTX {
            return bad(format!(
                "context size {} is above the limit of {MAX_CTX}",
                params.n_ctx
            ));
        }
        let hp = &model.hparams;
        let nb = params.n_batch.min(params.n_ctx);
        let st = State {
            pool: ThreadPool::new(params.n_threads),
            scratch: {
                let s = MatmulScratch::with_capacity(
                    nb.max(OUTPUT_CHUNK),
                    hp.n_embd.max(hp.n_ff).max(hp.n_embd_q()),
                );
                // Q4_K/Q6_K products in llama.cpp's order switch kernels with the batch.
                if params.batch_invariant {
                    s.batch_invariant()
                } else {
                    s
                }
            },
            kv: KvCache::new(
                hp.n_layer,
                params.n_ctx,
                hp.n_embd_k_gqa(),
                hp.n_embd_v_gqa(),
            ),
            x: vec![0.0; nb * hp.n_embd],
            h: vec![0.0; nb * hp.n_embd],
            q: vec![0.0; nb * hp.n_embd_q()],
            k: vec![0.0; nb * hp.n_embd_k_gqa()],
            v: vec![0.0; nb * hp.n_embd_v_gqa()],
            att: vec![0.0; nb * hp.n_head * hp.head_dim_v],
            ff_a: vec![0.0; nb * hp.n_ff],
            ff_b: vec![0.0; nb * hp.n_ff],
            logits: vec![0.0; OUTPUT_CHUNK * hp.n_vocab],
            head_in: vec![0.0; OUTPUT_CHUNK * hp.n_embd],
            positions: Vec::with_capacity(nb),
            attn_rows: Vec::with_capacity(nb),
            attn_scratch: {
                let s = AttentionScratch::new(
                    &compute::attention_params(hp, 1.0),
                    params.n_threads,
                    params.n_ctx,
                );
                if params.batch_invariant {
                    s.batch_invariant()
                } else {
                    s
                }
            },
        };
        let params = ContextParams {
            n_batch: nb,
            ..params
        };
        let tokens = Vec::with_capacity(params.n_ctx);
        Ok(Context {
            model,
            params,
            st,
            tokens,
            last_logits: 0..0,
        })
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    pub fn params(&self) -> &ContextParams {
        &self.params
    }

    /// Positions already in the KV cache.
    pub fn n_past(&self) -> usize {
        self.tokens.len()
    }

    /// The tokens in the KV cache, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets every position after the first `n` (to reuse a shared prompt prefix).
    pub fn truncate(&mut self, n: usize) {
        self.tokens.truncate(n);
        self.last_logits = 0..0;
    }

    /// Forgets the whole sequence.
    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// Appends `tokens` to the sequence. With [`Outputs::Last`], the last token's logits are
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
        let mut done = 0;
        for chunk in tokens.chunks(self.params.n_batch) {
            let batch = Batch {
                tokens: chunk,
                pos0: self.n_past(),
            };
            self.st.positions.clear();
            self.st
                .positions
                .extend((batch.pos0..batch.pos0 + chunk.len()).map(|p| p as i32));
            arch::forward(&self.model, &mut self.st, &batch);
            self.tokens.extend_from_slice(chunk);
            let is_final = done + chunk.len() == tokens.len();
            let rows = match outputs {
                Outputs::All => 0..chunk.len(),
                Outputs::Last if is_final => chunk.len() - 1..chunk.len(),
                Outputs::Last => 0..0,
            };
            for start in rows.clone().step_by(OUTPUT_CHUNK) {
                let r = start..(start + OUTPUT_CHUNK).min(rows.end);
                self.head(r.clone());
                if outputs == Outputs::All {
                    for (i, row) in self
                        .st
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
        Ok(())
    }

    /// Appends `tokens`; the last one's logits are then in [`Context::logits`].
    pub fn decode(&mut self, tokens: &[u32]) -> Result<(), ContextError> {
        self.decode_with(tokens, Outputs::Last, |_, _| {})
    }

    /// Logits of the last decoded token (`n_vocab` values; empty before any decode).
    pub fn logits(&self) -> &[f32] {
        &self.st.logits[self.last_logits.clone()]
    }

    /// Output norm and LM head for batch rows `rows` (of the last forward), into `st.logits`.
    fn head(&mut self, rows: Range<usize>) {
        let _t = crate::profile::scope(crate::profile::Op::Head);
        let model = &*self.model;
        let hp = &model.hparams;
        let (norm, lm_head) = model.weights.head();
        let st = &mut self.st;
        let n = rows.len();
        let x = &st.x[rows.start * hp.n_embd..rows.end * hp.n_embd];
        let h = &mut st.head_in[..n * hp.n_embd];
        compute::rms_norm(x, norm, hp.rms_eps, h);
        compute::matmul(
            &st.pool,
            &mut st.scratch,
            model,
            lm_head,
            h,
            n,
            &mut st.logits[..n * hp.n_vocab],
        );
    }
}
