//! llama-server's `POST /infill`: code completion between a prefix and a suffix (what its
//! editor plugins, llama.vim and llama.vscode, call), with files of the project as extra
//! context. The prompt is laid out as llama-server lays it out (its `format_prompt_infill`,
//! the repo-level pattern of Qwen2.5-Coder's paper):
//!
//! ```text
//! [FIM_REP]myproject\n [FIM_SEP]filename0\n extra chunk 0 … [FIM_SEP]filename\n
//! [FIM_PRE]prefix [FIM_SUF]suffix [FIM_MID]prompt
//! ```
//!
//! keeping at most 3/4 of a batch of the prefix (its end) and the rest of a quarter batch of
//! the suffix (its start), the extra chunks filling what the slot's context leaves (their end);
//! then it runs as `/completion` does.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::Response;
use serde_json::Value;

use crate::Ready;
use crate::error::ApiError;
use crate::http::{self, AppState};
use crate::params::Body;

pub(crate) async fn infill(
    State(app): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ready = app.ready()?;
    let body = http::read_body(body)?;
    let tokens = prompt(ready, &body, app.config.spm_infill)?;
    crate::llama::native(app, body, Some(tokens)).await
}

/// The infill prompt of a request, or why there is none.
fn prompt(ready: &Ready, body: &Body, spm: bool) -> Result<Vec<u32>, ApiError> {
    let tok = &ready.model.tokenizer;
    let fim = tok.fim();
    let mut missing = String::new();
    for (id, what) in [
        (fim.pre, "prefix"),
        (fim.suf, "suffix"),
        (fim.mid, "middle"),
    ] {
        if id.is_none() {
            missing.push_str(&format!("{what} token is missing. "));
        }
    }
    let Some((pre, suf, mid)) = fim.insert() else {
        return Err(ApiError::not_implemented(format!(
            "Infill is not supported by this model: {missing}"
        )));
    };
    let prompt = match body.get("prompt") {
        None => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ApiError::invalid("\"prompt\" must be a string")),
    };
    let input_prefix = body
        .get("input_prefix")
        .ok_or_else(|| ApiError::invalid("\"input_prefix\" is required"))?;
    let input_suffix = body
        .get("input_suffix")
        .ok_or_else(|| ApiError::invalid("\"input_suffix\" is required"))?;
    let extra = match body.get("input_extra") {
        None => &[][..],
        Some(Value::Array(a)) => a.as_slice(),
        Some(_) => {
            return Err(ApiError::invalid(
                "\"input_extra\" must be an array of {\"filename\": string, \"text\": string}",
            ));
        }
    };
    let mut chunks = Vec::with_capacity(extra.len());
    for chunk in extra {
        let Some(text) = chunk.get("text").and_then(Value::as_str) else {
            return Err(ApiError::invalid(
                "extra_context chunk must contain a \"text\" field with a string value",
            ));
        };
        let filename = match chunk.get("filename") {
            None => "tmp",
            Some(Value::String(f)) => f.as_str(),
            Some(_) => {
                return Err(ApiError::invalid(
                    "extra_context chunk's \"filename\" field must be a string",
                ));
            }
        };
        chunks.push((filename, text));
    }

    let mut extra_tokens = Vec::new();
    if let Some(rep) = fim.rep {
        extra_tokens.push(rep);
        extra_tokens.extend(tok.encode("myproject\n", false, false));
    }
    for (filename, text) in chunks {
        match fim.sep {
            Some(sep) => {
                extra_tokens.push(sep);
                extra_tokens.extend(tok.encode(&format!("{filename}\n"), false, false));
            }
            None => extra_tokens.extend(tok.encode("\n\n--- snippet ---\n\n", false, false)),
        }
        extra_tokens.extend(tok.encode(text, false, false));
    }
    if let Some(sep) = fim.sep {
        extra_tokens.push(sep);
        extra_tokens.extend(tok.encode("filename\n", false, false));
    }

    let prompt_tokens = tok.encode(prompt, false, true);
    let mut prefix = mixed(ready, input_prefix, "input_prefix")?;
    let mut suffix = mixed(ready, input_suffix, "input_suffix")?;
    let config = &ready.scheduler.config;
    let n_batch = config.n_batch as i64;
    let n_predict = ready.defaults.n_predict.map_or(-1, |n| n as i64);
    let n_ctx = config.n_ctx_slot as i64;
    let prefix_take = prefix.len().min((3 * (n_batch / 4)).max(0) as usize);
    let suffix_take = suffix
        .len()
        .min((n_batch / 4 - (2 + prompt_tokens.len() as i64)).max(0) as usize);
    let extra_take = extra_tokens
        .len()
        .min((n_ctx - n_batch - 2 * n_predict).max(0) as usize);
    prefix.drain(..prefix.len() - prefix_take);
    suffix.truncate(suffix_take);

    let mut head = vec![pre];
    head.extend(prefix);
    head.extend(prompt_tokens);
    let mut tail = vec![suf];
    tail.extend(suffix);
    if spm {
        std::mem::swap(&mut head, &mut tail);
    }
    let mut out = Vec::with_capacity(extra_take + head.len() + tail.len() + 2);
    out.extend_from_slice(&extra_tokens[extra_tokens.len() - extra_take..]);
    out.extend(tok.bos().filter(|_| tok.add_bos()));
    out.extend(head);
    out.extend(tail);
    out.push(mid);
    Ok(out)
}

/// Ollama's `/api/generate` with a `suffix`: the prompt and the suffix around the model's
/// fill-in-the-middle tokens, as Ollama's code-model templates lay them out
/// (`<PRE>{{ .Prompt }}<SUF>{{ .Suffix }}<MID>`, BOS first where the model adds one); a model
/// without those tokens "does not support insert", Ollama's 400.
pub(crate) fn ollama_insert(
    ready: &Ready,
    prompt: &str,
    suffix: &str,
) -> Result<Vec<u32>, ApiError> {
    let tok = &ready.model.tokenizer;
    let Some((pre, suf, mid)) = tok.fim().insert() else {
        return Err(ApiError::invalid(
            "does not support insert (the model has no fill-in-the-middle tokens)",
        ));
    };
    let mut out: Vec<u32> = tok.bos().filter(|_| tok.add_bos()).into_iter().collect();
    out.push(pre);
    out.extend(tok.encode(prompt, false, true));
    out.push(suf);
    out.extend(tok.encode(suffix, false, true));
    out.push(mid);
    Ok(out)
}

/// `input_prefix` / `input_suffix`: text, or a list of texts and token ids (llama-server's
/// `tokenize_mixed`), tokenized without special tokens.
fn mixed(ready: &Ready, v: &Value, field: &str) -> Result<Vec<u32>, ApiError> {
    let tok = &ready.model.tokenizer;
    let n_vocab = tok.n_vocab();
    let bad = || {
        ApiError::invalid(format!(
            "\"{field}\" must be a string or a list of strings and token ids"
        ))
    };
    match v {
        Value::String(s) => Ok(tok.encode(s, false, false)),
        Value::Array(a) => {
            let mut out = Vec::new();
            for x in a {
                match x {
                    Value::String(s) => out.extend(tok.encode(s, false, false)),
                    Value::Number(n) => {
                        let id = n
                            .as_u64()
                            .and_then(|i| u32::try_from(i).ok())
                            .filter(|&i| (i as usize) < n_vocab)
                            .ok_or_else(bad)?;
                        out.push(id);
                    }
                    _ => return Err(bad()),
                }
            }
            Ok(out)
        }
        _ => Err(bad()),
    }
}
