//! Constrained output requests: the fields that ask for it in each API, read into an
//! [`engine::grammar::GrammarSource`] and compiled against the model's vocabulary
//! ([`Ready::grammar_vocab`], built on first use) into the request's sampler.
//!
//! - llama-server: `grammar` (GBNF), `json_schema`, and `response_format` — on every route, as
//!   llama-server reads them (`/completion`, `/v1/completions`, `/v1/chat/completions`).
//! - OpenAI: `response_format` `{"type": "json_object"}` (any JSON object, or the schema in its
//!   `schema` field, as llama-server) and `{"type": "json_schema", "json_schema": {"schema": …}}`;
//!   `"text"` is no constraint.
//! - Ollama: `format`, `"json"` (a JSON object) or a JSON schema.
//!
//! A grammar or schema that does not compile is a 400 naming the problem.

use engine::grammar::{GrammarSource, GrammarVocab};
use serde_json::{Value, json};

use crate::Ready;
use crate::error::ApiError;
use crate::params::{Body, type_error};
use crate::scheduler::GenParams;

/// The constraint asked for with llama-server's and OpenAI's fields, if any.
pub fn requested(body: &Body) -> Result<Option<GrammarSource>, ApiError> {
    let grammar = match body.get("grammar") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(type_error("grammar", "a string (a GBNF grammar)")),
    };
    let mut schema = body.get("json_schema").cloned();
    if schema.is_some() && grammar.is_some() {
        return Err(ApiError::invalid(
            "`json_schema` and `grammar` cannot be used together",
        ));
    }
    if let Some(rf) = body.get("response_format") {
        let Value::Object(rf) = rf else {
            return Err(type_error("response_format", "an object"));
        };
        let kind = match rf.get("type") {
            None | Some(Value::Null) => "",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(type_error("response_format.type", "a string")),
        };
        match kind {
            "" | "text" => {}
            "json_object" => {
                if rf.contains_key("schema") || schema.is_none() {
                    schema = Some(rf.get("schema").cloned().unwrap_or_else(|| json!({})));
                }
            }
            "json_schema" => {
                let inner = match rf.get("json_schema") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(o)) => o.get("schema").cloned(),
                    Some(_) => {
                        return Err(type_error("response_format.json_schema", "an object"));
                    }
                };
                schema = Some(inner.unwrap_or_else(|| json!({})));
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "`response_format.type` must be \"text\", \"json_object\" or \
                     \"json_schema\", got {other:?}"
                )));
            }
        }
    }
    Ok(match (grammar, schema) {
        (Some(g), _) => Some(GrammarSource::Gbnf(g)),
        (None, Some(s)) => Some(GrammarSource::JsonSchema(any_object_if_empty(s))),
        (None, None) => None,
    })
}

/// As llama-server: an empty schema means any JSON object.
fn any_object_if_empty(s: Value) -> Value {
    match s {
        Value::Object(m) if m.is_empty() => json!({ "type": "object" }),
        s => s,
    }
}

/// Ollama's `format`: `"json"`, a JSON schema, or `""` for none.
pub fn ollama_format(body: &Body) -> Result<Option<GrammarSource>, ApiError> {
    match body.get("format") {
        None => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => {
            Ok(Some(GrammarSource::JsonSchema(json!({ "type": "object" }))))
        }
        Some(Value::String(s)) => Err(ApiError::invalid(format!(
            "`format` must be \"json\" or a JSON schema, got {s:?}"
        ))),
        Some(s @ (Value::Object(_) | Value::Bool(_))) => Ok(Some(GrammarSource::JsonSchema(
            any_object_if_empty(s.clone()),
        ))),
        Some(_) => Err(type_error("format", "\"json\" or a JSON schema")),
    }
}

/// Compiles `src` for the model and puts it in the request's sampler.
pub fn apply(
    ready: &Ready,
    src: Option<GrammarSource>,
    params: &mut GenParams,
) -> Result<(), ApiError> {
    let Some(src) = src else { return Ok(()) };
    let vocab = ready.grammar_vocab()?;
    let grammar = vocab
        .compile(&src, &ready.model.tokenizer)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    params.sampler.grammar = Some(grammar);
    Ok(())
}

impl Ready {
    /// The vocabulary prepared for grammars, built on the first request that needs it.
    pub fn grammar_vocab(&self) -> Result<&GrammarVocab, ApiError> {
        self.grammar_vocab
            .get_or_init(|| GrammarVocab::new(&self.model.tokenizer).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ApiError::invalid(e.clone()))
    }
}
