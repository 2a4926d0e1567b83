//! OpenAI's API: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`, with
//! the details llama-server adds (`timings`, `usage.prompt_tokens_details.cached_tokens`,
//! `system_fingerprint`) and its stream order: a first chunk with the role, content chunks, a
//! `finish_reason` chunk without content, the usage chunk, then `data: [DONE]`.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::{
    self, AppState, FINGERPRINT, Finished, JobOptions, Prompt, collect, probs_json, sse, submit,
    timings, unix_now, usage,
};
use crate::params::{Body, MAX_TOKENS_OPENAI, gen_params, probs_request, type_error};
use crate::scheduler::{Event, Finish, GenParams, Outcome, TokenProbs};
use crate::tools::{ChatRequest, ChatStream, Parsed, Syntax, openai_message};
use crate::{App, Ready};

/// Most choices one request may ask for.
const MAX_N: usize = 16;

pub(crate) async fn models(State(app): AppState) -> Response {
    let id = app.model_id();
    let meta = app.ready.get().map(|r| {
        let hp = &r.model.hparams;
        json!({
            "n_vocab": hp.n_vocab,
            "n_ctx_train": hp.n_ctx_train,
            "n_embd": hp.n_embd,
            "n_params": r.model.info.n_params,
            "size": r.model.info.n_bytes,
        })
    });
    axum::Json(json!({
        "object": "list",
        "data": [{
            "id": id,
            "object": "model",
            "created": app.created,
            "owned_by": "hearth",
            "aliases": app.config.aliases,
            "tags": app.config.tags,
            "meta": meta,
        }],
        "models": [{
            "name": id,
            "model": id,
            "type": "model",
            "capabilities": ["completion"],
        }],
    }))
    .into_response()
}

/// `finish_reason` of a finished choice.
pub(crate) fn finish_reason(f: &Finish) -> &'static str {
    match f {
        Finish::Length => "length",
        Finish::Eos | Finish::Word(_) => "stop",
    }
}

/// The fields of a request hearth cannot honour: a 400 that says so, never silence.
fn refuse_unsupported(body: &Body) -> Result<(), ApiError> {
    if let Some(tools) = body.get("tools")
        && tools.as_array().is_none_or(|a| !a.is_empty())
    {
        return Err(ApiError::unsupported(
            "`tools` (function calling) is not supported yet",
        ));
    }
    Ok(())
}

/// `n`, `stream`, `stream_options.include_usage`.
struct Shape {
    n: usize,
    stream: bool,
    include_usage: bool,
}

fn shape(body: &Body) -> Result<Shape, ApiError> {
    let n = match body.i64("n")? {
        None => 1,
        Some(n) if (1..=MAX_N as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "`n` must be between 1 and {MAX_N}, got {n}"
            )));
        }
    };
    let stream = body.bool("stream")?.unwrap_or(false);
    let include_usage = match body.get("stream_options") {
        None => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(type_error("stream_options.include_usage", "true or false")),
        },
        Some(_) => return Err(type_error("stream_options", "an object")),
    };
    Ok(Shape {
        n,
        stream,
        include_usage,
    })
}

pub(crate) async fn chat(
    State(app): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ready = app.ready()?;
    let body = http::read_body(body)?;
    let request = ChatRequest::openai(&body, app.config.reasoning_format)?;
    let shape = shape(&body)?;
    let mut params = gen_params(
        &body,
        MAX_TOKENS_OPENAI,
        &ready.defaults,
        &ready.model.tokenizer,
    )?;
    let asked = crate::constrain::requested(&body)?;
    probs_request(&body, true, &mut params)?;
    let probs = want_probs(&params);
    let prompt = http::chat_prompt_ending(
        ready,
        body.get("messages"),
        request.tools.clone(),
        http::Ending::from_body(&body)?,
        body.get("chat_template_kwargs"),
    )
    .await?;
    let syntax = request.syntax(ready.tool_format, ready.thinking_tags, &prompt.text);
    let prefill = prompt.prefill;
    params.special = syntax.needs_special_tokens();
    // The tool calls' grammar (forced, or lazy for `auto`), unless a `response_format` asks for
    // a schema: llama.cpp's chat parsers put the response format first (and llama-server
    // refuses `grammar` with tools).
    let constraint = asked.or_else(|| request.grammar(&syntax));
    crate::constrain::apply(ready, constraint, &mut params)?;
    let opts = JobOptions {
        n: shape.n,
        return_progress: shape.stream && body.bool("return_progress")?.unwrap_or(false),
        ..JobOptions::default()
    };
    let verbose = crate::llama::Verbose::new(&app, &body, &params, shape.stream, &prompt.tokens)?;
    let (rx, progress) = http::submit_progress(ready, prompt.tokens, params, opts)?;
    let model = app.model_id();
    let id = http::new_id("chatcmpl-");
    let created = unix_now();
    let progress = crate::llama::chat_progress(progress, &body, &model, &id, created)?;
    if !shape.stream {
        let done = collect(rx, shape.n).await?;
        let mut answer = chat_body(&done, probs, &syntax, &prefill, &model, &id, created);
        crate::llama::Verbose::add_to(verbose.as_ref(), &mut answer, &done);
        return Ok(axum::Json(answer).into_response());
    }
    let n = shape.n;
    let include_usage = shape.include_usage;
    let post_sampling = probs.unwrap_or(false);
    Ok(http::stream_progress(
        &app,
        "text/event-stream",
        progress,
        move |sink| async move {
            let chunk = |choices: Value| {
                json!({
                    "choices": choices,
                    "created": created,
                    "id": id,
                    "model": model,
                    "system_fingerprint": FINGERPRINT,
                    "object": "chat.completion.chunk",
                })
            };
            for index in 0..n {
                let first = chunk(json!([{
                    "finish_reason": null,
                    "index": index,
                    "delta": { "role": "assistant", "content": null },
                }]));
                if !sink.send(sse(&first)).await {
                    return;
                }
            }
            let mut rx = rx;
            let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
            let mut texts = vec![String::new(); n];
            // Each choice's reply, parsed as it comes (content, reasoning, tool calls).
            let mut replies: Vec<ChatStream> =
                (0..n).map(|_| ChatStream::new(syntax.clone())).collect();
            // The continued message's text goes first, as llama-server's parse has it.
            for (index, reply) in replies.iter_mut().enumerate() {
                for delta in reply.push(&prefill) {
                    let c =
                        chunk(json!([{ "finish_reason": null, "index": index, "delta": delta }]));
                    if !sink.send(sse(&c)).await {
                        return;
                    }
                }
            }
            while outcomes.iter().any(Option::is_none) {
                let Some(ev) = sink.next(&mut rx).await else {
                    return;
                };
                let out: Vec<Value> = match ev {
                    Event::Text {
                        index, text, probs, ..
                    } => {
                        if let Some(t) = texts.get_mut(index) {
                            t.push_str(&text);
                        }
                        let Some(reply) = replies.get_mut(index) else {
                            continue;
                        };
                        let mut deltas = reply.push(&text);
                        if deltas.is_empty() && probs.is_some() {
                            deltas.push(json!({ "content": "" }));
                        }
                        let mut logprobs = Some(chunk_logprobs(probs, post_sampling));
                        deltas
                            .into_iter()
                            .map(|delta| {
                                chunk(json!([{
                                    "finish_reason": null,
                                    "index": index,
                                    "delta": delta,
                                    "logprobs": logprobs.take().unwrap_or(Value::Null),
                                }]))
                            })
                            .collect()
                    }
                    Event::Done { index, outcome } => {
                        let Some(reply) = replies.get_mut(index) else {
                            continue;
                        };
                        let mut out: Vec<Value> = reply
                            .finish()
                            .into_iter()
                            .map(|delta| {
                                chunk(json!([{
                                    "finish_reason": null,
                                    "index": index,
                                    "delta": delta,
                                }]))
                            })
                            .collect();
                        out.push(chunk(json!([{
                            "finish_reason": chat_finish_reason(&outcome.finish, reply.parsed()),
                            "index": index,
                            "delta": {},
                        }])));
                        // llama-server: the final result's first chunk carries `__verbose`.
                        if let (Some(v), Some(first)) = (&verbose, out.first_mut()) {
                            let text = texts.get(index).map_or("", String::as_str);
                            first["__verbose"] = v.stream_final(text, &outcome);
                        }
                        if let Some(o) = outcomes.get_mut(index) {
                            *o = Some(outcome);
                        }
                        out
                    }
                    Event::Error { message } => {
                        let _ = sink.send(sse(&ApiError::server(message).body())).await;
                        return;
                    }
                };
                for c in out {
                    if !sink.send(sse(&c)).await {
                        return;
                    }
                }
            }
            let done: Vec<&Outcome> = outcomes.iter().flatten().collect();
            if include_usage {
                let mut last = chunk(json!([]));
                last["usage"] = usage(&done);
                if let Some(o) = done.first() {
                    last["timings"] = timings(o);
                }
                if !sink.send(sse(&last)).await {
                    return;
                }
            }
            let _ = sink.send("data: [DONE]\n\n").await;
        },
    ))
}

/// `Some(post_sampling_probs)` when the request asked for token probabilities.
fn want_probs(p: &GenParams) -> Option<bool> {
    p.n_probs.map(|_| p.post_sampling_probs)
}

/// A choice's `logprobs`: `{"content": [...]}` as llama-server writes it, or `null`.
fn logprobs(f: &Finished, probs: Option<bool>) -> Value {
    match probs {
        Some(post) => json!({ "content": probs_json(&f.probs, post) }),
        None => Value::Null,
    }
}

/// A streamed chunk's `logprobs`: its token's, or `null`.
fn chunk_logprobs(p: Option<TokenProbs>, post_sampling: bool) -> Value {
    match p {
        Some(p) => json!({ "content": probs_json(std::slice::from_ref(&p), post_sampling) }),
        None => Value::Null,
    }
}

/// A chat choice's `finish_reason`: `tool_calls` when the reply ended with calls.
fn chat_finish_reason(f: &Finish, reply: &Parsed) -> &'static str {
    match f {
        Finish::Eos | Finish::Word(_) if !reply.calls.is_empty() => "tool_calls",
        f => finish_reason(f),
    }
}

/// The chat answer; `prefill` is the continued final message's text, parsed in front of each
/// reply as llama-server does.
fn chat_body(
    done: &[Finished],
    probs: Option<bool>,
    syntax: &Syntax,
    prefill: &str,
    model: &str,
    id: &str,
    created: u64,
) -> Value {
    let choices: Vec<Value> = done
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut reply = ChatStream::new(syntax.clone());
            reply.push(prefill);
            reply.push(&f.text);
            reply.finish();
            json!({
                "finish_reason": chat_finish_reason(&f.outcome.finish, reply.parsed()),
                "index": i,
                "message": openai_message(reply.parsed(), reply.ids()),
                "logprobs": logprobs(f, probs),
            })
        })
        .collect();
    let outcomes: Vec<&Outcome> = done.iter().map(|f| &f.outcome).collect();
    json!({
        "choices": choices,
        "created": created,
        "model": model,
        "system_fingerprint": FINGERPRINT,
        "object": "chat.completion",
        "usage": usage(&outcomes),
        "id": id,
        "timings": outcomes.first().map(|o| timings(o)),
    })
}

/// A completion prompt: a string, a list of token ids, or a list holding one of those.
/// Most prompts in one request.
const MAX_PROMPTS: usize = 16;

/// The prompts of a completion request: one, or a list of strings or token lists.
fn completion_prompts(ready: &Ready, v: Option<&Value>) -> Result<Vec<Prompt>, ApiError> {
    match v {
        Some(Value::Array(a)) if a.len() > 1 && a.iter().all(|x| x.is_string() || x.is_array()) => {
            if a.len() > MAX_PROMPTS {
                return Err(ApiError::invalid(format!(
                    "at most {MAX_PROMPTS} prompts are accepted in one request"
                )));
            }
            a.iter()
                .map(|p| completion_prompt(ready, Some(p)))
                .collect()
        }
        _ => Ok(vec![completion_prompt(ready, v)?]),
    }
}

/// Several prompts answered together (not streamed): every job is queued first, so they run
/// side by side; choice `p·n + i` is choice `i` of prompt `p`.
async fn several_completions(
    app: &App,
    ready: &Ready,
    prompts: Vec<Prompt>,
    params: GenParams,
    shape: Shape,
    echo: bool,
) -> Result<Response, ApiError> {
    let probs = want_probs(&params);
    if shape.stream {
        return Err(ApiError::unsupported(
            "streaming several prompts in one request is not supported yet",
        ));
    }
    let opts = JobOptions {
        n: shape.n,
        ..JobOptions::default()
    };
    let mut jobs = Vec::with_capacity(prompts.len());
    for p in &prompts {
        jobs.push(submit(ready, p.tokens.clone(), params.clone(), opts)?);
    }
    let mut choices = Vec::new();
    let (mut n_prompt, mut n_completion) = (0, 0);
    for (p, rx) in prompts.iter().zip(jobs) {
        let done = collect(rx, shape.n).await?;
        n_prompt += done.first().map_or(0, |f| f.outcome.n_prompt);
        for f in &done {
            n_completion += f.outcome.n_generated;
            let prefix = if echo { p.text.as_str() } else { "" };
            choices.push(json!({
                "text": format!("{prefix}{}", f.text),
                "index": choices.len(),
                "logprobs": logprobs(f, probs),
                "finish_reason": finish_reason(&f.outcome.finish),
            }));
        }
    }
    Ok(axum::Json(json!({
        "choices": choices,
        "created": unix_now(),
        "model": app.model_id(),
        "system_fingerprint": FINGERPRINT,
        "object": "text_completion",
        "usage": {
            "completion_tokens": n_completion,
            "prompt_tokens": n_prompt,
            "total_tokens": n_prompt + n_completion,
        },
        "id": http::new_id("cmpl-"),
    }))
    .into_response())
}

pub(crate) fn completion_prompt(ready: &Ready, v: Option<&Value>) -> Result<Prompt, ApiError> {
    let tok = &ready.model.tokenizer;
    let bad = || type_error("prompt", "a string or a list of token ids");
    match v {
        None => Err(ApiError::invalid("`prompt` is required")),
        Some(Value::String(s)) => Ok(Prompt {
            text: s.clone(),
            tokens: tok.encode(s, true, true),
            prefill: String::new(),
        }),
        Some(Value::Array(a)) if a.len() == 1 && !a[0].is_number() => {
            completion_prompt(ready, Some(&a[0]))
        }
        Some(Value::Array(a)) if a.iter().all(Value::is_number) => {
            let tokens: Vec<u32> = a
                .iter()
                .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    ApiError::invalid("`prompt` token ids must be non-negative integers")
                })?;
            let n_vocab = tok.n_vocab();
            if let Some(&id) = tokens.iter().find(|&&t| t as usize >= n_vocab) {
                return Err(ApiError::invalid(format!(
                    "token id {id} is outside the vocabulary of {n_vocab} tokens"
                )));
            }
            let text = tok.decode(&tokens, true).unwrap_or_default();
            Ok(Prompt {
                text,
                tokens,
                prefill: String::new(),
            })
        }
        Some(_) => Err(bad()),
    }
}

pub(crate) async fn completions(
    State(app): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ready = app.ready()?;
    let body = http::read_body(body)?;
    refuse_unsupported(&body)?;
    if body.get("suffix").is_some() {
        return Err(ApiError::unsupported("`suffix` is not supported yet"));
    }
    let shape = shape(&body)?;
    let echo = body.bool("echo")?.unwrap_or(false);
    let mut params = gen_params(
        &body,
        MAX_TOKENS_OPENAI,
        &ready.defaults,
        &ready.model.tokenizer,
    )?;
    crate::constrain::apply(ready, crate::constrain::requested(&body)?, &mut params)?;
    probs_request(&body, false, &mut params)?;
    let prompts = completion_prompts(ready, body.get("prompt"))?;
    let opts = JobOptions {
        n: shape.n,
        ..JobOptions::default()
    };
    if prompts.len() > 1 {
        return several_completions(&app, ready, prompts, params, shape, echo).await;
    }
    let Some(prompt) = prompts.into_iter().next() else {
        return Err(ApiError::invalid("`prompt` is empty"));
    };
    let prefix = if echo {
        prompt.text.clone()
    } else {
        String::new()
    };
    let probs = want_probs(&params);
    let verbose = crate::llama::Verbose::new(&app, &body, &params, shape.stream, &prompt.tokens)?;
    let rx = submit(ready, prompt.tokens, params, opts)?;
    completions_answer(&app, rx, shape, prefix, probs, verbose).await
}

async fn completions_answer(
    app: &App,
    rx: tokio::sync::mpsc::UnboundedReceiver<Event>,
    shape: Shape,
    prefix: String,
    probs: Option<bool>,
    verbose: Option<crate::llama::Verbose>,
) -> Result<Response, ApiError> {
    let model = app.model_id();
    let id = http::new_id("cmpl-");
    let created = unix_now();
    if !shape.stream {
        let done = collect(rx, shape.n).await?;
        let choices: Vec<Value> = done
            .iter()
            .enumerate()
            .map(|(i, f)| {
                json!({
                    "text": format!("{prefix}{}", f.text),
                    "index": i,
                    "logprobs": logprobs(f, probs),
                    "finish_reason": finish_reason(&f.outcome.finish),
                })
            })
            .collect();
        let outcomes: Vec<&Outcome> = done.iter().map(|f| &f.outcome).collect();
        let mut answer = json!({
            "choices": choices,
            "created": created,
            "model": model,
            "system_fingerprint": FINGERPRINT,
            "object": "text_completion",
            "usage": usage(&outcomes),
            "id": id,
            "timings": outcomes.first().map(|o| timings(o)),
        });
        crate::llama::Verbose::add_to(verbose.as_ref(), &mut answer, &done);
        return Ok(axum::Json(answer).into_response());
    }
    let n = shape.n;
    let include_usage = shape.include_usage;
    let post_sampling = probs.unwrap_or(false);
    Ok(http::stream(
        app,
        "text/event-stream",
        move |sink| async move {
            let chunk = |choices: Value| {
                json!({
                    "choices": choices,
                    "created": created,
                    "id": id,
                    "model": model,
                    "system_fingerprint": FINGERPRINT,
                    "object": "text_completion",
                })
            };
            if !prefix.is_empty() {
                for index in 0..n {
                    let c = chunk(json!([{
                        "text": prefix, "index": index, "logprobs": null, "finish_reason": null,
                    }]));
                    if !sink.send(sse(&c)).await {
                        return;
                    }
                }
            }
            let mut rx = rx;
            let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
            let mut texts = vec![String::new(); n];
            let mut n_tokens = vec![0usize; n];
            while outcomes.iter().any(Option::is_none) {
                let Some(ev) = sink.next(&mut rx).await else {
                    return;
                };
                let out = match ev {
                    Event::Text {
                        index,
                        text,
                        probs,
                        token,
                    } => {
                        if let Some(t) = texts.get_mut(index) {
                            t.push_str(&text);
                        }
                        let n_so_far = n_tokens.get_mut(index).map_or(0, |c| {
                            *c += usize::from(token.is_some());
                            *c
                        });
                        let mut c = chunk(json!([{
                            "text": text,
                            "index": index,
                            "logprobs": chunk_logprobs(probs, post_sampling),
                            "finish_reason": null,
                        }]));
                        if let Some(v) = &verbose {
                            c["__verbose"] = v.stream_partial(index, &text, token, n_so_far);
                        }
                        c
                    }
                    Event::Done { index, outcome } => {
                        let mut c = chunk(json!([{
                            "text": "",
                            "index": index,
                            "logprobs": null,
                            "finish_reason": finish_reason(&outcome.finish),
                        }]));
                        if let Some(v) = &verbose {
                            let text = texts.get(index).map_or("", String::as_str);
                            c["__verbose"] = v.stream_final(text, &outcome);
                        }
                        if let Some(o) = outcomes.get_mut(index) {
                            *o = Some(outcome);
                        }
                        c
                    }
                    Event::Error { message } => {
                        let _ = sink.send(sse(&ApiError::server(message).body())).await;
                        return;
                    }
                };
                if !sink.send(sse(&out)).await {
                    return;
                }
            }
            if include_usage {
                let done: Vec<&Outcome> = outcomes.iter().flatten().collect();
                let mut last = chunk(json!([]));
                last["usage"] = usage(&done);
                if let Some(o) = done.first() {
                    last["timings"] = timings(o);
                }
                if !sink.send(sse(&last)).await {
                    return;
                }
            }
            let _ = sink.send("data: [DONE]\n\n").await;
        },
    ))
}
