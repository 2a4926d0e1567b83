//! llama-server's own endpoints: `POST /completion` (its native request and answer: `n_predict`,
//! `cache_prompt`, `id_slot`, `timings`), `GET /props`, `GET /slots`, `GET /metrics`
//! (Prometheus text with the `llamacpp:` names), `POST /tokenize`, `/detokenize`,
//! `/apply-template`.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use engine::grammar::GrammarSource;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::http::{self, AppState, JobOptions, collect, probs_json, sse, submit, timings};
use crate::params::{gen_params, probs_request, type_error};
use crate::scheduler::{Event, Finish, GenParams, Outcome, SlotView};
use crate::{App, Ready};

/// Token-limit fields of the native API.
const MAX_TOKENS_NATIVE: &[&str] = &["n_predict", "max_tokens"];

fn stop_type(f: &Finish) -> (&'static str, String) {
    match f {
        Finish::Eos => ("eos", String::new()),
        Finish::Length => ("limit", String::new()),
        Finish::Word(w) => ("word", w.clone()),
    }
}

/// llama-server's `generation_settings` / slot `params`.
fn settings(p: &GenParams, stream: bool) -> Value {
    let s = &p.sampler;
    json!({
        "n_predict": p.max_tokens.map_or(-1, |n| n as i64),
        "seed": s.seed,
        "temperature": s.temperature,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "min_p": s.min_p,
        "typical_p": s.typical_p,
        "repeat_last_n": s.repeat_last_n,
        "repeat_penalty": s.repeat_penalty,
        "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty,
        "stop": p.stop,
        "max_tokens": p.max_tokens.map_or(-1, |n| n as i64),
        "n_keep": 0,
        "ignore_eos": p.ignore_eos,
        "stream": stream,
        "n_probs": p.n_probs.unwrap_or(0),
        "post_sampling_probs": p.post_sampling_probs,
        // llama-server shows the GBNF it runs; a JSON schema shows as itself here.
        "grammar": s.grammar.as_ref().map_or(String::new(), |g| match g.source() {
            GrammarSource::Gbnf(t) | GrammarSource::Lark(t) => t.clone(),
            GrammarSource::JsonSchema(v) => v.to_string(),
        }),
        "min_keep": 0,
        "samplers": ["penalties", "top_k", "typ_p", "top_p", "min_p", "temperature"],
        "logit_bias": s
            .logit_bias
            .iter()
            .map(|&(token, bias)| {
                // JSON has no infinity: a banned token is `null`, as llama-server writes it.
                let bias = if bias.is_finite() { json!(bias) } else { Value::Null };
                json!({ "token": token, "bias": bias })
            })
            .collect::<Vec<_>>(),
    })
}

/// Most prompts in one request.
const MAX_PROMPTS: usize = 16;

/// The native prompts, as llama-server's `tokenize_input_prompts` reads them: a list that holds
/// no integer is several prompts (strings, token lists, mixes, or objects); anything else is one.
fn native_prompts(ready: &Ready, v: Option<&Value>) -> Result<Vec<Vec<u32>>, ApiError> {
    let v = v.ok_or_else(|| ApiError::invalid("`prompt` is required"))?;
    match v {
        Value::Array(a) if !a.iter().any(|x| x.is_i64() || x.is_u64()) => {
            if a.is_empty() {
                return Err(ApiError::invalid("\"prompt\" must not be empty"));
            }
            if a.len() > MAX_PROMPTS {
                return Err(ApiError::invalid(format!(
                    "at most {MAX_PROMPTS} prompts are accepted in one request"
                )));
            }
            a.iter().map(|p| native_subprompt(ready, p)).collect()
        }
        _ => Ok(vec![native_subprompt(ready, v)?]),
    }
}

/// One native prompt: a string, token ids, a mix of both in one list (only a leading string gets
/// the BOS), or `{"prompt_string": …, "multimodal_data": […]}`.
fn native_subprompt(ready: &Ready, v: &Value) -> Result<Vec<u32>, ApiError> {
    let tok = &ready.model.tokenizer;
    let bad = || {
        ApiError::invalid(
            "\"prompt\" elements must be a string, a list of tokens, a JSON object containing \
             a prompt string, or a list of mixed strings & tokens.",
        )
    };
    match v {
        Value::String(s) => Ok(tok.encode(s, true, true)),
        Value::Array(a) => {
            let mut out = Vec::new();
            for (i, x) in a.iter().enumerate() {
                match x {
                    Value::String(s) => out.extend(tok.encode(s, i == 0, true)),
                    Value::Number(n) => {
                        out.push(n.as_u64().and_then(|x| u32::try_from(x).ok()).ok_or_else(
                            || type_error("prompt", "token ids that are non-negative integers"),
                        )?)
                    }
                    _ => return Err(bad()),
                }
            }
            Ok(out)
        }
        Value::Object(o) => match o.get("prompt_string") {
            // llama-server without a multimodal projector (hearth has none) refuses media.
            Some(_) if o.contains_key("multimodal_data") => Err(ApiError::invalid(
                "Multimodal data provided, but model does not support multimodal requests.",
            )),
            Some(p @ (Value::String(_) | Value::Array(_))) => native_subprompt(ready, p),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

pub(crate) async fn completion(
    State(app): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    app.ready()?;
    let body = http::read_body(body)?;
    native(app, body, None).await
}

/// `POST /completion` for `body`, or `POST /infill` when its prompt was made already.
pub(crate) async fn native(
    app: std::sync::Arc<App>,
    body: crate::params::Body,
    infill_prompt: Option<Vec<u32>>,
) -> Result<Response, ApiError> {
    let ready = app.ready()?;
    let stream = body.bool("stream")?.unwrap_or(false);
    let mut params = gen_params(
        &body,
        MAX_TOKENS_NATIVE,
        &ready.defaults,
        &ready.model.tokenizer,
    )?;
    crate::constrain::apply(ready, crate::constrain::requested(&body)?, &mut params)?;
    probs_request(&body, false, &mut params)?;
    let post_sampling = params.post_sampling_probs;
    let id_slot = match body.i64("id_slot")? {
        None | Some(-1) => None,
        Some(n) if n >= 0 => Some(n as usize),
        Some(n) => return Err(ApiError::invalid(format!("`id_slot` {n} is not a slot"))),
    };
    let opts = JobOptions {
        n: 1,
        id_slot,
        cache_prompt: body.bool("cache_prompt")?.unwrap_or(true),
        return_progress: stream && body.bool("return_progress")?.unwrap_or(false),
    };
    let timings_per_token = body.bool("timings_per_token")?.unwrap_or(false);
    let settings = settings(&params, stream);
    let want_probs = params.n_probs.is_some();
    let fields = response_fields(&body)?;
    let mut prompts = match infill_prompt {
        Some(tokens) => vec![tokens],
        None => native_prompts(ready, body.get("prompt"))?,
    };
    // Several prompts: one answer each, in a list.
    if prompts.len() > 1 {
        if stream {
            return Err(ApiError::unsupported(
                "streaming several prompts in one request is not supported yet",
            ));
        }
        let mut jobs = Vec::new();
        for tokens in prompts {
            let text = ready
                .model
                .tokenizer
                .decode(&tokens, true)
                .unwrap_or_default();
            jobs.push((text, submit(ready, tokens, params.clone(), opts)?));
        }
        let mut out = Vec::new();
        for (index, (text, rx)) in jobs.into_iter().enumerate() {
            let done = collect(rx, 1).await?;
            let f = done.first().ok_or_else(|| ApiError::server("no result"))?;
            let mut v = native_body(&app.model_id(), &settings, &text, &f.text, &f.outcome);
            v["index"] = index.into();
            if want_probs {
                v["completion_probabilities"] = probs_json(&f.probs, post_sampling);
            }
            out.push(select_fields(v, &fields));
        }
        return Ok(axum::Json(Value::Array(out)).into_response());
    }
    let tokens = prompts
        .pop()
        .ok_or_else(|| ApiError::invalid("`prompt` is empty"))?;
    let prompt_text = ready
        .model
        .tokenizer
        .decode(&tokens, true)
        .unwrap_or_default();
    let (rx, progress) = http::submit_progress(ready, tokens, params, opts)?;
    let model = app.model_id();
    let final_body =
        move |content: &str, o: &Outcome| native_body(&model, &settings, &prompt_text, content, o);
    if !stream {
        let done = collect(rx, 1).await?;
        let f = done.first().ok_or_else(|| ApiError::server("no result"))?;
        let mut v = final_body(&f.text, &f.outcome);
        if want_probs {
            v["completion_probabilities"] = probs_json(&f.probs, post_sampling);
        }
        return Ok(axum::Json(select_fields(v, &fields)).into_response());
    }
    let progress = progress.map(|rx| http::ProgressFeed {
        rx,
        chunk: Box::new(move |p| {
            let mut v = json!({
                "index": 0,
                "content": "",
                "tokens": [],
                "stop": false,
                "id_slot": -1,
                "tokens_predicted": 0,
                "tokens_evaluated": p.total,
                "prompt_progress": http::progress_json(p),
            });
            if timings_per_token {
                v["timings"] = http::progress_timings(p);
            }
            v
        }),
    });
    Ok(http::stream_progress(
        &app,
        "text/event-stream",
        progress,
        move |sink| async move {
            let mut rx = rx;
            let mut n_predicted = 0usize;
            loop {
                let Some(ev) = sink.next(&mut rx).await else {
                    return;
                };
                let out = match ev {
                    Event::Text { text, probs, .. } => {
                        n_predicted += 1;
                        let mut v = json!({
                            "index": 0,
                            "content": text,
                            "tokens": [],
                            "stop": false,
                            "id_slot": -1,
                            "tokens_predicted": n_predicted,
                            "tokens_evaluated": 0,
                        });
                        if let Some(p) = probs {
                            v["completion_probabilities"] =
                                probs_json(std::slice::from_ref(&p), post_sampling);
                        }
                        v
                    }
                    Event::Done { outcome, .. } => {
                        let last = select_fields(final_body("", &outcome), &fields);
                        let _ = sink.send(sse(&last)).await;
                        return;
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
        },
    ))
}

/// llama-server's `__verbose` on an OpenAI answer: the native answer for the same prompt, when
/// the server runs with `--verbose` or the request sets `"verbose": true`.
pub(crate) struct Verbose {
    model: String,
    settings: Value,
    prompt: String,
    n_prompt: usize,
}

impl Verbose {
    /// `None` unless asked for; `prompt` is what the model is given.
    pub(crate) fn new(
        app: &App,
        body: &crate::params::Body,
        params: &GenParams,
        stream: bool,
        prompt: &[u32],
    ) -> Result<Option<Verbose>, ApiError> {
        if !body.bool("verbose")?.unwrap_or(app.config.verbose) {
            return Ok(None);
        }
        let ready = app.ready()?;
        Ok(Some(Verbose {
            model: app.model_id(),
            settings: settings(params, stream),
            prompt: ready
                .model
                .tokenizer
                .decode(prompt, true)
                .unwrap_or_default(),
            n_prompt: prompt.len(),
        }))
    }

    /// A streamed answer's last `__verbose`: the native final answer, as llama-server streams
    /// it (no content or tokens; those went out in the chunks), `text` the whole reply.
    pub(crate) fn stream_final(&self, text: &str, o: &Outcome) -> Value {
        let mut v = native_body(&self.model, &self.settings, &self.prompt, "", o);
        v["has_new_line"] = text.contains('\n').into();
        v
    }

    /// A streamed completion chunk's `__verbose`: llama-server's native partial answer (the
    /// chunk's text and token, `n_predicted` tokens so far).
    pub(crate) fn stream_partial(
        &self,
        index: usize,
        text: &str,
        token: Option<u32>,
        n_predicted: usize,
    ) -> Value {
        json!({
            "index": index,
            "content": text,
            "tokens": token.into_iter().collect::<Vec<_>>(),
            "stop": false,
            "id_slot": -1,
            "tokens_predicted": n_predicted,
            "tokens_evaluated": self.n_prompt,
        })
    }

    /// Adds `__verbose` (the first choice's native answer) to an answer.
    pub(crate) fn add_to(this: Option<&Verbose>, answer: &mut Value, done: &[http::Finished]) {
        if let (Some(v), Some(f)) = (this, done.first()) {
            answer["__verbose"] =
                native_body(&v.model, &v.settings, &v.prompt, &f.text, &f.outcome);
        }
    }
}

/// A chat stream's prompt progress, as llama-server writes it: a chunk whose delta is the
/// role, with `prompt_progress` (and `timings` with `timings_per_token`).
pub(crate) fn chat_progress(
    progress: Option<tokio::sync::mpsc::UnboundedReceiver<crate::scheduler::Progress>>,
    body: &crate::params::Body,
    model: &str,
    id: &str,
    created: u64,
) -> Result<Option<http::ProgressFeed>, ApiError> {
    let timings_per_token = body.bool("timings_per_token")?.unwrap_or(false);
    let (model, id) = (model.to_owned(), id.to_owned());
    Ok(progress.map(|rx| http::ProgressFeed {
        rx,
        chunk: Box::new(move |p| {
            let mut v = json!({
                "choices": [{
                    "finish_reason": null,
                    "index": 0,
                    "delta": { "role": "assistant", "content": null },
                }],
                "created": created,
                "id": id,
                "model": model,
                "system_fingerprint": http::FINGERPRINT,
                "object": "chat.completion.chunk",
                "prompt_progress": http::progress_json(p),
            });
            if timings_per_token {
                v["timings"] = http::progress_timings(p);
            }
            v
        }),
    }))
}

/// `POST /chat/completions/input_tokens`: how many tokens a chat request's prompt is, as
/// llama-server counts them (the rendered template, tokenized with the special tokens).
pub(crate) async fn chat_input_tokens(
    State(app): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ready = app.ready()?;
    let body = http::read_body(body)?;
    let tools = match body.get("tools") {
        None => None,
        Some(t @ Value::Array(_)) => Some(t.clone()),
        Some(_) => return Err(type_error("tools", "a list of tool definitions")),
    };
    let ending = http::Ending::from_body(&body)?;
    let kwargs = body.get("chat_template_kwargs");
    let prompt =
        http::chat_prompt_ending(ready, body.get("messages"), tools, ending, kwargs).await?;
    Ok(axum::Json(json!({
        "input_tokens": prompt.tokens.len(),
        "object": "response.input_tokens",
    }))
    .into_response())
}

/// llama-server's `response_fields`: paths (`a/b`) of the final answer to return instead of
/// all of it.
fn response_fields(body: &crate::params::Body) -> Result<Vec<String>, ApiError> {
    let bad = || type_error("response_fields", "a list of strings");
    match body.get("response_fields") {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// The answer with only `fields`, each at its path flattened into one key (a path that does not
/// exist is left out), as llama-server's `json_get_nested_values`; no fields: all of it.
fn select_fields(v: Value, fields: &[String]) -> Value {
    if fields.is_empty() {
        return v;
    }
    let mut out = serde_json::Map::new();
    for path in fields {
        let found = path
            .split('/')
            .try_fold(&v, |cur, k| cur.as_object().and_then(|o| o.get(k)));
        if let Some(x) = found {
            out.insert(path.clone(), x.clone());
        }
    }
    Value::Object(out)
}

/// The native API's final answer for one prompt.
fn native_body(model: &str, settings: &Value, prompt: &str, content: &str, o: &Outcome) -> Value {
    let (stop_type, word) = stop_type(&o.finish);
    json!({
        "index": 0,
        "content": content,
        "tokens": [],
        "id_slot": o.id_slot,
        "stop": true,
        "model": model,
        "tokens_predicted": o.n_generated,
        "tokens_evaluated": o.n_prompt,
        "generation_settings": settings,
        "prompt": prompt,
        "has_new_line": content.contains('\n'),
        "truncated": false,
        "stop_type": stop_type,
        "stopping_word": word,
        // The last token sampled is never evaluated, as llama-server counts it.
        "tokens_cached": o.n_prompt + o.n_generated.saturating_sub(1),
        "timings": timings(o),
    })
}

fn slot_json(v: &SlotView) -> Value {
    json!({
        "id": v.id,
        "id_task": v.id_task.map_or(-1, |t| t as i64),
        "n_ctx": v.n_ctx,
        "speculative": false,
        "is_processing": v.is_processing,
        "n_past": v.n_past,
        "n_prompt_tokens": v.n_prompt,
        "next_token": [{
            "has_next_token": v.is_processing,
            "has_new_line": false,
            "n_remain": v.n_remain.map_or(-1, |n| n as i64),
            "n_decoded": v.n_decoded,
            "stopping_word": "",
        }],
    })
}

pub(crate) async fn props(State(app): AppState) -> Result<Response, ApiError> {
    let ready = app.ready()?;
    let tok = &ready.model.tokenizer;
    let text = |id: Option<u32>| {
        id.and_then(|i| tok.token_text(i))
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default()
    };
    let mut sampler = ready.defaults.sampler.clone();
    // llama.cpp's LLAMA_DEFAULT_SEED (random per request) when no --seed was given.
    sampler.seed = ready.defaults.seed.unwrap_or(u64::from(u32::MAX));
    let defaults = GenParams {
        max_tokens: ready.defaults.n_predict,
        stop: Vec::new(),
        sampler,
        ignore_eos: false,
        n_probs: None,
        post_sampling_probs: false,
        special: false,
    };
    let mut slot0 = slot_json(&SlotView {
        n_ctx: ready.n_ctx_slot(),
        ..SlotView::default()
    });
    slot0["params"] = settings(&defaults, false);
    Ok(axum::Json(json!({
        "default_generation_settings": slot0,
        "total_slots": ready.scheduler.config.n_parallel,
        "model_path": app.config.model.display().to_string(),
        "model_alias": app.model_id(),
        "modalities": { "vision": false, "audio": false },
        "chat_template": ready.template_source,
        "bos_token": text(tok.bos()),
        "eos_token": text(tok.eos()),
        "build_info": http::FINGERPRINT,
        "is_sleeping": false,
    }))
    .into_response())
}

pub(crate) async fn slots(
    State(app): AppState,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    if !app.config.slots_endpoint {
        return Err(ApiError::not_implemented(
            "This server does not support slots endpoint. Start it with `--slots`",
        ));
    }
    let ready = app.ready()?;
    let views = ready.scheduler.shared.slots();
    let fail = q
        .get("fail_on_no_slot")
        .is_some_and(|v| v != "0" && v != "false");
    if fail && views.iter().all(|v| v.is_processing) {
        return Err(ApiError::unavailable("no slot available"));
    }
    Ok(axum::Json(Value::Array(views.iter().map(slot_json).collect())).into_response())
}

pub(crate) async fn metrics(State(app): AppState) -> Result<Response, ApiError> {
    if !app.config.metrics {
        return Err(ApiError::not_implemented(
            "This server does not support metrics endpoint. Start it with `--metrics`",
        ));
    }
    let ready = app.ready()?;
    let text = metrics_text(&app, ready);
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    if let Ok(v) = HeaderValue::from_str(&app.created.to_string()) {
        resp.headers_mut().insert("process-start-time-unix", v);
    }
    Ok(resp)
}

fn metrics_text(_app: &App, ready: &Ready) -> String {
    let sh = &ready.scheduler.shared;
    let st = sh.stats();
    let views = sh.slots();
    let busy = views.iter().filter(|v| v.is_processing).count();
    let queued = sh.queued.load(std::sync::atomic::Ordering::SeqCst);
    let rate = |n: u64, t: std::time::Duration| {
        if t.is_zero() {
            0.0
        } else {
            n as f64 / t.as_secs_f64()
        }
    };
    let n_ctx_total = ready.scheduler.config.n_ctx_total();
    let mut metrics: Vec<(&str, &str, &str, f64)> = vec![
        (
            "prompt_tokens_total",
            "counter",
            "Number of prompt tokens processed.",
            st.n_prompt_tokens_total as f64,
        ),
        (
            "prompt_seconds_total",
            "counter",
            "Prompt process time",
            st.t_prompt_total.as_secs_f64(),
        ),
        (
            "tokens_predicted_total",
            "counter",
            "Number of generation tokens processed.",
            st.n_tokens_predicted_total as f64,
        ),
        (
            "tokens_predicted_seconds_total",
            "counter",
            "Predict process time",
            st.t_predicted_total.as_secs_f64(),
        ),
        (
            "n_decode_total",
            "counter",
            "Total number of llama_decode() calls",
            st.n_decode_total as f64,
        ),
        (
            "n_tokens_max",
            "counter",
            "Largest observed n_tokens.",
            st.n_tokens_max as f64,
        ),
        (
            "n_busy_slots_per_decode",
            "gauge",
            "Average number of busy slots per llama_decode() call",
            if st.n_decode_total > 0 {
                st.n_busy_slots_total as f64 / st.n_decode_total as f64
            } else {
                0.0
            },
        ),
        (
            "prompt_tokens_seconds",
            "gauge",
            "Average prompt throughput in tokens/s.",
            rate(st.n_prompt_tokens_total, st.t_prompt_total),
        ),
        (
            "predicted_tokens_seconds",
            "gauge",
            "Average generation throughput in tokens/s.",
            rate(st.n_tokens_predicted_total, st.t_predicted_total),
        ),
        (
            "requests_processing",
            "gauge",
            "Number of requests processing.",
            busy as f64,
        ),
        (
            "requests_deferred",
            "gauge",
            "Number of requests deferred.",
            queued as f64,
        ),
        (
            "requests_total",
            "counter",
            "Number of requests (choices) started.",
            st.n_requests_total as f64,
        ),
        (
            "kv_cache_tokens",
            "gauge",
            "KV-cache tokens.",
            st.kv_cells_used as f64,
        ),
        (
            "kv_cache_usage_ratio",
            "gauge",
            "KV-cache usage. 1 means 100 percent usage.",
            if n_ctx_total > 0 {
                st.kv_cells_used as f64 / n_ctx_total as f64
            } else {
                0.0
            },
        ),
    ];
    metrics.extend([
        (
            "prompt_tokens_cached_total",
            "counter",
            "Number of prompt tokens taken from the cache.",
            st.n_prompt_tokens_cached_total as f64,
        ),
        (
            "spec_decode_num_drafts_total",
            "counter",
            "Speculative drafts (none in hearth).",
            0.0,
        ),
        (
            "spec_decode_num_draft_tokens_total",
            "counter",
            "Draft tokens (none in hearth).",
            0.0,
        ),
        (
            "spec_decode_num_accepted_tokens_total",
            "counter",
            "Accepted draft tokens (none).",
            0.0,
        ),
    ]);
    let mut out = String::new();
    for (name, kind, help, value) in metrics {
        let _ = writeln!(out, "# HELP llamacpp:{name} {help}");
        let _ = writeln!(out, "# TYPE llamacpp:{name} {kind}");
        let _ = writeln!(out, "llamacpp:{name} {value}");
    }
    out
}

pub(crate) async fn tokenize(
    State(app): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ready = app.ready()?;
    let body = http::read_body(body)?;
    let content = body.str("content")?.unwrap_or("");
    let add_special = body.bool("add_special")?.unwrap_or(false);
    let parse_special = body.bool("parse_special")?.unwrap_or(true);
    let with_pieces = body.bool("with_pieces")?.unwrap_or(false);
    let tok = &ready.model.tokenizer;
    let ids = tok.encode(content, add_special, parse_special);
    let tokens: Vec<Value> = if with_pieces {
        ids.iter()
            .map(|&id| {
                let piece = tok.token_to_piece(id, true).unwrap_or_default();
                let piece = match std::str::from_utf8(&piece) {
                    Ok(s) => Value::String(s.to_owned()),
                    Err(_) => Value::Array(piece.iter().map(|&b| b.into()).collect()),
                };
                json!({ "id": id, "piece": piece })
            })
            .collect()
    } else {
        ids.iter().map(|&id| id.into()).collect()
    };
    Ok(axum::Json(json!({ "tokens": tokens })).into_response())
}

pub(crate) async fn detokenize(
    State(app): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ready = app.ready()?;
    let body = http::read_body(body)?;
    let ids: Vec<u32> = match body.get("tokens") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| type_error("tokens", "a list of token ids"))?,
        Some(_) => return Err(type_error("tokens", "a list of token ids")),
    };
    let content = ready
        .model
        .tokenizer
        .decode(&ids, true)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(axum::Json(json!({ "content": content })).into_response())
}

pub(crate) async fn apply_template(
    State(app): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ready = app.ready()?;
    let body = http::read_body(body)?;
    // llama-server renders with the request's tools, `add_generation_prompt` (default on) and
    // `continue_final_message`.
    let tools = match body.get("tools") {
        None => None,
        Some(t @ Value::Array(_)) => Some(t.clone()),
        Some(_) => return Err(type_error("tools", "a list of tool definitions")),
    };
    let ending = http::Ending::from_body(&body)?;
    let kwargs = body.get("chat_template_kwargs");
    let prompt =
        http::chat_prompt_ending(ready, body.get("messages"), tools, ending, kwargs).await?;
    Ok(axum::Json(json!({ "prompt": prompt.text })).into_response())
}
