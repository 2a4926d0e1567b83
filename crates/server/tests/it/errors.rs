//! Every error answer: OpenAI's shape, the status codes llama-server uses, and a server that
//! keeps serving after each.

use serde_json::json;

use crate::client::{TestServer, chat, chat_text, config, stream_text};

#[test]
fn bad_requests_get_openai_errors_and_the_server_keeps_serving() {
    let mut c = config();
    c.body_limit = 64 * 1024;
    let s = TestServer::start(c);
    let p = "/v1/chat/completions";
    let msgs = json!([{ "role": "user", "content": "Hi" }]);

    // Malformed JSON, a body that is not an object.
    let r = s.request("POST", p, Some(b"{\"messages\": [}"), &[]);
    r.expect_error(400, "invalid_request_error");
    let r = s.request("POST", p, Some(b"[1, 2]"), &[]);
    r.expect_error(400, "invalid_request_error");
    // Wrong types and out-of-range values name the field.
    for (body, field) in [
        (
            json!({ "messages": msgs, "temperature": "hot" }),
            "temperature",
        ),
        (json!({ "messages": msgs, "top_p": 1.5 }), "top_p"),
        (json!({ "messages": msgs, "max_tokens": -5 }), "max_tokens"),
        (json!({ "messages": msgs, "n": 0 }), "n"),
        (json!({ "messages": msgs, "stop": 3 }), "stop"),
        (json!({ "messages": msgs, "seed": "x" }), "seed"),
        (json!({ "messages": "hello" }), "messages"),
        (
            json!({ "messages": msgs, "logit_bias": { "99999999": 1 } }),
            "logit_bias",
        ),
    ] {
        let e = s.post(p, &body).expect_error(400, "invalid_request_error");
        assert!(
            e["message"].as_str().unwrap().contains(field),
            "{field}: {e}"
        );
    }
    // Two assistant messages at the end: only one can be continued.
    let two = json!([{ "role": "user", "content": "a" }, { "role": "assistant", "content": "b" },
                     { "role": "assistant", "content": "c" }]);
    s.post(p, &json!({ "messages": two }))
        .expect_error(400, "invalid_request_error");
    // A message without a role.
    s.post(p, &json!({ "messages": [{ "content": "x" }] }))
        .expect_error(400, "invalid_request_error");
    // Token ids outside the vocabulary.
    let e = s
        .post("/v1/completions", &json!({ "prompt": [1, 2, 4_000_000] }))
        .expect_error(400, "invalid_request_error");
    assert!(e["message"].as_str().unwrap().contains("4000000"), "{e}");
    // Malformed tools and tool choices.
    let tools = json!([{ "type": "function", "function": { "name": "f" } }]);
    for bad in [
        json!({ "messages": msgs, "tools": [{ "type": "function" }] }),
        json!({ "messages": msgs, "tools": tools, "tool_choice": "sometimes" }),
        json!({ "messages": msgs, "reasoning_format": "loud" }),
    ] {
        s.post(p, &bad).expect_error(400, "invalid_request_error");
    }
    // What hearth cannot honour is refused, never ignored.
    let e = s
        .post("/v1/completions", &json!({ "prompt": "x", "tools": tools }))
        .expect_error(400, "invalid_request_error");
    assert!(
        e["message"].as_str().unwrap().contains("not supported"),
        "{e}"
    );
    // `top_logprobs` needs `logprobs`, as llama-server says.
    let e = s
        .post(p, &json!({ "messages": msgs, "top_logprobs": 2 }))
        .expect_error(400, "invalid_request_error");
    assert!(e["message"].as_str().unwrap().contains("logprobs"), "{e}");
    // A prompt longer than a slot's context.
    let long = "word ".repeat(3000);
    let e = s
        .post(
            p,
            &json!({ "messages": [{ "role": "user", "content": long }] }),
        )
        .expect_error(400, "exceed_context_size_error");
    assert!(e["n_prompt_tokens"].as_u64().unwrap() > 1024, "{e}");
    assert_eq!(e["n_ctx"], 1024);
    // Unknown routes, bodies over the limit.
    s.get("/v1/nothing-here")
        .expect_error(404, "not_found_error");
    let big = format!("{{\"prompt\": \"{}\"}}", "a".repeat(100 * 1024));
    s.request("POST", "/v1/completions", Some(big.as_bytes()), &[])
        .expect_error(413, "invalid_request_error");
    // Disabled endpoints say how to enable them.
    let mut c = config();
    c.metrics = false;
    c.slots_endpoint = false;
    c.n_parallel = 1;
    c.n_ctx = 256;
    let s2 = TestServer::start(c);
    s2.get("/metrics").expect_error(501, "not_supported_error");
    s2.get("/slots").expect_error(501, "not_supported_error");
    drop(s2);

    // Unknown fields are accepted and `null` is absent.
    let mut ok = chat("Hi", 4);
    ok["frobnicate"] = json!({ "x": 1 });
    ok["top_p"] = json!(null);
    ok["stop"] = json!(null);
    ok["user"] = json!("someone");
    let r = s.post(p, &ok);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["usage"]["completion_tokens"], 4);
    assert_eq!(s.get("/health").json()["status"], "ok");
    // CORS: any origin by default, reflected with credentials; preflights answered anywhere.
    let r = s.request("GET", "/health", None, &[("Origin", "http://example.com")]);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://example.com")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let r = s.request(
        "OPTIONS",
        "/v1/chat/completions",
        None,
        &[("Origin", "http://a.b")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("http://a.b"));
    // Header names go out in title case, as llama-server sends them.
    assert!(
        r.headers
            .iter()
            .any(|(k, _)| k == "Access-Control-Allow-Origin")
    );
    let mut c = config();
    c.cors_origins = vec!["localhost".into()];
    c.n_parallel = 1;
    c.n_ctx = 256;
    let s3 = TestServer::start(c);
    for (origin, ok) in [
        ("http://localhost:8080", true),
        ("http://127.0.0.1", true),
        ("http://[::1]:3000", true),
        ("http://localhost.evil.com", false),
        ("http://evil.com", false),
    ] {
        let r = s3.request("OPTIONS", "/completions", None, &[("Origin", origin)]);
        assert_eq!(
            r.header("access-control-allow-origin").is_some(),
            ok,
            "{origin}"
        );
    }
    drop(s3);
}

#[test]
fn api_key_is_required_except_on_health() {
    let mut c = config();
    c.api_keys = vec!["sekrit".into(), "other-key".into()];
    c.n_parallel = 1;
    c.n_ctx = 512;
    let s = TestServer::start(c);
    let body = chat("Hi", 2).to_string();
    let p = "/v1/chat/completions";
    let r = s.request("POST", p, Some(body.as_bytes()), &[]);
    let e = r.expect_error(401, "authentication_error");
    assert_eq!(e["message"], "Invalid API Key");
    for wrong in ["Bearer sekri", "Bearer sekritt", "Bearer ", "sekrit"] {
        let r = s.request(
            "POST",
            p,
            Some(body.as_bytes()),
            &[("Authorization", wrong)],
        );
        r.expect_error(401, "authentication_error");
    }
    for right in ["Bearer sekrit", "Bearer other-key"] {
        let r = s.request(
            "POST",
            p,
            Some(body.as_bytes()),
            &[("Authorization", right)],
        );
        assert_eq!(r.status, 200, "{right}: {}", r.body);
    }
    let r = s.request("POST", p, Some(body.as_bytes()), &[("X-Api-Key", "sekrit")]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(s.get("/health").status, 200);
    assert_eq!(s.get("/v1/models").status, 200);
    s.get("/props").expect_error(401, "authentication_error");
    s.get("/api/ps").expect_error(401, "authentication_error");
}

#[test]
fn a_full_queue_answers_503_and_the_server_recovers() {
    let mut c = config();
    c.n_parallel = 1;
    c.queue_size = 1;
    c.n_ctx = 512;
    let s = TestServer::start(c);
    // One request generating, one waiting: the next is refused.
    let mut running = s.stream(
        "/v1/chat/completions",
        &json!({ "messages": [{ "role": "user", "content": "Count to one hundred." }],
                 "temperature": 0, "max_tokens": 400, "stream": true }),
    );
    assert!(running.next_event().is_some());
    // The role chunk comes before the job is taken: wait until it runs.
    s.wait_until("the stream to run", |s| {
        s.slots()[0]["is_processing"] == true
    });
    std::thread::scope(|sc| {
        let waiting = sc.spawn(|| s.post("/v1/chat/completions", &chat("Hi", 3)));
        s.wait_until("a deferred request", |s| {
            s.metric("requests_deferred") >= 1.0
        });
        s.post("/v1/chat/completions", &chat("Hello", 3))
            .expect_error(503, "unavailable_error");
        drop(running);
        let r = waiting.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    });
    assert_eq!(s.post("/v1/chat/completions", &chat("Hey", 2)).status, 200);
}

#[test]
fn a_bad_request_during_a_stream_does_not_disturb_it() {
    let s = TestServer::start(config());
    let mut body = chat("Tell me about the sea.", 40);
    let solo = chat_text(&s.post("/v1/chat/completions", &body).json());
    body["stream"] = json!(true);
    let mut st = s.stream("/v1/chat/completions", &body);
    let mut events = vec![st.next_event().unwrap(), st.next_event().unwrap()];
    s.request("POST", "/v1/chat/completions", Some(b"{oops"), &[])
        .expect_error(400, "invalid_request_error");
    s.post(
        "/v1/chat/completions",
        &json!({ "messages": [], "temperature": 9 }),
    )
    .expect_error(400, "invalid_request_error");
    s.post("/v1/completions", &json!({ "prompt": [99_999_999] }))
        .expect_error(400, "invalid_request_error");
    events.extend(st.collect_all());
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(stream_text(&events), solo);
}

/// `--timeout`: a client that stalls sending its request is disconnected, and the server goes
/// on serving others.
#[test]
fn slow_clients_are_disconnected_after_the_timeout() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let mut c = config();
    c.timeout = Duration::from_secs(1);
    let s = TestServer::start(c);
    // How long until the server closes a connection that stalls after sending `head`.
    let closed_after = |head: &[u8]| {
        let mut conn = TcpStream::connect(s.addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        conn.write_all(head).unwrap();
        let t0 = Instant::now();
        let mut buf = Vec::new();
        // Whatever the server answers (nothing, or a 408/400), the connection ends.
        let _ = conn.read_to_end(&mut buf);
        (t0.elapsed(), String::from_utf8_lossy(&buf).into_owned())
    };
    // Half a request head.
    let (t, _) = closed_after(b"POST /completion HTTP/1.1\r\nHost: x\r\n");
    assert!(t < Duration::from_secs(10), "head: closed after {t:?}");
    // A body that never arrives in full.
    let (t, answer) = closed_after(
        b"POST /completion HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"prompt\":",
    );
    assert!(t < Duration::from_secs(10), "body: closed after {t:?}");
    assert!(!answer.contains("200 OK"), "{answer}");
    // Others are served meanwhile and after.
    let v = s.post("/v1/chat/completions", &chat("Hi", 2)).json();
    assert!(!chat_text(&v).is_empty());
}
