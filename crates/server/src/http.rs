//! The router, the layers every route shares (API key, CORS, body limit, 404), graceful
//! shutdown, and the helpers handlers use: reading bodies, rendering prompts, submitting jobs,
//! collecting or streaming their events.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use axum::Router;
use axum::body::{Body as HttpBody, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use engine::chat::Message;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use crate::error::ApiError;
use crate::params::{Body, type_error};
use crate::scheduler::{Event, GenParams, Job, Outcome, Progress, SubmitError, TokenProbs};
use crate::{App, Ready, llama, ollama, openai};

pub(crate) type AppState = State<Arc<App>>;

/// Serves `listeners` until SIGINT/SIGTERM or `stop`; requests in flight finish first.
pub(crate) async fn serve(
    app: Arc<App>,
    listeners: Vec<tokio::net::TcpListener>,
    mut stop: watch::Receiver<bool>,
) {
    let timeout = app.config.timeout;
    let router = router(app);
    let (down_tx, down_rx) = watch::channel(false);
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm() => {}
            _ = stop.wait_for(|v| *v) => {}
        }
        let _ = down_tx.send(true);
    });
    let mut tasks = Vec::new();
    for l in listeners {
        tasks.push(tokio::spawn(serve_listener(
            l,
            router.clone(),
            down_rx.clone(),
            timeout,
        )));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Accepts HTTP/1 connections until `down`, then waits for those open to finish their
/// responses. Header names are sent in title case, as llama-server (and clients that compare
/// them case-sensitively) expect. A client that takes longer than `timeout` to send a request
/// head is disconnected (llama-server's `--timeout`).
async fn serve_listener(
    listener: tokio::net::TcpListener,
    router: Router,
    mut down: watch::Receiver<bool>,
    timeout: std::time::Duration,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let graceful = GracefulShutdown::new();
    let stop = async move {
        let _ = down.wait_for(|v| *v).await;
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of file descriptors and the like: wait rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(timeout)
                    .title_case_headers(true)
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(unix)]
async fn sigterm() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn sigterm() {
    std::future::pending::<()>().await
}

fn router(app: Arc<App>) -> Router {
    let limit = app.config.body_limit;
    Router::new()
        .route("/health", get(health))
        .route("/v1/health", get(health))
        .route("/models", get(openai::models))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat))
        .route("/chat/completions", post(openai::chat))
        .route(
            "/v1/chat/completions/input_tokens",
            post(llama::chat_input_tokens),
        )
        .route(
            "/chat/completions/input_tokens",
            post(llama::chat_input_tokens),
        )
        .route("/v1/completions", post(openai::completions))
        .route("/completions", post(llama::completion))
        .route("/completion", post(llama::completion))
        .route("/infill", post(crate::infill::infill))
        .route("/props", get(llama::props))
        .route("/slots", get(llama::slots))
        .route("/metrics", get(llama::metrics))
        .route("/tokenize", post(llama::tokenize))
        .route("/detokenize", post(llama::detokenize))
        .route("/apply-template", post(llama::apply_template))
        .route(
            "/tools",
            get(crate::agent_tools::list).post(crate::agent_tools::call),
        )
        .route(
            "/cors-proxy",
            get(crate::proxy::cors_proxy).post(crate::proxy::cors_proxy),
        )
        .route("/", get(ollama::root).head(ollama::root))
        .route("/api/version", get(ollama::version))
        .route("/api/tags", get(ollama::tags))
        .route("/api/ps", get(ollama::ps))
        .route("/api/show", post(ollama::show))
        .route("/api/chat", post(ollama::chat))
        .route("/api/generate", post(ollama::generate))
        .route("/api/pull", post(ollama::registry))
        .route("/api/push", post(ollama::registry))
        .route("/api/create", post(ollama::registry))
        .route("/api/copy", post(ollama::registry))
        .route("/api/delete", axum::routing::delete(ollama::registry))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .layer(DefaultBodyLimit::max(limit))
        // A body whose next piece takes longer than `--timeout` ends the request.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            app.config.timeout,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), cors))
        .with_state(app)
}

/// CORS as llama-server does it: an allowed `Origin` is reflected, with credentials; a
/// preflight (`OPTIONS`) is answered here on every path.
async fn cors(State(app): AppState, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .filter(|o| {
            o.to_str()
                .is_ok_and(|o| origin_allowed(&app.config.cors_origins, o))
        })
        .cloned();
    let mut resp = if req.method() == Method::OPTIONS {
        StatusCode::OK.into_response()
    } else {
        next.run(req).await
    };
    if let Some(o) = origin {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("*"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

/// Whether `origin` is allowed by `--cors-origins`: `*` allows any, `localhost` any port of
/// localhost, 127.0.0.1 and [::1]; others must match exactly.
fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|a| match a.as_str() {
        "*" => true,
        "localhost" => {
            let host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            if let Some(rest) = host.strip_prefix("[::1]") {
                return rest.is_empty() || is_port(rest);
            }
            let (name, port) = match host.split_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (host, None),
            };
            matches!(name, "localhost" | "127.0.0.1")
                && port.is_none_or(|p| is_port(&format!(":{p}")))
        }
        exact => exact == origin,
    })
}

fn is_port(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

async fn not_found() -> ApiError {
    ApiError::not_found("File Not Found")
}

/// Routes open without an API key, as llama-server keeps them.
const PUBLIC: &[&str] = &[
    "/health",
    "/v1/health",
    "/models",
    "/v1/models",
    "/api/tags",
];

async fn auth(State(app): AppState, req: Request, next: Next) -> Response {
    let keys = &app.config.api_keys;
    if keys.is_empty() || req.method() == Method::OPTIONS || PUBLIC.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| req.headers().get("x-api-key").and_then(|v| v.to_str().ok()));
    // Every key is compared, each in constant time, so timing says nothing about which.
    let ok = given.is_some_and(|g| {
        keys.iter().fold(false, |acc, k| {
            acc | constant_time_eq(g.as_bytes(), k.as_bytes())
        })
    });
    if ok {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "Invalid API Key",
        )
        .into_response()
    }
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

async fn health(State(app): AppState) -> Response {
    match app.ready() {
        Ok(_) => axum::Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The request's JSON object; a body over the limit is a 413 in OpenAI's shape.
pub(crate) fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Body, ApiError> {
    Body::parse(&read_body_bytes(body)?)
}

/// The request's bytes; a body over the limit is a 413 in OpenAI's shape.
pub(crate) fn read_body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    match body {
        Ok(b) => Ok(b),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "the request body is larger than the server accepts",
        )),
        Err(e) => Err(ApiError::invalid(e.body_text())),
    }
}

/// A prompt ready to submit: its text (for echo and `/apply-template`) and tokens.
pub(crate) struct Prompt {
    pub text: String,
    pub tokens: Vec<u32>,
    /// What the prompt adds after the generation prompt to continue a final message (its
    /// thinking block and content). llama-server parses the reply with it in front, so the
    /// answer's message holds the continued text too.
    pub prefill: String,
}

/// Renders OpenAI-style `messages` with the chat template and tokenizes the result. A final
/// assistant message is a prefill: the reply continues its text.
pub(crate) async fn chat_prompt(
    ready: &Ready,
    messages: Option<&Value>,
    kwargs: Option<&Value>,
) -> Result<Prompt, ApiError> {
    chat_prompt_with(ready, messages, None, true, kwargs).await
}

/// [`chat_prompt`] with tool definitions for the template (`/apply-template` only renders, so
/// it can pass them on) and without the generation prompt when `add_generation_prompt` is off.
/// `kwargs` is a request's `chat_template_kwargs`.
pub(crate) async fn chat_prompt_with(
    ready: &Ready,
    messages: Option<&Value>,
    tools: Option<Value>,
    add_generation_prompt: bool,
    kwargs: Option<&Value>,
) -> Result<Prompt, ApiError> {
    let ending = Ending {
        add_generation_prompt,
        continue_final_message: Continuation::None,
    };
    chat_prompt_ending(ready, messages, tools, ending, kwargs).await
}

/// How a rendered conversation ends: llama-server's `add_generation_prompt` (default on) and
/// `continue_final_message` (vLLM's and transformers' name for continuing the last message).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ending {
    pub add_generation_prompt: bool,
    pub continue_final_message: Continuation,
}

/// What of the final message is continued (llama.cpp's `common_chat_continuation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Continuation {
    None,
    /// Its content (after its reasoning, closed).
    Content,
    /// Its reasoning, left open.
    Reasoning,
    /// The reasoning when the message has reasoning and no content, else the content
    /// (`true`, or a final assistant message without the flag).
    Auto,
}

impl Ending {
    /// The two flags of a chat or `/apply-template` request, read as llama-server reads them:
    /// `continue_final_message` is `true`, `"content"` or `"reasoning_content"`, off for
    /// anything else.
    pub(crate) fn from_body(body: &Body) -> Result<Ending, ApiError> {
        let continue_final_message = match body.get("continue_final_message") {
            Some(Value::Bool(true)) => Continuation::Auto,
            Some(Value::String(s)) if s == "content" => Continuation::Content,
            Some(Value::String(s)) if s == "reasoning_content" => Continuation::Reasoning,
            _ => Continuation::None,
        };
        Ok(Ending {
            add_generation_prompt: body.bool("add_generation_prompt")?.unwrap_or(true),
            continue_final_message,
        })
    }

    /// llama-server's rules: a final assistant message is continued (its prefill), and then no
    /// generation prompt follows; asking for both is an error.
    fn resolve(mut self, msgs: &[Message]) -> Result<Ending, ApiError> {
        let n = msgs.len();
        let none = self.continue_final_message == Continuation::None;
        if none && msgs.last().is_some_and(|m| m.role == "assistant") {
            if n >= 2 && msgs[n - 2].role == "assistant" {
                return Err(ApiError::invalid(
                    "Cannot have 2 or more assistant messages at the end of the list.",
                ));
            }
            self.continue_final_message = Continuation::Auto;
            self.add_generation_prompt = false;
        }
        if self.continue_final_message != Continuation::None && self.add_generation_prompt {
            return Err(ApiError::invalid(
                "Cannot set both add_generation_prompt and continue_final_message to true.",
            ));
        }
        Ok(self)
    }
}

/// [`chat_prompt_with`] with both of llama-server's template flags.
pub(crate) async fn chat_prompt_ending(
    ready: &Ready,
    messages: Option<&Value>,
    tools: Option<Value>,
    ending: Ending,
    kwargs: Option<&Value>,
) -> Result<Prompt, ApiError> {
    let Some(Value::Array(list)) = messages else {
        return Err(type_error("messages", "a list of messages"));
    };
    if list.is_empty() {
        return Err(ApiError::invalid("`messages` must not be empty"));
    }
    let mut msgs = Vec::with_capacity(list.len());
    for m in list {
        msgs.push(to_message(m)?);
    }
    let ending = ending.resolve(&msgs)?;
    // A continued message's text, its text parts joined by blank lines as llama-server does,
    // and its reasoning.
    let tail = match (ending.continue_final_message, list.last(), msgs.last()) {
        (Continuation::None, ..) | (_, None, _) | (_, _, None) => None,
        (mode, Some(last), Some(m)) => {
            let content = continued_text(last);
            let reasoning = m.reasoning_content.clone().unwrap_or_default();
            let mode = match mode {
                Continuation::Auto if !reasoning.is_empty() && content.is_empty() => {
                    Continuation::Reasoning
                }
                Continuation::Auto => Continuation::Content,
                m => m,
            };
            Some(Tail {
                content,
                reasoning,
                reasoning_only: mode == Continuation::Reasoning,
            })
        }
    };
    let context = template_context(ready, kwargs)?;
    let chat = ready.chat.clone();
    let thinking = ready.thinking_tags;
    tokio::task::spawn_blocking(move || {
        render_chat(
            &chat,
            &msgs,
            tools.as_ref(),
            ending.add_generation_prompt,
            tail.as_ref(),
            &context,
            thinking,
        )
    })
    .await
    .map_err(|e| ApiError::server(e.to_string()))?
}

/// The text a continued message adds: its content, or its text parts joined by blank lines.
fn continued_text(m: &Value) -> String {
    match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n"),
        _ => String::new(),
    }
}

/// The variables a template sees besides the conversation, as llama-server gives them:
/// `datetime` and `date_string` (today, the formats Llama 3.x and FireFunction print),
/// `enable_thinking` (true unless `--reasoning off`), the server's `--chat-template-kwargs`,
/// then the request's own `chat_template_kwargs`.
fn template_context(
    ready: &Ready,
    kwargs: Option<&Value>,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let now = engine::chat_template::DateTime::now_utc();
    let mut ctx = serde_json::Map::new();
    ctx.insert("datetime".into(), now.strftime("%b %d %Y").into());
    ctx.insert("date_string".into(), now.strftime("%d %b %Y").into());
    ctx.insert("enable_thinking".into(), true.into());
    ctx.extend(ready.template_kwargs.clone());
    match kwargs {
        None => {}
        Some(Value::Object(m)) => ctx.extend(m.clone()),
        Some(_) => return Err(type_error("chat_template_kwargs", "an object")),
    }
    if ctx.get("enable_thinking").is_some_and(|v| !v.is_boolean()) {
        return Err(ApiError::invalid(
            "invalid type for \"enable_thinking\" (expected boolean)",
        ));
    }
    Ok(ctx)
}

/// Thinking-block markers, by the first a template's source mentions.
const THINKING_TAGS: &[(&str, &str)] = &[
    ("<think>", "</think>"),
    ("<|START_THINKING|>", "<|END_THINKING|>"),
    ("<seed:think>", "</seed:think>"),
    ("[THINK]", "[/THINK]"),
];

/// The thinking-block markers a template uses, if any.
pub(crate) fn thinking_tags(source: &str) -> Option<(&'static str, &'static str)> {
    THINKING_TAGS
        .iter()
        .copied()
        .filter_map(|t| source.find(t.0).map(|at| (at, t)))
        .min_by_key(|&(at, _)| at)
        .map(|(_, t)| t)
}

/// With thinking off, the generation prompt ends in a closed, empty thinking block, as
/// llama-server's template analysis makes it: a block the template opened is closed; a
/// template that knows thinking blocks but opened none gets an empty one (templates that
/// honour `enable_thinking` themselves already end with the closing marker).
fn close_thinking(text: &mut String, (open, close): (&str, &str)) {
    let end = text.trim_end();
    if end.ends_with(close) {
        return;
    }
    if end.ends_with(open) {
        text.push_str(close);
    } else {
        text.push_str(open);
        text.push_str(close);
    }
}

/// What a continued final message adds to the prompt.
#[derive(Clone, Debug)]
pub(crate) struct Tail {
    pub content: String,
    pub reasoning: String,
    /// Only the reasoning is continued (the content is dropped, as llama-server does).
    pub reasoning_only: bool,
}

/// Renders `msgs`. With `continued` the last message is continued, as llama-server renders a
/// prefill: the ones before it are rendered with the generation prompt; for a template that
/// shows reasoning, the thinking block follows with the message's reasoning (closed unless
/// only the reasoning is continued), then its content.
pub(crate) fn render_chat(
    chat: &engine::chat::Chat,
    msgs: &[Message],
    tools: Option<&Value>,
    add_generation_prompt: bool,
    continued: Option<&Tail>,
    context: &serde_json::Map<String, Value>,
    thinking: Option<(&'static str, &'static str)>,
) -> Result<Prompt, ApiError> {
    let tok = &chat.model().tokenizer;
    let bad = |e: engine::chat_template::TemplateError| ApiError::invalid(e.to_string());
    let Some(tail) = continued else {
        let r = chat
            .render_with_context(msgs, tools, add_generation_prompt, Some(context))
            .map_err(bad)?;
        let thinking_off = context.get("enable_thinking") == Some(&Value::Bool(false));
        return Ok(match thinking {
            Some(tags) if thinking_off && add_generation_prompt => {
                let mut text = r.text;
                close_thinking(&mut text, tags);
                let tokens = engine::chat::tokenize_prompt(tok, &text, msgs, chat.bos());
                Prompt {
                    text,
                    tokens,
                    prefill: String::new(),
                }
            }
            _ => Prompt {
                text: r.text,
                tokens: r.tokens,
                prefill: String::new(),
            },
        });
    };
    let head = &msgs[..msgs.len().saturating_sub(1)];
    let r = chat
        .render_with_context(head, tools, true, Some(context))
        .map_err(bad)?;
    let mut text = r.text;
    let markers = match thinking {
        Some(tags) => reasoning_markers(chat, head, tools, context, tags),
        None => None,
    };
    let mut from = text.len();
    // llama.cpp's autoparser continuation: the generation prompt up to the thinking block's
    // opening, the opening, the reasoning, and for the content the closing.
    if let Some((open, close)) = markers {
        if let Some(at) = text
            .rfind(&open)
            .filter(|&at| at + open.len() == text.len())
        {
            text.truncate(at);
            from = at;
        }
        text.push_str(&open);
        text.push_str(&tail.reasoning);
        if !tail.reasoning_only {
            text.push_str(&close);
        }
    }
    if !tail.reasoning_only {
        text.push_str(&tail.content);
    }
    let tokens = engine::chat::tokenize_prompt(tok, &text, msgs, chat.bos());
    Ok(Prompt {
        prefill: text[from..].to_owned(),
        text,
        tokens,
    })
}

/// The template's thinking block around an assistant message's reasoning, whitespace
/// included (`"<think>\n"`, `"\n</think>\n\n"` for Qwen 3), found as llama.cpp's autoparser
/// finds them: by rendering a probe turn after `head` and reading what surrounds its
/// reasoning. `None` when the template does not show reasoning there.
fn reasoning_markers(
    chat: &engine::chat::Chat,
    head: &[Message],
    tools: Option<&Value>,
    context: &serde_json::Map<String, Value>,
    (open, close): (&str, &str),
) -> Option<(String, String)> {
    const REASONING: &str = "HEARTH_PROBE_REASONING";
    const CONTENT: &str = "HEARTH_PROBE_CONTENT";
    let mut msgs = head.to_vec();
    msgs.push(Message {
        role: "assistant".into(),
        content: Some(CONTENT.into()),
        reasoning_content: Some(REASONING.into()),
        ..Message::default()
    });
    let probe = chat
        .render_with_context(&msgs, tools, false, Some(context))
        .ok()?
        .text;
    let r = probe.rfind(REASONING)?;
    let c = probe[r..].find(CONTENT)? + r;
    let start = probe[..r].rfind(open)?;
    let between = &probe[r + REASONING.len()..c];
    between
        .contains(close)
        .then(|| (probe[start..r].to_owned(), between.to_owned()))
}

/// One OpenAI/Ollama message object as the template's [`Message`]; content parts are joined
/// when they are all text.
pub(crate) fn to_message(m: &Value) -> Result<Message, ApiError> {
    let Some(obj) = m.as_object() else {
        return Err(ApiError::invalid("each message must be a JSON object"));
    };
    let mut obj = obj.clone();
    if let Some(Value::Array(parts)) = obj.get("content") {
        let mut text = String::new();
        for p in parts {
            match (p.get("type").and_then(Value::as_str), p.get("text")) {
                (Some("text"), Some(Value::String(t))) => {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(t);
                }
                (Some(kind), _) => {
                    return Err(ApiError::unsupported(format!(
                        "message content of type `{kind}` is not supported: this model takes \
                         text only"
                    )));
                }
                _ => return Err(ApiError::invalid("a content part needs `type` and `text`")),
            }
        }
        obj.insert("content".into(), Value::String(text));
    }
    if obj
        .get("images")
        .is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
    {
        return Err(ApiError::unsupported(
            "images are not supported: this model takes text only",
        ));
    }
    obj.remove("images");
    Message::from_json(&Value::Object(obj)).map_err(|e| ApiError::invalid(e.to_string()))
}

/// Rejects prompts that are empty or do not fit a slot's context.
pub(crate) fn check_prompt(ready: &Ready, tokens: &[u32]) -> Result<(), ApiError> {
    if tokens.is_empty() {
        return Err(ApiError::invalid("the prompt is empty"));
    }
    let n_vocab = ready.model.tokenizer.n_vocab();
    if let Some(&id) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
        return Err(ApiError::invalid(format!(
            "token id {id} is outside the vocabulary of {n_vocab} tokens"
        )));
    }
    let n_ctx = ready.n_ctx_slot();
    if tokens.len() >= n_ctx {
        return Err(ApiError::context_size(tokens.len(), n_ctx));
    }
    Ok(())
}

/// What a job asks for besides its prompt and sampling.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JobOptions {
    pub n: usize,
    pub id_slot: Option<usize>,
    pub cache_prompt: bool,
    /// Report prompt progress (llama-server's `return_progress`; streams only).
    pub return_progress: bool,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            n: 1,
            id_slot: None,
            cache_prompt: true,
            return_progress: false,
        }
    }
}

/// A queued job's events, and its prompt progress if asked for.
pub(crate) type Submitted = (
    mpsc::UnboundedReceiver<Event>,
    Option<mpsc::UnboundedReceiver<Progress>>,
);

/// Queues a job; 503 when the queue is full.
pub(crate) fn submit(
    ready: &Ready,
    prompt: Vec<u32>,
    params: GenParams,
    opts: JobOptions,
) -> Result<mpsc::UnboundedReceiver<Event>, ApiError> {
    submit_progress(ready, prompt, params, opts).map(|(rx, _)| rx)
}

/// [`submit`], with the job's prompt progress when `opts.return_progress` asks for it.
pub(crate) fn submit_progress(
    ready: &Ready,
    prompt: Vec<u32>,
    params: GenParams,
    opts: JobOptions,
) -> Result<Submitted, ApiError> {
    check_prompt(ready, &prompt)?;
    if let Some(id) = opts.id_slot
        && id >= ready.scheduler.config.n_parallel
    {
        return Err(ApiError::invalid(format!("there is no slot {id}")));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let (progress, progress_rx) = if opts.return_progress {
        let (tx, rx) = mpsc::unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let job = Job {
        prompt,
        params,
        n: opts.n,
        id_slot: opts.id_slot,
        cache_prompt: opts.cache_prompt,
        events: tx,
        progress,
    };
    match ready.scheduler.submit(job) {
        Ok(()) => Ok((rx, progress_rx)),
        Err(SubmitError::QueueFull) => Err(ApiError::unavailable(
            "the server is busy: too many requests are waiting, try again later",
        )),
        Err(SubmitError::Stopped) => Err(ApiError::unavailable("the server is shutting down")),
    }
}

/// A finished choice.
pub(crate) struct Finished {
    pub text: String,
    /// Per generated token, when the request asked for probabilities.
    pub probs: Vec<TokenProbs>,
    pub outcome: Outcome,
}

/// Waits for every choice of a job.
pub(crate) async fn collect(
    mut rx: mpsc::UnboundedReceiver<Event>,
    n: usize,
) -> Result<Vec<Finished>, ApiError> {
    let mut texts = vec![String::new(); n];
    let mut probs: Vec<Vec<TokenProbs>> = vec![Vec::new(); n];
    let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
    while outcomes.iter().any(Option::is_none) {
        match rx.recv().await {
            Some(Event::Text {
                index,
                text,
                probs: p,
                ..
            }) => {
                if let Some(t) = texts.get_mut(index) {
                    t.push_str(&text);
                }
                if let (Some(p), Some(all)) = (p, probs.get_mut(index)) {
                    all.push(p);
                }
            }
            Some(Event::Done { index, outcome }) => {
                if let Some(o) = outcomes.get_mut(index) {
                    *o = Some(outcome);
                }
            }
            Some(Event::Error { message }) => return Err(ApiError::server(message)),
            None => return Err(ApiError::server("generation stopped unexpectedly")),
        }
    }
    Ok(texts
        .into_iter()
        .zip(probs)
        .zip(outcomes)
        .filter_map(|((text, probs), o)| {
            o.map(|outcome| Finished {
                text,
                probs,
                outcome,
            })
        })
        .collect())
}

/// The longest prefix of `b` that is whole UTF-8 (llama-server's `validate_utf8`).
fn utf8_prefix(b: &[u8]) -> &str {
    match std::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// llama-server's log of a probability: the lowest finite float for 0 (JSON has no -inf).
fn logarithm(p: f32) -> f32 {
    if p == 0.0 { f32::MIN } else { p.ln() }
}

/// Token probabilities as llama-server writes them (`completion_probabilities`, and OpenAI's
/// `logprobs.content`): id, token text, its bytes, `logprob` and `top_logprobs` — or, with
/// `post_sampling_probs`, `prob` and `top_probs`.
pub(crate) fn probs_json(probs: &[TokenProbs], post_sampling: bool) -> Value {
    let (pk, tk) = if post_sampling {
        ("prob", "top_probs")
    } else {
        ("logprob", "top_logprobs")
    };
    let value = |p: f32| if post_sampling { p } else { logarithm(p) };
    Value::Array(
        probs
            .iter()
            .map(|t| {
                let top: Vec<Value> = t
                    .top
                    .iter()
                    .map(|(id, piece, p)| {
                        serde_json::json!({
                            "id": id,
                            "token": utf8_prefix(piece),
                            "bytes": piece,
                            pk: value(*p),
                        })
                    })
                    .collect();
                serde_json::json!({
                    "id": t.id,
                    "token": utf8_prefix(t.text.as_bytes()),
                    "bytes": t.text.as_bytes(),
                    pk: value(t.p),
                    tk: top,
                })
            })
            .collect(),
    )
}

/// The sending end of a streamed response body, and how long a client may leave it full.
pub(crate) struct Sink(
    mpsc::Sender<Bytes>,
    std::time::Duration,
    tokio::sync::Mutex<Option<ProgressFeed>>,
);

/// A job's prompt progress and how a stream writes it (llama-server's `return_progress`).
pub(crate) struct ProgressFeed {
    pub rx: mpsc::UnboundedReceiver<Progress>,
    pub chunk: Box<dyn Fn(&Progress) -> Value + Send>,
}

/// llama-server's `prompt_progress` object.
pub(crate) fn progress_json(p: &Progress) -> Value {
    serde_json::json!({
        "total": p.total,
        "cache": p.cache,
        "processed": p.processed,
        "time_ms": p.time_ms,
    })
}

/// llama-server's `timings` while the prompt is evaluated (`timings_per_token`).
pub(crate) fn progress_timings(p: &Progress) -> Value {
    let prompt_n = p.processed - p.cache;
    let per = if prompt_n > 0 {
        p.prompt_ms / prompt_n as f64
    } else {
        0.0
    };
    let rate = if p.prompt_ms > 0.0 {
        prompt_n as f64 * 1e3 / p.prompt_ms
    } else {
        0.0
    };
    serde_json::json!({
        "cache_n": p.cache,
        "prompt_n": prompt_n,
        "prompt_ms": p.prompt_ms,
        "prompt_per_token_ms": per,
        "prompt_per_second": rate,
        "predicted_n": 0,
        "predicted_ms": 0.0,
        "predicted_per_token_ms": 0.0,
        "predicted_per_second": 0.0,
    })
}

impl Sink {
    /// Sends a piece of the body; false once the client is gone, or has not taken what was
    /// sent for longer than `--timeout` (the producer then stops, which cancels the job).
    pub async fn send(&self, b: impl Into<Bytes>) -> bool {
        matches!(
            tokio::time::timeout(self.1, self.0.send(b.into())).await,
            Ok(Ok(()))
        )
    }

    /// Resolves when the client is gone.
    pub async fn closed(&self) {
        self.0.closed().await
    }

    /// The job's next event; `None` when the job ended or the client went away. Prompt
    /// progress, when the stream has a feed, is written on the way, before the event.
    pub async fn next(&self, rx: &mut mpsc::UnboundedReceiver<Event>) -> Option<Event> {
        loop {
            let mut feed = self.2.lock().await;
            let Some(f) = feed.as_mut() else {
                return tokio::select! {
                    e = rx.recv() => e,
                    _ = self.0.closed() => None,
                };
            };
            let chunk = tokio::select! {
                biased;
                p = f.rx.recv() => p.map(|p| (f.chunk)(&p)),
                e = rx.recv() => return e,
                _ = self.0.closed() => return None,
            };
            match chunk {
                Some(v) => {
                    drop(feed);
                    if !self.send(sse(&v)).await {
                        return None;
                    }
                }
                None => *feed = None,
            }
        }
    }
}

/// A streamed response whose body `produce` writes.
pub(crate) fn stream<F, Fut>(app: &App, content_type: &'static str, produce: F) -> Response
where
    F: FnOnce(Sink) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    stream_progress(app, content_type, None, produce)
}

/// [`stream`] that also writes the job's prompt progress as it comes.
pub(crate) fn stream_progress<F, Fut>(
    app: &App,
    content_type: &'static str,
    progress: Option<ProgressFeed>,
    produce: F,
) -> Response
where
    F: FnOnce(Sink) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(32);
    let sink = Sink(tx, app.config.timeout, tokio::sync::Mutex::new(progress));
    tokio::spawn(produce(sink));
    let mut resp = HttpBody::from_stream(ChanStream(rx)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

struct ChanStream(mpsc::Receiver<Bytes>);

impl futures_core::Stream for ChanStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(Ok))
    }
}

/// `data: {json}\n\n`, one server-sent event.
pub(crate) fn sse(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// Unix time in seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random-looking id with a prefix (`chatcmpl-…`).
pub(crate) fn new_id(prefix: &str) -> String {
    let mut x = crate::params::random_u64() | 1;
    let mut s = String::from(prefix);
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    for _ in 0..32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(ALPHABET[(x % ALPHABET.len() as u64) as usize] as char);
    }
    s
}

/// llama-server's `timings` object.
pub(crate) fn timings(o: &Outcome) -> Value {
    let prompt_n = o.n_prompt - o.n_cached;
    let prompt_ms = o.prompt_time.as_secs_f64() * 1e3;
    let predicted_ms = o.generation_time.as_secs_f64() * 1e3;
    let steps = o.n_generated.saturating_sub(1);
    let per = |n: usize, ms: f64| if n > 0 { ms / n as f64 } else { 0.0 };
    let rate = |n: usize, ms: f64| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
    serde_json::json!({
        "cache_n": o.n_cached,
        "prompt_n": prompt_n,
        "prompt_ms": prompt_ms,
        "prompt_per_token_ms": per(prompt_n, prompt_ms),
        "prompt_per_second": rate(prompt_n, prompt_ms),
        "predicted_n": o.n_generated,
        "predicted_ms": predicted_ms,
        // Rates over decode steps, as llama-server's: the first token comes from the prompt's
        // last batch and costs no step.
        "predicted_per_token_ms": per(steps, predicted_ms),
        "predicted_per_second": rate(steps, predicted_ms),
    })
}

/// OpenAI's `usage` with llama-server's `prompt_tokens_details`.
pub(crate) fn usage(done: &[&Outcome]) -> Value {
    let prompt = done.first().map_or(0, |o| o.n_prompt);
    let cached = done.first().map_or(0, |o| o.n_cached);
    let completion: usize = done.iter().map(|o| o.n_generated).sum();
    serde_json::json!({
        "completion_tokens": completion,
        "prompt_tokens": prompt,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": { "cached_tokens": cached },
    })
}

/// `system_fingerprint`: llama-server's shape (`b<build>-<commit>`), clients check the `b`.
pub(crate) const FINGERPRINT: &str = concat!("b0-hearth-", env!("CARGO_PKG_VERSION"));
