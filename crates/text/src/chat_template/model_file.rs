//! What a GGUF file says about chatting with its model: the template source
//! (`tokenizer.chat_template`, or the `.tool_use` variant when tools are given, as transformers
//! picks named templates) and the text of its special tokens, which templates print
//! (`bos_token`, `eos_token`, …). A file without a template gets the built-in one for its
//! `general.architecture`, and says so through [`TemplateOrigin`].

use gguf::Gguf;
use serde_json::{Map, Value as Json};

use super::{ChatTemplate, TemplateError, builtin};

/// Where a model's chat template came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateOrigin {
    /// `tokenizer.chat_template` (or a named variant) in the file.
    File,
    /// The file has none; this built-in template (`"gemma"`, `"chatml"`) was chosen by
    /// architecture.
    Builtin(&'static str),
}

/// The special tokens a template may print, as text from the file's vocabulary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub unk: Option<String>,
    pub pad: Option<String>,
}

impl SpecialTokens {
    /// `unk_token` and `pad_token` as extra template variables (transformers passes every
    /// special token; a few templates print them).
    pub fn extra_context(&self) -> Map<String, Json> {
        let mut m = Map::new();
        for (k, v) in [("unk_token", &self.unk), ("pad_token", &self.pad)] {
            if let Some(v) = v {
                m.insert(k.into(), Json::String(v.clone()));
            }
        }
        m
    }
}

impl ChatTemplate {
    /// The file's template, or the built-in one for its architecture when it has none.
    /// `with_tools` prefers a `tokenizer.chat_template.tool_use` template where there is one.
    pub fn from_gguf(
        file: &Gguf<'_>,
        with_tools: bool,
    ) -> Result<(ChatTemplate, TemplateOrigin), TemplateError> {
        let text = |key: &str| -> Result<Option<&str>, TemplateError> {
            file.get_opt::<&str>(key)
                .map_err(|e| TemplateError::Syntax(format!("{key}: {e}")))
        };
        let named = if with_tools {
            text("tokenizer.chat_template.tool_use")?
        } else {
            None
        };
        if let Some(source) = named.or(text("tokenizer.chat_template")?) {
            return Ok((ChatTemplate::new(source)?, TemplateOrigin::File));
        }
        let arch = file.architecture().unwrap_or("");
        let (source, name) = builtin::for_arch(arch);
        Ok((ChatTemplate::new(source)?, TemplateOrigin::Builtin(name)))
    }
}

/// The text of the file's BOS, EOS, UNK and padding tokens (`tokenizer.ggml.*_token_id` looked
/// up in `tokenizer.ggml.tokens`); a missing id or an id outside the vocabulary gives `None`.
pub fn special_tokens(file: &Gguf<'_>) -> SpecialTokens {
    let token = |id_key: &str| -> Option<String> {
        let id = file.get_opt::<u32>(id_key).ok()??;
        let tokens = file.get_array("tokenizer.ggml.tokens").ok()?;
        let bytes = tokens.str_bytes_at(usize::try_from(id).ok()?)?;
        Some(String::from_utf8_lossy(bytes).into_owned())
    };
    SpecialTokens {
        bos: token("tokenizer.ggml.bos_token_id"),
        eos: token("tokenizer.ggml.eos_token_id"),
        unk: token("tokenizer.ggml.unknown_token_id"),
        pad: token("tokenizer.ggml.padding_token_id"),
    }
}
