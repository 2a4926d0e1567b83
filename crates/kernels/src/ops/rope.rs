//! Rotary position embedding as ggml's CPU `rope` computes it, in both of its layouts.
//!
//! [`Rope`] holds the parameters (validated once, at model load) and derives what ggml derives
//! per call: `theta_scale = freq_base^(−2/n_rot)` and YaRN's correction dimensions. The angle
//! of pair `k` at position `p` is built the way ggml builds it — `theta = p`, multiplied by
//! `theta_scale` once per pair in f32, divided by the optional per-pair frequency factor, then
//! YaRN-mixed and scaled — with the same f32 operations, so the cos/sin values match ggml's;
//! the rotation fuses one product of each pair into the sum as ggml's build does, so rotated
//! values match its bits too.
//!
//! The angles depend only on the position, so [`RopeCache`] computes them once per token and
//! every layer reuses them ([`Ops::rope_cached`]); [`Ops::rope`] does both in one call.
//! Only the first `n_rot` values of each head rotate (partial rotary); the rest are left as is.

use std::fmt;

use super::Ops;

/// How rotated values pair up inside a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeMode {
    /// ggml `GGML_ROPE_TYPE_NORMAL` (llama): pairs `(2k, 2k+1)`.
    Normal,
    /// ggml `GGML_ROPE_TYPE_NEOX` (gemma, qwen, gpt-neox): pairs `(k, k + n_rot/2)`.
    Neox,
}

/// Rope's parameters, named as in ggml's `ggml_rope_ext`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeParams {
    pub mode: RopeMode,
    /// Rotated dimensions per head (ggml `n_dims`): even, at most [`Rope::MAX_ROT`], at most the
    /// head size.
    pub n_rot: usize,
    /// Base of the frequencies (`rope.freq_base`, 10000 by default).
    pub freq_base: f32,
    /// Linear position scaling (1 / `rope.scaling.factor` for linear and YaRN scaling).
    pub freq_scale: f32,
    /// YaRN extrapolation mix; 0 turns YaRN off.
    pub ext_factor: f32,
    /// Magnitude scale of cos and sin (1 unless YaRN or the model says otherwise).
    pub attn_factor: f32,
    /// YaRN ramp bounds (32 and 1 by default).
    pub beta_fast: f32,
    pub beta_slow: f32,
    /// The context length the model was trained with (`rope.scaling.original_context_length`,
    /// else the training context); only used by YaRN.
    pub n_ctx_orig: usize,
}

impl RopeParams {
    /// Plain rope: no scaling, YaRN off, ggml's defaults for the rest.
    pub fn new(mode: RopeMode, n_rot: usize, freq_base: f32) -> RopeParams {
        RopeParams {
            mode,
            n_rot,
            freq_base,
            freq_scale: 1.0,
            ext_factor: 0.0,
            attn_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            n_ctx_orig: 0,
        }
    }
}

/// Why [`Rope::new`] refused its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeError {
    /// `n_rot` is 0, odd, or above [`Rope::MAX_ROT`].
    NRot(usize),
    /// The frequency factors (`rope_freqs`) hold fewer than `n_rot / 2` values.
    FreqFactors { got: usize, need: usize },
    /// `n_ctx_orig` does not fit the `i32` ggml computes with.
    NCtxOrig(usize),
}

impl fmt::Display for RopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RopeError::NRot(n) => write!(
                f,
                "rope dimension count {n} must be even and between 2 and {}",
                Rope::MAX_ROT
            ),
            RopeError::FreqFactors { got, need } => {
                write!(f, "rope frequency factors: {got} values, need {need}")
            }
            RopeError::NCtxOrig(n) => write!(f, "rope original context length {n} is too large"),
        }
    }
}

impl std::error::Error for RopeError {}

/// Validated rope parameters with the values ggml derives from them.
#[derive(Clone, Debug)]
pub struct Rope {
    params: RopeParams,
    theta_scale: f32,
    corr_dims: [f32; 2],
    freq_factors: Option<Vec<f32>>,
}

/// ggml's `MAX` and `MIN` macros (which pick `b` when the comparison is false, NaN included).
fn c_max(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

fn c_min(a: f32, b: f32) -> f32 {
    if a < b { a } else { b }
}

/// `ggml_rope_yarn_corr_dim`: the dimension at which `n_rot` rotations fit the original context.
fn corr_dim(n_dims: i32, n_ctx_orig: i32, n_rot: f32, base: f32) -> f32 {
    n_dims as f32 * (n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln()
        / (2.0 * base.ln())
}

impl Rope {
    /// The largest `n_rot` supported (angles for one token live on the stack in [`Ops::rope`]).
    pub const MAX_ROT: usize = 1024;

    /// Checks `params` and `freq_factors` (ggml's `rope_freqs` tensor: one divisor per rotated
    /// pair, at least `n_rot / 2` values; extra values are ignored).
    pub fn new(params: RopeParams, freq_factors: Option<&[f32]>) -> Result<Rope, RopeError> {
        let n_rot = params.n_rot;
        if n_rot == 0 || !n_rot.is_multiple_of(2) || n_rot > Rope::MAX_ROT {
            return Err(RopeError::NRot(n_rot));
        }
        if let Some(ff) = freq_factors
            && ff.len() < n_rot / 2
        {
            return Err(RopeError::FreqFactors {
                got: ff.len(),
                need: n_rot / 2,
            });
        }
        let n_ctx_orig =
            i32::try_from(params.n_ctx_orig).map_err(|_| RopeError::NCtxOrig(params.n_ctx_orig))?;
        let n_dims = n_rot as i32;
        let theta_scale = params.freq_base.powf(-2.0 / n_dims as f32);
        // `ggml_rope_yarn_corr_dims`.
        let start = corr_dim(n_dims, n_ctx_orig, params.beta_fast, params.freq_base).floor();
        let end = corr_dim(n_dims, n_ctx_orig, params.beta_slow, params.freq_base).ceil();
        let corr_dims = [c_max(0.0, start), c_min((n_dims - 1) as f32, end)];
        Ok(Rope {
            params,
            theta_scale,
            corr_dims,
            freq_factors: freq_factors.map(|f| f[..n_rot / 2].to_vec()),
        })
    }

    pub fn params(&self) -> &RopeParams {
        &self.params
    }

    /// `(cos, sin)` of pair `k` at position `pos`, for every pair, as ggml's
    /// `ggml_rope_cache_init` + `rope_yarn` compute them (`unit`: without the magnitude scale,
    /// a pure rotation).
    fn angles(&self, pos: i32, unit: bool, mut each: impl FnMut(usize, f32, f32)) {
        let p = &self.params;
        let mut theta = pos as f32;
        for k in 0..p.n_rot / 2 {
            let ff = self.freq_factors.as_ref().map_or(1.0, |f| f[k]);
            let theta_extrap = theta / ff;
            let theta_interp = p.freq_scale * theta_extrap;
            let mut angle = theta_interp;
            let mut mscale = p.attn_factor;
            if p.ext_factor != 0.0 {
                // `rope_yarn_ramp`, with ggml's integer `i0 / 2` (= k).
                let y = (k as f32 - self.corr_dims[0])
                    / c_max(0.001, self.corr_dims[1] - self.corr_dims[0]);
                let ramp_mix = (1.0 - c_min(1.0, c_max(0.0, y))) * p.ext_factor;
                angle = theta_interp * (1.0 - ramp_mix) + theta_extrap * ramp_mix;
                mscale *= 1.0 + 0.1 * (1.0 / p.freq_scale).ln();
            }
            if unit {
                mscale = 1.0;
            }
            each(k, angle.cos() * mscale, angle.sin() * mscale);
            theta *= self.theta_scale;
        }
    }

    /// Writes the angles of `pos` in the layout `rope_rotate` reads (`n_rot` values each).
    fn fill(&self, pos: i32, cos: &mut [f32], sin: &mut [f32]) {
        self.fill_as(pos, false, cos, sin);
    }

    /// [`Rope::fill`], a pure rotation when `unit`.
    fn fill_as(&self, pos: i32, unit: bool, cos: &mut [f32], sin: &mut [f32]) {
        match self.params.mode {
            RopeMode::Neox => self.angles(pos, unit, |k, c, s| {
                cos[k] = c;
                sin[k] = s;
            }),
            RopeMode::Normal => self.angles(pos, unit, |k, c, s| {
                cos[2 * k] = c;
                cos[2 * k + 1] = c;
                sin[2 * k] = -s;
                sin[2 * k + 1] = s;
            }),
        }
    }
}

/// The cos/sin of a batch of positions, computed once and applied to every layer's q and k.
#[derive(Clone, Debug, Default)]
pub struct RopeCache {
    n_rot: usize,
    mode: Option<RopeMode>,
    n_tokens: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeCache {
    /// An empty cache; [`fill`](Self::fill) sizes it (allocating only when it grows).
    pub fn new() -> RopeCache {
        RopeCache::default()
    }

    /// A cache with room for `n_tokens` positions of `n_rot` rotated dimensions.
    pub fn with_capacity(n_tokens: usize, n_rot: usize) -> RopeCache {
        RopeCache {
            cos: Vec::with_capacity(n_tokens * n_rot),
            sin: Vec::with_capacity(n_tokens * n_rot),
            ..RopeCache::default()
        }
    }

    /// Computes the angles of `positions` (one per token) for `rope`.
    pub fn fill(&mut self, rope: &Rope, positions: &[i32]) {
        let n_rot = rope.params.n_rot;
        self.n_rot = n_rot;
        self.mode = Some(rope.params.mode);
        self.n_tokens = positions.len();
        self.cos.resize(positions.len() * n_rot, 0.0);
        self.sin.resize(positions.len() * n_rot, 0.0);
        for ((&pos, cos), sin) in positions
            .iter()
            .zip(self.cos.chunks_exact_mut(n_rot))
            .zip(self.sin.chunks_exact_mut(n_rot))
        {
            rope.fill(pos, cos, sin);
        }
    }

    /// Number of positions filled.
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }
}

impl Ops {
    /// Applies `rope` in place to `x` = `[n_tokens][n_head][head_dim]`, token `t` at
    /// `positions[t]`. Computes the angles per token; when several tensors (q and k, every
    /// layer) share positions, [`RopeCache`] + [`rope_cached`](Self::rope_cached) do it once.
    ///
    /// # Panics
    /// If `head_dim < n_rot` or `x.len() != positions.len() · n_head · head_dim`.
    pub fn rope(
        self,
        rope: &Rope,
        x: &mut [f32],
        n_head: usize,
        head_dim: usize,
        positions: &[i32],
    ) {
        self.rope_as(rope, false, x, n_head, head_dim, positions);
    }

    /// Moves already-rotated keys by `deltas` (one per token): [`Ops::rope`] without the
    /// magnitude scale (`attn_factor`, YaRN's `1 + 0.1 ln s`), which the keys carry already —
    /// a pure rotation, so a shifted key equals the key rotated at its new position.
    /// (llama.cpp's K-shift applies the scale again, so its shifted keys of YaRN and LongRoPE
    /// models grow by it at every shift.)
    ///
    /// # Panics
    /// As [`Ops::rope`].
    pub fn rope_shift(
        self,
        rope: &Rope,
        x: &mut [f32],
        n_head: usize,
        head_dim: usize,
        deltas: &[i32],
    ) {
        self.rope_as(rope, true, x, n_head, head_dim, deltas);
    }

    fn rope_as(
        self,
        rope: &Rope,
        unit: bool,
        x: &mut [f32],
        n_head: usize,
        head_dim: usize,
        positions: &[i32],
    ) {
        let n_rot = rope.params.n_rot;
        check_shape(x.len(), positions.len(), n_head, head_dim, n_rot);
        let mut cos = [0.0f32; Rope::MAX_ROT];
        let mut sin = [0.0f32; Rope::MAX_ROT];
        let neox = rope.params.mode == RopeMode::Neox;
        if head_dim == 0 || n_head == 0 {
            return;
        }
        for (token, &pos) in x.chunks_exact_mut(n_head * head_dim).zip(positions) {
            rope.fill_as(pos, unit, &mut cos[..n_rot], &mut sin[..n_rot]);
            for head in token.chunks_exact_mut(head_dim) {
                self.rope_rotate(head, &cos[..n_rot], &sin[..n_rot], n_rot, neox);
            }
        }
    }

    /// Applies the angles in `cache` in place to `x` = `[n_tokens][n_head][head_dim]`,
    /// `n_tokens` being the number of positions the cache was filled with.
    ///
    /// # Panics
    /// If the cache was never filled, `head_dim < n_rot`, or
    /// `x.len() != cache.n_tokens() · n_head · head_dim`.
    pub fn rope_cached(self, cache: &RopeCache, x: &mut [f32], n_head: usize, head_dim: usize) {
        let Some(mode) = cache.mode else {
            panic!("rope_cached: the cache was never filled");
        };
        let n_rot = cache.n_rot;
        check_shape(x.len(), cache.n_tokens, n_head, head_dim, n_rot);
        if head_dim == 0 || n_head == 0 {
            return;
        }
        let neox = mode == RopeMode::Neox;
        for ((token, cos), sin) in x
            .chunks_exact_mut(n_head * head_dim)
            .zip(cache.cos.chunks_exact(n_rot))
            .zip(cache.sin.chunks_exact(n_rot))
        {
            for head in token.chunks_exact_mut(head_dim) {
                self.rope_rotate(head, cos, sin, n_rot, neox);
            }
        }
    }
}

fn check_shape(len: usize, n_tokens: usize, n_head: usize, head_dim: usize, n_rot: usize) {
    assert!(
        head_dim >= n_rot,
        "rope: head_dim {head_dim} < n_rot {n_rot}"
    );
    assert_eq!(
        Some(len),
        n_tokens
            .checked_mul(n_head)
            .and_then(|v| v.checked_mul(head_dim)),
        "rope: x must hold n_tokens · n_head · head_dim values"
    );
}
