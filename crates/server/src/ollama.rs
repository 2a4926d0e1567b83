//! Ollama's API, which editors and chat apps speak: `GET /` ("Ollama is running"),
//! `/api/version`, `/api/tags`, `/api/ps`, `POST /api/show`, `/api/chat` and `/api/generate`
//! (newline-delimited JSON streams by default, `options`, durations in nanoseconds,
//! `done_reason`). Registry verbs answer 501. Errors are Ollama's `{"error": "…"}`.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, OllamaError};
use crate::http::{self, AppState, JobOptions, Prompt, collect, submit};
use crate::params::{Body, gen_params, type_error};
use crate::scheduler::{Event, Finish, Outcome};
use crate::tools::{ChatRequest, ChatStream, Syntax, ollama_calls, ollama_message};
use crate::{App, Ready};

/// The Ollama version reported; clients check for a recent one.
const OLLAMA_VERSION: &str = "0.9.0";

pub(crate) async fn root() -> &'static str {
    "Ollama is running"
}

pub(crate) async fn version() -> Response {
    axum::Json(json!({ "version": OLLAMA_VERSION })).into_response()
}

pub(crate) async fn registry() -> OllamaError {
    OllamaError(ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "not_supported_error",
        "hearth serves the one model it was started with: pulling, pushing, creating, copying \
         and deleting models are not supported",
    ))
}

/// The model's name in Ollama's API: the alias, else the file name.
fn name(app: &App) -> String {
    app.config.aliases.iter().min().cloned().unwrap_or_else(|| {
        app.config
            .model
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| app.model_id())
    })
}

fn details(ready: &Ready) -> Value {
    let info = &ready.model.info;
    let family = info.arch.name();
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": family,
        "families": [family],
        "parameter_size": parameter_size(info.n_params),
        "quantization_level": info.file_type,
    })
}

/// `135.1M`, `7.2B`, as Ollama shows sizes.
fn parameter_size(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.1}B", n / 1e9)
    } else {
        format!("{:.1}M", n / 1e6)
    }
}

fn modified_at(app: &App) -> String {
    std::fs::metadata(&app.config.model)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(|| rfc3339(app.created), |d| rfc3339(d.as_secs()))
}

/// A digest-like identifier (Ollama clients show it; it is not a content hash here).
fn digest(app: &App, ready: &Ready) -> String {
    format!(
        "{:016x}{:016x}",
        ready.model.info.n_bytes,
        app.config.model.display().to_string().len() as u64
    )
}

pub(crate) async fn tags(State(app): AppState) -> Result<Response, OllamaError> {
    let ready = app.ready()?;
    Ok(axum::Json(json!({
        "models": [{
            "name": name(&app),
            "model": name(&app),
            "modified_at": modified_at(&app),
            "size": ready.model.info.n_bytes,
            "digest": digest(&app, ready),
            "details": details(ready),
        }],
    }))
    .into_response())
}

pub(crate) async fn ps(State(app): AppState) -> Result<Response, OllamaError> {
    let ready = app.ready()?;
    Ok(axum::Json(json!({
        "models": [{
            "name": name(&app),
            "model": name(&app),
            "size": ready.model.info.n_bytes,
            "digest": digest(&app, ready),
            "details": details(ready),
            "expires_at": "2318-01-01T00:00:00Z",
            "size_vram": 0,
            "context_length": ready.n_ctx_slot(),
        }],
    }))
    .into_response())
}

pub(crate) async fn show(
    State(app): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let ready = app.ready()?;
    let _ = http::read_body(body)?;
    let hp = &ready.model.hparams;
    let arch = ready.model.info.arch.name();
    let mut info = Map::new();
    info.insert("general.architecture".into(), arch.into());
    info.insert("general.name".into(), ready.model.info.name.clone().into());
    info.insert(
        "general.parameter_count".into(),
        ready.model.info.n_params.into(),
    );
    info.insert(format!("{arch}.context_length"), hp.n_ctx_train.into());
    info.insert(format!("{arch}.embedding_length"), hp.n_embd.into());
    info.insert(format!("{arch}.block_count"), hp.n_layer.into());
    info.insert(format!("{arch}.attention.head_count"), hp.n_head.into());
    info.insert(
        format!("{arch}.attention.head_count_kv"),
        hp.n_head_kv.into(),
    );
    Ok(axum::Json(json!({
        "modelfile": format!("FROM {}\n", app.config.model.display()),
        "parameters": "",
        "template": ready.template_source,
        "details": details(ready),
        "model_info": info,
        "capabilities": capabilities(ready),
        "modified_at": modified_at(&app),
    }))
    .into_response())
}

/// What the model can do, as Ollama lists it: `tools` when its template writes tool calls,
/// `insert` (fill in the middle) when its vocabulary has the FIM tokens, `thinking` when its
/// template has a thinking block.
fn capabilities(ready: &Ready) -> Vec<&'static str> {
    let mut caps = vec!["completion"];
    if ready.tool_format != crate::tools::Format::Content {
        caps.push("tools");
    }
    if ready.model.tokenizer.fim().insert().is_some() {
        caps.push("insert");
    }
    if ready.thinking_tags.is_some() {
        caps.push("thinking");
    }
    caps
}

/// Unix seconds as `2026-01-02T03:04:05Z`.
fn rfc3339(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    engine::chat_template::DateTime::from_unix_seconds(secs).strftime("%Y-%m-%dT%H:%M:%SZ")
}

fn now_rfc3339() -> String {
    rfc3339(http::unix_now())
}

fn done_reason(f: &Finish) -> &'static str {
    match f {
        Finish::Length => "length",
        Finish::Eos | Finish::Word(_) => "stop",
    }
}

/// What Ollama's final object adds: the reason and the counts and times in nanoseconds.
fn final_fields(v: &mut Value, o: &Outcome, t0: Instant) {
    let ns = |d: std::time::Duration| d.as_nanos() as u64;
    v["done"] = true.into();
    v["done_reason"] = done_reason(&o.finish).into();
    v["total_duration"] = ns(t0.elapsed()).into();
    v["load_duration"] = 0.into();
    // As Ollama's runner: every prompt token, cached ones included (`numPromptInputs`).
    v["prompt_eval_count"] = o.n_prompt.into();
    v["prompt_eval_duration"] = ns(o.prompt_time).into();
    v["eval_count"] = o.n_generated.into();
    v["eval_duration"] = ns(o.generation_time).into();
}

/// The fields of a chat or generate request Ollama clients send that hearth cannot honour
/// (`tools` only where `chat` does not take them).
fn refuse_unsupported(body: &Body, chat: bool) -> Result<(), ApiError> {
    if let Some(tools) = body.get("tools")
        && !chat
        && tools.as_array().is_none_or(|a| !a.is_empty())
    {
        return Err(ApiError::unsupported(
            "`tools` (function calling) is not supported yet",
        ));
    }
    if body
        .get("images")
        .is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty()))
    {
        return Err(ApiError::unsupported(
            "images are not supported: this model takes text only",
        ));
    }
    Ok(())
}

/// Sampling from `options`, Ollama's names (`num_predict`, …), and the `format` constraint.
fn options(body: &Body, ready: &Ready) -> Result<crate::scheduler::GenParams, ApiError> {
    let opts = match body.get("options") {
        None => Body(Map::new()),
        Some(Value::Object(m)) => Body(m.clone()),
        Some(_) => return Err(type_error("options", "an object")),
    };
    if let Some(n) = opts.i64("num_ctx")?
        && n < 0
    {
        return Err(ApiError::invalid("`num_ctx` must be positive"));
    }
    let mut opts = opts;
    // -2: fill the context, as Ollama's; the slot's context bounds it anyway.
    if opts.i64("num_predict")? == Some(-2) {
        opts.0.insert("num_predict".into(), (-1).into());
    }
    let mut params = gen_params(
        &opts,
        &["num_predict"],
        &ready.defaults,
        &ready.model.tokenizer,
    )?;
    crate::constrain::apply(ready, crate::constrain::ollama_format(body)?, &mut params)?;
    Ok(params)
}

/// Streams Ollama objects (`make(text)` for each piece, then the final one) or answers with
/// one object.
async fn answer(
    app: &App,
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    stream: bool,
    t0: Instant,
    make: fn(&str, &str) -> Value,
) -> Result<Response, OllamaError> {
    let model = name(app);
    if !stream {
        let done = collect(rx, 1).await?;
        let f = done.first().ok_or_else(|| ApiError::server("no result"))?;
        let mut v = make(&model, &f.text);
        final_fields(&mut v, &f.outcome, t0);
        return Ok(axum::Json(v).into_response());
    }
    Ok(http::stream(
        app,
        "application/x-ndjson",
        move |sink| async move {
            let mut rx = rx;
            loop {
                let Some(ev) = sink.next(&mut rx).await else {
                    return;
                };
                let line = match ev {
                    Event::Text { text, .. } => make(&model, &text),
                    Event::Done { outcome, .. } => {
                        let mut v = make(&model, "");
                        final_fields(&mut v, &outcome, t0);
                        let _ = sink.send(format!("{v}\n")).await;
                        return;
                    }
                    Event::Error { message } => {
                        let _ = sink
                            .send(format!("{}\n", json!({ "error": message })))
                            .await;
                        return;
                    }
                };
                if !sink.send(format!("{line}\n")).await {
                    return;
                }
            }
        },
    ))
}

fn chat_object(model: &str, text: &str) -> Value {
    json!({
        "model": model,
        "created_at": now_rfc3339(),
        "message": { "role": "assistant", "content": text },
        "done": false,
    })
}

fn generate_object(model: &str, text: &str) -> Value {
    json!({
        "model": model,
        "created_at": now_rfc3339(),
        "response": text,
        "done": false,
    })
}

pub(crate) async fn chat(
    State(app): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let t0 = Instant::now();
    let ready = app.ready()?;
    let body = http::read_body(body)?;
    refuse_unsupported(&body, true)?;
    let request = ChatRequest::ollama(&body)?;
    let stream = body.bool("stream")?.unwrap_or(true);
    let mut params = options(&body, ready)?;
    if body
        .get("messages")
        .is_some_and(|m| m.as_array().is_some_and(Vec::is_empty))
    {
        // Ollama answers an empty conversation by loading the model.
        let mut v = chat_object(&name(&app), "");
        v["done"] = true.into();
        v["done_reason"] = "load".into();
        return Ok(axum::Json(v).into_response());
    }
    let prompt = http::chat_prompt_with(
        ready,
        body.get("messages"),
        request.tools.clone(),
        true,
        think(&body)?.as_ref(),
    )
    .await?;
    let syntax = request.syntax(ready.tool_format, ready.thinking_tags, &prompt.text);
    params.special = syntax.needs_special_tokens();
    let rx = submit(ready, prompt.tokens, params, JobOptions::default())?;
    chat_answer(&app, rx, stream, t0, syntax).await
}

/// A chat reply parsed as Ollama returns it: `message.content`, `message.thinking` (with
/// `think`), `message.tool_calls` with arguments as objects — streamed, the calls come whole
/// in one line before the final one.
async fn chat_answer(
    app: &App,
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    stream: bool,
    t0: Instant,
    syntax: Syntax,
) -> Result<Response, OllamaError> {
    let model = name(app);
    let line = move |message: Value| {
        json!({
            "model": model,
            "created_at": now_rfc3339(),
            "message": message,
            "done": false,
        })
    };
    if !stream {
        let done = collect(rx, 1).await?;
        let f = done.first().ok_or_else(|| ApiError::server("no result"))?;
        let mut reply = ChatStream::new(syntax.clone());
        reply.push(&f.text);
        reply.finish();
        let mut v = line(ollama_message(reply.parsed()));
        final_fields(&mut v, &f.outcome, t0);
        return Ok(axum::Json(v).into_response());
    }
    Ok(http::stream(
        app,
        "application/x-ndjson",
        move |sink| async move {
            let mut rx = rx;
            let mut reply = ChatStream::new(syntax.clone());
            // Text deltas as Ollama's message pieces; calls wait until they are whole.
            let pieces = |deltas: Vec<Value>| -> Vec<Value> {
                deltas
                    .into_iter()
                    .filter_map(|d| {
                        if let Some(t) = d.get("content") {
                            Some(json!({ "role": "assistant", "content": t }))
                        } else {
                            d.get("reasoning_content").map(
                                |t| json!({ "role": "assistant", "content": "", "thinking": t }),
                            )
                        }
                    })
                    .collect()
            };
            loop {
                let Some(ev) = sink.next(&mut rx).await else {
                    return;
                };
                let messages = match ev {
                    Event::Text { text, .. } => pieces(reply.push(&text)),
                    Event::Done { outcome, .. } => {
                        let mut last = pieces(reply.finish());
                        let calls = ollama_calls(reply.parsed());
                        if !calls.is_empty() {
                            last.push(json!({
                                "role": "assistant", "content": "", "tool_calls": calls,
                            }));
                        }
                        for m in last {
                            if !sink.send(format!("{}\n", line(m))).await {
                                return;
                            }
                        }
                        let mut v = line(json!({ "role": "assistant", "content": "" }));
                        final_fields(&mut v, &outcome, t0);
                        let _ = sink.send(format!("{v}\n")).await;
                        return;
                    }
                    Event::Error { message } => {
                        let _ = sink
                            .send(format!("{}\n", json!({ "error": message })))
                            .await;
                        return;
                    }
                };
                for m in messages {
                    if !sink.send(format!("{}\n", line(m))).await {
                        return;
                    }
                }
            }
        },
    ))
}

/// Ollama's `think` (true or false) as the template's `enable_thinking`.
fn think(body: &Body) -> Result<Option<Value>, ApiError> {
    Ok(body
        .bool("think")?
        .map(|on| json!({ "enable_thinking": on })))
}

pub(crate) async fn generate(
    State(app): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OllamaError> {
    let t0 = Instant::now();
    let ready = app.ready()?;
    let body = http::read_body(body)?;
    refuse_unsupported(&body, false)?;
    if body.get("template").is_some_and(|s| s.as_str() != Some("")) {
        return Err(ApiError::unsupported(
            "`template` (a Go template) is not supported: hearth uses the model's Jinja template",
        )
        .into());
    }
    let stream = body.bool("stream")?.unwrap_or(true);
    let params = options(&body, ready)?;
    let text = body.str("prompt")?.unwrap_or("");
    if text.is_empty() {
        let mut v = generate_object(&name(&app), "");
        v["done"] = true.into();
        v["done_reason"] = "load".into();
        return Ok(axum::Json(v).into_response());
    }
    let raw = body.bool("raw")?.unwrap_or(false);
    // Fill in the middle; as in Ollama, a raw prompt is taken as it is.
    let suffix = body.str("suffix")?.unwrap_or("");
    let prompt = if !suffix.is_empty() && !raw {
        Prompt {
            text: text.to_owned(),
            tokens: crate::infill::ollama_insert(ready, text, suffix)?,
            prefill: String::new(),
        }
    } else if raw {
        Prompt {
            text: text.to_owned(),
            tokens: ready.model.tokenizer.encode(text, true, true),
            prefill: String::new(),
        }
    } else {
        let mut msgs = Vec::new();
        if let Some(sys) = body.str("system")? {
            msgs.push(json!({ "role": "system", "content": sys }));
        }
        msgs.push(json!({ "role": "user", "content": text }));
        http::chat_prompt(ready, Some(&Value::Array(msgs)), think(&body)?.as_ref()).await?
    };
    let rx = submit(ready, prompt.tokens, params, JobOptions::default())?;
    answer(&app, rx, stream, t0, generate_object).await
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_matches_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
    }
}
