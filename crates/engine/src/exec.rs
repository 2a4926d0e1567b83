//! The execution handle: every operation an architecture's `forward` performs goes through
//! [`Backend`], over activation buffers it names ([`Buf`]) rather than slices it holds. The
//! architectures are recipes written against this trait; [`Cpu`] runs them on the `kernels`
//! crate with the buffers of a [`Workspace`] and the cells of a [`KvStore`].
//!
//! A second backend (a GPU) implements [`Backend`] over its own device buffers: the same
//! [`Buf`] names, the weights ([`MatRef`]) uploaded at load and found by their name, and its own
//! KV store mirroring the cell table. No architecture file changes; `Context::decode_batch`
//! picks the backend. See ARCHITECTURE.md.

use std::ops::Range;
use std::sync::Arc;

use kernels::matmul::{Matrix, Product};
use kernels::ops::Ops;
use kernels::ops::attention::{AttentionParams, AttentionScratch};
use kernels::ops::rope::{Rope, RopeCache};
use kernels::pool::ThreadPool;

use crate::kv_cache::KvStore;
use crate::model::{ExpertMats, HParams, LayerShape, MatRef};
use crate::moe::{self, ExpertAct, Moe};
use crate::profile::{self, Op};

pub use kernels::matmul::Scratch as MatmulScratch;

/// The activation buffers of a forward pass, each `n_tokens` rows of its width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buf {
    /// The residual stream (`n_embd`).
    X,
    /// A block's normed input and its output (`n_embd`).
    H,
    /// Queries (`n_head · head_dim_k`).
    Q,
    /// Keys (`n_head_kv · head_dim_k`).
    K,
    /// Values (`n_head_kv · head_dim_v`).
    V,
    /// Attention output before its projection (`n_head · head_dim_v`).
    Att,
    /// Feed-forward hidden activations (`n_ff`).
    FfA,
    FfB,
    /// Per-layer embeddings of every layer (`n_layer · n_embd_per_layer`; Gemma 4's E models,
    /// empty otherwise), and their projection from the token embeddings.
    Ple,
    PleProj,
    /// One layer's per-layer input activations (`n_embd_per_layer`).
    PleH,
    /// The experts' input and output where a dense block runs beside them, and the router's
    /// input where it is not the experts' (`n_embd` in models with experts; Gemma 4).
    Experts,
    Router,
}

const N_BUF: usize = 13;

impl Buf {
    /// Width of one row at layer shape `l` (the shape of the layer being computed; buffers are
    /// allocated at the model's largest).
    fn width(self, hp: &HParams, l: &LayerShape) -> usize {
        match self {
            Buf::X | Buf::H => hp.n_embd,
            Buf::Q | Buf::Att => hp.n_head * l.head_dim,
            Buf::K | Buf::V => l.n_embd_kv(),
            Buf::FfA | Buf::FfB => l.n_ff,
            Buf::Ple | Buf::PleProj => hp.n_layer * hp.n_embd_per_layer,
            Buf::PleH => hp.n_embd_per_layer,
            Buf::Experts | Buf::Router => {
                if hp.n_expert > 0 {
                    hp.n_embd
                } else {
                    0
                }
            }
        }
    }

    /// The largest width over the layers (the feed-forward buffers also hold the shared
    /// experts' activations).
    fn max_width(self, hp: &HParams) -> usize {
        if matches!(self, Buf::FfA | Buf::FfB) && hp.n_expert > 0 && hp.n_ff_shexp > hp.n_ff {
            return hp.n_ff_shexp;
        }
        let max = LayerShape {
            n_head_kv: hp.n_head_kv,
            head_dim: hp.head_dim_k,
            n_rot: hp.n_rot,
            n_ff: hp.n_ff,
            n_ff_exp: hp.n_ff_exp,
            is_swa: false,
            kv_layer: 0,
        };
        self.width(hp, &max)
    }
}

/// The activation of a gated feed-forward block.
#[derive(Clone, Copy, Debug)]
pub enum Activation {
    /// SwiGLU: `silu(gate) · up`.
    Silu,
    /// GeGLU with ggml's tanh-approximated GELU.
    Gelu,
}

/// Llama 4's attention temperature (Ministral 3): the queries of a token at position `p` are
/// multiplied by `1 + scale · ln(⌊(p + offset) / floor⌋ + 1)` (llama.cpp's
/// `llm_graph_input_attn_temp`, the logarithm in f64).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnTemperature {
    pub scale: f32,
    pub floor: usize,
    pub offset: f32,
}

impl AttnTemperature {
    /// The factor for position `pos`.
    pub fn factor(&self, pos: i32) -> f32 {
        let q = ((pos as f32 + self.offset) / self.floor as f32).floor();
        ((f64::from(q) + 1.0).ln() * f64::from(self.scale) + 1.0) as f32
    }
}

/// What an architecture's `forward` can ask of the machine that runs it. Every call works on
/// the current batch of `n_tokens()` tokens; widths come from the model's hyper-parameters.
pub trait Backend {
    fn n_tokens(&self) -> usize;
    /// `X` = the token embeddings of the batch, times `scale`.
    fn embed(&mut self, tok_embd: &MatRef, scale: f32);
    /// `dst` = RMS norm of each row of `src`, times `w`.
    fn rms_norm(&mut self, src: Buf, w: &[f32], dst: Buf);
    /// RMS norm in place of each `w.len()`-wide piece of `buf` (a whole row, or each head).
    fn rms_norm_rows(&mut self, buf: Buf, w: &[f32]);
    /// `dst += src`.
    fn add(&mut self, dst: Buf, src: Buf);
    /// Adds `bias` to every row of `buf`.
    fn add_bias(&mut self, buf: Buf, bias: &[f32]);
    /// `buf *= s`.
    fn scale(&mut self, buf: Buf, s: f32);
    /// Each token's row of `buf` times `t.factor(its position)`.
    fn scale_by_position(&mut self, buf: Buf, t: AttnTemperature);
    /// `dst = src · Wᵀ` for each row.
    fn matmul(&mut self, w: &MatRef, src: Buf, dst: Buf) {
        self.matmul_many(src, &[(w, dst)]);
    }
    /// Several products sharing one input, in one pass.
    fn matmul_many(&mut self, src: Buf, outs: &[(&MatRef, Buf)]);
    /// `FfA = act(FfA) · FfB`.
    fn gated_activation(&mut self, act: Activation);
    /// Rotates each of the `n_heads` heads of every row of `buf` by its token's position.
    fn rope(&mut self, buf: Buf, n_heads: usize, rope: &Rope);
    /// Writes `K` and `V` into layer `il`'s cells for the batch, then `Att` = attention of `Q`
    /// over each token's own sequence (causal, within `window` positions when given), with
    /// `q·k` multiplied by `kq_scale`.
    fn attention(&mut self, il: usize, kq_scale: f32, window: Option<usize>);

    // ---- for models whose layers differ (Gemma 4) ----

    /// The operations that follow work at layer `il`'s shape ([`LayerShape`]: head size, KV
    /// heads, feed-forward width). Models whose layers all have one shape never call it.
    fn set_layer(&mut self, il: usize);
    /// `Att` = attention of `Q` over the keys and values layer `kv_layer` stored earlier in
    /// this pass (a shared-KV layer: nothing is written).
    fn attention_shared(&mut self, kv_layer: usize, kq_scale: f32, window: Option<usize>);
    /// `dst` = the rows of `table` for the batch's tokens, times `scale`.
    fn embed_to(&mut self, table: &MatRef, scale: f32, dst: Buf);
    /// `dst = src` (same widths).
    fn copy(&mut self, dst: Buf, src: Buf);
    /// GELU (ggml's f16 table) in place.
    fn gelu(&mut self, buf: Buf);
    /// Each row of `dst` times the slice of `src`'s row starting at `offset` (as wide as
    /// `dst`'s rows).
    fn mul_slice(&mut self, dst: Buf, src: Buf, offset: usize);
    /// [`Backend::attention`] with a sink logit per query head in each softmax (gpt-oss).
    fn attention_sinks(&mut self, il: usize, kq_scale: f32, window: Option<usize>, sinks: &[f32]);
    /// `buf` = the mixture-of-experts block `m` of `buf` (see [`crate::moe`]): route each token
    /// by its row of `router_in` (usually `buf` itself) to its experts, run them on its row of
    /// `buf`, and sum their weighted outputs (and the shared experts').
    fn moe(&mut self, m: &Moe, buf: Buf, router_in: Buf);
    /// Each row of `buf` times `w`, element by element.
    fn mul_row(&mut self, buf: Buf, w: &[f32]);
}

/// Sees the input of every weight product a forward performs, before the product (what
/// `hearth imatrix` collects). Attached per call ([`crate::Context::decode_batch_observed`]); a
/// forward without one pays a single branch per product.
pub trait MatmulObserver {
    /// `input` holds the rows (each `w.cols` wide, one per token of the batch) that multiply
    /// the dense matrix `w`.
    fn matmul(&mut self, w: &MatRef, input: &[f32]);
    /// `input` holds the rows (each `w.cols` wide) routed to expert `expert` of the 3-D tensor
    /// `w` — one row per (token, expert slot) pair that chose it. A mixture-of-experts
    /// operation calls this once per expert it runs (or per row), in token order.
    fn expert_matmul(&mut self, w: &ExpertMats, expert: usize, input: &[f32]);
}

/// Preallocated activations and compute resources for batches of up to `n_batch` tokens,
/// shared by every sequence of a context.
pub struct Workspace {
    pub(crate) pool: Arc<ThreadPool>,
    pub(crate) scratch: MatmulScratch,
    pub(crate) bufs: [Vec<f32>; N_BUF],
    /// Logits of up to `OUTPUT_CHUNK` rows, `× n_vocab`.
    pub(crate) logits: Vec<f32>,
    /// Output-norm rows feeding the LM head.
    pub(crate) head_in: Vec<f32>,
    /// Per token of the batch: its id, its position, and the cell it was given.
    pub(crate) tokens: Vec<u32>,
    pub(crate) positions: Vec<i32>,
    pub(crate) cells: Vec<u32>,
    /// Per token: the range of its sequence's map it attends to, and where that map lies in
    /// `seq_cells` (its start alone in `map_base`, for the kernel).
    pub(crate) attn_rows: Vec<Range<usize>>,
    pub(crate) maps: Vec<Range<usize>>,
    pub(crate) map_base: Vec<usize>,
    /// The cells of the batch's sequences, each sequence's in position order.
    pub(crate) seq_cells: Vec<u32>,
    /// Whether every map is the identity (one sequence in cells `0..n`), so the cells need no
    /// gathering.
    pub(crate) identity_maps: bool,
    /// Per-thread scores and probabilities of the attention kernel, per head size.
    pub(crate) attn_scratch: Vec<(usize, AttentionScratch)>,
    /// Cells whose keys need re-rotating, with the position change.
    pub(crate) shifts: Vec<(u32, i64)>,
    /// The cos/sin of the batch's positions per RoPE (keyed by its address in the model), so
    /// a forward computes them once per RoPE rather than for every q and k of every layer;
    /// the first `ropes_filled` are this forward's.
    pub(crate) ropes: Vec<(usize, RopeCache)>,
    pub(crate) ropes_filled: usize,
    /// Room for the mixture-of-experts block (models with experts only).
    pub(crate) moe: Option<MoeScratch>,
}

/// The buffers of [`Backend::moe`] for `n_batch` tokens.
pub(crate) struct MoeScratch {
    /// Router logits, then probabilities: `[n_batch × n_expert]`.
    probs: Vec<f32>,
    /// Chosen experts and their weights: `[n_batch × n_used]`.
    sel: Vec<u32>,
    weights: Vec<f32>,
    /// The (token · n_used + slot) entries grouped by expert; expert `e`'s are
    /// `order[starts[e]..starts[e + 1]]`.
    order: Vec<u32>,
    starts: Vec<usize>,
    /// One expert's gathered inputs `[n_batch × n_embd]`, hidden activations
    /// `[n_batch × n_ff_exp]` (two) and outputs `[n_batch × n_embd]`.
    xin: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    y: Vec<f32>,
    /// Every chosen expert's weighted output, `[n_batch × n_used × n_embd]`.
    outs: Vec<f32>,
    /// One F32 expert's weight row (`max(n_embd, n_ff_exp)`).
    row: Vec<f32>,
    batch_invariant: bool,
}

impl MoeScratch {
    fn new(hp: &HParams, n_batch: usize, batch_invariant: bool) -> MoeScratch {
        let (ne, k, d, f) = (hp.n_expert, hp.n_expert_used, hp.n_embd, hp.n_ff_exp);
        MoeScratch {
            probs: vec![0.0; n_batch * ne],
            sel: vec![0; n_batch * k],
            weights: vec![0.0; n_batch * k],
            order: vec![0; n_batch * k],
            starts: vec![0; ne + 1],
            xin: vec![0.0; n_batch * d],
            a: vec![0.0; n_batch * f],
            b: vec![0.0; n_batch * f],
            y: vec![0.0; n_batch * d],
            outs: vec![0.0; n_batch * k * d],
            row: vec![0.0; d.max(f)],
            batch_invariant,
        }
    }
}

impl Workspace {
    pub(crate) fn new(
        hp: &HParams,
        pool: Arc<ThreadPool>,
        n_batch: usize,
        n_ctx: usize,
        output_rows: usize,
        batch_invariant: bool,
    ) -> Workspace {
        let n_threads = pool.n_threads();
        let buf = |b: Buf| vec![0.0; n_batch * b.max_width(hp)];
        let scratch = MatmulScratch::with_capacity(
            n_batch.max(output_rows),
            hp.n_embd.max(Buf::FfA.max_width(hp)).max(hp.n_embd_q()),
        );
        // One attention scratch per head size, made for the most query heads per KV head.
        let mut attn_scratch: Vec<(usize, AttentionScratch)> = Vec::new();
        for l in &hp.layers {
            let fewest_kv = hp
                .layers
                .iter()
                .filter(|m| m.head_dim == l.head_dim)
                .min_by_key(|m| m.n_head_kv)
                .unwrap_or(l);
            if attn_scratch.iter().all(|(hd, _)| *hd != l.head_dim) {
                let s =
                    AttentionScratch::new(&attention_params(hp, fewest_kv, 1.0), n_threads, n_ctx);
                let s = if batch_invariant {
                    s.batch_invariant()
                } else {
                    s
                };
                attn_scratch.push((l.head_dim, s));
            }
        }
        Workspace {
            pool,
            // Q4_K/Q6_K products in llama.cpp's order switch kernels with the batch.
            scratch: if batch_invariant {
                scratch.batch_invariant()
            } else {
                scratch
            },
            bufs: [
                buf(Buf::X),
                buf(Buf::H),
                buf(Buf::Q),
                buf(Buf::K),
                buf(Buf::V),
                buf(Buf::Att),
                buf(Buf::FfA),
                buf(Buf::FfB),
                buf(Buf::Ple),
                buf(Buf::PleProj),
                buf(Buf::PleH),
                buf(Buf::Experts),
                buf(Buf::Router),
            ],
            logits: vec![0.0; output_rows * hp.n_vocab],
            head_in: vec![0.0; output_rows * hp.n_embd],
            tokens: Vec::with_capacity(n_batch),
            positions: Vec::with_capacity(n_batch),
            cells: Vec::with_capacity(n_batch),
            attn_rows: Vec::with_capacity(n_batch),
            maps: Vec::with_capacity(n_batch),
            map_base: Vec::with_capacity(n_batch),
            seq_cells: Vec::with_capacity(n_ctx),
            identity_maps: true,
            attn_scratch,
            shifts: Vec::new(),
            ropes: Vec::new(),
            ropes_filled: 0,
            moe: (hp.n_expert > 0).then(|| MoeScratch::new(hp, n_batch, batch_invariant)),
        }
    }
}

/// The attention parameters of a layer of shape `l`.
pub(crate) fn attention_params(hp: &HParams, l: &LayerShape, scale: f32) -> AttentionParams {
    AttentionParams {
        n_head: hp.n_head,
        n_head_kv: l.n_head_kv,
        head_dim: l.head_dim,
        scale,
        softcap: 0.0,
    }
}

/// The CPU backend: one batch of `n` tokens over a workspace and a KV store.
pub(crate) struct Cpu<'a> {
    pub hp: &'a HParams,
    pub ws: &'a mut Workspace,
    pub kv: &'a mut KvStore,
    pub n: usize,
    /// Shown the input of every weight product when attached.
    pub observer: Option<&'a mut dyn MatmulObserver>,
    /// The shape of the layer being computed ([`Backend::set_layer`]).
    pub shape: LayerShape,
}

impl<'a> Cpu<'a> {
    pub fn new(hp: &'a HParams, ws: &'a mut Workspace, kv: &'a mut KvStore, n: usize) -> Self {
        // New positions: the RoPE angles of the last forward are stale.
        ws.ropes_filled = 0;
        Cpu {
            hp,
            ws,
            kv,
            n,
            shape: hp.layer(0),
            observer: None,
        }
    }
}

impl Cpu<'_> {
    fn len(&self, b: Buf) -> usize {
        self.n * b.width(self.hp, &self.shape)
    }

    fn buf(&mut self, b: Buf) -> &mut [f32] {
        let n = self.len(b);
        &mut self.ws.bufs[b as usize][..n]
    }

    /// `a` to read and `b` to write (two different buffers).
    fn two(&mut self, a: Buf, b: Buf) -> (&[f32], &mut [f32]) {
        let (na, nb) = (self.len(a), self.len(b));
        match self.ws.bufs.get_disjoint_mut([a as usize, b as usize]) {
            Ok([x, y]) => (&x[..na], &mut y[..nb]),
            Err(_) => unreachable!("an operation read and wrote {a:?}"),
        }
    }
}

impl Backend for Cpu<'_> {
    fn n_tokens(&self) -> usize {
        self.n
    }

    fn embed(&mut self, tok_embd: &MatRef, scale: f32) {
        let _t = profile::scope(Op::Embedding);
        let d = self.hp.n_embd;
        let n = self.n;
        let ws = &mut *self.ws;
        let x = &mut ws.bufs[Buf::X as usize][..n * d];
        for (row, &t) in x.chunks_exact_mut(d).zip(&ws.tokens[..n]) {
            // Token ids were checked against the vocabulary, and lookups from this matrix
            // were checked when the model was loaded.
            if let Err(e) = tok_embd.matrix.dequantize_row(t as usize, row) {
                panic!("embedding lookup of token {t}: {e}");
            }
            if scale != 1.0 {
                row.iter_mut().for_each(|v| *v *= scale);
            }
        }
    }

    fn rms_norm(&mut self, src: Buf, w: &[f32], dst: Buf) {
        let _t = profile::scope(Op::Norm);
        let eps = self.hp.rms_eps;
        let ops = Ops::detected();
        let (x, out) = self.two(src, dst);
        for (xr, or) in x.chunks_exact(w.len()).zip(out.chunks_exact_mut(w.len())) {
            ops.rms_norm(or, xr, w, eps);
        }
    }

    fn rms_norm_rows(&mut self, buf: Buf, w: &[f32]) {
        let _t = profile::scope(Op::Norm);
        let eps = self.hp.rms_eps;
        let ops = Ops::detected();
        for r in self.buf(buf).chunks_exact_mut(w.len()) {
            ops.rms_norm_inplace(r, w, eps);
        }
    }

    fn add(&mut self, dst: Buf, src: Buf) {
        let _t = profile::scope(Op::Other);
        let (y, x) = self.two(src, dst);
        Ops::detected().add(x, y);
    }

    fn add_bias(&mut self, buf: Buf, bias: &[f32]) {
        let _t = profile::scope(Op::Other);
        let ops = Ops::detected();
        for r in self.buf(buf).chunks_exact_mut(bias.len()) {
            ops.add(r, bias);
        }
    }

    fn scale(&mut self, buf: Buf, s: f32) {
        let _t = profile::scope(Op::Other);
        Ops::detected().scale(self.buf(buf), s);
    }

    fn scale_by_position(&mut self, buf: Buf, t: AttnTemperature) {
        let _t = profile::scope(Op::Other);
        let (n, w) = (self.n, buf.width(self.hp, &self.shape));
        let ws = &mut *self.ws;
        let rows = &mut ws.bufs[buf as usize][..n * w];
        for (r, &pos) in rows.chunks_exact_mut(w).zip(&ws.positions[..n]) {
            Ops::detected().scale(r, t.factor(pos));
        }
    }

    fn matmul_many(&mut self, src: Buf, outs: &[(&MatRef, Buf)]) {
        let _t = profile::scope(Op::Matmul);
        let (n, k) = (self.n, outs.len());
        let Some(first) = outs.first() else { return };
        let hp = self.hp;
        let ws = &mut *self.ws;
        let mut input: &[f32] = &[];
        let mut ys: [&mut [f32]; MAX_OUTS] = Default::default();
        for (i, b) in ws.bufs.iter_mut().enumerate() {
            if i == src as usize {
                input = &b[..n * src.width(hp, &self.shape)];
            } else if let Some(j) = outs.iter().position(|o| o.1 as usize == i) {
                ys[j] = &mut b[..n * outs[j].1.width(hp, &self.shape)];
            }
        }
        if let Some(o) = self.observer.as_deref_mut() {
            // Parts of one fused tensor (Phi-3's `attn_qkv`) share its name: observed once.
            for (i, (w, _)) in outs.iter().enumerate() {
                if outs[..i].iter().all(|(v, _)| v.name != w.name) {
                    o.matmul(w, input);
                }
            }
        }
        let mats: [&Matrix<'static>; MAX_OUTS] =
            std::array::from_fn(|i| &*outs.get(i).unwrap_or(first).0.matrix);
        let result = if k <= MAX_OUTS {
            kernels::matmul::matmul_many(
                &ws.pool,
                &mats[..k],
                input,
                n,
                &mut ys[..k],
                &mut ws.scratch,
            )
        } else {
            Err(kernels::quant::KernelError::ShapeMismatch(
                "too many products at once",
            ))
        };
        // Shapes were checked when the model was loaded and every buffer holds n_batch rows of
        // its width, so this cannot fail on any input; if it does, hearth has a bug, and
        // carrying on would return stale numbers.
        if let Err(e) = result {
            let names: Vec<&str> = outs.iter().map(|o| o.0.name.as_str()).collect();
            panic!("matmul of {names:?} from {src:?}: {e}");
        }
    }

    fn gated_activation(&mut self, act: Activation) {
        let _t = profile::scope(Op::Activation);
        let width = self.shape.n_ff;
        let ops = Ops::detected();
        let (b, a) = self.two(Buf::FfB, Buf::FfA);
        for (ar, br) in a.chunks_exact_mut(width).zip(b.chunks_exact(width)) {
            match act {
                Activation::Silu => ops.swiglu_ggml(ar, br),
                Activation::Gelu => ops.geglu_ggml(ar, br),
            }
        }
    }

    fn rope(&mut self, buf: Buf, n_heads: usize, rope: &Rope) {
        let _t = profile::scope(Op::Rope);
        let head_dim = self.shape.head_dim;
        let n = self.n;
        let ws = &mut *self.ws;
        let key = std::ptr::from_ref(rope) as usize;
        let at = match ws.ropes[..ws.ropes_filled]
            .iter()
            .position(|(k, _)| *k == key)
        {
            Some(i) => i,
            None => {
                // Reuse a slot of an earlier forward (no allocation once the batch size has
                // been seen), else add one.
                if ws.ropes_filled == ws.ropes.len() {
                    ws.ropes
                        .push((key, RopeCache::with_capacity(n, rope.params().n_rot)));
                }
                let slot = &mut ws.ropes[ws.ropes_filled];
                slot.0 = key;
                slot.1.fill(rope, &ws.positions[..n]);
                ws.ropes_filled += 1;
                ws.ropes_filled - 1
            }
        };
        let b = &mut ws.bufs[buf as usize][..n * buf.width(self.hp, &self.shape)];
        Ops::detected().rope_cached(&ws.ropes[at].1, b, n_heads, head_dim);
    }

    fn attention(&mut self, il: usize, kq_scale: f32, window: Option<usize>) {
        self.attention_sinks(il, kq_scale, window, &[]);
    }

    fn attention_sinks(&mut self, il: usize, kq_scale: f32, window: Option<usize>, sinks: &[f32]) {
        let n = self.n;
        {
            let w = self.shape.n_embd_kv();
            let ws = &*self.ws;
            let (k, v) = (
                &ws.bufs[Buf::K as usize][..n * w],
                &ws.bufs[Buf::V as usize][..n * w],
            );
            self.kv.store(il, &ws.cells[..n], k, v);
        }
        self.attend(il, kq_scale, window, sinks);
    }

    fn set_layer(&mut self, il: usize) {
        self.shape = self.hp.layer(il);
    }

    fn attention_shared(&mut self, kv_layer: usize, kq_scale: f32, window: Option<usize>) {
        self.attend(kv_layer, kq_scale, window, &[]);
    }

    fn embed_to(&mut self, table: &MatRef, scale: f32, dst: Buf) {
        let _t = profile::scope(Op::Embedding);
        let d = dst.width(self.hp, &self.shape);
        let n = self.n;
        let ws = &mut *self.ws;
        let out = &mut ws.bufs[dst as usize][..n * d];
        for (row, &t) in out.chunks_exact_mut(d).zip(&ws.tokens[..n]) {
            // As in `embed`: ids and lookups were checked.
            if let Err(e) = table.matrix.dequantize_row(t as usize, row) {
                panic!("lookup of token {t} in {}: {e}", table.name);
            }
            if scale != 1.0 {
                row.iter_mut().for_each(|v| *v *= scale);
            }
        }
    }

    fn copy(&mut self, dst: Buf, src: Buf) {
        let _t = profile::scope(Op::Other);
        let (x, y) = self.two(src, dst);
        y.copy_from_slice(x);
    }

    fn gelu(&mut self, buf: Buf) {
        let _t = profile::scope(Op::Activation);
        Ops::detected().gelu_ggml(self.buf(buf));
    }

    fn mul_row(&mut self, buf: Buf, w: &[f32]) {
        let _t = profile::scope(Op::Other);
        let ops = Ops::detected();
        for r in self.buf(buf).chunks_exact_mut(w.len()) {
            ops.mul(r, w);
        }
    }

    fn mul_slice(&mut self, dst: Buf, src: Buf, offset: usize) {
        let _t = profile::scope(Op::Other);
        let (dw, sw) = (
            dst.width(self.hp, &self.shape),
            src.width(self.hp, &self.shape),
        );
        let ops = Ops::detected();
        let (s, d) = self.two(src, dst);
        for (dr, sr) in d.chunks_exact_mut(dw).zip(s.chunks_exact(sw)) {
            ops.mul(dr, &sr[offset..offset + dw]);
        }
    }

    fn moe(&mut self, m: &Moe, buf: Buf, router_in: Buf) {
        let n = self.n;
        let d = self.hp.n_embd;
        let (ne, k, f) = (m.n_expert(), m.n_used, m.n_ff());
        let ws = &mut *self.ws;
        let Some(ms) = ws.moe.as_mut() else {
            panic!("mixture of experts in a workspace sized for a dense model");
        };
        // A product of 2+ tokens takes llamafile's sgemm in llama.cpp; batch-invariant
        // contexts take the single-token path for every token.
        let batch = n >= 2 && !ms.batch_invariant;
        {
            let r = &ws.bufs[router_in as usize][..n * d];
            if let Some(o) = self.observer.as_deref_mut() {
                o.matmul(&m.router, r);
            }
            let _t = profile::scope(Op::Matmul);
            // Router logits, in llama.cpp's order when the model asks for it.
            let logits = &mut ms.probs[..n * ne];
            if m.exact
                && !(batch
                    && d.is_multiple_of(16)
                    && m.router.matrix.isa() == kernels::isa::Isa::Avx512)
            {
                let ops = Ops::detected();
                let lanes16 = batch && d.is_multiple_of(16);
                for (t, row) in logits.chunks_exact_mut(ne).enumerate() {
                    ops.dots_f32_ggml(&m.router_f32, &r[t * d..(t + 1) * d], lanes16, row);
                }
            } else if let Err(e) =
                kernels::matmul::matmul(&ws.pool, &m.router.matrix, r, n, logits, &mut ws.scratch)
            {
                panic!("router {}: {e}", m.router.name);
            }
        }
        let _t = profile::scope(Op::Other);
        for t in 0..n {
            moe::route(
                m,
                &mut ms.probs[t * ne..(t + 1) * ne],
                &mut ms.sel[t * k..(t + 1) * k],
                &mut ms.weights[t * k..(t + 1) * k],
            );
        }
        // Group the (token, slot) entries by expert, tokens in order within each.
        ms.starts[..=ne].fill(0);
        for &e in &ms.sel[..n * k] {
            ms.starts[e as usize + 1] += 1;
        }
        for e in 0..ne {
            ms.starts[e + 1] += ms.starts[e];
        }
        {
            let (starts, order) = (&mut ms.starts, &mut ms.order);
            // `starts[e]` advances as entries are placed, then is restored below.
            for (i, &e) in ms.sel[..n * k].iter().enumerate() {
                order[starts[e as usize]] = i as u32;
                starts[e as usize] += 1;
            }
            for e in (1..=ne).rev() {
                starts[e] = starts[e - 1];
            }
            starts[0] = 0;
        }
        let ops = Ops::detected();
        let x = &ws.bufs[buf as usize][..n * d];
        // llama.cpp's `mul_mat_id` runs a repacked Q4_K expert (rows a multiple of 8) one token
        // at a time (`gemv`), any other k-quant expert through its tiled mat-mul when 8 or more
        // tokens chose it (as a plain product of that many tokens would), and a float expert by
        // `ggml_vec_dot_{f32,f16,bf16}` (never llamafile's sgemm, which plain float products
        // take).
        // F16 and BF16 experts take `ggml_vec_dot_f16`/`_bf16` for every token likewise.
        let one_at_a_time = |w: &MatRef| {
            ms.batch_invariant
                || (w.ty == gguf::GgmlType::Q4_K && w.rows.is_multiple_of(8))
                || matches!(w.ty, gguf::GgmlType::F16 | gguf::GgmlType::BF16)
        };
        let f32_exact = |w: &MatRef| w.ty == gguf::GgmlType::F32;
        // The experts run in waves of at most `n_batch` entries (what the buffers hold): entry
        // `j` of the wave (expert order) reads its token's row `xin[j]`; all gate/up products
        // of a wave go to the pool in one hand-off, then all down products in another — a
        // decode step's chosen experts are a single wave.
        let cap = ms.xin.len() / d;
        let mut e0 = 0;
        while e0 < ne {
            let base = ms.starts[e0];
            let mut e1 = e0 + 1;
            while e1 < ne && ms.starts[e1 + 1] - base <= cap {
                e1 += 1;
            }
            let rows = ms.starts[e1] - base;
            let entries = &ms.order[base..ms.starts[e1]];
            for (xr, &i) in ms.xin.chunks_exact_mut(d).zip(entries) {
                let t = i as usize / k;
                xr.copy_from_slice(&x[t * d..(t + 1) * d]);
            }
            // Expert `e`'s entries within the wave.
            let span = |e: usize| ms.starts[e] - base..ms.starts[e + 1] - base;
            let active = || (e0..e1).filter(|&e| ms.starts[e + 1] > ms.starts[e]);
            let xin = &ms.xin[..rows * d];
            if let Some(o) = self.observer.as_deref_mut() {
                for e in active() {
                    let r = span(e);
                    let xe = &xin[r.start * d..r.end * d];
                    if let Some(g) = &m.gate {
                        o.expert_matmul(g, e, xe);
                    }
                    // a fused gate_up is one product: reported once, as its gate half
                    if !m.fused_gate_up {
                        o.expert_matmul(&m.up, e, xe);
                    }
                }
            }
            {
                let _t = profile::scope(Op::Matmul);
                let (mut a_rest, mut b_rest) = (&mut ms.a[..rows * f], &mut ms.b[..rows * f]);
                let mut f32_failure = None;
                let products = active().flat_map(|e| {
                    let r = span(e);
                    let (a, rest) = std::mem::take(&mut a_rest).split_at_mut(r.len() * f);
                    a_rest = rest;
                    let (b, rest) = std::mem::take(&mut b_rest).split_at_mut(r.len() * f);
                    b_rest = rest;
                    // Gated experts: gate into `a`, up into `b`; ungated: up into `a`.
                    let (gate, up) = match &m.gate {
                        Some(g) => (Some((&g.experts[e], a)), (&m.up.experts[e], b)),
                        None => (None, (&m.up.experts[e], a)),
                    };
                    let xe = &xin[r.start * d..r.end * d];
                    let mut out = [None, None];
                    let pairs = gate.into_iter().chain(std::iter::once(up));
                    for (slot, (w, y)) in out.iter_mut().zip(pairs) {
                        if f32_exact(w) {
                            // Not a kernel product: `ggml_vec_dot_f32` right here.
                            if let Err(e) = vec_dot_f32_rows(w, xe, r.len(), y, &mut ms.row) {
                                f32_failure = Some(e);
                            }
                            continue;
                        }
                        *slot = Some(Product {
                            w: &w.matrix,
                            rows: r.clone(),
                            y,
                            batch_invariant: one_at_a_time(w),
                        });
                    }
                    out.into_iter().flatten()
                });
                let grouped = kernels::matmul::matmul_grouped(
                    &ws.pool,
                    xin,
                    rows,
                    d,
                    products,
                    &mut ws.scratch,
                );
                if let Some(err) = grouped.err().or(f32_failure) {
                    panic!("experts {}: {err}", m.up.name);
                }
            }
            for e in active() {
                let r = span(e);
                let a = &mut ms.a[r.start * f..r.end * f];
                let b = &mut ms.b[r.start * f..r.end * f];
                let (gate_out, up_out) = match m.gate {
                    Some(_) => (Some(&mut *a), &mut *b),
                    None => (None, &mut *a),
                };
                if let Some(g) = gate_out {
                    if let Some(s) = &m.gate_scale {
                        ops.scale(g, s[e]);
                    }
                    if let Some(bias) = &m.gate_bias {
                        g.chunks_exact_mut(f)
                            .for_each(|row| ops.add(row, &bias[e * f..(e + 1) * f]));
                    }
                }
                if let Some(s) = &m.up_scale {
                    ops.scale(up_out, s[e]);
                }
                if let Some(bias) = &m.up_bias {
                    up_out
                        .chunks_exact_mut(f)
                        .for_each(|row| ops.add(row, &bias[e * f..(e + 1) * f]));
                }
                for (ar, br) in a.chunks_exact_mut(f).zip(b.chunks_exact(f)) {
                    expert_activation(ops, m.act, m.gate.is_some(), ar, br);
                }
            }
            let hidden = &ms.a[..rows * f];
            if let Some(o) = self.observer.as_deref_mut() {
                for e in active() {
                    let r = span(e);
                    o.expert_matmul(&m.down, e, &hidden[r.start * f..r.end * f]);
                }
            }
            {
                let _t = profile::scope(Op::Matmul);
                let mut y_rest = &mut ms.y[..rows * d];
                let mut f32_failure = None;
                let products = active().filter_map(|e| {
                    let r = span(e);
                    let (y, rest) = std::mem::take(&mut y_rest).split_at_mut(r.len() * d);
                    y_rest = rest;
                    let w = &m.down.experts[e];
                    if f32_exact(w) {
                        let he = &hidden[r.start * f..r.end * f];
                        if let Err(e) = vec_dot_f32_rows(w, he, r.len(), y, &mut ms.row) {
                            f32_failure = Some(e);
                        }
                        return None;
                    }
                    Some(Product {
                        w: &w.matrix,
                        rows: r,
                        y,
                        batch_invariant: one_at_a_time(w),
                    })
                });
                let grouped = kernels::matmul::matmul_grouped(
                    &ws.pool,
                    hidden,
                    rows,
                    f,
                    products,
                    &mut ws.scratch,
                );
                if let Some(err) = grouped.err().or(f32_failure) {
                    panic!("experts {}: {err}", m.down.name);
                }
            }
            // Each output times the expert's scale, plus its bias, times its weight (llama.cpp's
            // order; every step one rounding), in its (token, slot) place.
            for (j, &i) in entries.iter().enumerate() {
                let i = i as usize;
                let e = ms.sel[i] as usize;
                let out = &mut ms.outs[i * d..(i + 1) * d];
                out.copy_from_slice(&ms.y[j * d..(j + 1) * d]);
                if let Some(s) = &m.down_scale {
                    ops.scale(out, s[e]);
                }
                if let Some(bias) = &m.down_bias {
                    ops.add(out, &bias[e * d..(e + 1) * d]);
                }
                ops.scale(out, ms.weights[i]);
            }
            e0 = e1;
        }
        // Shared experts: the dense block on every token, into `y`.
        if let Some(sh) = &m.shared {
            shared_experts(
                &ws.pool,
                &mut ws.scratch,
                &mut ws.bufs,
                buf,
                n,
                sh,
                &mut ms.y[..n * d],
                self.observer.as_deref_mut(),
            );
        }
        // Sum each token's expert outputs in the order they were chosen, then the shared ones.
        let h = &mut ws.bufs[buf as usize][..n * d];
        for (t, ht) in h.chunks_exact_mut(d).enumerate() {
            let outs = &ms.outs[t * k * d..(t + 1) * k * d];
            ht.copy_from_slice(&outs[..d]);
            for s in 1..k {
                ops.add(ht, &outs[s * d..(s + 1) * d]);
            }
            if m.shared.is_some() {
                ops.add(ht, &ms.y[t * d..(t + 1) * d]);
            }
        }
    }
}

/// `out` (`c × w.rows`) = the `c` rows of `x` times the F32 matrix `w`, each value by
/// `ggml_vec_dot_f32`'s order (`Ops::dots_f32_ggml` of one token), a weight row at a time through
/// `row` (`w.cols` long).
fn vec_dot_f32_rows(
    w: &MatRef,
    x: &[f32],
    c: usize,
    out: &mut [f32],
    row: &mut [f32],
) -> Result<(), kernels::quant::KernelError> {
    let (rows, cols) = (w.rows, w.cols);
    let row = &mut row[..cols];
    let ops = Ops::detected();
    for r in 0..rows {
        w.matrix.dequantize_row(r, row)?;
        for t in 0..c {
            let mut dot = [0.0f32];
            ops.dots_f32_ggml(row, &x[t * cols..(t + 1) * cols], false, &mut dot);
            out[t * rows + r] = dot[0];
        }
    }
    Ok(())
}

/// One expert's gated activation in place of `a` (the gate, or the up product when ungated),
/// with `b` the up product.
fn expert_activation(ops: Ops, act: ExpertAct, gated: bool, a: &mut [f32], b: &[f32]) {
    match (act, gated) {
        (ExpertAct::Silu, true) => ops.swiglu_ggml(a, b),
        (ExpertAct::Silu, false) => ops.silu_ggml(a),
        (ExpertAct::Gelu, true) => ops.geglu_ggml(a, b),
        (ExpertAct::Gelu, false) => ops.gelu_ggml(a),
        (ExpertAct::SwigluOai { alpha, limit }, _) => moe::swiglu_oai(a, b, alpha, limit),
    }
}

/// The shared experts of `n` tokens of `bufs[src]` into `out` (`n × n_embd`), through the
/// feed-forward buffers: `down(act(gate·x) · up·x)`, times `σ(gate_inp · x)` per token when the
/// layer has that gate — llama.cpp's `build_ffn` and `ffn_gate_inp_shexp`, product for
/// product.
#[allow(clippy::too_many_arguments)]
fn shared_experts(
    pool: &ThreadPool,
    scratch: &mut MatmulScratch,
    bufs: &mut [Vec<f32>; N_BUF],
    src: Buf,
    n: usize,
    sh: &moe::SharedExperts,
    out: &mut [f32],
    mut observer: Option<&mut (dyn MatmulObserver + '_)>,
) {
    let (d, fs) = (sh.ffn.gate.cols, sh.ffn.gate.rows);
    let Ok([x, a, b]) = bufs.get_disjoint_mut([src as usize, Buf::FfA as usize, Buf::FfB as usize])
    else {
        unreachable!("shared experts read their input from a feed-forward buffer")
    };
    let (x, a, b) = (&x[..n * d], &mut a[..n * fs], &mut b[..n * fs]);
    if let Some(o) = observer.as_deref_mut() {
        o.matmul(&sh.ffn.gate, x);
        o.matmul(&sh.ffn.up, x);
    }
    let _t = profile::scope(Op::Matmul);
    if let Err(e) = kernels::matmul::matmul_many(
        pool,
        &[&sh.ffn.gate.matrix, &sh.ffn.up.matrix],
        x,
        n,
        &mut [&mut *a, &mut *b],
        scratch,
    ) {
        panic!("shared experts {}: {e}", sh.ffn.gate.name);
    }
    let ops = Ops::detected();
    for (ar, br) in a.chunks_exact_mut(fs).zip(b.chunks_exact(fs)) {
        expert_activation(ops, sh.act, true, ar, br);
    }
    if let Some(o) = observer.as_deref_mut() {
        o.matmul(&sh.ffn.down, a);
    }
    if let Err(e) = kernels::matmul::matmul(pool, &sh.ffn.down.matrix, a, n, out, scratch) {
        panic!("shared experts {}: {e}", sh.ffn.down.name);
    }
    if let Some(g) = &sh.gate_inp {
        if let Some(o) = observer {
            o.matmul(g, x);
        }
        // A one-row F32 product: llamafile's sgemm declines it (its row count is not a multiple
        // of 4), so ggml takes `ggml_vec_dot_f32` for every token, in a batch too.
        for (xt, ot) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            let mut g = [0.0f32];
            ops.dots_f32_ggml(&sh.gate_inp_f32, xt, false, &mut g);
            let s = moe::shared_gate(g[0]);
            ops.scale(ot, s);
        }
    }
}

impl Cpu<'_> {
    /// `Att` = attention of `Q` over the cells of layer `kv_layer` (at the current shape), with
    /// a sink logit per query head when `sinks` is not empty.
    fn attend(&mut self, kv_layer: usize, kq_scale: f32, window: Option<usize>, sinks: &[f32]) {
        let n = self.n;
        let hp = self.hp;
        let l = self.shape;
        let _t = profile::scope(Op::Attention);
        let ws = &mut *self.ws;
        set_attention_rows(ws, self.kv, n, window);
        let params = attention_params(hp, &l, kq_scale);
        let cache = self.kv.cache(kv_layer);
        let [_, _, q, _, _, att, ..] = &mut ws.bufs;
        let (cells, bases): (&[u32], &[usize]) = if ws.identity_maps {
            (&[], &[])
        } else {
            (&ws.seq_cells, &ws.map_base[..n])
        };
        let Some((_, scratch)) = ws.attn_scratch.iter_mut().find(|(hd, _)| *hd == l.head_dim)
        else {
            unreachable!("no attention scratch for head size {}", l.head_dim);
        };
        Ops::detected().attention_ggml_sinks(
            &ws.pool,
            &params,
            &q[..n * l.n_embd_q(hp.n_head)],
            &cache,
            &ws.attn_rows[..n],
            cells,
            bases,
            sinks,
            &mut att[..n * l.n_embd_q(hp.n_head)],
            scratch,
        );
    }
}

/// Most products in one [`Backend::matmul_many`].
const MAX_OUTS: usize = 8;

/// Each token's visible range of its sequence's map: the cells with positions at most its own
/// (and above `pos − window` with a sliding window).
fn set_attention_rows(ws: &mut Workspace, kv: &KvStore, n: usize, window: Option<usize>) {
    ws.attn_rows.clear();
    let cells = kv.cells();
    for t in 0..n {
        let pos = ws.positions[t] as usize;
        let map = &ws.seq_cells[ws.maps[t].clone()];
        let hi = map.partition_point(|&c| cells[c as usize].pos <= pos);
        let lo = match window {
            Some(w) => {
                let first = (pos + 1).saturating_sub(w);
                map[..hi].partition_point(|&c| cells[c as usize].pos < first)
            }
            None => 0,
        };
        ws.attn_rows.push(lo..hi);
    }
}
