//! The chat template of a transformers checkpoint folder, found where `AutoTokenizer` finds it:
//! `chat_template.jinja` (with named variants in `additional_chat_templates/NAME.jinja`), else
//! the `chat_template` field of `tokenizer_config.json` (one string, or a list of
//! `{"name", "template"}`), else `chat_template.json` (processors). The special tokens a
//! template prints come from `tokenizer_config.json`, given as text or as `{"content": …}`.
//!
//! The folder may come from the Hub, so every file is read with a size bound and every field
//! is checked for its type.

use std::path::Path;

use serde_json::{Map, Value as Json};

use super::{ChatTemplate, SpecialTokens, TemplateError};

/// `tokenizer_config.json` holds the vocabulary's added tokens too; a few MB at most.
const MAX_CONFIG_BYTES: u64 = 64 << 20;
/// A template is a few KB (`ChatTemplate` refuses sources over 256 KiB with a clearer error).
const MAX_TEMPLATE_BYTES: u64 = 1 << 20;

fn bad(path: &Path, what: impl std::fmt::Display) -> TemplateError {
    TemplateError::Source(format!("{}: {what}", path.display()))
}

/// The file's text, `None` if it does not exist.
fn read_opt(path: &Path, max: u64) -> Result<Option<String>, TemplateError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(bad(path, e)),
    };
    let len = file.metadata().map_err(|e| bad(path, e))?.len();
    if len > max {
        return Err(bad(
            path,
            format!("{len} bytes is more than the {max} allowed"),
        ));
    }
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|e| bad(path, e))
}

fn read_json_opt(path: &Path) -> Result<Option<Map<String, Json>>, TemplateError> {
    let Some(text) = read_opt(path, MAX_CONFIG_BYTES)? else {
        return Ok(None);
    };
    match serde_json::from_str(&text) {
        Ok(Json::Object(obj)) => Ok(Some(obj)),
        Ok(_) => Err(bad(path, "expected a JSON object")),
        Err(e) => Err(bad(path, format!("not valid JSON: {e}"))),
    }
}

/// The named templates of a `chat_template` field: `"default"` for a plain string.
fn named_templates(path: &Path, field: &Json) -> Result<Vec<(String, String)>, TemplateError> {
    match field {
        Json::String(s) => Ok(vec![("default".into(), s.clone())]),
        Json::Array(list) => list
            .iter()
            .map(|entry| {
                let name = entry.get("name").and_then(Json::as_str);
                let template = entry.get("template").and_then(Json::as_str);
                match (name, template) {
                    (Some(n), Some(t)) => Ok((n.to_owned(), t.to_owned())),
                    _ => Err(bad(
                        path,
                        "each chat_template entry needs a \"name\" and a \"template\" string",
                    )),
                }
            })
            .collect(),
        _ => Err(bad(path, "chat_template must be a string or a list")),
    }
}

/// A special token's text: a string, or an added token `{"content": "…", …}`.
fn token_text(config: &Map<String, Json>, key: &str) -> Option<String> {
    match config.get(key)? {
        Json::String(s) => Some(s.clone()),
        Json::Object(t) => t.get("content").and_then(Json::as_str).map(str::to_owned),
        _ => None,
    }
}

/// The checkpoint's templates by name (`"default"`, `"tool_use"`, …), in the order
/// transformers prefers their sources.
fn find_templates(dir: &Path) -> Result<Vec<(String, String)>, TemplateError> {
    let jinja = dir.join("chat_template.jinja");
    if let Some(default) = read_opt(&jinja, MAX_TEMPLATE_BYTES)? {
        let mut templates = vec![("default".to_owned(), default)];
        let extra = dir.join("additional_chat_templates");
        if let Ok(entries) = std::fs::read_dir(&extra) {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned);
                if let (Some(name), Some("jinja")) =
                    (name, path.extension().and_then(|e| e.to_str()))
                    && let Some(text) = read_opt(&path, MAX_TEMPLATE_BYTES)?
                {
                    templates.push((name, text));
                }
            }
        }
        return Ok(templates);
    }
    for file in ["tokenizer_config.json", "chat_template.json"] {
        let path = dir.join(file);
        if let Some(config) = read_json_opt(&path)?
            && let Some(field) = config.get("chat_template")
        {
            return named_templates(&path, field);
        }
    }
    Err(TemplateError::Source(format!(
        "{} has no chat template (no chat_template.jinja, and no chat_template in \
         tokenizer_config.json or chat_template.json)",
        dir.display()
    )))
}

impl ChatTemplate {
    /// The chat template and special tokens of a transformers checkpoint folder. With
    /// `with_tools`, the `tool_use` template where there is one, as transformers picks it;
    /// otherwise `default` (or the only one).
    pub fn from_checkpoint_dir(
        dir: &Path,
        with_tools: bool,
    ) -> Result<(ChatTemplate, SpecialTokens), TemplateError> {
        let templates = find_templates(dir)?;
        let by_name = |name: &str| templates.iter().find(|(n, _)| n == name);
        let chosen = with_tools
            .then(|| by_name("tool_use"))
            .flatten()
            .or_else(|| by_name("default"));
        let Some((_, source)) = chosen else {
            let names: Vec<&str> = templates.iter().map(|(n, _)| n.as_str()).collect();
            return Err(TemplateError::Source(format!(
                "{}: no \"default\" chat template among {names:?}",
                dir.display()
            )));
        };
        let config = read_json_opt(&dir.join("tokenizer_config.json"))?.unwrap_or_default();
        let tokens = SpecialTokens {
            bos: token_text(&config, "bos_token"),
            eos: token_text(&config, "eos_token"),
            unk: token_text(&config, "unk_token"),
            pad: token_text(&config, "pad_token"),
        };
        Ok((ChatTemplate::new(source)?, tokens))
    }
}
