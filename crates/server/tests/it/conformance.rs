//! Behaviour llama.cpp's own server suite checks (`scripts/llama-server-tests.sh`), each case
//! compared with what llama-server answers on the same request and model.

use serde_json::{Value, json};

use crate::client::{TestServer, config};

/// `(index, content, tokens_evaluated, prompt)` of one native answer.
fn answer(v: &Value) -> (Value, String, u64, String) {
    (
        v["index"].clone(),
        v["content"].as_str().unwrap().to_owned(),
        v["tokens_evaluated"].as_u64().unwrap(),
        v["prompt"].as_str().unwrap().to_owned(),
    )
}

/// The prompt shapes of llama-server's `tokenize_input_prompts`: a list without integers is
/// several prompts (strings, token lists, mixes, `{"prompt_string": …}` objects) answered as a
/// list, a list of one is answered as one object, and a list with an integer is one prompt whose
/// strings get the BOS only when they lead. Texts and errors are llama-server's (0.3.36 sdist,
/// SmolLM2, greedy) for the same requests.
#[test]
fn native_prompt_shapes_are_llama_servers() {
    let s = TestServer::start(config());
    let complete = |prompt: Value| {
        s.post(
            "/completion",
            &json!({ "prompt": prompt, "n_predict": 3, "temperature": 0 }),
        )
    };
    let one = complete(json!([[1, 2, 3]])).json();
    assert!(one.is_object(), "{one}");
    assert_eq!(one["content"], "_tutorial");
    assert_eq!(one["prompt"], "<|im_start|><|im_end|><repo_name>");

    let many = complete(json!([{ "prompt_string": "Hello" }, "Hello", [19556]])).json();
    let many: Vec<_> = many.as_array().unwrap().iter().map(answer).collect();
    assert_eq!(many.len(), 3);
    for (i, a) in many.iter().enumerate() {
        assert_eq!(a.0, i, "{many:?}");
        assert_eq!((a.1.as_str(), a.2, a.3.as_str()), ("-by-", 1, "Hello"));
    }

    // One sequence: a string after a token id gets no BOS (SmolLM2 has none anyway), and the
    // object's prompt may itself be a mix.
    let (_, text, n, prompt) = answer(&complete(json!([12, "Hello"])).json());
    assert_eq!(
        (text.as_str(), n, prompt.as_str()),
        (", and the", 2, "<jupyter_text>Hello")
    );
    let (_, text, n, prompt) =
        answer(&complete(json!({ "prompt_string": ["Hi", 12, "x"] })).json());
    assert_eq!(
        (text.as_str(), n, prompt.as_str()),
        ("\n", 3, "Hi<jupyter_text>x")
    );

    // llama-server without a multimodal projector refuses media; bad shapes name the shapes.
    let e = complete(json!({ "prompt_string": "Hi <__media__>", "multimodal_data": ["iVBO"] }))
        .expect_error(400, "invalid_request_error");
    assert_eq!(
        e["message"],
        "Multimodal data provided, but model does not support multimodal requests."
    );
    let shapes = "\"prompt\" elements must be a string, a list of tokens, a JSON object \
                  containing a prompt string, or a list of mixed strings & tokens.";
    for bad in [json!({ "foo": 1 }), json!([1.5]), json!([[1], {}])] {
        let e = complete(bad).expect_error(400, "invalid_request_error");
        assert_eq!(e["message"], shapes);
    }
    let e = complete(json!([])).expect_error(400, "invalid_request_error");
    assert_eq!(e["message"], "\"prompt\" must not be empty");
}

fn llama31_server(verbose: bool) -> TestServer {
    let path = format!(
        "{}/../text/tests/fixtures/templates/meta-llama-Llama-3.1-8B-Instruct.jinja",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut c = config();
    c.n_parallel = 1;
    c.verbose = verbose;
    c.chat_template = Some(server::TemplateChoice::Source(
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
    ));
    TestServer::start(c)
}

const BOOK: &str = "<|start_header_id|>user<|end_header_id|>\n\nWhat is the best book<|eot_id|>\
                    <|start_header_id|>assistant<|end_header_id|>\n\n";

fn book(prefill: Value) -> Value {
    json!([
        { "role": "system", "content": "Book" },
        { "role": "user", "content": "What is the best book" },
        { "role": "assistant", "content": prefill },
    ])
}

/// llama-server's template flags on the Llama 3.1 template (its `--jinja` rendering): a final
/// assistant message is continued, text parts joined by a blank line; vLLM's
/// `continue_final_message` with `add_generation_prompt: false` is the same; both flags on is a
/// 400, as are two assistant messages at the end unless continuation is explicit.
#[test]
fn template_flags_are_llama_servers() {
    let s = llama31_server(false);
    let render = |body: Value| s.post("/apply-template", &body);
    let prompt = |body: Value| render(body).json()["prompt"].as_str().unwrap().to_owned();
    let whill = format!("{BOOK}Whill");
    assert!(prompt(json!({ "messages": book(json!("Whill")) })).ends_with(&whill));
    let vllm = json!({ "messages": book(json!("Whill")), "add_generation_prompt": false,
                       "continue_final_message": true });
    assert!(prompt(vllm).ends_with(&whill));
    // Without the generation prompt the final assistant message is still continued.
    let no_gen = json!({ "messages": book(json!("Whill")), "add_generation_prompt": false });
    assert!(prompt(no_gen).ends_with(&whill));
    let parts = json!([{ "type": "text", "text": "Wh" }, { "type": "text", "text": "ill" }]);
    assert!(prompt(json!({ "messages": book(parts) })).ends_with(&format!("{BOOK}Wh\n\nill")));

    let both = json!({ "messages": book(json!("Whill")), "continue_final_message": true });
    let e = render(both.clone()).expect_error(400, "invalid_request_error");
    assert_eq!(
        e["message"],
        "Cannot set both add_generation_prompt and continue_final_message to true."
    );
    let mut chat = both;
    chat["max_tokens"] = json!(2);
    s.post("/v1/chat/completions", &chat)
        .expect_error(400, "invalid_request_error");

    let two = json!([{ "role": "user", "content": "Hi" },
                     { "role": "assistant", "content": "A" },
                     { "role": "assistant", "content": "B" }]);
    let e = render(json!({ "messages": two })).expect_error(400, "invalid_request_error");
    assert_eq!(
        e["message"],
        "Cannot have 2 or more assistant messages at the end of the list."
    );
    let explicit = prompt(json!({ "messages": two, "add_generation_prompt": false,
                                  "continue_final_message": true }));
    assert!(
        explicit.ends_with(
            "<|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nB"
        ),
        "{explicit}"
    );

    // The chat endpoint renders the same: the prompt it ran is in `__verbose`.
    let v = s
        .post(
            "/v1/chat/completions",
            &json!({ "messages": book(json!("Whill")), "max_tokens": 2, "verbose": true,
                     "add_generation_prompt": false, "continue_final_message": "content" }),
        )
        .json();
    assert!(
        v["__verbose"]["prompt"].as_str().unwrap().ends_with(&whill),
        "{v}"
    );
}

/// `POST /chat/completions/input_tokens` counts the rendered prompt's tokens: llama-server
/// answers 110 and 108 for these two requests on SmolLM2 with the Llama 3.1 template.
#[test]
fn chat_input_tokens_are_llama_servers() {
    let s = llama31_server(false);
    for path in [
        "/chat/completions/input_tokens",
        "/v1/chat/completions/input_tokens",
    ] {
        let v = s
            .post(
                path,
                &json!({ "messages": [{ "role": "system", "content": "Book" },
                                      { "role": "user", "content": "What is the best book" }] }),
            )
            .json();
        assert_eq!(
            v,
            json!({ "input_tokens": 110, "object": "response.input_tokens" })
        );
    }
    let v = s
        .post(
            "/chat/completions/input_tokens",
            &json!({ "messages": [{ "role": "user", "content": "Hi" },
                                  { "role": "assistant", "content": "Whill" }] }),
        )
        .json();
    assert_eq!(v["input_tokens"], 108);
    // The count is the prompt a chat request then runs.
    let chat = s
        .post(
            "/v1/chat/completions",
            &json!({ "messages": [{ "role": "user", "content": "Hi" },
                                  { "role": "assistant", "content": "Whill" }],
                     "max_tokens": 1 }),
        )
        .json();
    assert_eq!(chat["usage"]["prompt_tokens"], 108);
    s.post("/chat/completions/input_tokens", &json!({ "messages": 3 }))
        .expect_error(400, "invalid_request_error");
}

/// llama-server's `__verbose`: with `"verbose": true` (or `--verbose`) a chat answer carries the
/// native answer — the same fields llama-server writes, the prompt as the model saw it, and
/// `tokens_cached` one short of prompt + generated (the last token is never evaluated).
#[test]
fn verbose_answers_carry_the_native_answer() {
    let s = llama31_server(false);
    let ask = |verbose: Option<bool>| {
        let mut body = json!({ "messages": [{ "role": "user", "content": "Hi" }],
                               "max_tokens": 2, "temperature": 0 });
        if let Some(v) = verbose {
            body["verbose"] = json!(v);
        }
        s.post("/v1/chat/completions", &body).json()
    };
    let v = ask(Some(true));
    let x = &v["__verbose"];
    let mut keys: Vec<&str> = x.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "content",
            "generation_settings",
            "has_new_line",
            "id_slot",
            "index",
            "model",
            "prompt",
            "stop",
            "stop_type",
            "stopping_word",
            "timings",
            "tokens",
            "tokens_cached",
            "tokens_evaluated",
            "tokens_predicted",
            "truncated",
        ]
    );
    assert!(
        x["prompt"]
            .as_str()
            .unwrap()
            .ends_with("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
        "{x}"
    );
    assert_eq!(x["tokens_evaluated"], 105);
    assert_eq!(x["tokens_predicted"], 2);
    assert_eq!(x["tokens_cached"], 106);
    assert_eq!(x["stop_type"], "limit");
    assert_eq!(x["content"], v["choices"][0]["message"]["content"]);
    assert!(ask(Some(false)).get("__verbose").is_none());
    assert!(ask(None).get("__verbose").is_none());
    // OpenAI completions too (llama-server: prompt "I believe", 2 tokens evaluated).
    let v = s
        .post(
            "/v1/completions",
            &json!({ "prompt": "I believe", "max_tokens": 2, "verbose": true, "ignore_eos": true }),
        )
        .json();
    let x = &v["__verbose"];
    assert_eq!(x["prompt"], "I believe");
    assert_eq!(x["tokens_evaluated"], 2);
    assert_eq!(x["tokens_predicted"], 2);
    assert_eq!(x["content"], v["choices"][0]["text"]);
    drop(s);
    // `--verbose`: every answer, unless the request says otherwise.
    let s = llama31_server(true);
    let body = json!({ "messages": [{ "role": "user", "content": "Hi" }], "max_tokens": 1 });
    assert!(s.post("/v1/chat/completions", &body).json()["__verbose"].is_object());
    let mut quiet = body;
    quiet["verbose"] = json!(false);
    assert!(
        s.post("/v1/chat/completions", &quiet)
            .json()
            .get("__verbose")
            .is_none()
    );
}

/// `--chat-template llama3` and `command-r` render as llama.cpp's built-in formats do
/// (llama-server `--chat-template NAME`, same messages): content trimmed, roles and turn tokens.
#[test]
fn named_templates_are_llama_cpps() {
    let messages = json!([
        { "role": "system", "content": " You are a test. " },
        { "role": "user", "content": "Hi there" },
        { "role": "assistant", "content": "Hello" },
        { "role": "user", "content": "x" },
    ]);
    let expected = [
        (
            "llama3",
            "<|start_header_id|>system<|end_header_id|>\n\nYou are a test.<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>\
             <|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>\
             <|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        (
            "command-r",
            "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>You are a test.<|END_OF_TURN_TOKEN|>\
             <|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi there<|END_OF_TURN_TOKEN|>\
             <|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hello<|END_OF_TURN_TOKEN|>\
             <|START_OF_TURN_TOKEN|><|USER_TOKEN|>x<|END_OF_TURN_TOKEN|>\
             <|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
        ),
    ];
    for (name, want) in expected {
        let mut c = config();
        c.n_parallel = 1;
        c.chat_template = Some(server::TemplateChoice::Source(
            server::named_template(name).unwrap().to_owned(),
        ));
        let s = TestServer::start(c);
        let v = s
            .post("/apply-template", &json!({ "messages": messages }))
            .json();
        assert_eq!(v["prompt"], want, "{name}");
    }
    // A tool message has no place in Command-R's legacy format.
    let mut c = config();
    c.n_parallel = 1;
    c.chat_template = Some(server::TemplateChoice::Source(
        server::named_template("command-r").unwrap().to_owned(),
    ));
    let s = TestServer::start(c);
    let v = s
        .post(
            "/apply-template",
            &json!({ "messages": [{ "role": "user", "content": "Hi there" },
                                  { "role": "tool", "content": "x" }] }),
        )
        .json();
    assert_eq!(
        v["prompt"],
        "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi there<|END_OF_TURN_TOKEN|>\
         <|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"
    );
}

/// The `prompt_progress` objects of a stream, in order, and whether each came before every
/// generated piece.
fn progress_of(events: &[String], text_key: &str) -> Vec<(usize, usize, usize, Value)> {
    let mut out = Vec::new();
    let mut seen_text = false;
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let v: Value = serde_json::from_str(e).unwrap();
        if let Some(p) = v.get("prompt_progress") {
            assert!(!seen_text, "progress after generated text: {e}");
            let n = |k: &str| p[k].as_u64().unwrap() as usize;
            out.push((n("total"), n("cache"), n("processed"), v["timings"].clone()));
        } else if v
            .pointer(text_key)
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
        {
            seen_text = true;
        }
    }
    out
}

/// llama-server's `return_progress`: a 70-token prompt with `-b 64` reports 0, 64 and 70
/// processed tokens, all before the reply; the same prompt again reports the 69 cached tokens,
/// then 70 (llama-server answers exactly these on SmolLM2, `-np 1 -c 256 -b 64`). With
/// `timings_per_token` each carries the prompt timings so far, starting from zero.
#[test]
fn return_progress_is_llama_servers() {
    let mut c = config();
    c.n_parallel = 1;
    c.n_ctx = 256;
    c.n_batch = 64;
    let s = TestServer::start(c);
    let body = json!({
        "messages": [{ "role": "user", "content": "This is a test".repeat(10) }],
        "max_tokens": 3, "stream": true, "return_progress": true, "timings_per_token": true,
    });
    let first = progress_of(
        &s.stream("/v1/chat/completions", &body).collect_all(),
        "/choices/0/delta/content",
    );
    let counts: Vec<_> = first.iter().map(|p| (p.0, p.1, p.2)).collect();
    assert_eq!(counts, [(70, 0, 0), (70, 0, 64), (70, 0, 70)]);
    assert_eq!(first[0].3["prompt_n"], 0);
    assert_eq!(first[0].3["prompt_ms"], 0.0);
    assert_eq!(first[0].3["predicted_n"], 0);
    assert_eq!(first[1].3["prompt_n"], 64);
    assert_eq!(first[2].3["prompt_n"], 70);
    assert!(first[2].3["prompt_ms"].as_f64().unwrap() >= first[1].3["prompt_ms"].as_f64().unwrap());
    assert!(first[1].3["prompt_ms"].as_f64().unwrap() > 0.0);
    let again = progress_of(
        &s.stream("/v1/chat/completions", &body).collect_all(),
        "/choices/0/delta/content",
    );
    let counts: Vec<_> = again.iter().map(|p| (p.0, p.1, p.2)).collect();
    assert_eq!(counts, [(70, 69, 69), (70, 69, 70)]);

    // The native endpoint, without timings: progress chunks have none.
    let native = s
        .stream(
            "/completion",
            &json!({ "prompt": "the quick brown fox jumps over the lazy dog ".repeat(8),
                     "n_predict": 2, "stream": true, "return_progress": true,
                     "cache_prompt": false }),
        )
        .collect_all();
    let p = progress_of(&native, "/content");
    assert_eq!(p.len(), 3, "{native:?}");
    assert!(p.iter().all(|x| x.3.is_null()));
    assert_eq!(p[2].2, p[2].0, "the last report covers the whole prompt");
    // Not asked for, or not streamed: no progress.
    let mut quiet = body.clone();
    quiet["return_progress"] = json!(false);
    assert!(
        progress_of(
            &s.stream("/v1/chat/completions", &quiet).collect_all(),
            "/x"
        )
        .is_empty()
    );
    let mut whole = body;
    whole["stream"] = json!(false);
    assert!(
        s.post("/v1/chat/completions", &whole)
            .json()
            .get("prompt_progress")
            .is_none()
    );
}

/// llama-server's generation rate counts decode steps: the first token comes with the prompt's
/// last batch, so one token has no rate, and sixteen have fifteen steps.
#[test]
fn generation_rate_excludes_the_first_token() {
    let s = TestServer::start(config());
    let t = s
        .post(
            "/completion",
            &json!({ "prompt": "I believe", "n_predict": 1 }),
        )
        .json()["timings"]
        .clone();
    assert_eq!(t["predicted_n"], 1);
    assert_eq!(t["predicted_per_second"], 0.0);
    assert_eq!(t["predicted_per_token_ms"], 0.0);
    let t = s
        .post(
            "/completion",
            &json!({ "prompt": "I believe", "n_predict": 16, "ignore_eos": true }),
        )
        .json()["timings"]
        .clone();
    assert_eq!(t["predicted_n"], 16);
    let ms = t["predicted_ms"].as_f64().unwrap();
    let rate = t["predicted_per_second"].as_f64().unwrap();
    assert!((rate - 15.0 * 1e3 / ms).abs() < 1e-6, "{t}");
    assert!((t["predicted_per_token_ms"].as_f64().unwrap() - ms / 15.0).abs() < 1e-9);
}

/// A one-request HTTP server on a loopback port: what it received (head lines and body).
fn capture_server() -> (u16, std::thread::JoinHandle<(Vec<String>, String)>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut r = BufReader::new(stream);
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let line = line.trim_end().to_owned();
            if line.is_empty() {
                break;
            }
            head.push(line);
        }
        let len = head
            .iter()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        let mut s = r.into_inner();
        s.write_all(
            b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Target: yes\r\n\
              Access-Control-Allow-Origin: http://target\r\nContent-Length: 11\r\n\
              Connection: close\r\n\r\n{\"ok\":true}",
        )
        .unwrap();
        (head, String::from_utf8(body).unwrap())
    });
    (port, handle)
}

/// llama-server's CORS proxy (`--ui-mcp-proxy`): the target gets only the headers named with
/// `x-llama-server-proxy-header-` — never the client's `Authorization`, `Proxy-Authorization`,
/// API key or cookies (llama.cpp's test_cors_proxy_only_forwards_explicit_proxy_headers) — and
/// the client gets the target's status, headers (but its CORS ones) and body. Off by default:
/// llama-server's 403.
#[test]
fn cors_proxy_forwards_only_explicit_headers() {
    let s = TestServer::start(config());
    let off = s.get("/cors-proxy?url=http://127.0.0.1:1/");
    assert_eq!(off.status, 403);
    assert_eq!(
        off.json(),
        json!({ "error": { "message": "this feature is disabled", "type": "feature_disabled" } })
    );
    drop(s);

    let mut c = config();
    c.api_keys = vec!["sekrit".into()];
    c.cors_proxy = true;
    let s = TestServer::start(c);
    // The proxy is behind the API key like every other endpoint.
    assert_eq!(s.get("/cors-proxy?url=http://127.0.0.1:1/").status, 401);
    let (port, target) = capture_server();
    let r = s.request(
        "POST",
        &format!("/cors-proxy?url=http://127.0.0.1:{port}/capture?q=1"),
        Some(br#"{"x":1}"#),
        &[
            ("Authorization", "Bearer sekrit"),
            ("Proxy-Authorization", "Basic secret"),
            ("X-Api-Key", "sekrit"),
            ("Cookie", "session=secret"),
            ("x-llama-server-proxy-header-accept", "application/json"),
            (
                "x-llama-server-proxy-header-authorization",
                "Bearer explicit",
            ),
            (
                "x-llama-server-proxy-header-content-type",
                "application/json",
            ),
        ],
    );
    let (head, body) = target.join().unwrap();
    assert_eq!(head[0], "POST /capture?q=1 HTTP/1.1");
    let headers: Vec<String> = head[1..].iter().map(|l| l.to_ascii_lowercase()).collect();
    let has = |h: &str| headers.iter().any(|l| l.starts_with(h));
    assert!(
        headers.contains(&"accept: application/json".to_owned()),
        "{headers:?}"
    );
    assert!(
        headers.contains(&"authorization: bearer explicit".to_owned()),
        "{headers:?}"
    );
    assert!(
        !has("proxy-authorization") && !has("x-api-key") && !has("cookie"),
        "{headers:?}"
    );
    assert_eq!(body, r#"{"x":1}"#);
    assert_eq!(r.status, 201);
    assert_eq!(r.body, r#"{"ok":true}"#);
    assert_eq!(r.header("x-target"), Some("yes"));
    assert_ne!(
        r.header("access-control-allow-origin"),
        Some("http://target")
    );

    // Targets llama.cpp's URL parser refuses are its errors (a 500, as llama-server answers).
    for (url, message) in [
        ("ftp://127.0.0.1/", "unsupported URL scheme: ftp"),
        ("127.0.0.1/x", "invalid URL: no scheme"),
        (
            "http://u:p@127.0.0.1/",
            "authentication in target URL is not supported",
        ),
    ] {
        let r = s.request(
            "GET",
            &format!("/cors-proxy?url={url}"),
            None,
            &[("Authorization", "Bearer sekrit")],
        );
        assert_eq!(r.expect_error(500, "server_error")["message"], message);
    }
}

/// When an answer arrives its slot is already free in `/metrics` and `/slots`, as in
/// llama-server (llama.cpp's test_metrics_prometheus_format reads `requests_processing` 0
/// right after its completion).
#[test]
fn a_finished_request_has_freed_its_slot() {
    let s = TestServer::start(config());
    for i in 0..20 {
        s.post(
            "/completion",
            &json!({ "prompt": format!("I believe {i}"), "n_predict": 2 }),
        )
        .json();
        assert_eq!(s.metric("requests_processing"), 0.0, "request {i}");
        assert!(
            s.slots().iter().all(|v| v["is_processing"] == false),
            "request {i}"
        );
    }
}

/// llama-server's `response_fields`: only the named paths of the final answer, nested ones
/// flattened into `a/b` keys and missing ones left out — the keys and values llama-server
/// answers for this request — streamed finals too.
#[test]
fn response_fields_are_llama_servers() {
    let s = TestServer::start(config());
    let fields = json!([
        "content",
        "generation_settings/n_predict",
        "prompt",
        "timings/nope",
        "tokens_evaluated",
        "generation_settings"
    ]);
    let v = s
        .post(
            "/completion",
            &json!({ "prompt": "I believe the meaning of life is", "n_predict": 4,
                     "temperature": 0, "response_fields": fields }),
        )
        .json();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "content",
            "generation_settings",
            "generation_settings/n_predict",
            "prompt",
            "tokens_evaluated"
        ]
    );
    assert_eq!(v["generation_settings/n_predict"], 4);
    assert_eq!(v["prompt"], "I believe the meaning of life is");
    assert_eq!(v["tokens_evaluated"], 7);
    let events = s
        .stream(
            "/completion",
            &json!({ "prompt": "I believe the meaning of life is", "n_predict": 2,
                     "stream": true, "response_fields": ["content", "tokens_evaluated"] }),
        )
        .collect_all();
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last, json!({ "content": "", "tokens_evaluated": 7 }));
    s.post(
        "/completion",
        &json!({ "prompt": "x", "n_predict": 1, "response_fields": [1] }),
    )
    .expect_error(400, "invalid_request_error");
}

/// `n_predict: 0` (or `max_tokens: 0`) still gives one token, as llama-server checks its limit
/// only after a token: its answers on SmolLM2, greedy, for these requests.
#[test]
fn n_predict_zero_gives_one_token_as_llama_server() {
    let s = TestServer::start(config());
    let v = s
        .post(
            "/completion",
            &json!({ "prompt": "I believe", "n_predict": 0, "temperature": 0 }),
        )
        .json();
    assert_eq!(
        (&v["content"], &v["tokens_predicted"], &v["stop_type"]),
        (&json!(" that"), &json!(1), &json!("limit")),
        "{v}"
    );
    let v = s
        .post(
            "/v1/chat/completions",
            &json!({ "messages": [{ "role": "user", "content": "hi" }], "max_tokens": 0,
                     "temperature": 0 }),
        )
        .json();
    assert_eq!(v["choices"][0]["message"]["content"], "Hello", "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 1);
    assert_eq!(v["usage"]["prompt_tokens"], 31);
}

/// `__verbose` on streamed answers, where llama-server puts it: a chat stream's final chunk
/// carries the native final answer without content or tokens (they went out in the chunks);
/// a completion stream's every chunk carries the native partial (its text and token) and the
/// final one the native final. Values are llama-server's for these requests (Llama 3.1's
/// template, SmolLM2, greedy).
#[test]
fn streamed_answers_carry_verbose_as_llama_server() {
    let s = llama31_server(false);
    let events: Vec<Value> = s
        .stream(
            "/v1/chat/completions",
            &json!({ "messages": [{ "role": "user", "content": "Hi" }], "max_tokens": 3,
                     "temperature": 0, "stream": true, "verbose": true }),
        )
        .collect_all()
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let with: Vec<&Value> = events
        .iter()
        .filter(|e| e.get("__verbose").is_some())
        .collect();
    assert_eq!(with.len(), 1, "{events:?}");
    assert_eq!(with[0]["choices"][0]["finish_reason"], "length");
    let x = &with[0]["__verbose"];
    assert_eq!(
        (&x["content"], &x["tokens"], &x["stop"], &x["stop_type"]),
        (&json!(""), &json!([]), &json!(true), &json!("limit"))
    );
    assert_eq!(
        (
            &x["tokens_predicted"],
            &x["tokens_evaluated"],
            &x["tokens_cached"]
        ),
        (&json!(3), &json!(105), &json!(107))
    );
    assert_eq!(x["has_new_line"], true, "the reply is \"\\nCutting\"");
    assert!(
        x["prompt"]
            .as_str()
            .unwrap()
            .ends_with("assistant<|end_header_id|>\n\n")
    );

    let events: Vec<Value> = s
        .stream(
            "/v1/completions",
            &json!({ "prompt": "I believe", "max_tokens": 2, "temperature": 0,
                     "stream": true, "verbose": true }),
        )
        .collect_all()
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let partials: Vec<Value> = events
        .iter()
        .filter(|e| e["choices"][0]["finish_reason"].is_null())
        .map(|e| e["__verbose"].clone())
        .collect();
    assert_eq!(
        partials,
        [
            json!({ "index": 0, "content": " that", "tokens": [338], "stop": false,
                    "id_slot": -1, "tokens_predicted": 1, "tokens_evaluated": 2 }),
            json!({ "index": 0, "content": " the", "tokens": [260], "stop": false,
                    "id_slot": -1, "tokens_predicted": 2, "tokens_evaluated": 2 }),
        ]
    );
    let last = events.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "length");
    let x = &last["__verbose"];
    assert_eq!(
        (&x["content"], &x["stop"], &x["tokens_predicted"]),
        (&json!(""), &json!(true), &json!(2))
    );
}

/// Continuing a lone user message on Llama 3.1's template: the messages before it are none,
/// and llama-server (llama.cpp's Jinja engine) renders the template's `messages[0]['role']`
/// on that empty list as undefined — the system header, then the message's text as the
/// assistant's prefill.
#[test]
fn continuing_a_lone_user_message_renders_as_llama_server() {
    let s = llama31_server(false);
    for flag in [json!(true), json!("content")] {
        let v = s
            .post(
                "/apply-template",
                &json!({ "messages": [{ "role": "user", "content": "Hi" }],
                         "add_generation_prompt": false, "continue_final_message": flag }),
            )
            .json();
        let p = v["prompt"].as_str().unwrap();
        assert!(
            p.starts_with(
                "<|im_start|><|start_header_id|>system<|end_header_id|>\n\n\
                 Cutting Knowledge Date: December 2023\nToday Date: "
            ) && p.ends_with("\n\n<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi"),
            "{p}"
        );
    }
}

fn qwen3_server() -> TestServer {
    let path = format!(
        "{}/../text/tests/fixtures/templates/Qwen-Qwen3-0.6B.jinja",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut c = config();
    c.n_parallel = 1;
    c.chat_template = Some(server::TemplateChoice::Source(
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
    ));
    TestServer::start(c)
}

/// `continue_final_message` with reasoning, as llama-server renders it on Qwen 3's template
/// (its `/apply-template` answers for these messages): a continued message's thinking block
/// comes first — closed before the content, left open when only the reasoning is continued
/// (`"reasoning_content"`, or a message with reasoning and no content) — and the reply then
/// goes on as `reasoning_content`.
#[test]
fn continuing_reasoning_is_llama_servers() {
    let s = qwen3_server();
    let render = |messages: Value, flag: Option<&str>| {
        let mut body = json!({ "messages": messages });
        if let Some(f) = flag {
            body["continue_final_message"] = json!(f);
            body["add_generation_prompt"] = json!(false);
        }
        s.post("/apply-template", &body).json()["prompt"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let turn = |content: &str, reasoning: Option<&str>| {
        let mut a = json!({ "role": "assistant", "content": content });
        if let Some(r) = reasoning {
            a["reasoning_content"] = json!(r);
        }
        json!([{ "role": "user", "content": "Hi" }, a])
    };
    const GEN: &str = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    for (messages, flag, want) in [
        (turn("Whill", None), None, "<think>\n\n</think>\n\nWhill"),
        (
            turn("Whill", Some("Let me think")),
            None,
            "<think>\nLet me think\n</think>\n\nWhill",
        ),
        (
            turn("", Some("Let me think")),
            None,
            "<think>\nLet me think",
        ),
        (
            turn("X", Some("Let me think")),
            Some("reasoning_content"),
            "<think>\nLet me think",
        ),
    ] {
        let p = render(messages.clone(), flag);
        assert!(
            p.ends_with(&format!("{GEN}{want}")),
            "{messages} {flag:?}: {p:?}"
        );
    }
    // The answer holds the continued text, as llama-server's ("Let me think for a moment.",
    // "Whill, I'll just" on SmolLM2), streamed alike.
    for (messages, field, want) in [
        (
            turn("", Some("Let me think")),
            "reasoning_content",
            "Let me think for a moment.",
        ),
        (turn("Whill", None), "content", "Whill, I'll just"),
    ] {
        let body = json!({ "messages": messages, "max_tokens": 4, "temperature": 0 });
        let v = s.post("/v1/chat/completions", &body).json();
        assert_eq!(v["choices"][0]["message"][field], want, "{v}");
        let mut streamed = body;
        streamed["stream"] = json!(true);
        let text: String = s
            .stream("/v1/chat/completions", &streamed)
            .collect_all()
            .iter()
            .filter(|e| *e != "[DONE]")
            .filter_map(|e| serde_json::from_str::<Value>(e).ok())
            .filter_map(|e| e["choices"][0]["delta"][field].as_str().map(str::to_owned))
            .collect();
        assert_eq!(text, want);
    }
}

/// The prompt a continued final message ends with, on real templates: llama.cpp's
/// `test-chat.cpp` generation-prompt checks (`continuation_content`: content "Hello, " after
/// reasoning "I'm thinking"; `continuation_reasoning`: reasoning "I'm"). (Kimi K2, Ministral 3,
/// Gemma 4 and LFM2.5 differ still: llama.cpp writes their thinking blocks by hand, where
/// hearth finds none in what the template renders.)
#[test]
fn continuation_prompts_are_llama_cpps() {
    for (name, content, reasoning) in CONTINUATIONS {
        let path = format!(
            "{}/../text/tests/fixtures/templates/{name}.jinja",
            env!("CARGO_MANIFEST_DIR")
        );
        let mut c = config();
        c.n_parallel = 1;
        c.chat_template = Some(server::TemplateChoice::Source(
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")),
        ));
        let s = TestServer::start(c);
        let render = |assistant: Value, flag: &str| {
            let body = json!({
                "messages": [{ "role": "system", "content": "You are a helpful assistant" },
                             { "role": "user", "content": "Hello" }, assistant],
                "add_generation_prompt": false, "continue_final_message": flag });
            s.post("/apply-template", &body).json()["prompt"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let p = render(
            json!({ "role": "assistant", "content": "Hello, ", "reasoning_content": "I'm thinking" }),
            "content",
        );
        assert!(p.ends_with(content), "{name}: {p:?}");
        let p = render(
            json!({ "role": "assistant", "content": "", "reasoning_content": "I'm" }),
            "reasoning_content",
        );
        assert!(p.ends_with(reasoning), "{name}: {p:?}");
    }
}

const CONTINUATIONS: &[(&str, &str, &str)] = &[
    (
        "Qwen3.5-4B",
        "<|im_start|>assistant\n<think>\nI'm thinking\n</think>\n\nHello, ",
        "<|im_start|>assistant\n<think>\nI'm",
    ),
    (
        "Reka-Edge",
        "assistant: <think>\nI'm thinking\n</think>\n\nHello, ",
        "assistant: <think>\nI'm",
    ),
    (
        "deepseek-ai-DeepSeek-V3.2",
        "<｜Assistant｜><think>I'm thinking</think>Hello, ",
        "<｜Assistant｜><think>I'm",
    ),
    (
        "deepseek-ai-DeepSeek-V4",
        "<｜Assistant｜><think>I'm thinking</think>Hello, ",
        "<｜Assistant｜><think>I'm",
    ),
    (
        "GigaChat3-10B-A1.8B",
        "assistant<|role_sep|>\nHello, ",
        "assistant<|role_sep|>\n",
    ),
];
