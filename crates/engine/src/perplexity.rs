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

/// One scored position's log-probabilities over the vocabulary, stored in 2 bytes each as
/// llama.cpp's `--kl-divergence-base` files store them: `log p_j ≈ min + scale · q_j` with
/// `scale = (max_logit − min_logit) / 65535`, `min` the smallest log-probability and `q_j` the
/// nearest 16-bit step.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedLogProbs {
    pub scale: f32,
    pub min: f32,
    pub q: Vec<u16>,
}

impl QuantizedLogProbs {
    /// The log-softmax of `logits`, quantized.
    pub fn from_logits(logits: &[f32]) -> QuantizedLogProbs {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let min_logit = logits.iter().copied().fold(f32::INFINITY, f32::min);
        let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
        let log_sum = sum.ln() as f32;
        let scale = (max - min_logit) / 65535.0;
        let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        QuantizedLogProbs {
            scale,
            min: min_logit - max - log_sum,
            q: logits
                .iter()
                .map(|&l| (inv * (l - min_logit)).round().clamp(0.0, 65535.0) as u16)
                .collect(),
        }
    }

    /// `log p_j`.
    pub fn log_p(&self, j: usize) -> f32 {
        self.scale * f32::from(self.q[j]) + self.min
    }
}

/// The statistics of `llama-perplexity --kl-divergence`: a model's log-likelihoods and token
/// probabilities against a base model's, position by position.
#[derive(Clone, Debug, Default)]
pub struct KlDivergence {
    pub ppl: Perplexity,
    pub ppl_base: Perplexity,
    sum_nll_nll_base: f64,
    /// Per position: KL(base ‖ model), and `p(token) − p_base(token)`.
    pub kld: Vec<f64>,
    pub p_diff: Vec<f64>,
    pub same_top: usize,
}

impl KlDivergence {
    /// Adds one position: the model's `logits`, the base's log-probabilities, the true token.
    pub fn add(&mut self, logits: &[f32], base: &QuantizedLogProbs, token: u32) {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
        let log_z = f64::from(max) + sum.ln();
        let nll = log_z - f64::from(logits[token as usize]);
        let nll_base = -f64::from(base.log_p(token as usize));
        self.ppl.add(nll);
        self.ppl_base.add(nll_base);
        self.sum_nll_nll_base += nll * nll_base;
        let (mut kl, mut top_base, mut top) = (0.0f64, 0, 0);
        for (i, &l) in logits.iter().enumerate() {
            let lb = f64::from(base.log_p(i));
            kl += lb.exp() * (lb - (f64::from(l) - log_z));
            if base.q[i] > base.q[top_base] {
                top_base = i;
            }
            if l > logits[top] {
                top = i;
            }
        }
        self.kld.push(kl);
        self.p_diff.push((-nll).exp() - (-nll_base).exp());
        self.same_top += usize::from(top == top_base);
    }

    pub fn count(&self) -> usize {
        self.kld.len()
    }

    /// Pearson correlation of the two models' per-position log-likelihoods.
    pub fn nll_correlation(&self) -> f64 {
        let n = self.count() as f64;
        let (a, b) = (&self.ppl, &self.ppl_base);
        let cov = self.sum_nll_nll_base / n - a.nll / n * (b.nll / n);
        let va = a.nll2 / n - (a.nll / n).powi(2);
        let vb = b.nll2 / n - (b.nll / n).powi(2);
        cov / (va * vb).sqrt()
    }

    /// Mean and standard error of `values`.
    pub fn mean_err(values: &[f64]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        (mean, (var / n).sqrt())
    }

    /// The `q`-quantile (0..=1) of `values` (sorted copy, nearest rank).
    pub fn quantile(values: &[f64], q: f64) -> f64 {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let i = ((v.len() - 1) as f64 * q).round() as usize;
        v[i.min(v.len() - 1)]
    }
}

/// The file `--kl-divergence-base` writes: the base model's quantized log-probabilities at every
/// scored position, and what they were measured on, so a later run can check it compares like
/// with like. Little-endian: the magic `HEARTHKL`, `u32` version (1), `u32` n_vocab, `u32`
/// tokens per chunk, `u32` chunks, `u32` n_tokens and the text's `n_tokens` token ids (`u32`);
/// then for each scored position, in order, `f32` scale, `f32` min and `n_vocab` × `u16`.
pub mod base_file {
    use std::io::{self, Read, Write};

    use super::QuantizedLogProbs;

    const MAGIC: &[u8; 8] = b"HEARTHKL";
    const VERSION: u32 = 1;

    /// What a base file was measured on.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Header {
        pub n_vocab: usize,
        pub n_chunk_tokens: usize,
        pub n_chunks: usize,
        pub tokens: Vec<u32>,
    }

    pub fn write_header(w: &mut impl Write, h: &Header) -> io::Result<()> {
        w.write_all(MAGIC)?;
        for v in [
            VERSION,
            h.n_vocab as u32,
            h.n_chunk_tokens as u32,
            h.n_chunks as u32,
            h.tokens.len() as u32,
        ] {
            w.write_all(&v.to_le_bytes())?;
        }
        for t in &h.tokens {
            w.write_all(&t.to_le_bytes())?;
        }
        Ok(())
    }

    pub fn write_row(w: &mut impl Write, row: &QuantizedLogProbs) -> io::Result<()> {
        w.write_all(&row.scale.to_le_bytes())?;
        w.write_all(&row.min.to_le_bytes())?;
        let mut buf = Vec::with_capacity(row.q.len() * 2);
        for q in &row.q {
            buf.extend_from_slice(&q.to_le_bytes());
        }
        w.write_all(&buf)
    }

    fn u32_of(r: &mut impl Read) -> io::Result<u32> {
        let mut b = [0; 4];
        r.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn bad(m: String) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, m)
    }

    /// Reads and checks a header; `max_tokens` bounds the token list it will allocate.
    pub fn read_header(r: &mut impl Read, max_tokens: usize) -> io::Result<Header> {
        let mut magic = [0; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad("not a hearth KL-divergence base file".into()));
        }
        let version = u32_of(r)?;
        if version != VERSION {
            return Err(bad(format!(
                "base file version {version}, expected {VERSION}"
            )));
        }
        let n_vocab = u32_of(r)? as usize;
        let n_chunk_tokens = u32_of(r)? as usize;
        let n_chunks = u32_of(r)? as usize;
        let n_tokens = u32_of(r)? as usize;
        if n_tokens > max_tokens {
            return Err(bad(format!(
                "the base file was measured on {n_tokens} tokens, this text has {max_tokens}"
            )));
        }
        let mut tokens = Vec::with_capacity(n_tokens);
        for _ in 0..n_tokens {
            tokens.push(u32_of(r)?);
        }
        Ok(Header {
            n_vocab,
            n_chunk_tokens,
            n_chunks,
            tokens,
        })
    }

    /// Reads one row of `n_vocab` values into `row`.
    pub fn read_row(r: &mut impl Read, row: &mut QuantizedLogProbs) -> io::Result<()> {
        let mut b = [0; 4];
        r.read_exact(&mut b)?;
        row.scale = f32::from_le_bytes(b);
        r.read_exact(&mut b)?;
        row.min = f32::from_le_bytes(b);
        let mut buf = vec![0u8; row.q.len() * 2];
        r.read_exact(&mut buf)?;
        for (q, c) in row.q.iter_mut().zip(buf.chunks_exact(2)) {
            *q = u16::from_le_bytes([c[0], c[1]]);
        }
        Ok(())
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
    fn quantized_log_probs_round_trip_and_kld_of_self_is_zero() {
        let logits: Vec<f32> = (0..1000)
            .map(|i| ((i * 37 % 101) as f32) * 0.13 - 5.0)
            .collect();
        let q = QuantizedLogProbs::from_logits(&logits);
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_z = f64::from(max)
            + logits
                .iter()
                .map(|&l| f64::from(l - max).exp())
                .sum::<f64>()
                .ln();
        for (j, &l) in logits.iter().enumerate() {
            assert!((f64::from(q.log_p(j)) - (f64::from(l) - log_z)).abs() < 2e-4);
        }
        let mut k = KlDivergence::default();
        k.add(&logits, &q, 7);
        assert!(k.kld[0].abs() < 1e-4, "{}", k.kld[0]);
        assert_eq!(k.same_top, 1);
    }

    #[test]
    fn chunks_are_whole() {
        assert_eq!(n_chunks(1000, 256, None), 3);
        assert_eq!(n_chunks(1000, 256, Some(2)), 2);
        assert_eq!(n_chunks(100, 256, None), 0);
    }
}
