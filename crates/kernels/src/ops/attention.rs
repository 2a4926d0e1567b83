//! Attention of f32 queries over an f16 KV cache, exact in f32: keys and values are widened
//! exactly, scores, softmax and accumulators are f32 (softmax sums f64), nothing is rounded to
//! f16 on the way (unlike ggml's flash-attention path, and unlike its non-flash path, which
//! rounds q and the probabilities to f16 as `mul_mat` inputs).
//!
//! One layer's cache is a [`KvCache`]: K and V as f16 rows of `head_dim`, the row of kv head `h`
//! at cache row `p` starting at `p · pos_stride + h · head_stride` (llama.cpp's layout is
//! `pos_stride = n_head_kv · head_dim`, `head_stride = head_dim`). Query heads share kv heads
//! in consecutive groups of `n_head / n_head_kv` (GQA/MQA, as ggml broadcasts them).
//!
//! Which cache rows a query sees is the caller's choice, one range per token: causal prefill
//! gives token `t` at position `pos_t` the range `start..pos_t + 1`, with `start = 0`, or
//! `pos_t + 1 − window` for a sliding window; decode is the one-token case. The kernel walks
//! the range in blocks of [`BLOCK`] rows with a running maximum (an online softmax), so it needs
//! no scratch memory whatever the context length; all query heads of a kv group are processed
//! together, so each K and V row is read once per group.
//!
//! [`Ops::attention_ggml`] (in the `ggml` submodule) is the same attention with llama.cpp's
//! roundings — q and the probabilities through f16, ggml's `exp` and summation order — for
//! reproducing its results bit for bit; it takes an [`AttentionScratch`].

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use half::f16;

use super::Ops;
use super::generic::Rows;
use crate::pool::ThreadPool;

mod ggml;
pub use ggml::AttentionScratch;

/// Cache rows scored at once per query head (their scores live on the stack).
pub const BLOCK: usize = 128;
/// Query heads processed together against one kv head (bigger groups are split).
pub const MAX_GROUP: usize = 8;

/// Shape and scaling of one attention layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionParams {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads; divides `n_head`.
    pub n_head_kv: usize,
    /// Values per head, for q, k and v alike.
    pub head_dim: usize,
    /// Multiplies q·k (usually `1 / sqrt(head_dim)`).
    pub scale: f32,
    /// Logit soft-capping (Gemma 2): `s = softcap · tanh(s / softcap)`, after scaling in
    /// [`Ops::attention`], before it in [`Ops::attention_ggml`] (llama.cpp's order); 0 = off.
    pub softcap: f32,
}

impl AttentionParams {
    /// Checks a batch's buffers against this shape (both attention kernels take the same
    /// ones); returns the number of tokens and the length of `q` and `out`.
    ///
    /// # Panics
    /// If `n_head_kv` does not divide `n_head` or `q`/`out` do not hold `rows.len()` tokens.
    pub(crate) fn check_batch(
        &self,
        q: &[f32],
        out: &[f32],
        rows: &[Range<usize>],
    ) -> (usize, usize) {
        let (n_head, n_head_kv) = (self.n_head, self.n_head_kv);
        assert!(
            n_head_kv > 0 && n_head.is_multiple_of(n_head_kv),
            "attention: n_head_kv {n_head_kv} must divide n_head {n_head}"
        );
        let n_tokens = rows.len();
        let len = n_tokens * n_head * self.head_dim;
        assert_eq!(
            q.len(),
            len,
            "attention: q must be n_tokens · n_head · head_dim"
        );
        assert_eq!(
            out.len(),
            len,
            "attention: out must be n_tokens · n_head · head_dim"
        );
        (n_tokens, len)
    }
}

/// One layer's K and V cache (see the module docs for the layout).
#[derive(Clone, Copy, Debug)]
pub struct KvCache<'a> {
    pub k: &'a [f16],
    pub v: &'a [f16],
    /// Elements between the rows of consecutive cache positions.
    pub pos_stride: usize,
    /// Elements between the rows of consecutive kv heads at one position.
    pub head_stride: usize,
}

impl KvCache<'_> {
    /// Panics unless every row of kv heads `0..n_head_kv` at positions `rows` is inside K and V.
    fn check(&self, rows: &Range<usize>, n_head_kv: usize, head_dim: usize) {
        if rows.is_empty() || n_head_kv == 0 {
            return;
        }
        let end = (rows.end - 1)
            .checked_mul(self.pos_stride)
            .and_then(|a| a.checked_add((n_head_kv - 1).checked_mul(self.head_stride)?))
            .and_then(|a| a.checked_add(head_dim));
        assert!(
            end.is_some_and(|e| e <= self.k.len() && e <= self.v.len()),
            "attention: cache rows {rows:?} reach past the K/V buffers"
        );
    }
}

impl Ops {
    /// Attention of one query head: `out = softmax(scale · q·K[j] for j in rows) · V[rows]`,
    /// against kv head `kv_head`. An empty `rows` gives zeros.
    ///
    /// # Panics
    /// If `q` or `out` is not `head_dim` long, or a row is outside the cache.
    pub fn attention_head(
        self,
        params: &AttentionParams,
        q: &[f32],
        cache: &KvCache<'_>,
        kv_head: usize,
        rows: Range<usize>,
        out: &mut [f32],
    ) {
        let hd = params.head_dim;
        assert_eq!(q.len(), hd, "attention: q length");
        assert_eq!(out.len(), hd, "attention: out length");
        cache.check(&rows, kv_head + 1, hd);
        self.attend_group(params, q, 1, cache, kv_head, rows, out);
    }

    /// Multi-head attention for `n_tokens` queries, parallel over (token, kv head, group of
    /// query heads) on `pool`.
    ///
    /// - `q`, `out`: `[n_tokens][n_head][head_dim]`.
    /// - `rows[t]`: the cache rows token `t` attends to (e.g. `0..pos_t + 1` for causal
    ///   attention; see the module docs); an empty range gives zeros.
    ///
    /// Each output is computed by one thread in a fixed order, so results do not depend on the
    /// number of threads.
    ///
    /// # Panics
    /// If `n_head_kv` does not divide `n_head`, the buffers do not match the shape, or a row is
    /// outside the cache.
    pub fn attention(
        self,
        pool: &ThreadPool,
        params: &AttentionParams,
        q: &[f32],
        cache: &KvCache<'_>,
        rows: &[Range<usize>],
        out: &mut [f32],
    ) {
        let (n_tokens, len) = params.check_batch(q, out, rows);
        let &AttentionParams {
            n_head,
            n_head_kv,
            head_dim: hd,
            ..
        } = params;
        for r in rows {
            cache.check(r, n_head_kv, hd);
        }
        if len == 0 {
            return;
        }

        let g = n_head / n_head_kv;
        let (sub, n_sub) = split_group(g, n_tokens * n_head_kv, pool.n_threads());
        let per_token = n_head_kv * n_sub;
        let n_tasks = n_tokens * per_token;

        let next = AtomicUsize::new(0);
        let out_ptr = SharedOut(out.as_mut_ptr());
        pool.run(|_, _| {
            loop {
                let task = next.fetch_add(1, Ordering::Relaxed);
                if task >= n_tasks {
                    break;
                }
                // Latest tokens first: under causal masking they see the most rows, so taking
                // them early balances the threads.
                let t = n_tokens - 1 - task / per_token;
                let kv_head = task % per_token / n_sub;
                let h0 = kv_head * g + task % n_sub * sub;
                let h1 = (h0 + sub).min((kv_head + 1) * g);
                let at = (t * n_head + h0) * hd;
                let n = (h1 - h0) * hd;
                // SAFETY: `at + n <= len = out.len()`, and the (token, head range) of every task
                // is different, so no two tasks write the same element and nothing else
                // reads `out` until `run` returns.
                let out = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(at), n) };
                self.attend_group(
                    params,
                    &q[at..at + n],
                    h1 - h0,
                    cache,
                    kv_head,
                    rows[t].clone(),
                    out,
                );
            }
        });
    }

    /// Attention of `g` query heads (`q`, `out`: `[g][head_dim]`) against one kv head.
    /// The caller has checked the rows against the cache.
    #[allow(clippy::too_many_arguments)]
    fn attend_group(
        self,
        params: &AttentionParams,
        q: &[f32],
        g: usize,
        cache: &KvCache<'_>,
        kv_head: usize,
        rows: Range<usize>,
        out: &mut [f32],
    ) {
        let hd = params.head_dim;
        out.fill(0.0);
        if rows.is_empty() || hd == 0 {
            return;
        }
        debug_assert!(g <= MAX_GROUP);
        // Scores of head `h` at `scores[h * BLOCK..][..nb]`.
        let mut scores = [0.0f32; BLOCK * MAX_GROUP];
        let mut max = [f32::NEG_INFINITY; MAX_GROUP];
        let mut sum = [0.0f64; MAX_GROUP];
        let head_at = kv_head * cache.head_stride;
        let mut start = rows.start;
        while start < rows.end {
            let nb = (rows.end - start).min(BLOCK);
            let at = start * cache.pos_stride + head_at;
            let k = Rows::new(&cache.k[at..], cache.pos_stride, nb, hd);
            self.attn_scores(q, g, &k, params.scale, &mut scores, BLOCK);
            for h in 0..g {
                let s = &mut scores[h * BLOCK..h * BLOCK + nb];
                if params.softcap != 0.0 {
                    for x in s.iter_mut() {
                        *x = params.softcap * (*x / params.softcap).tanh();
                    }
                }
                let m = max[h].max(self.max(s));
                if m > max[h] && max[h] != f32::NEG_INFINITY {
                    // A larger maximum: rescale what was accumulated under the old one.
                    let c = (max[h] - m).exp();
                    self.scale(&mut out[h * hd..(h + 1) * hd], c);
                    sum[h] *= f64::from(c);
                }
                max[h] = m;
                sum[h] += self.exp_sub_sum(s, m);
            }
            let v = Rows::new(&cache.v[at..], cache.pos_stride, nb, hd);
            self.attn_accum(&scores, BLOCK, g, &v, out);
            start += nb;
        }
        for h in 0..g {
            self.scale(&mut out[h * hd..(h + 1) * hd], (1.0 / sum[h]) as f32);
        }
    }
}

/// Splits a kv group of `g` query heads into `n_sub` sub-groups of at most `sub` heads (the
/// result `(sub, n_sub)`). Whole groups read each K and V row once; a group is split (each part
/// rereading the group's rows) only where there are fewer of the `groups` than threads (decode
/// with few kv heads), or where it is larger than one kernel pass ([`MAX_GROUP`]).
fn split_group(g: usize, groups: usize, n_threads: usize) -> (usize, usize) {
    let n_sub = n_threads.div_ceil(groups).max(g.div_ceil(MAX_GROUP)).min(g);
    let sub = g.div_ceil(n_sub);
    (sub, g.div_ceil(sub))
}

/// The output pointer shared by the tasks of one `attention` call.
struct SharedOut<T>(*mut T);

impl<T> SharedOut<T> {
    fn get(&self) -> *mut T {
        self.0
    }
}

// SAFETY: tasks write disjoint ranges through the pointer (see its use in `attention`), and the
// buffer outlives `pool.run`, which returns only after every task.
unsafe impl<T> Sync for SharedOut<T> {}
