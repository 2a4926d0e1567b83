//! Perplexity as `llama-perplexity` measures it, and the statistics of its KL-divergence mode.
//!
//! The text's tokens are cut into chunks of `n_chunk_tokens`; each chunk is evaluated from
//! scratch (its first token replaced by BOS when the model adds one), and only the logits of
//! its second half are scored: position `p` predicts token `p + 1`, for `p` in
//! `n/2 .. n − 1`. Several chunks are evaluated together as separate sequences of one
//! [`Context`] (llama.cpp's `n_seq = n_batch / n_ctx`), which gives the same logits as one at a
//! time. [`score_chunks`] hands every scored row to a callback; [`Perplexity`] accumulates the
//! estimate and its standard error the way llama.cpp does.

use crate::batch::Batch;
use crate::context::{Context, ContextError};

/// Why perplexity could not be measured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PerplexityError {
    #[error(
        "the text has {n_tokens} tokens, too few for one chunk of {n_chunk_tokens} (use a longer text or a smaller -c)"
    )]
    TooShort {
        n_tokens: usize,
        n_chunk_tokens: usize,
    },
    #[error("a chunk needs at least 4 tokens, not {0}")]
    ChunkTooSmall(usize),
    #[error(
        "the context holds {cells} cells and {n_seq_max} sequences; {n_seq} chunks of {n_chunk_tokens} need more"
    )]
    ContextTooSmall {
        cells: usize,
        n_seq_max: usize,
        n_seq: usize,
        n_chunk_tokens: usize,
    },
    #[error(transparent)]
    Context(#[from] ContextError),
}

/// One scored position: which chunk, which scored row of it (0-based from the middle), the
/// logits there, the token that follows, and whether it is the chunk's last.
pub struct Scored<'a> {
    pub chunk: usize,
    pub row: usize,
    pub logits: &'a [f32],
    pub next: u32,
    pub last_of_chunk: bool,
}

/// How many chunks of `n_chunk_tokens` the text gives (at most `max_chunks`).
pub fn n_chunks(n_tokens: usize, n_chunk_tokens: usize, max_chunks: Option<usize>) -> usize {
    let all = n_tokens / n_chunk_tokens.max(1);
    max_chunks.map_or(all, |m| m.min(all))
}

/// Evaluates the chunks of `tokens`, `n_seq` at a time, calling `on_scored` for each scored
/// position in order (chunk by chunk); returns the number of chunks.
/// `bos` replaces each chunk's first token when given. `ctx` needs `n_seq` sequences and
/// `n_seq · n_chunk_tokens` cells; it is cleared before each group of chunks.
pub fn score_chunks(
    ctx: &mut Context,
    tokens: &[u32],
    n_chunk_tokens: usize,
    n_seq: usize,
    max_chunks: Option<usize>,
    bos: Option<u32>,
    mut on_scored: impl FnMut(Scored<'_>),
) -> Result<usize, PerplexityError> {
    let n = n_chunk_tokens;
    if n < 4 {
        return Err(PerplexityError::ChunkTooSmall(n));
    }
    let n_chunk = n_chunks(tokens.len(), n, max_chunks);
    if n_chunk == 0 {
        return Err(PerplexityError::TooShort {
            n_tokens: tokens.len(),
            n_chunk_tokens: n,
        });
    }
    let n_seq = n_seq.clamp(1, n_chunk);
    if ctx.params().n_seq_max < n_seq || ctx.n_ctx() < n_seq * n {
        return Err(PerplexityError::ContextTooSmall {
            cells: ctx.n_ctx(),
            n_seq_max: ctx.params().n_seq_max,
            n_seq,
            n_chunk_tokens: n,
        });
    }
    let first = n / 2;
    let mut batch = Batch::with_capacity(n_seq * n);
    for group in (0..n_chunk).step_by(n_seq) {
        let seqs = n_seq.min(n_chunk - group);
        ctx.clear();
        batch.clear();
        for s in 0..seqs {
            let chunk = &tokens[(group + s) * n..(group + s + 1) * n];
            for (p, &t) in chunk.iter().enumerate() {
                let t = match bos {
                    Some(b) if p == 0 => b,
                    _ => t,
                };
                batch.push(t, p, &[s], p >= first && p + 1 < n);
            }
        }
        ctx.decode_batch(&batch)?;
        for s in 0..seqs {
            let chunk = group + s;
            let base = s * n;
            for (row, p) in (first..n - 1).enumerate() {
                on_scored(Scored {
                    chunk,
                    row,
                    logits: ctx.batch_logits(base + p),
                    next: tokens[chunk * n + p + 1],
                    last_of_chunk: p + 2 == n,
                });
            }
        }
    }
    Ok(n_chunk)
}

/// `log p(token)` under the softmax of `logits`, as llama.cpp computes it (f32 maximum, f64
/// sum of `exp(l − max)`), and the token's probability.
pub fn log_softmax(logits: &[f32], token: u32) -> (f64, f64) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let l = logits[token as usize];
    let log_p = f64::from(l - max) - sum.ln();
    (log_p, f64::from(l - max).exp() / sum)
}

/// The running perplexity estimate: `exp(mean nll)` and llama.cpp's standard error
/// `ppl · sqrt((mean nll² − mean nll²) / (count − 1))`.
#[derive(Clone, Debug, Default)]
pub struct Perplexity {
    nll: f64,
    nll2: f64,
    count: usize,
}

impl Perplexity {
    /// Adds one scored position with negative log-likelihood `nll`.
    pub fn add(&mut self, nll: f64) {
        self.nll += nll;
        self.nll2 += nll * nll;
        self.count += 1;
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// `exp(mean nll)`.
    pub fn ppl(&self) -> f64 {
        (self.nll / self.count.max(1) as f64).exp()
    }

    /// The standard error of [`Perplexity::ppl`] (0 with fewer than two positions).
    pub fn error(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let n = self.count as f64;
        let mean = self.nll / n;
        let var = self.nll2 / n - mean * mean;
        if var > 0.0 {
            (var / (n - 1.0)).sqrt() * self.ppl()
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_of_uniform_logits() {
        let (lp, p) = log_softmax(&[1.0; 4], 2);
        assert!((lp - 0.25f64.ln()).abs() < 1e-12);
        assert!((p - 0.25).abs() < 1e-12);
    }

    #[test]
    fn perplexity_of_constant_nll_has_no_error() {
        let mut p = Perplexity::default();
        for _ in 0..10 {
            p.add(2.0);
        }
        assert!((p.ppl() - 2.0f64.exp()).abs() < 1e-12);
        assert_eq!(p.error(), 0.0);
        p.add(4.0);
        assert!(p.error() > 0.0);
    }

    #[test]
    fn chunks_are_whole() {
        assert_eq!(n_chunks(1000, 256, None), 3);
        assert_eq!(n_chunks(1000, 256, Some(2)), 2);
        assert_eq!(n_chunks(100, 256, None), 0);
    }
}
