//! The architectures hearth runs, one file each, and the one registry that maps a GGUF
//! `general.architecture` to its weights and its `forward`.
//!
//! Adding an architecture means its file, one [`Arch`] variant, one [`ArchWeights`] variant and
//! the arms of the exhaustive `match`es below — the compiler lists every site.

pub(crate) mod blocks;
pub mod gemma3;
pub mod gemma4;
pub mod gptoss;
pub mod llama;
pub mod mistral3;
pub mod phi3;
pub mod qwen2;
pub mod qwen2moe;
pub mod qwen3;
pub mod qwen3moe;
pub mod smollm3;

use kernels::ops::rope::Rope;

use crate::exec::Backend;
use crate::model::{Binder, HParams, Keys, LoadError, MatRef};

/// A supported architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen2Moe,
    Qwen3,
    Qwen3Moe,
    Smollm3,
    Mistral3,
    Phi3,
    GptOss,
    Gemma3,
    Gemma4,
}

impl Arch {
    pub const ALL: [Arch; 11] = [
        Arch::Llama,
        Arch::Qwen2,
        Arch::Qwen2Moe,
        Arch::Qwen3,
        Arch::Qwen3Moe,
        Arch::Smollm3,
        Arch::Mistral3,
        Arch::Phi3,
        Arch::GptOss,
        Arch::Gemma3,
        Arch::Gemma4,
    ];

    /// The architecture named by `general.architecture`.
    pub fn from_name(name: &str) -> Option<Arch> {
        Arch::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The GGUF name, which also prefixes its hyper-parameter keys.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen2Moe => "qwen2moe",
            Arch::Qwen3 => "qwen3",
            Arch::Qwen3Moe => "qwen3moe",
            Arch::Smollm3 => "smollm3",
            Arch::Mistral3 => "mistral3",
            Arch::Phi3 => "phi3",
            Arch::GptOss => "gpt-oss",
            Arch::Gemma3 => "gemma3",
            Arch::Gemma4 => "gemma4",
        }
    }

    pub(crate) fn supported_list() -> String {
        Arch::ALL.map(Arch::name).join(", ")
    }
}

/// The bound weights of a model, by architecture.
pub(crate) enum ArchWeights {
    Llama(llama::Weights),
    Qwen2(qwen2::Weights),
    Qwen2Moe(qwen2moe::Weights),
    Qwen3(qwen3::Weights),
    Qwen3Moe(qwen3moe::Weights),
    Smollm3(smollm3::Weights),
    Mistral3(mistral3::Weights),
    Phi3(phi3::Weights),
    GptOss(gptoss::Weights),
    Gemma3(gemma3::Weights),
    Gemma4(gemma4::Weights),
}

/// Binds every tensor `arch` needs.
pub(crate) fn bind(
    arch: Arch,
    hp: &HParams,
    b: &Binder<'_, '_>,
    keys: &Keys<'_, '_>,
) -> Result<ArchWeights, LoadError> {
    Ok(match arch {
        Arch::Llama => ArchWeights::Llama(llama::Weights::bind(hp, b)?),
        Arch::Qwen2 => ArchWeights::Qwen2(qwen2::bind(hp, b)?),
        Arch::Qwen2Moe => ArchWeights::Qwen2Moe(qwen2moe::bind(hp, b)?),
        Arch::Qwen3 => ArchWeights::Qwen3(qwen3::bind(hp, b)?),
        Arch::Qwen3Moe => ArchWeights::Qwen3Moe(qwen3moe::bind(hp, b, keys)?),
        Arch::Smollm3 => ArchWeights::Smollm3(smollm3::bind(hp, b)?),
        Arch::Mistral3 => ArchWeights::Mistral3(mistral3::bind(hp, b, keys)?),
        Arch::Phi3 => ArchWeights::Phi3(phi3::Weights::bind(hp, b)?),
        Arch::GptOss => ArchWeights::GptOss(gptoss::Weights::bind(hp, b, keys)?),
        Arch::Gemma3 => ArchWeights::Gemma3(gemma3::Weights::bind(hp, b, keys)?),
        Arch::Gemma4 => ArchWeights::Gemma4(gemma4::Weights::bind(hp, b, keys)?),
    })
}

/// What a context fixes about the model once, when it is created, from its own parameters:
/// llama.cpp's choices that depend on `cparams` rather than on the file alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerContext {
    /// LongRoPE (Phi-3): rotate with the long-context factors, because a sequence may grow
    /// past the training context.
    pub long_rope: bool,
}

impl PerContext {
    /// The choices for a context whose sequences may each reach `n_ctx_seq` cells (the whole
    /// store, or the share a caller holds each to), padded to 256 as llama.cpp pads it: the
    /// long factors when that exceeds `rope.scaling.original_context_length` (llama.cpp's
    /// `get_rope_factors`).
    pub fn new(hp: &HParams, n_ctx_seq: usize) -> PerContext {
        let n_ctx_seq = n_ctx_seq.saturating_add(255) / 256 * 256;
        PerContext {
            long_rope: n_ctx_seq > hp.n_ctx_orig,
        }
    }
}

/// Runs one batch through the model's layers, leaving the final hidden states (before the
/// output norm) in `X`.
pub(crate) fn forward(hp: &HParams, weights: &ArchWeights, c: &PerContext, x: &mut dyn Backend) {
    match weights {
        ArchWeights::Llama(w)
        | ArchWeights::Qwen2(w)
        | ArchWeights::Qwen2Moe(w)
        | ArchWeights::Qwen3(w)
        | ArchWeights::Qwen3Moe(w)
        | ArchWeights::Smollm3(w)
        | ArchWeights::Mistral3(w) => llama::forward(hp, w, x),
        ArchWeights::Phi3(w) => phi3::forward(hp, w, c, x),
        ArchWeights::GptOss(w) => gptoss::forward(hp, w, x),
        ArchWeights::Gemma3(w) => gemma3::forward(hp, w, x),
        ArchWeights::Gemma4(w) => gemma4::forward(hp, w, x),
    }
}

impl ArchWeights {
    /// The output norm weight and the LM head.
    pub(crate) fn head(&self) -> (&[f32], &MatRef) {
        match self {
            ArchWeights::Llama(w)
            | ArchWeights::Qwen2(w)
            | ArchWeights::Qwen2Moe(w)
            | ArchWeights::Qwen3(w)
            | ArchWeights::Qwen3Moe(w)
            | ArchWeights::Smollm3(w)
            | ArchWeights::Mistral3(w) => (&w.output_norm, &w.output),
            ArchWeights::Phi3(w) => (&w.decoder.output_norm, &w.decoder.output),
            ArchWeights::GptOss(w) => (&w.output_norm, &w.output),
            ArchWeights::Gemma3(w) => (&w.output_norm, &w.output),
            ArchWeights::Gemma4(w) => (&w.output_norm, &w.output),
        }
    }

    /// The soft-cap of the logits (`cap · tanh(logit / cap)`), when the model has one.
    pub(crate) fn logit_softcap(&self) -> Option<f32> {
        match self {
            ArchWeights::Llama(_)
            | ArchWeights::Qwen2(_)
            | ArchWeights::Qwen2Moe(_)
            | ArchWeights::Qwen3(_)
            | ArchWeights::Qwen3Moe(_)
            | ArchWeights::Smollm3(_)
            | ArchWeights::Mistral3(_)
            | ArchWeights::Phi3(_)
            | ArchWeights::GptOss(_)
            | ArchWeights::Gemma3(_) => None,
            ArchWeights::Gemma4(w) => w.logit_softcap(),
        }
    }

    /// The RoPE of layer `il`'s keys in a context that chose `c`, or `None` for a layer
    /// without RoPE (SmolLM3's every fourth), whose cached keys a shift leaves alone.
    pub(crate) fn layer_rope(&self, il: usize, c: &PerContext) -> Option<&Rope> {
        match self {
            ArchWeights::Llama(w)
            | ArchWeights::Qwen2(w)
            | ArchWeights::Qwen2Moe(w)
            | ArchWeights::Qwen3(w)
            | ArchWeights::Qwen3Moe(w)
            | ArchWeights::Smollm3(w)
            | ArchWeights::Mistral3(w) => w.has_rope(il).then_some(&w.rope),
            ArchWeights::Phi3(w) => Some(w.rope(c)),
            ArchWeights::GptOss(w) => Some(&w.rope),
            ArchWeights::Gemma3(w) => Some(w.layer_rope(il)),
            ArchWeights::Gemma4(w) => Some(w.layer_rope(il)),
        }
    }
}
