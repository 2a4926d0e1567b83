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

/// The native prompt: a string, token ids, or a mix of both in one list.
fn native_prompt(ready: &Ready, v: Option<&Value>) -> Result<Vec<u32>, ApiError> {
    let tok = &ready.model.tokenizer;
    let bad = || type_error("prompt", "a string, a list of token ids, or a mix");
    match v {
        None => Err(ApiError::invalid("`prompt` is required")),
        Some(Value::String(s)) => Ok(tok.encode(s, true, true)),
        Some(Value::Array(a)) => {
            if a.len() == 1 && a[0].is_array() {
                return native_prompt(ready, Some(&a[0]));
            }
            if a.len() > 1 && a.iter().all(Value::is_string) {
                return Err(ApiError::unsupported(
                    "several prompts in one request are not supported yet",
                ));
            }
            let mut out = Vec::new();
            for (i, x) in a.iter().enumerate() {
                match x {
                    Value::String(s) => out.extend(tok.encode(s, i == 0, true)),
                    Value::Number(n) => out.push(
                        n.as_u64()
                            .and_then(|x| u32::try_from(x).ok())
                            .ok_or_else(bad)?,
                    ),
                    _ => return Err(bad()),
                }
            }
            Ok(out)
        }
        Some(_) => Err(bad()),
    }
}

pub(crate) async fn completion(
    State(app): AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let ready = app.ready()?;
    let body = http::read_body(body)?;
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
    };
    let settings = settings(&params, stream);
    let want_probs = params.n_probs.is_some();
    // Several prompts (a list of strings or of token lists): one answer each, in a list.
    if let Some(Value::Array(list)) = body.get("prompt")
        && list.len() > 1
        && list.iter().all(|p| p.is_string() || p.is_array())
    {
        if stream {
            return Err(ApiError::unsupported(
                "streaming several prompts in one request is not supported yet",
            ));
        }
        if list.len() > 16 {
            return Err(ApiError::invalid(
                "at most 16 prompts are accepted in one request",
            ));
        }
        let mut jobs = Vec::new();
        for p in list {
            let tokens = native_prompt(ready, Some(p))?;
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
            out.push(v);
        }
        return Ok(axum::Json(Value::Array(out)).into_response());
    }
    let tokens = native_prompt(ready, body.get("prompt"))?;
    let prompt_text = ready
        .model
        .tokenizer
        .decode(&tokens, true)
        .unwrap_or_default();
    let rx = submit(ready, tokens, params, opts)?;
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
        return Ok(axum::Json(v).into_response());
    }
    Ok(http::stream(
        &app,
        "text/event-stream",
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
                        let _ = sink.send(sse(&final_body("", &outcome))).await;
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
        "tokens_cached": o.n_prompt + o.n_generated,
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
    // llama-server renders with the request's tools and `add_generation_prompt` (default on).
    let tools = match body.get("tools") {
        None => None,
        Some(t @ Value::Array(_)) => Some(t.clone()),
        Some(_) => return Err(type_error("tools", "a list of tool definitions")),
    };
    let add = body.bool("add_generation_prompt")?.unwrap_or(true);
    let kwargs = body.get("chat_template_kwargs");
    let prompt = http::chat_prompt_with(ready, body.get("messages"), tools, add, kwargs).await?;
    Ok(axum::Json(json!({ "prompt": prompt.text })).into_response())
}
