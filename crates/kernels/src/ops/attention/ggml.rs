//! [`Ops::attention_ggml`]: attention as llama.cpp computes it with flash attention off, bit for
//! bit, and the per-thread [`AttentionScratch`] it works in.
//!
//! llama.cpp's graph is `kq = mul_mat(K, q)`, `soft_max_ext(kq, mask, scale)`,
//! `kqv = mul_mat(Vᵀ, kq)` over the `n_kv` cells of an f16 cache. On the CPU that means:
//!
//! 1. q is rounded to f16 (F16's `vec_dot_type` is F16); each score is an f16 dot product in f32
//!    lanes (`ops::ggml::dot16` for a batch of 2+ tokens, where llamafile's sgemm runs;
//!    `dot64` for a single token, `ggml_vec_dot_f16`);
//! 2. soft-capping, if any (`scale(1/cap)`, `tanh`, `scale(cap)` — before `scale`, as llama.cpp
//!    orders it), then `· scale`, masked cells `−inf`; the maximum; `ggml_v_expf(s − max)` in
//!    blocks of 16 cells counted from cell 0, each block summed in f32 and the block sums in f64;
//!    the row multiplied by `f32(1 / sum)`;
//! 3. the probabilities rounded to f16, and each output value an f16 dot product over the cells
//!    (Vᵀ's rows), its lanes holding the cells `≡ l` modulo 16 (batch) or 64 (single token).
//!
//! Masked cells contribute exactly nothing, so only the caller's row range is computed; where
//! the lane structure depends on absolute cell indices, the cache row is taken as the cell
//! index. This reproduces llama.cpp when the engine's cache rows are llama.cpp's cells (one
//! sequence, cells filled from 0) and llama.cpp's `n_kv` is a multiple of 64 (it pads `n_kv` to
//! 256). Scores need the whole row range before the softmax, hence the scratch memory. (Soft-
//! capping's `tanh` is libm's `tanhf`, as in ggml: bit-exact only where both use the same libm.)

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};

use half::f16;

use super::{AttentionParams, KvCache, MAX_GROUP, SharedOut, split_group};
use crate::ops::Ops;
use crate::ops::generic::{Ahead, Rows};
use crate::pool::ThreadPool;

/// Lanes of the widest dot-product order (`ggml_vec_dot_f16`'s 4 × 16).
const MAX_LANES: usize = 64;

/// Working memory of [`Ops::attention_ggml`] for up to `n_threads` threads, one layer shape and
/// ranges of up to `max_rows` cache rows: allocate once (e.g. with the KV cache) and reuse, so
/// the token loop does not allocate.
#[derive(Clone, Debug)]
pub struct AttentionScratch {
    n_threads: usize,
    max_rows: usize,
    head_dim: usize,
    /// Query heads per task at most.
    group: usize,
    /// Per thread: scores `[group][window]`, lane sums `[group][MAX_LANES][head_dim]` (the
    /// SIMD levels need a quarter of them), the queries `[group][head_dim]`.
    f32s: Vec<f32>,
    /// Per thread: room to round the queries or one head's scores to f16.
    f16s: Vec<f16>,
    /// Use the batch order for a single token too (see [`AttentionScratch::batch_invariant`]).
    always_batched: bool,
}

impl AttentionScratch {
    /// Scratch for `n_threads` threads (at least the pool's), attention of `params`' shape, and
    /// row ranges of at most `max_rows` rows (the context size is always enough).
    pub fn new(params: &AttentionParams, n_threads: usize, max_rows: usize) -> AttentionScratch {
        let g = params.n_head.checked_div(params.n_head_kv).unwrap_or(1);
        let mut s = AttentionScratch {
            n_threads: n_threads.max(1),
            max_rows,
            head_dim: params.head_dim,
            group: g.clamp(1, MAX_GROUP),
            f32s: Vec::new(),
            f16s: Vec::new(),
            always_batched: false,
        };
        s.f32s = vec![0.0; s.n_threads * s.f32_per_thread()];
        s.f16s = vec![f16::ZERO; s.n_threads * s.f16_per_thread()];
        s
    }

    /// Order a single token's dot products as a batch's (llamafile sgemm's 16 lanes) instead of
    /// `ggml_vec_dot_f16`'s: llama.cpp's results then differ for single-token decodes by those
    /// orders' rounding, but ours no longer depend on how a prompt is split into batches.
    pub fn batch_invariant(mut self) -> AttentionScratch {
        self.always_batched = true;
        self
    }

    /// A row range widened to whole blocks of 16 cells.
    fn window(&self) -> usize {
        self.max_rows + 32
    }

    fn f32_per_thread(&self) -> usize {
        self.group * (self.window() + (MAX_LANES + 1) * self.head_dim)
    }

    fn f16_per_thread(&self) -> usize {
        (self.group * self.head_dim).max(self.window())
    }
}

impl Ops {
    /// [`attention`](Ops::attention) with llama.cpp's arithmetic (see the module docs): same
    /// arguments and layout, plus the `scratch` to work in.
    ///
    /// `rows.len()` is the batch: call once per llama.cpp micro-batch (its dot products are
    /// ordered differently for one token and for several). Results do not depend on the
    /// number of threads or on the ISA level.
    ///
    /// # Panics
    /// As [`attention`](Ops::attention), and if `scratch` was made for fewer threads than
    /// `pool` has, another head size, smaller head groups, or fewer rows than a range holds.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_ggml(
        self,
        pool: &ThreadPool,
        params: &AttentionParams,
        q: &[f32],
        cache: &KvCache<'_>,
        rows: &[Range<usize>],
        out: &mut [f32],
        scratch: &mut AttentionScratch,
    ) {
        self.attention_ggml_mapped(pool, params, q, cache, rows, &[], &[], out, scratch);
    }

    /// [`attention_ggml`](Ops::attention_ggml) over cells scattered in the cache. Token `t`
    /// reads its sequence's map, `cells[bases[t]..]`, whose entry `j` is the cache row of the
    /// sequence's `j`-th cell (in position order), and `rows[t]` are indices into that map. The
    /// arithmetic — blocks of 16, lanes — follows the map's indices, not the cache rows, so a
    /// sequence gives the same bits wherever its cells lie. Empty `cells` and `bases` mean
    /// every map is the identity.
    ///
    /// # Panics
    /// As [`attention_ggml`](Ops::attention_ggml), and if `bases` is neither empty nor one per
    /// token, or a range reaches past `cells`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_ggml_mapped(
        self,
        pool: &ThreadPool,
        params: &AttentionParams,
        q: &[f32],
        cache: &KvCache<'_>,
        rows: &[Range<usize>],
        cells: &[u32],
        bases: &[usize],
        out: &mut [f32],
        scratch: &mut AttentionScratch,
    ) {
        self.attention_ggml_sinks(
            pool,
            params,
            q,
            cache,
            rows,
            cells,
            bases,
            &[],
            out,
            scratch,
        );
    }

    /// [`Ops::attention_ggml_mapped`] with attention sinks (gpt-oss): `sinks[h]` (one per query
    /// head, or empty for none) is a logit that takes part in head `h`'s softmax without a value,
    /// as `ggml_soft_max_ext`'s sinks do: the maximum includes it, and `expf(sink − max)` is
    /// added to the f64 sum after the cells' blocks.
    ///
    /// # Panics
    /// As [`Ops::attention_ggml_mapped`], and if `sinks` is neither empty nor `n_head` long.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_ggml_sinks(
        self,
        pool: &ThreadPool,
        params: &AttentionParams,
        q: &[f32],
        cache: &KvCache<'_>,
        rows: &[Range<usize>],
        cells: &[u32],
        bases: &[usize],
        sinks: &[f32],
        out: &mut [f32],
        scratch: &mut AttentionScratch,
    ) {
        assert!(
            sinks.is_empty() || sinks.len() == params.n_head,
            "attention: one sink per query head"
        );
        let (n_tokens, len) = params.check_batch(q, out, rows);
        assert!(
            bases.is_empty() || bases.len() == n_tokens,
            "attention: one cell map per token"
        );
        let map = |t: usize| bases.get(t).map(|&b| cells.get(b..).unwrap_or(&[]));
        let &AttentionParams {
            n_head,
            n_head_kv,
            head_dim: hd,
            ..
        } = params;
        let g = n_head / n_head_kv;
        assert!(
            scratch.n_threads >= pool.n_threads()
                && scratch.head_dim == hd
                && scratch.group >= g.min(MAX_GROUP),
            "attention: scratch made for another shape or fewer threads"
        );
        for (t, r) in rows.iter().enumerate() {
            match map(t) {
                None => cache.check(r, n_head_kv, hd),
                Some(map) => {
                    assert!(
                        r.end <= map.len(),
                        "attention: range {r:?} past its cell map"
                    );
                    if let Some(&last) = map[r.clone()].iter().max() {
                        let last = last as usize;
                        cache.check(&(last..last + 1), n_head_kv, hd);
                    }
                }
            }
            assert!(
                r.len() <= scratch.max_rows,
                "attention: range {r:?} longer than the scratch's {} rows",
                scratch.max_rows
            );
        }
        if len == 0 {
            return;
        }

        let (sub, n_sub) = split_group(g, n_tokens * n_head_kv, pool.n_threads());
        let per_token = n_head_kv * n_sub;
        let n_tasks = n_tokens * per_token;
        let batched = n_tokens > 1 || scratch.always_batched;
        let (n32, n16) = (scratch.f32_per_thread(), scratch.f16_per_thread());

        let next = AtomicUsize::new(0);
        let n_threads = pool.n_threads();
        let out_ptr = SharedOut(out.as_mut_ptr());
        let s32_ptr = SharedOut(scratch.f32s.as_mut_ptr());
        let s16_ptr = SharedOut(scratch.f16s.as_mut_ptr());
        pool.run(|i, _| {
            // SAFETY: `i < pool.n_threads() <= scratch.n_threads`, so slot `i` lies inside both
            // buffers; `run` never has two calls with the same `i` running at once, and nothing
            // else touches the scratch until it returns.
            let (s32, s16) = unsafe {
                (
                    std::slice::from_raw_parts_mut(s32_ptr.get().add(i * n32), n32),
                    std::slice::from_raw_parts_mut(s16_ptr.get().add(i * n16), n16),
                )
            };
            let token = |task: usize| n_tokens - 1 - task / per_token;
            let kv_head_of = |task: usize| task % per_token / n_sub;
            let mut task = next.fetch_add(1, Ordering::Relaxed);
            while task < n_tasks {
                // While every thread still has a task left, the next one is claimed before
                // this one runs, and its cells are fetched while this one computes, unless a
                // task of the same sequence and kv head read them already (tokens of a
                // sequence are neighbours in the batch and run from the last): a decode step
                // of many sequences reads each sequence's cells once, from memory, where the
                // hardware prefetcher alone left most of the time waiting on it.
                let after =
                    (task + n_threads < n_tasks).then(|| next.fetch_add(1, Ordering::Relaxed));
                let t = token(task);
                let kv_head = kv_head_of(task);
                let mut ahead = Ahead::none();
                if let Some(after) = after
                    && after < n_tasks
                {
                    let ta = token(after);
                    let fresh = ta + 1 == n_tokens || bases.get(ta) != bases.get(ta + 1);
                    if fresh && (ta, kv_head_of(after)) != (t, kv_head) {
                        let (r, m, kvh) = (&rows[ta], map(ta), kv_head_of(after));
                        ahead = Ahead::new(
                            task_rows(cache, cache.k, kvh, hd, r, m),
                            task_rows(cache, cache.v, kvh, hd, r, m),
                            2 * rows[t].len(),
                        );
                    }
                }
                let h0 = kv_head * g + task % n_sub * sub;
                let h1 = (h0 + sub).min((kv_head + 1) * g);
                let at = (t * n_head + h0) * hd;
                let n = (h1 - h0) * hd;
                // SAFETY: as in `attention`: tasks write disjoint `at..at + n` inside `out`.
                let out = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(at), n) };
                let group = GroupTask {
                    q: &q[at..at + n],
                    g: h1 - h0,
                    kv_head,
                    rows: rows[t].clone(),
                    map: map(t),
                    batched,
                    sinks: sinks.get(h0..h1).unwrap_or(&[]),
                };
                self.attend_group_ggml(params, cache, &group, out, s32, s16, &mut ahead);
                task = after.unwrap_or_else(|| next.fetch_add(1, Ordering::Relaxed));
            }
        });
    }

    /// One task of `attention_ggml`: `g` query heads against one kv head, into `out`
    /// (`[g][head_dim]`), in `s32`/`s16` (one thread's scratch), fetching `ahead` meanwhile.
    #[allow(clippy::too_many_arguments)]
    fn attend_group_ggml<'a>(
        self,
        params: &AttentionParams,
        cache: &KvCache<'a>,
        task: &GroupTask<'a>,
        out: &mut [f32],
        s32: &mut [f32],
        s16: &mut [f16],
        ahead: &mut Ahead<'a>,
    ) {
        let hd = params.head_dim;
        let g = task.g;
        let rows = &task.rows;
        out.fill(0.0);
        if rows.is_empty() || hd == 0 {
            return;
        }
        // Cells `lo..lo + w` are whole blocks of 16; the live ones start `off` into the window.
        let lo = rows.start & !15;
        let w = rows.end.next_multiple_of(16) - lo;
        let (off, n) = (rows.start - lo, rows.len());
        let lanes = if task.batched && hd.is_multiple_of(4) {
            16
        } else {
            MAX_LANES
        };
        let (scores, rest) = s32.split_at_mut(g * w);
        let (acc, rest) = rest.split_at_mut(g * lanes * hd);
        let qf = &mut rest[..g * hd];

        // q as `mul_mat` converts it, held as f32 for the kernels.
        self.f32_to_f16(&mut s16[..g * hd], task.q);
        self.f16_to_f32(qf, &s16[..g * hd]);
        let rows_of = |data: &'a [f16]| task_rows(cache, data, task.kv_head, hd, rows, task.map);
        let k = rows_of(cache.k);
        let lanes16 = task.batched && hd.is_multiple_of(16);
        self.kq_dots_ggml(qf, g, &k, lanes16, &mut scores[off..], w, ahead);

        for h in 0..g {
            let row = &mut scores[h * w..(h + 1) * w];
            row[..off].fill(f32::NEG_INFINITY);
            row[off + n..].fill(f32::NEG_INFINITY);
            let live = &mut row[off..off + n];
            if params.softcap != 0.0 {
                let inv = 1.0 / params.softcap;
                for x in live.iter_mut() {
                    *x = (*x * inv).tanh() * params.softcap;
                }
            }
            self.scale(live, params.scale);
            let sink = task.sinks.get(h).copied();
            let m = match sink {
                Some(s) => self.max(live).max(s),
                None => self.max(live),
            };
            let mut sum = self.exp_block_sums_ggml(row, m);
            if let Some(s) = sink {
                sum += f64::from((s - m).exp());
            }
            self.scale(row, (1.0 / sum) as f32);
            // The probabilities as `mul_mat` converts them, held as f32.
            self.f32_to_f16(&mut s16[..w], row);
            self.f16_to_f32(row, &s16[..w]);
        }

        let v = rows_of(cache.v);
        self.pv_ggml(
            &scores[off..],
            w,
            g,
            &v,
            rows.start % lanes,
            lanes,
            acc,
            out,
            ahead,
        );
    }
}

/// The rows `rows` (`hd` values each) of kv head `kv_head` in `data` (the cache's keys or
/// values), through `map` where the cells are scattered.
fn task_rows<'a>(
    cache: &KvCache<'a>,
    data: &'a [f16],
    kv_head: usize,
    hd: usize,
    rows: &Range<usize>,
    map: Option<&'a [u32]>,
) -> Rows<'a> {
    let head = kv_head * cache.head_stride;
    match map {
        Some(map) => Rows::gathered(&data[head..], cache.pos_stride, &map[rows.clone()], hd),
        None => Rows::new(
            &data[rows.start * cache.pos_stride + head..],
            cache.pos_stride,
            rows.len(),
            hd,
        ),
    }
}

/// What one task of `attention_ggml` computes.
struct GroupTask<'a> {
    /// `[g][head_dim]` queries.
    q: &'a [f32],
    g: usize,
    kv_head: usize,
    rows: Range<usize>,
    /// Cache row of each index of `rows` (`None`: the index is the cache row).
    map: Option<&'a [u32]>,
    /// Part of a batch of several tokens (llamafile sgemm's order) rather than one.
    batched: bool,
    /// The sinks of heads `h0..h1` (empty: none).
    sinks: &'a [f32],
}
