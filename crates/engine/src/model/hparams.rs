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

/// The shape of one layer. Most models have one shape for every layer; Gemma 4's
/// sliding-window and full-attention layers differ in head size, KV heads and RoPE dimensions,
/// its later layers have wider feed-forward blocks, and its last layers read the KV cache of an
/// earlier layer instead of keeping their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerShape {
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Dimension of one key head and one value head.
    pub head_dim: usize,
    /// Dimensions of each head that RoPE rotates.
    pub n_rot: usize,
    /// Hidden width of the feed-forward block.
    pub n_ff: usize,
    /// Hidden width of one expert's feed-forward block (`expert_feed_forward_length`, a value or
    /// an array; 0 without experts).
    pub n_ff_exp: usize,
    /// Whether the file marks the layer sliding-window (`attention.sliding_window_pattern`;
    /// architectures with a fixed pattern decide for themselves).
    pub is_swa: bool,
    /// The layer whose KV cache this one attends over: itself, or for a shared-KV layer
    /// (`attention.shared_kv_layers`) the last earlier layer of its kind, as llama.cpp picks it.
    pub kv_layer: usize,
}

impl LayerShape {
    /// Width of all query heads together.
    pub fn n_embd_q(&self, n_head: usize) -> usize {
        n_head * self.head_dim
    }

    /// Width of all key (and of all value) heads together.
    pub fn n_embd_kv(&self) -> usize {
        self.n_head_kv * self.head_dim
    }

    /// Whether the layer keeps keys and values of its own.
    pub fn has_kv(&self, il: usize) -> bool {
        self.kv_layer == il
    }
}

/// The hyper-parameters of a decoder-only transformer (llama.cpp's `llama_hparams`).
///
/// Where layers differ ([`HParams::layers`]), `n_head_kv`, `head_dim_k`, `head_dim_v` and
/// `n_ff` are the largest over the layers (what buffers are sized for) and each layer's own
/// values are in its [`LayerShape`].
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
    /// Width of each layer's slice of the per-layer embeddings (Gemma 4's E models), 0 when
    /// there are none.
    pub n_embd_per_layer: usize,
    /// The shape of each layer (`n_layer` entries).
    pub layers: Vec<LayerShape>,
    /// Mixture of experts: experts per layer (0 for a dense model).
    pub n_expert: usize,
    /// Experts each token is routed to.
    pub n_expert_used: usize,
    /// Hidden width of one expert's feed-forward block (`n_ff_exp`): the largest over the
    /// layers (each layer's is in [`LayerShape::n_ff_exp`]).
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

    /// An optional per-layer integer: one value for every layer, or an array of `n_layer`
    /// (llama.cpp's `get_key_or_arr`). Values are not checked here.
    pub fn opt_per_layer(
        &self,
        suffix: &str,
        n_layer: usize,
    ) -> Result<Option<Vec<u64>>, LoadError> {
        let key = self.key(suffix);
        let bad = |reason: String| LoadError::BadHParam {
            key: key.clone(),
            reason,
        };
        let Some(v) = self.file.get(&key) else {
            return Ok(None);
        };
        let as_u64 = |v: Option<i128>| {
            v.and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| bad("must hold non-negative integers".into()))
        };
        match v.as_array() {
            None => Ok(Some(vec![as_u64(v.as_i128())?; n_layer])),
            Some(a) if a.len() == n_layer => (0..n_layer)
                .map(|i| as_u64(a.i128_at(i)))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(a) => Err(bad(format!("has {} values for {n_layer} layers", a.len()))),
        }
    }
}

/// Largest value accepted for any dimension: far above real models, low enough that products
/// of a few dimensions cannot overflow.
const MAX_DIM: usize = 1 << 24;
/// Most layers accepted.
const MAX_LAYERS: usize = 1 << 12;

/// Each layer's shape: per-layer `attention.head_count_kv` and `feed_forward_length` (a value
/// or an array), the sliding-window pattern with its own head size and RoPE dimensions
/// (`*_swa` keys), and the shared-KV layers.
fn read_layers(
    k: &Keys<'_, '_>,
    arch: &str,
    n_layer: usize,
    n_head: usize,
    head_dim_k: usize,
    head_dim_v: usize,
) -> Result<Vec<LayerShape>, LoadError> {
    let bad = |what: &str, reason: String| LoadError::BadHParam {
        key: format!("{arch}.{what}"),
        reason,
    };
    let to_usize = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let n_head_kv = k
        .opt_per_layer("attention.head_count_kv", n_layer)?
        .unwrap_or_else(|| vec![n_head as u64; n_layer]);
    let n_ff = k
        .opt_per_layer("feed_forward_length", n_layer)?
        .ok_or_else(|| LoadError::MissingKey(format!("{arch}.feed_forward_length")))?;
    let is_swa: Vec<bool> = match k.opt_per_layer("attention.sliding_window_pattern", n_layer)? {
        Some(v) => v.into_iter().map(|b| b != 0).collect(),
        None => vec![false; n_layer],
    };
    if head_dim_v != head_dim_k {
        return Err(bad(
            "attention.value_length",
            format!(
                "{head_dim_v} differs from attention.key_length {head_dim_k}, which hearth does not support yet"
            ),
        ));
    }
    let head_dim_swa = k.opt_count("attention.key_length_swa")?;
    if let Some(v) = k.opt_count("attention.value_length_swa")?
        && Some(v) != head_dim_swa
    {
        return Err(bad(
            "attention.value_length_swa",
            format!("{v} differs from attention.key_length_swa, which hearth does not support yet"),
        ));
    }
    let n_rot = k.opt_count("rope.dimension_count")?.unwrap_or(head_dim_k);
    let n_rot_swa = k.opt_count("rope.dimension_count_swa")?;
    let n_shared = k
        .file
        .get_opt::<usize>(&k.key("attention.shared_kv_layers"))?
        .unwrap_or(0);
    if n_shared > 0 && n_layer < n_shared + 2 {
        return Err(bad(
            "attention.shared_kv_layers",
            format!("{n_shared} of {n_layer} layers leaves fewer than two with a KV cache"),
        ));
    }
    let first_shared = n_layer - n_shared;
    let mut layers: Vec<LayerShape> = (0..n_layer)
        .map(|il| {
            let swa = is_swa[il];
            LayerShape {
                n_head_kv: to_usize(n_head_kv[il]),
                head_dim: if swa {
                    head_dim_swa.unwrap_or(head_dim_k)
                } else {
                    head_dim_k
                },
                n_rot: if swa {
                    n_rot_swa.unwrap_or(n_rot)
                } else {
                    n_rot
                },
                n_ff: to_usize(n_ff[il]),
                n_ff_exp: 0,
                is_swa: swa,
                // llama.cpp: shared layers reuse `n_layer_kv_from_start - (swa ? 2 : 1)`
                kv_layer: if il < first_shared {
                    il
                } else {
                    first_shared - if swa { 2 } else { 1 }
                },
            }
        })
        .collect();
    for il in first_shared..n_layer {
        let (l, src) = (layers[il], layers[layers[il].kv_layer]);
        if (l.is_swa, l.n_head_kv, l.head_dim) != (src.is_swa, src.n_head_kv, src.head_dim) {
            return Err(bad(
                "attention.shared_kv_layers",
                format!(
                    "layer {il} would read layer {}'s KV cache, which has another shape",
                    l.kv_layer
                ),
            ));
        }
    }
    layers.shrink_to_fit();
    Ok(layers)
}

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
        let n_layer = k.count("block_count")?;
        if n_layer > MAX_LAYERS {
            return Err(LoadError::BadHParam {
                key: format!("{arch}.block_count"),
                reason: format!("{n_layer} layers is implausibly many"),
            });
        }
        let head_dim_k = k
            .opt_count("attention.key_length")?
            .unwrap_or(n_embd / n_head);
        let head_dim_v = k
            .opt_count("attention.value_length")?
            .unwrap_or(n_embd / n_head);
        let mut layers = read_layers(&k, arch, n_layer, n_head, head_dim_k, head_dim_v)?;
        let n_expert_used = k.opt_count("expert_used_count")?.unwrap_or(0);
        // `expert_feed_forward_length`, one value or one per layer (llama.cpp's
        // `get_key_or_arr`). Each layer binds its own width; llama.cpp's MoE architectures take
        // layer 0's for every layer, so the files it loads hold one width throughout and give
        // the same model. Without the key, qwen2moe and qwen3moe fall back as llama.cpp's
        // loaders do to `feed_forward_length / expert_used_count` (layer 0's, integer division).
        let n_ff_exp: Vec<usize> = match k.opt_per_layer("expert_feed_forward_length", n_layer)? {
            Some(v) => v
                .into_iter()
                .map(|v| usize::try_from(v).unwrap_or(usize::MAX))
                .collect(),
            None if matches!(arch, "qwen2moe" | "qwen3moe") && n_expert_used > 0 => {
                vec![layers.first().map_or(0, |l| l.n_ff) / n_expert_used; n_layer]
            }
            None => vec![0; n_layer],
        };
        for (l, f) in layers.iter_mut().zip(n_ff_exp) {
            l.n_ff_exp = f;
        }
        let max_of = |f: fn(&LayerShape) -> usize| layers.iter().map(f).max().unwrap_or(0);
        let n_ff_exp = max_of(|l| l.n_ff_exp);
        let n_head_kv = max_of(|l| l.n_head_kv);
        let (head_dim_k, head_dim_v) = if layers.iter().all(|l| l.head_dim == head_dim_k) {
            (head_dim_k, head_dim_v)
        } else {
            let m = max_of(|l| l.head_dim);
            (m, m)
        };
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
            n_layer,
            n_ff: max_of(|l| l.n_ff),
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
            // 0 is "no window" (Phi-4's files say so).
            sliding_window: k
                .file
                .get_opt::<usize>(&k.key("attention.sliding_window"))?
                .filter(|&w| w > 0),
            n_embd_per_layer: k
                .file
                .get_opt::<usize>(&k.key("embedding_length_per_layer_input"))?
                .unwrap_or(0),
            layers,
            n_expert: k.opt_count("expert_count")?.unwrap_or(0),
            n_expert_used,
            n_ff_exp,
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
        if self.n_embd_per_layer > MAX_DIM {
            return bad(
                "embedding_length_per_layer_input",
                format!("{} is implausibly large", self.n_embd_per_layer),
            );
        }
        for (il, l) in self.layers.iter().enumerate() {
            if l.n_head_kv == 0 || !self.n_head.is_multiple_of(l.n_head_kv) {
                return bad(
                    "attention.head_count_kv",
                    format!(
                        "{} (layer {il}) does not divide head_count {}",
                        l.n_head_kv, self.n_head
                    ),
                );
            }
            if l.n_ff == 0 || l.n_ff > MAX_DIM {
                return bad("feed_forward_length", format!("{} (layer {il})", l.n_ff));
            }
            if l.head_dim == 0 || l.head_dim > MAX_DIM {
                return bad(
                    "attention.key_length",
                    format!("{} (layer {il}) is not a usable head size", l.head_dim),
                );
            }
            if l.n_rot > l.head_dim || !l.n_rot.is_multiple_of(2) {
                return bad(
                    "rope.dimension_count",
                    format!(
                        "{} (layer {il}) must be even and at most the head size {}",
                        l.n_rot, l.head_dim
                    ),
                );
            }
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

    /// The shape of layer `il`.
    pub fn layer(&self, il: usize) -> LayerShape {
        self.layers[il]
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
