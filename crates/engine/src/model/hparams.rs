//! Hyper-parameters shared by the decoder architectures, read from the `{arch}.*` GGUF keys
//! with llama.cpp's names and defaults.

use gguf::Gguf;

use super::LoadError;

/// How RoPE frequencies are scaled beyond the training context.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    Linear,
    Yarn,
}

/// The hyper-parameters of a decoder-only transformer (llama.cpp's `llama_hparams`).
#[derive(Clone, Debug, PartialEq)]
pub struct HParams {
    /// Context length the model was trained with.
    pub n_ctx_train: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    pub n_layer: usize,
    /// Hidden width of the feed-forward block.
    pub n_ff: usize,
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_head_kv: usize,
    /// Dimension of one key head (`n_embd_head_k`).
    pub head_dim_k: usize,
    /// Dimension of one value head (`n_embd_head_v`).
    pub head_dim_v: usize,
    /// Dimensions of each head that RoPE rotates.
    pub n_rot: usize,
    pub n_vocab: usize,
    /// Epsilon of RMS norms.
    pub rms_eps: f32,
    pub rope_freq_base: f32,
    /// `1 / scaling factor` (1 when unscaled).
    pub rope_freq_scale: f32,
    pub rope_scaling: RopeScaling,
    /// Context length RoPE scaling is relative to.
    pub n_ctx_orig: usize,
    /// YaRN: 1 when YaRN scaling is on, else 0.
    pub yarn_ext_factor: f32,
    pub yarn_attn_factor: f32,
    pub yarn_beta_fast: f32,
    pub yarn_beta_slow: f32,
    /// Sliding-window attention span, when the architecture uses it.
    pub sliding_window: Option<usize>,
    /// Mixture of experts: experts per layer (0 for a dense model).
    pub n_expert: usize,
    /// Experts each token is routed to.
    pub n_expert_used: usize,
    /// Hidden width of one expert's feed-forward block (`n_ff_exp`).
    pub n_ff_exp: usize,
    /// Hidden width of the shared experts' feed-forward block (`n_ff_shexp`), 0 when none.
    pub n_ff_shexp: usize,
}

/// Reads typed keys under one architecture prefix, naming the key in every error.
pub struct Keys<'g, 'a> {
    file: &'g Gguf<'a>,
    arch: &'g str,
}

impl<'g, 'a> Keys<'g, 'a> {
    pub fn new(file: &'g Gguf<'a>, arch: &'g str) -> Self {
        Keys { file, arch }
    }

    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    /// A required count (any integer type that fits in `usize`, and not zero).
    pub fn count(&self, suffix: &str) -> Result<usize, LoadError> {
        let key = self.key(suffix);
        match self.file.get_opt::<usize>(&key)? {
            Some(0) => Err(LoadError::BadHParam {
                key,
                reason: "must not be 0".into(),
            }),
            Some(v) => Ok(v),
            None => Err(LoadError::MissingKey(key)),
        }
    }

    /// An optional count; `None` when absent.
    pub fn opt_count(&self, suffix: &str) -> Result<Option<usize>, LoadError> {
        let key = self.key(suffix);
        match self.file.get_opt::<usize>(&key)? {
            Some(0) => Err(LoadError::BadHParam {
                key,
                reason: "must not be 0".into(),
            }),
            v => Ok(v),
        }
    }

    /// An optional float.
    pub fn opt_f32(&self, suffix: &str) -> Result<Option<f32>, LoadError> {
        Ok(self.file.get_opt::<f32>(&self.key(suffix))?)
    }

    /// An optional string.
    pub fn opt_str(&self, suffix: &str) -> Result<Option<&'g str>, LoadError> {
        Ok(self.file.get_opt::<&str>(&self.key(suffix))?)
    }
}

/// Largest value accepted for any dimension: far above real models, low enough that products
/// of a few dimensions cannot overflow.
const MAX_DIM: usize = 1 << 24;

/// Most experts per layer (llama.cpp's `LLAMA_MAX_EXPERTS`).
pub const MAX_EXPERTS: usize = 1024;

/// The attention factor RoPE gets, as llama.cpp's context computes it (`llama_context`'s
/// constructor): with YaRN, `mscale(factor, 1) / mscale(factor, log_mul)` (or `mscale(factor,
/// 1)` without `yarn_log_multiplier`), divided by the `1 + 0.1·ln(factor)` that ggml's RoPE
/// multiplies in again; times `rope.scaling.attn_factor`. All in f32 as llama.cpp does.
fn yarn_attn_factor(scaling: RopeScaling, factor: f32, attn_factor: f32, log_mul: f32) -> f32 {
    if scaling != RopeScaling::Yarn {
        return attn_factor;
    }
    let mscale = |s: f32, m: f32| {
        if s <= 1.0 {
            1.0
        } else {
            0.1 * m * s.ln() + 1.0
        }
    };
    // llama.cpp goes through the frequency scale: factor = 1 / (1 / factor).
    let factor = 1.0 / (1.0 / factor);
    let a = if log_mul != 0.0 {
        mscale(factor, 1.0) / mscale(factor, log_mul)
    } else {
        mscale(factor, 1.0)
    };
    a * (1.0 / (1.0 + 0.1 * factor.ln())) * attn_factor
}

impl HParams {
    /// Reads the hyper-parameters under `arch`, with llama.cpp's defaults, and checks that they
    /// are consistent.
    pub fn read(file: &Gguf<'_>, arch: &str, n_vocab: usize) -> Result<HParams, LoadError> {
        let k = Keys::new(file, arch);
        let n_embd = k.count("embedding_length")?;
        let n_head = k.count("attention.head_count")?;
        let n_head_kv = k.opt_count("attention.head_count_kv")?.unwrap_or(n_head);
        let head_dim_k = k
            .opt_count("attention.key_length")?
            .unwrap_or(n_embd / n_head);
        let head_dim_v = k
            .opt_count("attention.value_length")?
            .unwrap_or(n_embd / n_head);
        let n_ctx_train = k.count("context_length")?;
        let scaling = match k.opt_str("rope.scaling.type")? {
            None | Some("none") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear,
            Some("yarn") => RopeScaling::Yarn,
            Some(other) => {
                return Err(LoadError::BadHParam {
                    key: format!("{arch}.rope.scaling.type"),
                    reason: format!("unsupported RoPE scaling '{other}'"),
                });
            }
        };
        let factor = match k.opt_f32("rope.scaling.factor")? {
            Some(f) => f,
            None => k.opt_f32("rope.scale_linear")?.unwrap_or(1.0),
        };
        if scaling != RopeScaling::None && !(factor.is_finite() && factor > 0.0) {
            return Err(LoadError::BadHParam {
                key: format!("{arch}.rope.scaling.factor"),
                reason: format!("{factor} is not a positive number"),
            });
        }
        let factor = if scaling == RopeScaling::None {
            1.0
        } else {
            factor
        };
        let hp = HParams {
            n_ctx_train,
            n_embd,
            n_layer: k.count("block_count")?,
            n_ff: k.count("feed_forward_length")?,
            n_head,
            n_head_kv,
            head_dim_k,
            head_dim_v,
            n_rot: k.opt_count("rope.dimension_count")?.unwrap_or(head_dim_k),
            n_vocab,
            rms_eps: k
                .opt_f32("attention.layer_norm_rms_epsilon")?
                .unwrap_or(1e-5),
            rope_freq_base: k.opt_f32("rope.freq_base")?.unwrap_or(10_000.0),
            rope_freq_scale: 1.0 / factor,
            rope_scaling: scaling,
            n_ctx_orig: k
                .opt_count("rope.scaling.original_context_length")?
                .unwrap_or(n_ctx_train),
            yarn_ext_factor: if scaling == RopeScaling::Yarn {
                1.0
            } else {
                0.0
            },
            yarn_attn_factor: yarn_attn_factor(
                scaling,
                factor,
                k.opt_f32("rope.scaling.attn_factor")?.unwrap_or(1.0),
                k.opt_f32("rope.scaling.yarn_log_multiplier")?
                    .unwrap_or(0.0),
            ),
            yarn_beta_fast: k.opt_f32("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0),
            yarn_beta_slow: k.opt_f32("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0),
            sliding_window: k.opt_count("attention.sliding_window")?,
            n_expert: k.opt_count("expert_count")?.unwrap_or(0),
            n_expert_used: k.opt_count("expert_used_count")?.unwrap_or(0),
            n_ff_exp: k.opt_count("expert_feed_forward_length")?.unwrap_or(0),
            n_ff_shexp: k
                .opt_count("expert_shared_feed_forward_length")?
                .unwrap_or(0),
        };
        hp.check(arch)?;
        Ok(hp)
    }

    fn check(&self, arch: &str) -> Result<(), LoadError> {
        let bad = |what: &str, reason: String| {
            Err(LoadError::BadHParam {
                key: format!("{arch}.{what}"),
                reason,
            })
        };
        for (what, v) in [
            ("embedding_length", self.n_embd),
            ("block_count", self.n_layer),
            ("feed_forward_length", self.n_ff),
            ("attention.head_count", self.n_head),
            ("attention.key_length", self.head_dim_k),
            ("attention.value_length", self.head_dim_v),
            ("context_length", self.n_ctx_train),
            ("expert_count", self.n_expert),
            ("expert_feed_forward_length", self.n_ff_exp),
            ("expert_shared_feed_forward_length", self.n_ff_shexp),
        ] {
            if v > MAX_DIM {
                return bad(what, format!("{v} is implausibly large"));
            }
        }
        if self.n_head_kv == 0 || !self.n_head.is_multiple_of(self.n_head_kv) {
            return bad(
                "attention.head_count_kv",
                format!(
                    "{} does not divide head_count {}",
                    self.n_head_kv, self.n_head
                ),
            );
        }
        if self.head_dim_v != self.head_dim_k {
            return bad(
                "attention.value_length",
                format!(
                    "{} differs from attention.key_length {}, which hearth does not support yet",
                    self.head_dim_v, self.head_dim_k
                ),
            );
        }
        if self.n_rot > self.head_dim_k || !self.n_rot.is_multiple_of(2) {
            return bad(
                "rope.dimension_count",
                format!(
                    "{} must be even and at most the head size {}",
                    self.n_rot, self.head_dim_k
                ),
            );
        }
        if self.n_expert > MAX_EXPERTS {
            return bad(
                "expert_count",
                format!("{} is more than {MAX_EXPERTS}", self.n_expert),
            );
        }
        if self.n_expert_used > self.n_expert {
            return bad(
                "expert_used_count",
                format!(
                    "{} is more than expert_count {}",
                    self.n_expert_used, self.n_expert
                ),
            );
        }
        if !(self.rms_eps.is_finite() && self.rms_eps > 0.0) {
            return bad(
                "attention.layer_norm_rms_epsilon",
                format!("{} is not positive", self.rms_eps),
            );
        }
        for (what, v) in [
            ("rope.scaling.attn_factor", self.yarn_attn_factor),
            ("rope.scaling.yarn_beta_fast", self.yarn_beta_fast),
            ("rope.scaling.yarn_beta_slow", self.yarn_beta_slow),
        ] {
            if !v.is_finite() {
                return bad(what, format!("{v} is not a finite number"));
            }
        }
        if !(self.rope_freq_base.is_finite() && self.rope_freq_base > 0.0) {
            return bad(
                "rope.freq_base",
                format!("{} is not positive", self.rope_freq_base),
            );
        }
        Ok(())
    }

    /// Width of all query heads together.
    pub fn n_embd_q(&self) -> usize {
        self.n_head * self.head_dim_k
    }

    /// Width of all key heads together (`n_embd_k_gqa`).
    pub fn n_embd_k_gqa(&self) -> usize {
        self.n_head_kv * self.head_dim_k
    }

    /// Width of all value heads together (`n_embd_v_gqa`).
    pub fn n_embd_v_gqa(&self) -> usize {
        self.n_head_kv * self.head_dim_v
    }
}
