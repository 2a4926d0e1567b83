//! One table per architecture: which transformers class it is, its hyper-parameter keys, and
//! for every checkpoint tensor its GGUF name, its expected shape (from config.json) and the
//! transformation llama.cpp's converter applies to it.

use gguf::{Builder, Value};
use serde_json::Value as Json;

use crate::error::Error;

/// The architectures `hearth convert` supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
    Qwen3Moe,
    Gemma3,
    /// llama.cpp's `LlamaModel` with its own name: every fourth layer without RoPE (fixed in
    /// llama.cpp, no key).
    SmolLm3,
    /// llama.cpp's `Ministral3Model` (a `LlamaModel`): Ministral 3 adds YaRN's log multiplier
    /// and Llama 4's attention temperature scale.
    Mistral3,
    /// gpt-oss: attention sinks and biases, experts as stored (gate and up interleaved) or
    /// MXFP4 as released, alternating sliding-window layers.
    GptOss,
    /// Gemma 4's dense text model.
    Gemma4,
    /// Phi-3, Phi-3.5-mini, Phi-4 and Phi-4-mini (llama.cpp's `Phi3MiniModel`): fused
    /// `attn_qkv` and gate/up (`ffn_up`), partial rotary, LongRoPE's long and short factors as
    /// tensors.
    Phi3,
}

/// transformers' `architectures[0]` for each supported architecture.
pub const SUPPORTED: &[(&str, Arch)] = &[
    ("LlamaForCausalLM", Arch::Llama),
    ("MistralForCausalLM", Arch::Llama),
    ("Qwen2ForCausalLM", Arch::Qwen2),
    ("Qwen3ForCausalLM", Arch::Qwen3),
    ("Qwen3MoeForCausalLM", Arch::Qwen3Moe),
    ("Gemma3ForCausalLM", Arch::Gemma3),
    ("Gemma3ForConditionalGeneration", Arch::Gemma3),
    ("SmolLM3ForCausalLM", Arch::SmolLm3),
    ("Ministral3ForCausalLM", Arch::Mistral3),
    ("Mistral3ForConditionalGeneration", Arch::Mistral3),
    ("GptOssForCausalLM", Arch::GptOss),
    ("Gemma4ForCausalLM", Arch::Gemma4),
    ("Gemma4ForConditionalGeneration", Arch::Gemma4),
    ("Phi3ForCausalLM", Arch::Phi3),
];

impl Arch {
    /// The GGUF architecture name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Qwen3Moe => "qwen3moe",
            Arch::Gemma3 => "gemma3",
            Arch::SmolLm3 => "smollm3",
            Arch::Mistral3 => "mistral3",
            Arch::GptOss => "gpt-oss",
            Arch::Gemma4 => "gemma4",
            Arch::Phi3 => "phi3",
        }
    }

    /// Converted by llama.cpp's `LlamaModel`: Q/K rows permuted, `vocab_size` and
    /// `rope.dimension_count` keys, Llama 3's rope factors.
    pub fn is_llama(self) -> bool {
        matches!(self, Arch::Llama | Arch::SmolLm3 | Arch::Mistral3)
    }

    pub(crate) fn from_config(config: &Json) -> Result<Arch, Error> {
        let found = config
            .get("architectures")
            .and_then(Json::as_array)
            .and_then(|a| a.first())
            .and_then(Json::as_str)
            .ok_or_else(|| Error::Config("has no \"architectures\" list".into()))?;
        SUPPORTED
            .iter()
            .find(|(n, _)| *n == found)
            .map(|(_, a)| *a)
            .ok_or_else(|| Error::UnsupportedArch {
                found: found.to_owned(),
                supported: SUPPORTED.iter().map(|(n, _)| *n).collect(),
            })
    }
}

/// The hyper-parameters the tensor shapes follow from.
#[derive(Debug, Clone)]
pub struct HParams {
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_ff: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_vocab: Option<usize>,
    /// Mixture-of-experts: the number of experts and each one's feed-forward width.
    pub n_expert: Option<usize>,
    pub n_ff_exp: Option<usize>,
    /// Gemma 4's per-layer shapes.
    pub gemma4: Option<Gemma4Dims>,
}

/// Gemma 4's layers differ: full-attention layers have their own head size and KV-head count,
/// the KV-shared layers (the last `num_kv_shared_layers`) may have double-wide MLPs, and every
/// layer has a per-layer input of `per_layer` values.
#[derive(Debug, Clone)]
pub struct Gemma4Dims {
    pub full: Vec<bool>,
    pub head_dim: Vec<usize>,
    pub n_kv: Vec<usize>,
    pub n_ff: Vec<usize>,
    pub head_dim_full: usize,
    pub n_kv_full: Option<usize>,
    pub n_shared: usize,
    pub per_layer: usize,
    pub n_vocab_per_layer: usize,
    pub double_wide: bool,
}

impl Gemma4Dims {
    fn read(
        c: &Json,
        n_layer: usize,
        head_dim: usize,
        n_kv: usize,
        n_ff: usize,
    ) -> Result<Self, Error> {
        let types = c
            .get("layer_types")
            .and_then(Json::as_array)
            .ok_or_else(|| Error::Config("gemma4 needs layer_types".into()))?;
        if types.len() != n_layer {
            return Err(Error::Config(format!(
                "layer_types has {} entries for {n_layer} layers",
                types.len()
            )));
        }
        let full: Vec<bool> = types
            .iter()
            .map(|t| t.as_str() != Some("sliding_attention"))
            .collect();
        // Gemma4Model.set_gguf_parameters: global_head_dim, else the first full layer's
        // per_layer_config entry.
        let from_layers = |key: &str| -> Result<Option<usize>, Error> {
            let Some(Json::Object(per)) = c.get("per_layer_config") else {
                return Ok(None);
            };
            for (i, lc) in per {
                let i: usize = i
                    .parse()
                    .map_err(|_| Error::Config(format!("per_layer_config has a key {i:?}")))?;
                if full.get(i) == Some(&true)
                    && let Some(v) = int(lc, &[key])?
                {
                    return Ok(Some(v));
                }
            }
            Ok(None)
        };
        let head_dim_full = match int(c, &["global_head_dim"])? {
            Some(d) => d,
            None => from_layers("head_dim")?
                .ok_or_else(|| Error::Config("gemma4 needs global_head_dim".into()))?,
        };
        let n_kv_full = match int(c, &["num_global_key_value_heads"])? {
            Some(n) => Some(n),
            None => from_layers("num_key_value_heads")?,
        };
        let n_shared = need(c, &["num_kv_shared_layers"])?;
        if n_shared > n_layer {
            return Err(Error::Config(
                "num_kv_shared_layers exceeds the layers".into(),
            ));
        }
        let double_wide = c.get("use_double_wide_mlp").and_then(Json::as_bool) == Some(true);
        let per_layer = int(c, &["hidden_size_per_layer_input"])?.unwrap_or(0);
        Ok(Gemma4Dims {
            head_dim: full
                .iter()
                .map(|&f| if f { head_dim_full } else { head_dim })
                .collect(),
            n_kv: full
                .iter()
                .map(|&f| if f { n_kv_full.unwrap_or(n_kv) } else { n_kv })
                .collect(),
            n_ff: (0..n_layer)
                .map(|il| {
                    if double_wide && il >= n_layer - n_shared {
                        n_ff.saturating_mul(2)
                    } else {
                        n_ff
                    }
                })
                .collect(),
            full,
            head_dim_full,
            n_kv_full,
            n_shared,
            per_layer,
            n_vocab_per_layer: int(c, &["vocab_size_per_layer_input"])?.unwrap_or(0),
            double_wide,
        })
    }
}

/// config.json with `text_config` lifted to the top, as llama.cpp reads it, and `head_dim`
/// where transformers' config class gives one that config.json leaves out (llama.cpp reads
/// `AutoConfig(...).to_dict()`, defaults included: Llama 2's and Mistral 7B's config.json
/// have no head_dim, yet llama.cpp writes the key length).
fn flat(config: &Json) -> Json {
    let mut c = config.clone();
    if let (Some(obj), Some(Json::Object(text))) = (c.as_object_mut(), config.get("text_config")) {
        for (k, v) in text {
            obj.insert(k.clone(), v.clone());
        }
    }
    if c.get("head_dim").is_none_or(Json::is_null) {
        let n = |k: &str| c.get(k).and_then(Json::as_u64).filter(|&n| n > 0);
        let default = match c.get("model_type").and_then(Json::as_str) {
            Some("llama" | "mistral") => n("hidden_size")
                .zip(n("num_attention_heads"))
                .map(|(h, a)| h / a),
            Some("qwen3" | "ministral3") => Some(128),
            Some("gpt_oss") => Some(64),
            _ => None,
        };
        if let (Some(d), Some(obj)) = (default, c.as_object_mut()) {
            obj.insert("head_dim".into(), Json::from(d));
        }
    }
    // rope_theta likewise (Llama 2's config.json has none; transformers' default is 10000).
    let has_theta = |v: Option<&Json>| {
        v.and_then(|r| r.get("rope_theta"))
            .is_some_and(|t| !t.is_null())
    };
    if !has_theta(Some(&c))
        && !has_theta(c.get("rope_parameters"))
        && !has_theta(c.get("rope_scaling"))
        && c.get("rope_parameters")
            .and_then(|r| r.get("full_attention"))
            .is_none()
    {
        let default = match c.get("model_type").and_then(Json::as_str) {
            Some("llama" | "mistral" | "qwen2" | "qwen3" | "qwen3_moe" | "phi3") => Some(10_000.0),
            Some("smollm3") => Some(2_000_000.0),
            _ => None,
        };
        if let (Some(t), Some(obj)) = (default, c.as_object_mut()) {
            obj.insert("rope_theta".into(), Json::from(t));
        }
    }
    c
}

/// llama.cpp's `find_hparam`: the first of `keys` present (and not null).
fn find<'a>(c: &'a Json, keys: &[&str]) -> Option<&'a Json> {
    keys.iter().filter_map(|k| c.get(*k)).find(|v| !v.is_null())
}

fn int(c: &Json, keys: &[&str]) -> Result<Option<usize>, Error> {
    match find(c, keys) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .filter(|&v| v < 1 << 40)
            .map(Some)
            .ok_or_else(|| Error::Config(format!("{} is {v}, not a count", keys[0]))),
    }
}

fn need(c: &Json, keys: &[&str]) -> Result<usize, Error> {
    int(c, keys)?.ok_or_else(|| Error::Config(format!("{} is missing", keys[0])))
}

fn u32_value(v: usize, key: &str) -> Result<Value<'static>, Error> {
    u32::try_from(v)
        .map(Value::U32)
        .map_err(|_| Error::Config(format!("{key} = {v} does not fit in 32 bits")))
}

fn f32_of(v: &Json, key: &str) -> Result<f32, Error> {
    v.as_f64()
        .map(|f| f as f32)
        .ok_or_else(|| Error::Config(format!("{key} is {v}, not a number")))
}

const N_LAYER: &[&str] = &["n_layers", "num_hidden_layers", "n_layer", "num_layers"];
const N_CTX: &[&str] = &[
    "max_position_embeddings",
    "n_ctx",
    "n_positions",
    "max_length",
    "max_sequence_length",
    "model_max_length",
];
const N_EMBD: &[&str] = &["hidden_size", "n_embd", "dim"];
const N_FF: &[&str] = &[
    "prefix_dense_intermediate_size",
    "dense_intermediate_size",
    "intermediate_size",
    "n_inner",
    "hidden_dim",
];
const N_HEAD: &[&str] = &["num_attention_heads", "n_head", "n_heads"];
const N_HEAD_KV: &[&str] = &["num_key_value_heads", "n_kv_heads"];
const N_EXPERT: &[&str] = &["num_local_experts", "num_experts", "n_routed_experts"];
const N_EXPERT_USED: &[&str] = &[
    "num_experts_per_tok",
    "num_experts_per_token",
    "top_k_experts",
];

impl HParams {
    pub fn read(arch: Arch, config: &Json) -> Result<HParams, Error> {
        let c = flat(config);
        let n_embd = need(&c, N_EMBD)?;
        let n_head = match arch {
            Arch::Gemma3 | Arch::Gemma4 => int(&c, N_HEAD)?.unwrap_or(8),
            _ => need(&c, N_HEAD)?,
        };
        let n_head_kv = match arch {
            Arch::Gemma3 | Arch::Gemma4 => int(&c, N_HEAD_KV)?.unwrap_or(4),
            _ => int(&c, N_HEAD_KV)?.unwrap_or(n_head),
        };
        if n_head == 0 || n_head_kv == 0 || n_embd == 0 {
            return Err(Error::Config(
                "hidden_size and the head counts must be positive".into(),
            ));
        }
        let head_dim = match (int(&c, &["head_dim"])?, arch) {
            (Some(d), _) => d,
            (None, Arch::Gemma3 | Arch::Gemma4) => 256,
            (None, _) => n_embd / n_head,
        };
        let n_layer = need(&c, N_LAYER)?;
        let n_ff = need(&c, N_FF)?;
        let gemma4 = match arch {
            Arch::Gemma4 => Some(Gemma4Dims::read(&c, n_layer, head_dim, n_head_kv, n_ff)?),
            _ => None,
        };
        let hp = HParams {
            gemma4,
            n_layer,
            n_embd,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_vocab: int(&c, &["vocab_size"])?,
            n_expert: match arch {
                Arch::Qwen3Moe | Arch::GptOss => Some(need(&c, N_EXPERT)?).filter(|&n| n > 0),
                // Gemma 4's 26B-A4B: a routed expert block beside each layer's dense MLP.
                Arch::Gemma4 => int(&c, N_EXPERT)?.filter(|&n| n > 0),
                _ => None,
            },
            n_ff_exp: match arch {
                Arch::Qwen3Moe => Some(need(&c, &["moe_intermediate_size"])?),
                Arch::GptOss => Some(need(&c, &["intermediate_size"])?),
                Arch::Gemma4 => int(&c, &["expert_intermediate_size", "moe_intermediate_size"])?,
                _ => None,
            },
        };
        // Real models have at most a few hundred experts; this bounds what a layer's expert
        // table allocates before any tensor is read.
        if hp.n_expert.is_some_and(|n| n > 1 << 14) {
            return Err(Error::Config(format!(
                "{} experts is more than hearth converts (16384)",
                hp.n_expert.unwrap_or(0)
            )));
        }
        Ok(hp)
    }
}

/// The rope settings as llama.cpp's `TextModel.__init__` gathers them.
fn rope_parameters(c: &Json) -> serde_json::Map<String, Json> {
    let mut rp = match find(c, &["rope_parameters"]).or_else(|| find(c, &["rope_scaling"])) {
        Some(Json::Object(o)) => o.clone(),
        _ => serde_json::Map::new(),
    };
    if !rp.contains_key("full_attention") && !rp.contains_key("sliding_attention") {
        let local = find(
            c,
            &[
                "local_rope_theta",
                "rope_local_theta",
                "rope_theta_local",
                "swa_rope_theta",
                "rope_local_base_freq",
            ],
        );
        if let Some(l) = local {
            rp.insert(
                "sliding_attention".into(),
                serde_json::json!({ "rope_theta": l }),
            );
        }
        let theta = find(
            c,
            &[
                "global_rope_theta",
                "rope_global_theta",
                "rope_theta_global",
                "rope_theta",
                "rotary_emb_base",
            ],
        );
        if let Some(t) = theta
            && !rp.contains_key("rope_theta")
        {
            rp.insert("rope_theta".into(), t.clone());
        }
        if !rp.contains_key("rope_type")
            && let Some(t) = rp.get("type").cloned()
        {
            rp.insert("rope_type".into(), t);
        }
        for (key, keys) in [
            (
                "partial_rotary_factor",
                &["partial_rotary_factor", "rope_pct", "rope_percent"][..],
            ),
            (
                "original_max_position_embeddings",
                &["original_max_position_embeddings"][..],
            ),
        ] {
            if !rp.contains_key(key)
                && let Some(v) = find(c, keys)
            {
                rp.insert(key.into(), v.clone());
            }
        }
    }
    rp
}

/// Writes the architecture's hyper-parameter keys in llama.cpp's order (`TextModel.
/// set_gguf_parameters` and the architecture's own additions).
pub fn write_hparams(
    arch: Arch,
    hp: &HParams,
    config: &Json,
    file_type: u32,
    b: &mut Builder<'static>,
) -> Result<(), Error> {
    let c = flat(config);
    let a = arch.name();
    let mut set = |k: &str, v: Value<'static>| match k.strip_prefix('/') {
        Some(general) => b.set(general, v),
        None => b.set(format!("{a}.{k}"), v),
    };
    if arch == Arch::Phi3 {
        return write_phi3(hp, &c, file_type, &mut set);
    }
    set("block_count", u32_value(hp.n_layer, "num_hidden_layers")?)?;
    if let Some(n) = int(&c, N_CTX)? {
        set("context_length", u32_value(n, "max_position_embeddings")?)?;
    }
    set("embedding_length", u32_value(hp.n_embd, "hidden_size")?)?;
    set(
        "feed_forward_length",
        u32_value(hp.n_ff, "intermediate_size")?,
    )?;
    if let Some(n) = int(&c, N_HEAD)? {
        set("attention.head_count", u32_value(n, "num_attention_heads")?)?;
    }
    if let Some(n) = int(&c, N_HEAD_KV)? {
        set(
            "attention.head_count_kv",
            u32_value(n, "num_key_value_heads")?,
        )?;
    }
    if c.get("is_causal") == Some(&Json::Bool(false)) {
        set("attention.causal", Value::Bool(false))?;
    }
    let rp = rope_parameters(&c);
    let full = rp
        .get("full_attention")
        .and_then(Json::as_object)
        .unwrap_or(&rp);
    if let Some(rope_type) = full.get("rope_type").and_then(Json::as_str) {
        let factor = full.get("factor").filter(|v| !v.is_null());
        match (rope_type, factor) {
            ("linear", Some(f)) => {
                set("rope.scaling.type", Value::string("linear"))?;
                set("rope.scaling.factor", Value::F32(f32_of(f, "factor")?))?;
            }
            ("yarn", Some(f)) => {
                set("rope.scaling.type", Value::string("yarn"))?;
                set("rope.scaling.factor", Value::F32(f32_of(f, "factor")?))?;
                let orig = full
                    .get("original_max_position_embeddings")
                    .and_then(Json::as_u64)
                    .ok_or_else(|| {
                        Error::Config("yarn rope needs original_max_position_embeddings".into())
                    })?;
                set(
                    "rope.scaling.original_context_length",
                    u32_value(orig as usize, "original_max_position_embeddings")?,
                )?;
                for (hf, key) in [
                    ("extrapolation_factor", "rope.scaling.yarn_ext_factor"),
                    ("attention_factor", "rope.scaling.yarn_attn_factor"),
                    ("beta_fast", "rope.scaling.yarn_beta_fast"),
                    ("beta_slow", "rope.scaling.yarn_beta_slow"),
                ] {
                    if let Some(v) = full.get(hf).filter(|v| !v.is_null()) {
                        set(key, Value::F32(f32_of(v, hf)?))?;
                    }
                }
            }
            // Llama 3's frequency scaling is a tensor (`extra_tensors`).
            ("llama3", _) if arch.is_llama() => {}
            ("llama3" | "su" | "longrope", _) => {
                return Err(Error::Config(format!(
                    "rope_type {rope_type} (extra rope-frequency tensors) is not supported yet"
                )));
            }
            // "default", "dynamic" and the unknown: llama.cpp writes nothing.
            _ => {}
        }
    }
    if rp.contains_key("mrope_section") {
        return Err(Error::Config(
            "multi-section rope (mrope_section) is not supported".into(),
        ));
    }
    if let Some(t) = full.get("rope_theta").filter(|v| !v.is_null()) {
        set("rope.freq_base", Value::F32(f32_of(t, "rope_theta")?))?;
    }
    if let Some(t) = rp
        .get("sliding_attention")
        .and_then(|s| s.get("rope_theta"))
        .filter(|v| !v.is_null())
    {
        set("rope.freq_base_swa", Value::F32(f32_of(t, "rope_theta")?))?;
    }
    if let Some(e) = find(&c, &["rms_norm_eps", "norm_eps"]) {
        set(
            "attention.layer_norm_rms_epsilon",
            Value::F32(f32_of(e, "rms_norm_eps")?),
        )?;
    }
    if let Some(e) = find(
        &c,
        &["layer_norm_eps", "layer_norm_epsilon", "norm_epsilon"],
    ) {
        set(
            "attention.layer_norm_epsilon",
            Value::F32(f32_of(e, "layer_norm_eps")?),
        )?;
    }
    if let Some(n) = int(&c, N_EXPERT)? {
        if hp.n_expert.is_none() {
            return Err(Error::Config(format!(
                "mixture-of-experts {} checkpoints are not supported",
                a
            )));
        }
        set("expert_count", u32_value(n, "num_experts")?)?;
    }
    if let Some(n) = int(&c, N_EXPERT_USED)? {
        set("expert_used_count", u32_value(n, "num_experts_per_tok")?)?;
    }
    for k in [
        "n_group",
        "topk_group",
        "score_function",
        "scoring_func",
        "score_func",
        "moe_router_activation",
        "moe_router_activation_func",
        "expert_selection_fn",
    ] {
        if c.get(k).is_some_and(|v| !v.is_null()) {
            return Err(Error::Config(format!(
                "{k} (grouped or non-softmax expert routing) is not supported"
            )));
        }
    }
    if let Some(d) = int(&c, &["head_dim"])? {
        set("attention.key_length", u32_value(d, "head_dim")?)?;
        set("attention.value_length", u32_value(d, "head_dim")?)?;
    }
    set("/general.file_type", Value::U32(file_type))?;
    match arch {
        Arch::Llama | Arch::SmolLm3 | Arch::Mistral3 => {
            let n_vocab = hp
                .n_vocab
                .ok_or_else(|| Error::Config("vocab_size is missing".into()))?;
            set("vocab_size", u32_value(n_vocab, "vocab_size")?)?;
            let rope_dim = int(&c, &["head_dim"])?.unwrap_or(hp.n_embd / hp.n_head);
            set("rope.dimension_count", u32_value(rope_dim, "head_dim")?)?;
            if arch == Arch::Mistral3 && c.get("model_type") == Some(&Json::from("ministral3")) {
                if rp.get("rope_type").and_then(Json::as_str) != Some("yarn") {
                    return Err(Error::Config(
                        "a ministral3 model must have yarn rope_parameters".into(),
                    ));
                }
                let get = |k: &str| {
                    rp.get(k)
                        .filter(|v| !v.is_null())
                        .ok_or_else(|| Error::Config(format!("rope_parameters lack {k}")))
                        .and_then(|v| f32_of(v, k))
                };
                set(
                    "rope.scaling.yarn_log_multiplier",
                    Value::F32(get("mscale_all_dim")?),
                )?;
                set(
                    "attention.temperature_scale",
                    Value::F32(get("llama_4_scaling_beta")?),
                )?;
            }
        }
        Arch::Qwen2 | Arch::Qwen3 | Arch::Phi3 => {}
        Arch::GptOss => {
            let w = need(&c, &["sliding_window"])?;
            set("attention.sliding_window", u32_value(w, "sliding_window")?)?;
            set(
                "expert_feed_forward_length",
                u32_value(hp.n_ff_exp.unwrap_or(hp.n_ff), "intermediate_size")?,
            )?;
        }
        Arch::Qwen3Moe => {
            if let Some(n) = hp.n_ff_exp {
                set(
                    "expert_feed_forward_length",
                    u32_value(n, "moe_intermediate_size")?,
                )?;
            }
            if int(&c, &["shared_expert_intermediate_size"])?.is_some() {
                return Err(Error::Config(
                    "shared experts (shared_expert_intermediate_size) are not supported".into(),
                ));
            }
        }
        Arch::Gemma3 | Arch::Gemma4 => {
            let n_ctx = int(&c, &["max_position_embeddings"])?.unwrap_or(131072);
            set(
                "context_length",
                u32_value(n_ctx, "max_position_embeddings")?,
            )?;
            set(
                "attention.head_count",
                u32_value(hp.n_head, "num_attention_heads")?,
            )?;
            let eps = match c.get("rms_norm_eps").filter(|v| !v.is_null()) {
                Some(e) => f32_of(e, "rms_norm_eps")?,
                None => 1e-6,
            };
            set("attention.layer_norm_rms_epsilon", Value::F32(eps))?;
            set("attention.key_length", u32_value(hp.head_dim, "head_dim")?)?;
            set(
                "attention.value_length",
                u32_value(hp.head_dim, "head_dim")?,
            )?;
            let theta = match full.get("rope_theta").filter(|v| !v.is_null()) {
                Some(t) => f32_of(t, "rope_theta")?,
                None => 1_000_000.0,
            };
            set("rope.freq_base", Value::F32(theta))?;
            if c.get("attn_logit_softcapping")
                .is_some_and(|v| !v.is_null())
            {
                return Err(Error::Config(
                    "attn_logit_softcapping is set, which Gemma 3 does not have".into(),
                ));
            }
            if let Some(cap) = c
                .get("final_logit_softcapping")
                .and_then(Json::as_f64)
                .filter(|&v| v != 0.0)
            {
                set("final_logit_softcapping", Value::F32(cap as f32))?;
            }
            if c.get("sliding_window_pattern").and_then(Json::as_i64) != Some(1) {
                let w = need(&c, &["sliding_window"])?;
                set("attention.sliding_window", u32_value(w, "sliding_window")?)?;
            }
            set(
                "attention.head_count_kv",
                u32_value(hp.n_head_kv, "num_key_value_heads")?,
            )?;
            if let Some(g) = &hp.gemma4 {
                write_gemma4(g, hp, &c, &mut set)?;
            }
        }
    }
    Ok(())
}

/// `Phi3MiniModel.set_gguf_parameters`, which writes its own keys in its own order (not
/// `TextModel`'s): no rope-scaling type, the rope dimensions from `partial_rotary_factor`, the
/// sliding window (0 when config.json has none: Phi-4-mini).
fn write_phi3(
    hp: &HParams,
    c: &Json,
    file_type: u32,
    set: &mut impl FnMut(&str, Value<'static>) -> Result<(), gguf::Error>,
) -> Result<(), Error> {
    let dims = Phi3Dims::read(c)?;
    set(
        "context_length",
        u32_value(dims.n_ctx, "max_position_embeddings")?,
    )?;
    set(
        "rope.scaling.original_context_length",
        u32_value(dims.n_ctx_orig, "original_max_position_embeddings")?,
    )?;
    set("embedding_length", u32_value(dims.n_embd, "hidden_size")?)?;
    set(
        "feed_forward_length",
        u32_value(need(c, &["intermediate_size"])?, "intermediate_size")?,
    )?;
    set("block_count", u32_value(hp.n_layer, "num_hidden_layers")?)?;
    set(
        "attention.head_count",
        u32_value(dims.n_head, "num_attention_heads")?,
    )?;
    set(
        "attention.head_count_kv",
        u32_value(
            need(c, &["num_key_value_heads", "n_head_kv"])?,
            "num_key_value_heads",
        )?,
    )?;
    let eps = find(c, &["rms_norm_eps"])
        .ok_or_else(|| Error::Config("rms_norm_eps is missing".into()))?;
    set(
        "attention.layer_norm_rms_epsilon",
        Value::F32(f32_of(eps, "rms_norm_eps")?),
    )?;
    set("rope.dimension_count", u32_value(dims.n_rot, "head_dim")?)?;
    let rp = rope_parameters(c);
    let full = rp
        .get("full_attention")
        .and_then(Json::as_object)
        .unwrap_or(&rp);
    let theta = full
        .get("rope_theta")
        .filter(|v| !v.is_null())
        .ok_or_else(|| Error::Config("rope_theta is missing".into()))?;
    set("rope.freq_base", Value::F32(f32_of(theta, "rope_theta")?))?;
    set("/general.file_type", Value::U32(file_type))?;
    let window = int(c, &["sliding_window"])?.unwrap_or(0);
    set(
        "attention.sliding_window",
        u32_value(window, "sliding_window")?,
    )?;
    Ok(())
}

/// The sizes `Phi3MiniModel` computes its rope settings from.
struct Phi3Dims {
    n_embd: usize,
    n_head: usize,
    n_ctx: usize,
    n_ctx_orig: usize,
    /// `int(partial_rotary_factor * n_embd) // n_head`.
    n_rot: usize,
}

impl Phi3Dims {
    fn read(c: &Json) -> Result<Phi3Dims, Error> {
        let n_embd = need(c, &["hidden_size", "n_embd"])?;
        let n_head = need(c, &["num_attention_heads", "n_head"])?;
        if n_head == 0 {
            return Err(Error::Config("num_attention_heads is 0".into()));
        }
        let n_ctx = need(c, &["n_positions", "max_position_embeddings"])?;
        let rp = rope_parameters(c);
        let n_ctx_orig = match rp.get("original_max_position_embeddings") {
            None | Some(Json::Null) => {
                return Err(Error::Config(
                    "phi3 needs original_max_position_embeddings (in config.json or its \
                     rope_parameters / rope_scaling)"
                        .into(),
                ));
            }
            Some(v) => v
                .as_u64()
                .and_then(|v| usize::try_from(v).ok())
                .filter(|&v| v > 0 && v < 1 << 40)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "original_max_position_embeddings is {v}, not a positive count"
                    ))
                })?,
        };
        let pct = match rp.get("partial_rotary_factor") {
            None | Some(Json::Null) => 1.0,
            Some(v) => v
                .as_f64()
                .filter(|p| *p > 0.0 && *p <= 1.0)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "partial_rotary_factor is {v}, not a number in (0, 1]"
                    ))
                })?,
        };
        // Python: int(rot_pct * n_embd) // n_head, the product in double precision.
        let n_rot = (pct * n_embd as f64) as usize / n_head;
        Ok(Phi3Dims {
            n_embd,
            n_head,
            n_ctx,
            n_ctx_orig,
            n_rot,
        })
    }
}

/// LongRoPE as `Phi3MiniModel.generate_extra_tensors` reads it: the attention factor
/// (`rope.scaling.attn_factor`) and the long and short per-pair factors; `None` when
/// config.json has no long factors.
struct Phi3Rope {
    attn_factor: f32,
    long: Vec<f32>,
    short: Vec<f32>,
}

fn phi3_rope(c: &Json) -> Result<Option<Phi3Rope>, Error> {
    let dims = Phi3Dims::read(c)?;
    let rp = rope_parameters(c);
    let factors = |key: &str| -> Result<Option<Vec<f32>>, Error> {
        match rp.get(key) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_f64()
                        .map(|f| f as f32)
                        .ok_or_else(|| Error::Config(format!("rope {key} has {v}, not a number")))
                })
                .collect::<Result<Vec<f32>, Error>>()
                .map(Some),
            Some(v) => Err(Error::Config(format!("rope {key} is {v}, not a list"))),
        }
    };
    let long = match factors("long_factor")? {
        Some(l) if !l.is_empty() => l,
        _ => return Ok(None),
    };
    let scale = dims.n_ctx as f64 / dims.n_ctx_orig as f64;
    let rope_type = match rp.get("rope_type") {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(t)) => t.to_lowercase(),
        Some(v) => return Err(Error::Config(format!("rope_type is {v}, not a name"))),
    };
    let attn_factor = match rope_type.as_str() {
        "" => {
            return Err(Error::Config(
                "rope parameters with long_factor lack rope_type".into(),
            ));
        }
        "su" | "longrope" if scale > 1.0 => {
            (1.0 + scale.ln() / (dims.n_ctx_orig as f64).ln()).sqrt()
        }
        "yarn" if scale > 1.0 => 0.1 * scale.ln() + 1.0,
        "su" | "longrope" | "yarn" => 1.0,
        t => {
            return Err(Error::Config(format!(
                "rope_type {t} with long_factor is not supported (longrope, su or yarn)"
            )));
        }
    };
    let short = factors("short_factor")?.ok_or_else(|| {
        Error::Config("rope parameters have long_factor but no short_factor".into())
    })?;
    // llama.cpp compares with rope_dims / 2 in floating point: an odd rope_dims never matches.
    if long.len() != short.len() || long.len() * 2 != dims.n_rot {
        return Err(Error::Config(format!(
            "rope long_factor and short_factor must have {} values (half of the {} rotated \
             dimensions), they have {} and {}",
            dims.n_rot as f64 / 2.0,
            dims.n_rot,
            long.len(),
            short.len()
        )));
    }
    Ok(Some(Phi3Rope {
        attn_factor: attn_factor as f32,
        long,
        short,
    }))
}

/// Keys llama.cpp writes while generating the extra tensors, before every other key but
/// `general.architecture`: Phi-3's LongRoPE `rope.scaling.attn_factor`.
pub fn extra_metadata(arch: Arch, config: &Json) -> Result<Vec<(String, Value<'static>)>, Error> {
    if arch != Arch::Phi3 {
        return Ok(Vec::new());
    }
    Ok(match phi3_rope(&flat(config))? {
        Some(r) => vec![(
            format!("{}.rope.scaling.attn_factor", arch.name()),
            Value::F32(r.attn_factor),
        )],
        None => Vec::new(),
    })
}

/// `Gemma4Model.set_gguf_parameters`, after Gemma 3's keys.
fn write_gemma4(
    g: &Gemma4Dims,
    hp: &HParams,
    c: &Json,
    set: &mut impl FnMut(&str, Value<'static>) -> Result<(), gguf::Error>,
) -> Result<(), Error> {
    let i32s = |v: &[usize], key: &str| -> Result<Value<'static>, Error> {
        let v: Vec<i32> = v
            .iter()
            .map(|&n| {
                i32::try_from(n).map_err(|_| Error::Config(format!("{key} {n} is too large")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Value::Array(gguf::Array::from_i32s(&v)))
    };
    set(
        "attention.shared_kv_layers",
        u32_value(g.n_shared, "num_kv_shared_layers")?,
    )?;
    set(
        "embedding_length_per_layer_input",
        u32_value(g.per_layer, "hidden_size_per_layer_input")?,
    )?;
    let swa: Vec<u8> = g.full.iter().map(|&f| u8::from(!f)).collect();
    set(
        "attention.sliding_window_pattern",
        Value::Array(gguf::Array::Numbers {
            ty: gguf::ValueType::Bool,
            bytes: swa.into(),
        }),
    )?;
    set(
        "attention.key_length",
        u32_value(g.head_dim_full, "global_head_dim")?,
    )?;
    set(
        "attention.value_length",
        u32_value(g.head_dim_full, "global_head_dim")?,
    )?;
    set(
        "attention.key_length_swa",
        u32_value(hp.head_dim, "head_dim")?,
    )?;
    set(
        "attention.value_length_swa",
        u32_value(hp.head_dim, "head_dim")?,
    )?;
    if let Some(n) = hp.n_ff_exp {
        set(
            "expert_feed_forward_length",
            u32_value(n, "moe_intermediate_size")?,
        )?;
    }
    if g.double_wide {
        set("feed_forward_length", i32s(&g.n_ff, "intermediate_size")?)?;
    }
    if g.n_kv_full.is_some() && int(c, &["num_key_value_heads"])?.is_some() {
        set(
            "attention.head_count_kv",
            i32s(&g.n_kv, "num_key_value_heads")?,
        )?;
    }
    set(
        "rope.dimension_count",
        u32_value(g.head_dim_full, "global_head_dim")?,
    )?;
    let prf = match c
        .get("rope_parameters")
        .and_then(|r| r.get("partial_rotary_factor"))
        .filter(|v| !v.is_null())
    {
        Some(v) => v
            .as_f64()
            .ok_or_else(|| Error::Config("partial_rotary_factor is not a number".into()))?,
        None => 1.0,
    };
    set(
        "rope.dimension_count_swa",
        u32_value((hp.head_dim as f64 * prf) as usize, "head_dim")?,
    )?;
    Ok(())
}

/// What llama.cpp does to a tensor's values before converting its type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transform {
    /// Keep only the first rows (Gemma 3's embedding past the real vocabulary).
    pub truncate_rows: Option<usize>,
    /// `LlamaModel.permute` with this many heads: rope's pairs (i, i + d/2) become (2i, 2i+1).
    pub permute_heads: Option<usize>,
    /// Added to every value (Gemma's RMS norm weights are stored as `w`, used as `1 + w`).
    pub add: f32,
    /// Swap the two innermost axes (gpt-oss's experts are stored `[n_expert, in, out]`).
    pub transpose: bool,
    /// Keep every other index of axis `.0` (outermost 0, after `transpose`), from `.1`: gpt-oss
    /// interleaves its gate and up projections.
    pub every_other: Option<(usize, usize)>,
}

/// A checkpoint tensor's place in the GGUF file.
pub struct Mapped {
    pub name: String,
    /// Outermost first, after the transformation.
    pub shape: Vec<usize>,
    pub transform: Transform,
}

/// The matrices of one expert, in the order llama.cpp writes the merged tensors.
pub const EXPERT_PROJS: [(&str, &str); 3] = [
    ("down_proj", "ffn_down_exps"),
    ("gate_proj", "ffn_gate_exps"),
    ("up_proj", "ffn_up_exps"),
];

/// What becomes of a checkpoint tensor.
pub enum Mapping {
    /// llama.cpp drops it.
    Drop,
    One(Mapped),
    /// Expert `xid`'s matrix `EXPERT_PROJS[proj]` of layer `bid` (shape checked): llama.cpp
    /// stacks a layer's experts into one `[n_expert, rows, cols]` tensor per matrix.
    Expert {
        bid: usize,
        xid: usize,
        proj: usize,
    },
    /// One tensor becomes several (gpt-oss's gate and up, interleaved in one).
    Split(Vec<Mapped>),
    /// Part of an MXFP4 pair (gpt-oss as released): `name` is the GGUF name of the
    /// `_blocks`/`_scales` pair, `blocks` says which this is; `shape` the dequantized
    /// `[n_expert, rows, cols]`. gate_up pairs give two tensors (`split`).
    Mxfp4 {
        bid: usize,
        key: String,
        blocks: bool,
        split: bool,
        shape: Vec<usize>,
    },
}

/// The GGUF name, shape and transformation of checkpoint tensor `hf`, after checking its shape
/// against config.json.
pub fn map_tensor(
    arch: Arch,
    hp: &HParams,
    hf: &str,
    shape: &[usize],
    n_vocab_real: usize,
) -> Result<Mapping, Error> {
    if hf.ends_with(".attention.masked_bias")
        || hf.ends_with(".attention.bias")
        || hf.ends_with(".rotary_emb.inv_freq")
    {
        return Ok(Mapping::Drop);
    }
    // TextModel.filter_tensors: a multimodal checkpoint's other towers are dropped, its
    // language model's names lose `language_model.`.
    const PREFIXES: [&str; 10] = [
        "mlp",
        "vit.",
        "vpm.",
        "siglip2.",
        "conformer.",
        "merger.",
        "resampler.",
        "sound_encoder.",
        "sound_projection.",
        "speech_embeddings.",
    ];
    const PARTS: [&str; 16] = [
        "visual.",
        "vision.",
        "audio.",
        "talker.",
        "vision_",
        "audio_",
        "token2wav.",
        "code2wav.",
        "projector.",
        "pre_mm_projector_norm",
        "image_newline",
        "view_seperator",
        "patch_embed",
        "patch_merger.",
        "patch_merge_mlp.",
        "model.connector.",
    ];
    if PREFIXES.iter().any(|p| hf.starts_with(p)) || PARTS.iter().any(|p| hf.contains(p)) {
        return Ok(Mapping::Drop);
    }
    let stripped = hf.replacen("language_model.", "", usize::MAX);
    let hf = stripped.as_str();
    let unknown = || {
        Error::tensor(
            hf,
            format!("has no GGUF name in llama.cpp's {} layout", arch.name()),
        )
    };
    let name = hf.strip_prefix("model.").unwrap_or(hf);
    let n_vocab = hp.n_vocab.unwrap_or(n_vocab_real);
    // Saturating: config.json is untrusted, and a product past usize then simply mismatches.
    let (q, kv) = (
        hp.n_head.saturating_mul(hp.head_dim),
        hp.n_head_kv.saturating_mul(hp.head_dim),
    );
    let gemma = matches!(arch, Arch::Gemma3 | Arch::Gemma4);
    let mut transform = Transform::default();
    let g4 = hp.gemma4.as_ref();
    let (gguf, expected): (String, Vec<usize>) = match (name, g4) {
        ("embed_tokens_per_layer.weight", Some(g)) => (
            "per_layer_token_embd.weight".into(),
            vec![g.n_vocab_per_layer, hp.n_layer.saturating_mul(g.per_layer)],
        ),
        ("per_layer_model_projection.weight", Some(g)) => (
            "per_layer_model_proj.weight".into(),
            vec![hp.n_layer.saturating_mul(g.per_layer), hp.n_embd],
        ),
        ("per_layer_projection_norm.weight", Some(g)) => {
            ("per_layer_proj_norm.weight".into(), vec![g.per_layer])
        }
        (name, _) => match name {
            "embed_tokens.weight" => {
                if gemma && n_vocab_real < n_vocab {
                    transform.truncate_rows = Some(n_vocab_real);
                }
                ("token_embd.weight".into(), vec![n_vocab, hp.n_embd])
            }
            "norm.weight" => ("output_norm.weight".into(), vec![hp.n_embd]),
            "lm_head.weight" => ("output.weight".into(), vec![n_vocab, hp.n_embd]),
            _ => {
                let rest = name.strip_prefix("layers.").ok_or_else(unknown)?;
                let (bid, rest) = rest.split_once('.').ok_or_else(unknown)?;
                let bid: usize = bid.parse().map_err(|_| unknown())?;
                if bid >= hp.n_layer {
                    return Err(Error::tensor(
                        hf,
                        format!(
                            "is in layer {bid}, but config.json has {} layers",
                            hp.n_layer
                        ),
                    ));
                }
                if let (Some(n_expert), Some(n_ff_exp)) = (hp.n_expert, hp.n_ff_exp)
                    && let Some(e) = rest.strip_prefix("mlp.experts.")
                    && let Some((xid, proj)) = e.split_once('.')
                    && let Ok(xid) = xid.parse::<usize>()
                {
                    let proj = EXPERT_PROJS
                        .iter()
                        .position(|(p, _)| proj.strip_suffix(".weight") == Some(*p))
                        .ok_or_else(unknown)?;
                    if xid >= n_expert {
                        return Err(Error::tensor(
                            hf,
                            format!("is expert {xid}, but config.json has {n_expert} experts"),
                        ));
                    }
                    let expected = if proj == 0 {
                        [hp.n_embd, n_ff_exp]
                    } else {
                        [n_ff_exp, hp.n_embd]
                    };
                    if shape != expected {
                        return Err(Error::tensor(
                            hf,
                            format!("has shape {shape:?}, but config.json implies {expected:?}"),
                        ));
                    }
                    return Ok(Mapping::Expert { bid, xid, proj });
                }
                let n_expert = hp.n_expert.unwrap_or(0);
                if let Some(g) = g4 {
                    let (hd, kv, ff) = (g.head_dim[bid], g.n_kv[bid], g.n_ff[bid]);
                    let (q, kv) = (hp.n_head.saturating_mul(hd), kv.saturating_mul(hd));
                    let (what, expected) = match rest {
                        "input_layernorm.weight" => ("attn_norm.weight", vec![hp.n_embd]),
                        "layer_scalar" => ("layer_output_scale.weight", vec![1]),
                        "mlp.down_proj.weight" => ("ffn_down.weight", vec![hp.n_embd, ff]),
                        "mlp.gate_proj.weight" => ("ffn_gate.weight", vec![ff, hp.n_embd]),
                        "mlp.up_proj.weight" => ("ffn_up.weight", vec![ff, hp.n_embd]),
                        "per_layer_input_gate.weight" => {
                            ("inp_gate.weight", vec![g.per_layer, hp.n_embd])
                        }
                        "per_layer_projection.weight" => {
                            ("proj.weight", vec![hp.n_embd, g.per_layer])
                        }
                        "post_attention_layernorm.weight" => {
                            ("post_attention_norm.weight", vec![hp.n_embd])
                        }
                        "post_feedforward_layernorm.weight" => {
                            ("post_ffw_norm.weight", vec![hp.n_embd])
                        }
                        "post_per_layer_input_norm.weight" => ("post_norm.weight", vec![hp.n_embd]),
                        "pre_feedforward_layernorm.weight" => ("ffn_norm.weight", vec![hp.n_embd]),
                        "self_attn.q_norm.weight" => ("attn_q_norm.weight", vec![hd]),
                        "self_attn.k_norm.weight" => ("attn_k_norm.weight", vec![hd]),
                        "self_attn.q_proj.weight" => ("attn_q.weight", vec![q, hp.n_embd]),
                        "self_attn.k_proj.weight" => ("attn_k.weight", vec![kv, hp.n_embd]),
                        "self_attn.v_proj.weight" => ("attn_v.weight", vec![kv, hp.n_embd]),
                        "self_attn.o_proj.weight" => ("attn_output.weight", vec![hp.n_embd, q]),
                        // The mixture-of-experts variant's block, beside the dense MLP.
                        "pre_feedforward_layernorm_2.weight" => {
                            ("pre_ffw_norm_2.weight", vec![hp.n_embd])
                        }
                        "post_feedforward_layernorm_1.weight" => {
                            ("post_ffw_norm_1.weight", vec![hp.n_embd])
                        }
                        "post_feedforward_layernorm_2.weight" => {
                            ("post_ffw_norm_2.weight", vec![hp.n_embd])
                        }
                        "experts.gate_up_proj" if n_expert > 0 => (
                            "ffn_gate_up_exps.weight",
                            vec![
                                n_expert,
                                hp.n_ff_exp.unwrap_or(0).saturating_mul(2),
                                hp.n_embd,
                            ],
                        ),
                        "experts.down_proj" if n_expert > 0 => (
                            "ffn_down_exps.weight",
                            vec![n_expert, hp.n_embd, hp.n_ff_exp.unwrap_or(0)],
                        ),
                        "router.proj.weight" if n_expert > 0 => {
                            ("ffn_gate_inp.weight", vec![n_expert, hp.n_embd])
                        }
                        "router.scale" if n_expert > 0 => ("ffn_gate_inp.scale", vec![hp.n_embd]),
                        "router.per_expert_scale" if n_expert > 0 => {
                            ("ffn_down_exps.scale", vec![n_expert])
                        }
                        _ => return Err(unknown()),
                    };
                    if shape != expected.as_slice() {
                        return Err(Error::tensor(
                            hf,
                            format!("has shape {shape:?}, but config.json implies {expected:?}"),
                        ));
                    }
                    return Ok(Mapping::One(Mapped {
                        name: format!("blk.{bid}.{what}"),
                        shape: shape.to_vec(),
                        transform: Transform::default(),
                    }));
                }
                if arch == Arch::GptOss
                    && let Some(m) = gpt_oss_experts(hp, hf, bid, rest, shape)?
                {
                    return Ok(m);
                }
                // Phi3MiniModel's tensors (gguf-py's PHI3 list): fused or separate Q/K/V, the
                // gate and up projections fused into ffn_up; no biases, no separate gate.
                const PHI3_LAYER: [&str; 9] = [
                    "input_layernorm.weight",
                    "post_attention_layernorm.weight",
                    "self_attn.qkv_proj.weight",
                    "self_attn.q_proj.weight",
                    "self_attn.k_proj.weight",
                    "self_attn.v_proj.weight",
                    "self_attn.o_proj.weight",
                    "mlp.gate_up_proj.weight",
                    "mlp.down_proj.weight",
                ];
                if arch == Arch::Phi3 && !PHI3_LAYER.contains(&rest) {
                    return Err(unknown());
                }
                let (what, expected) = match (rest, arch) {
                    ("self_attn.qkv_proj.weight", Arch::Phi3) => (
                        "attn_qkv.weight",
                        vec![q.saturating_add(kv.saturating_mul(2)), hp.n_embd],
                    ),
                    ("mlp.gate_up_proj.weight", Arch::Phi3) => {
                        ("ffn_up.weight", vec![hp.n_ff.saturating_mul(2), hp.n_embd])
                    }
                    ("self_attn.sinks", Arch::GptOss) => ("attn_sinks.weight", vec![hp.n_head]),
                    ("post_attention_layernorm.weight", Arch::GptOss) => {
                        ("post_attention_norm.weight", vec![hp.n_embd])
                    }
                    ("mlp.router.weight", Arch::GptOss) => {
                        ("ffn_gate_inp.weight", vec![n_expert, hp.n_embd])
                    }
                    ("mlp.router.bias", Arch::GptOss) => ("ffn_gate_inp.bias", vec![n_expert]),
                    ("input_layernorm.weight", _) => ("attn_norm.weight", vec![hp.n_embd]),
                    ("mlp.gate.weight", Arch::Qwen3Moe) => {
                        ("ffn_gate_inp.weight", vec![n_expert, hp.n_embd])
                    }
                    ("post_attention_layernorm.weight", Arch::Gemma3) => {
                        ("post_attention_norm.weight", vec![hp.n_embd])
                    }
                    ("post_attention_layernorm.weight", _) => ("ffn_norm.weight", vec![hp.n_embd]),
                    ("pre_feedforward_layernorm.weight", Arch::Gemma3) => {
                        ("ffn_norm.weight", vec![hp.n_embd])
                    }
                    ("post_feedforward_layernorm.weight", Arch::Gemma3) => {
                        ("post_ffw_norm.weight", vec![hp.n_embd])
                    }
                    ("self_attn.q_proj.weight", _) => ("attn_q.weight", vec![q, hp.n_embd]),
                    ("self_attn.k_proj.weight", _) => ("attn_k.weight", vec![kv, hp.n_embd]),
                    ("self_attn.v_proj.weight", _) => ("attn_v.weight", vec![kv, hp.n_embd]),
                    ("self_attn.o_proj.weight", _) => ("attn_output.weight", vec![hp.n_embd, q]),
                    ("self_attn.q_proj.bias", _) => ("attn_q.bias", vec![q]),
                    ("self_attn.k_proj.bias", _) => ("attn_k.bias", vec![kv]),
                    ("self_attn.v_proj.bias", _) => ("attn_v.bias", vec![kv]),
                    ("self_attn.o_proj.bias", _) => ("attn_output.bias", vec![hp.n_embd]),
                    ("self_attn.q_norm.weight", Arch::Qwen3 | Arch::Qwen3Moe | Arch::Gemma3) => {
                        ("attn_q_norm.weight", vec![hp.head_dim])
                    }
                    ("self_attn.k_norm.weight", Arch::Qwen3 | Arch::Qwen3Moe | Arch::Gemma3) => {
                        ("attn_k_norm.weight", vec![hp.head_dim])
                    }
                    ("mlp.gate_proj.weight", _) => ("ffn_gate.weight", vec![hp.n_ff, hp.n_embd]),
                    ("mlp.up_proj.weight", _) => ("ffn_up.weight", vec![hp.n_ff, hp.n_embd]),
                    ("mlp.down_proj.weight", _) => ("ffn_down.weight", vec![hp.n_embd, hp.n_ff]),
                    _ => return Err(unknown()),
                };
                if arch.is_llama() {
                    if rest.starts_with("self_attn.q_proj.") {
                        transform.permute_heads = Some(hp.n_head);
                    } else if rest.starts_with("self_attn.k_proj.") {
                        transform.permute_heads = Some(hp.n_head_kv);
                    }
                }
                (format!("blk.{bid}.{what}"), expected)
            }
        },
    };
    if shape != expected.as_slice() {
        return Err(Error::tensor(
            hf,
            format!("has shape {shape:?}, but config.json implies {expected:?}"),
        ));
    }
    // Gemma 3 stores its norms as w (used as 1 + w); Gemma 4 as they are.
    if arch == Arch::Gemma3 && hf.ends_with("norm.weight") {
        transform.add = 1.0;
    }
    let mut shape = shape.to_vec();
    if let Some(rows) = transform.truncate_rows {
        shape[0] = rows;
    }
    if let Some(h) = transform.permute_heads
        && !shape[0].is_multiple_of(2 * h)
    {
        return Err(Error::tensor(
            hf,
            format!("{} rows cannot be split into {h} heads of pairs", shape[0]),
        ));
    }
    Ok(Mapping::One(Mapped {
        name: gguf,
        shape,
        transform,
    }))
}

/// gpt-oss's experts (`GptOssModel.modify_tensors`), `None` for its other tensors.
fn gpt_oss_experts(
    hp: &HParams,
    hf: &str,
    bid: usize,
    rest: &str,
    shape: &[usize],
) -> Result<Option<Mapping>, Error> {
    let Some(what) = rest.strip_prefix("mlp.experts.") else {
        return Ok(None);
    };
    let (e, d, ff) = (
        hp.n_expert.unwrap_or(0),
        hp.n_embd,
        hp.n_ff_exp.unwrap_or(hp.n_ff),
    );
    let check = |expected: &[usize]| {
        if shape == expected {
            Ok(())
        } else {
            Err(Error::tensor(
                hf,
                format!("has shape {shape:?}, but config.json implies {expected:?}"),
            ))
        }
    };
    let name = |w: &str| format!("blk.{bid}.{w}");
    let one = |n: String, shape: Vec<usize>, transform: Transform| Mapped {
        name: n,
        shape,
        transform,
    };
    let transposed = Transform {
        transpose: true,
        ..Transform::default()
    };
    let pair = |axis: usize, transpose: bool| {
        [0, 1].map(|offset| Transform {
            transpose,
            every_other: Some((axis, offset)),
            ..Transform::default()
        })
    };
    let mxfp4 = |key: &str, blocks: bool, split: bool, rows: usize, cols: usize| {
        let nb = cols / 32;
        let expected: Vec<usize> = if blocks {
            vec![e, rows, nb, 16]
        } else {
            vec![e, rows, nb]
        };
        if !cols.is_multiple_of(32) {
            return Err(Error::tensor(hf, "MXFP4 rows must be whole blocks of 32"));
        }
        check(&expected)?;
        Ok(Some(Mapping::Mxfp4 {
            bid,
            key: key.to_owned(),
            blocks,
            split,
            shape: vec![e, rows, cols],
        }))
    };
    Ok(Some(match what {
        "down_proj" => {
            check(&[e, ff, d])?;
            Mapping::One(one(
                name("ffn_down_exps.weight"),
                vec![e, d, ff],
                transposed,
            ))
        }
        "down_proj_bias" => {
            check(&[e, d])?;
            Mapping::One(one(
                name("ffn_down_exps.bias"),
                vec![e, d],
                Transform::default(),
            ))
        }
        "gate_up_proj" => {
            check(&[e, d, 2 * ff])?;
            let [g, u] = pair(1, true);
            Mapping::Split(vec![
                one(name("ffn_gate_exps.weight"), vec![e, ff, d], g),
                one(name("ffn_up_exps.weight"), vec![e, ff, d], u),
            ])
        }
        "gate_up_proj_bias" => {
            check(&[e, 2 * ff])?;
            let [g, u] = pair(1, false);
            Mapping::Split(vec![
                one(name("ffn_gate_exps.bias"), vec![e, ff], g),
                one(name("ffn_up_exps.bias"), vec![e, ff], u),
            ])
        }
        "down_proj_blocks" => return mxfp4("down", true, false, d, ff),
        "down_proj_scales" => return mxfp4("down", false, false, d, ff),
        "gate_up_proj_blocks" => return mxfp4("gate_up", true, true, 2 * ff, d),
        "gate_up_proj_scales" => return mxfp4("gate_up", false, true, 2 * ff, d),
        _ => return Ok(None),
    }))
}

/// Applies `t` to `values`, a row-major tensor of `shape` (outermost first).
pub fn apply(
    t: &Transform,
    values: &mut Vec<f32>,
    shape: &[usize],
    name: &str,
) -> Result<(), Error> {
    // Values per outermost index (1 for a vector: its elements are the rows).
    let row = shape.iter().skip(1).product::<usize>().max(1);
    let mut shape = shape.to_vec();
    if t.transpose {
        let n = shape.len();
        if n < 2 {
            return Err(Error::tensor(name, "cannot transpose a vector"));
        }
        let (r, c) = (shape[n - 2], shape[n - 1]);
        let old = values.clone();
        for (o, chunk) in values.chunks_exact_mut((r * c).max(1)).enumerate() {
            let src = &old[o * r * c..(o + 1) * r * c];
            for i in 0..r {
                for j in 0..c {
                    chunk[j * r + i] = src[i * c + j];
                }
            }
        }
        shape.swap(n - 2, n - 1);
    }
    if let Some((axis, offset)) = t.every_other {
        let len = *shape
            .get(axis)
            .ok_or_else(|| Error::tensor(name, "has no such axis"))?;
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let mut out = Vec::with_capacity(values.len() / 2);
        for o in 0..outer {
            for i in (offset..len).step_by(2) {
                let start = (o * len + i) * inner;
                out.extend_from_slice(&values[start..start + inner]);
            }
        }
        *values = out;
    }
    if let Some(rows) = t.truncate_rows {
        values.truncate(rows * row);
    }
    if let Some(h) = t.permute_heads {
        let n_rows = values.len() / row;
        if !n_rows.is_multiple_of(2 * h) {
            return Err(Error::tensor(name, "rows do not split into head pairs"));
        }
        let half = n_rows / h / 2;
        let old = values.clone();
        // reshape(h, 2, half, row).swapaxes(1, 2): new row (h, j, i) is old row (h, i, j).
        for head in 0..h {
            for j in 0..half {
                for i in 0..2 {
                    let dst = (head * 2 * half + j * 2 + i) * row;
                    let src = (head * 2 * half + i * half + j) * row;
                    values[dst..dst + row].copy_from_slice(&old[src..src + row]);
                }
            }
        }
    }
    if t.add != 0.0 {
        for v in values.iter_mut() {
            *v += t.add;
        }
    }
    Ok(())
}

/// Tensors llama.cpp computes from config.json (`generate_extra_tensors`), written first:
/// Llama 3's `rope_freqs.weight`, one scaling factor per rotated pair.
pub fn extra_tensors(arch: Arch, config: &Json) -> Result<Vec<(String, Vec<f32>)>, Error> {
    let c = flat(config);
    if arch == Arch::Gemma4 {
        return gemma4_rope_freqs(&c);
    }
    if arch == Arch::Phi3 {
        return Ok(match phi3_rope(&c)? {
            Some(r) => vec![
                ("rope_factors_long.weight".to_owned(), r.long),
                ("rope_factors_short.weight".to_owned(), r.short),
            ],
            None => Vec::new(),
        });
    }
    let rp = rope_parameters(&c);
    let full = rp
        .get("full_attention")
        .and_then(Json::as_object)
        .unwrap_or(&rp);
    let is_llama3 = full
        .get("rope_type")
        .and_then(Json::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("llama3"));
    if !arch.is_llama() || !is_llama3 {
        return Ok(Vec::new());
    }
    let num = |k: &str, default: f64| -> Result<f64, Error> {
        match full.get(k).filter(|v| !v.is_null()) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| Error::Config(format!("rope {k} is {v}, not a number"))),
        }
    };
    let base = num("rope_theta", 10000.0)?;
    let dim = match int(&c, &["head_dim"])? {
        Some(d) => d,
        None => need(&c, N_EMBD)? / need(&c, N_HEAD)?.max(1),
    };
    if dim == 0 || dim > 1 << 16 {
        return Err(Error::Config(format!("head_dim {dim} is out of range")));
    }
    let factor = num("factor", 8.0)?;
    let low = num("low_freq_factor", 1.0)?;
    let high = num("high_freq_factor", 4.0)?;
    let old_ctx = num("original_max_position_embeddings", 8192.0)?;
    // torch's float32 arithmetic, step by step, as llama.cpp's converter computes it.
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    let mut factors = Vec::with_capacity(dim / 2);
    for i in (0..dim).step_by(2) {
        let exponent = i as f32 / dim as f32;
        let freq = 1.0f32 / (base as f32).powf(exponent);
        let wavelen = (2.0 * std::f64::consts::PI) as f32 / freq;
        let f = if f64::from(wavelen) < high_wavelen {
            1.0
        } else if f64::from(wavelen) > low_wavelen {
            factor as f32
        } else {
            let smooth = (old_ctx as f32 / wavelen - low as f32) / (high - low) as f32;
            1.0 / ((1.0 - smooth) / factor as f32 + smooth)
        };
        factors.push(f);
    }
    Ok(vec![("rope_freqs.weight".to_owned(), factors)])
}

/// `Gemma4Model.generate_extra_tensors`: full layers rotate only `partial_rotary_factor` of
/// each head ("proportional" rope); the other pairs get a frequency factor of 1e30 (no
/// rotation), as ggml's neox rope cannot skip them otherwise.
fn gemma4_rope_freqs(c: &Json) -> Result<Vec<(String, Vec<f32>)>, Error> {
    let full = c
        .get("rope_parameters")
        .and_then(|r| r.get("full_attention"))
        .ok_or_else(|| Error::Config("gemma4 needs rope_parameters.full_attention".into()))?;
    if full.get("rope_type").and_then(Json::as_str) != Some("proportional") {
        return Err(Error::Config(
            "gemma4's full-attention rope must be \"proportional\"".into(),
        ));
    }
    let prf = full
        .get("partial_rotary_factor")
        .and_then(Json::as_f64)
        .ok_or_else(|| Error::Config("gemma4's rope lacks partial_rotary_factor".into()))?;
    let n_layer = need(c, N_LAYER)?;
    let n_embd = need(c, N_EMBD)?;
    let n_head = int(c, N_HEAD)?.unwrap_or(8).max(1);
    let head_dim = int(c, &["head_dim"])?.unwrap_or(n_embd / n_head);
    let n_kv = int(c, N_HEAD_KV)?.unwrap_or(4);
    let dims = Gemma4Dims::read(c, n_layer, head_dim, n_kv, need(c, N_FF)?)?;
    let hd = dims.head_dim_full;
    if hd > 1 << 16 {
        return Err(Error::Config(format!(
            "global_head_dim {hd} is out of range"
        )));
    }
    // Python: int(head_dim * factor / 2) in double precision.
    let n_rot = ((hd as f64 * prf) / 2.0) as usize;
    let n_unrot = (hd / 2).saturating_sub(n_rot);
    let mut values = vec![1.0f32; n_rot.min(hd / 2)];
    values.extend(std::iter::repeat_n(1e30f32, n_unrot));
    Ok(vec![("rope_freqs.weight".to_owned(), values)])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's converter (torch float32) on Llama 3.2 1B's and Llama 3.1 8B's settings,
    /// as f32 bit patterns (`scripts/gen_llama3_rope_cases.py`).
    #[test]
    fn llama3_rope_factors_are_llama_cpp_s() {
        for (config, want) in LLAMA3_CASES {
            let config: Json = serde_json::from_str(config).unwrap();
            let got = extra_tensors(Arch::Llama, &config).unwrap();
            let bits: Vec<u32> = got[0].1.iter().map(|f| f.to_bits()).collect();
            assert_eq!(bits, *want, "{config}");
        }
    }

    include!("llama3_rope_cases.rs");

    /// What transformers' config classes fill in when config.json leaves them out, as
    /// llama.cpp's converter (which reads `AutoConfig(...).to_dict()`) writes them: Llama 2's
    /// and Mistral 7B's config.json have neither `head_dim` nor `rope_theta`.
    #[test]
    fn config_class_defaults_are_written_as_llama_cpp_writes_them() {
        let config = serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 100,
            "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_scaling": null
        });
        let hp = HParams::read(Arch::Llama, &config).unwrap();
        let mut b = Builder::new();
        write_hparams(Arch::Llama, &hp, &config, 1, &mut b).unwrap();
        let get = |k: &str| {
            b.metadata()
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("llama.rope.freq_base"), Some(Value::F32(10000.0)));
        assert_eq!(get("llama.attention.key_length"), Some(Value::U32(64)));
        assert_eq!(get("llama.rope.dimension_count"), Some(Value::U32(64)));
        let mut qwen3 = config.clone();
        qwen3["model_type"] = "qwen3".into();
        qwen3["architectures"] = serde_json::json!(["Qwen3ForCausalLM"]);
        let hp = HParams::read(Arch::Qwen3, &qwen3).unwrap();
        assert_eq!(hp.head_dim, 128, "Qwen3Config's default head_dim is 128");
    }
}
