//! OpenAI's routes: answers in OpenAI's (and llama-server's) shape, llama-server's stream order,
//! sampling settings honoured.

use serde_json::{Value, json};

use crate::client::{TestServer, chat, chat_text, config, stream_text};

#[test]
fn chat_completion_non_stream_and_stream_agree() {
    let s = TestServer::start(config());
    let mut body = json!({
        "messages": [
            { "role": "system", "content": "You are terse." },
            { "role": "user", "content": "Name a colour." },
        ],
        "temperature": 0.9,
        "seed": 1234,
        "max_tokens": 24,
    });
    let r = s.post("/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert!(v["choices"][0]["finish_reason"].is_string());
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    assert!(v["timings"]["predicted_n"].as_u64().is_some());
    let text = chat_text(&v);

    body["stream"] = json!(true);
    body["stream_options"] = json!({ "include_usage": true });
    let events = s.stream("/v1/chat/completions", &body).collect_all();
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(events.last().unwrap(), "[DONE]");
    // llama-server's order: role first, content, finish_reason without content, usage.
    let first = &chunks[0]["choices"][0];
    assert_eq!(first["delta"]["role"], "assistant");
    let n = chunks.len();
    let fin = &chunks[n - 2]["choices"][0];
    assert_eq!(fin["finish_reason"], v["choices"][0]["finish_reason"]);
    assert!(fin["delta"].get("content").is_none(), "{fin}");
    assert_eq!(chunks[n - 1]["choices"], json!([]));
    assert_eq!(
        chunks[n - 1]["usage"]["completion_tokens"],
        v["usage"]["completion_tokens"]
    );
    for c in &chunks[1..n - 2] {
        assert!(c["choices"][0]["finish_reason"].is_null());
        assert_eq!(c["object"], "chat.completion.chunk");
    }
    assert_eq!(stream_text(&events), text);
    // llama.cpp's other samplers: the stream still equals the answer for the same seed.
    let mut other = body.clone();
    other["stream"] = json!(false);
    other["stream_options"] = json!(null);
    for (k, v) in [
        ("mirostat", json!(2)),
        ("dry_multiplier", json!(0.8)),
        ("xtc_probability", json!(0.5)),
        ("dynatemp_range", json!(0.3)),
        ("samplers", json!(["dry", "top_k", "xtc", "temperature"])),
    ] {
        other[k] = v;
    }
    let plain = chat_text(&s.post("/v1/chat/completions", &other).json());
    other["stream"] = json!(true);
    let events = s.stream("/v1/chat/completions", &other).collect_all();
    assert_eq!(stream_text(&events), plain);
    // Without include_usage there is no usage chunk.
    body["stream_options"] = json!(null);
    let events = s.stream("/v1/chat/completions", &body).collect_all();
    let last: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert!(last["choices"][0]["finish_reason"].is_string(), "{last}");
    assert_eq!(stream_text(&events), text);
}

#[test]
fn stop_strings_never_leak_and_n_gives_several_choices() {
    let s = TestServer::start(config());
    let full = chat_text(
        &s.post(
            "/v1/chat/completions",
            &chat("What is the capital of France?", 20),
        )
        .json(),
    );
    // Stop on a word from the middle of the greedy answer.
    let word: String = full.split_whitespace().nth(2).unwrap().to_owned();
    let mut body = chat("What is the capital of France?", 20);
    body["stop"] = json!([word, "zzzz-never"]);
    let v = s.post("/v1/chat/completions", &body).json();
    let cut = chat_text(&v);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(!cut.contains(&word), "{cut:?} contains {word:?}");
    assert!(full.starts_with(&cut), "{full:?} / {cut:?}");
    body["stream"] = json!(true);
    let events = s.stream("/v1/chat/completions", &body).collect_all();
    assert_eq!(stream_text(&events), cut);

    let body = json!({
        "messages": [{ "role": "user", "content": "Say something." }],
        "n": 2, "temperature": 1.0, "seed": 7, "max_tokens": 8,
    });
    let before = s.metric("prompt_tokens_total");
    let v = s.post("/v1/chat/completions", &body).json();
    // The prompt is evaluated once: the second choice shares its cells (and evaluates only the
    // last prompt token again, for its own logits).
    let n_prompt = v["usage"]["prompt_tokens"].as_f64().unwrap();
    let cached = v["usage"]["prompt_tokens_details"]["cached_tokens"]
        .as_f64()
        .unwrap();
    s.wait_until("the metrics of the last step", |s| {
        s.metric("prompt_tokens_total") - before == n_prompt - cached + 1.0
    });
    let choices = v["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 2);
    assert_eq!(choices[0]["index"], 0);
    assert_eq!(choices[1]["index"], 1);
    assert_eq!(v["usage"]["completion_tokens"], 16);
}

#[test]
fn completions_models_and_logit_bias() {
    let s = TestServer::start(config());
    let v = s
        .post(
            "/v1/completions",
            &json!({ "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0 }),
        )
        .json();
    assert_eq!(v["object"], "text_completion");
    let text = v["choices"][0]["text"].as_str().unwrap().to_owned();
    assert!(text.contains("Paris"), "{text:?}");
    // The same prompt as token ids, and echoed.
    let ids = s
        .post(
            "/tokenize",
            &json!({ "content": "The capital of France is" }),
        )
        .json()["tokens"]
        .clone();
    let v2 = s
        .post(
            "/v1/completions",
            &json!({ "prompt": ids, "max_tokens": 6, "temperature": 0 }),
        )
        .json();
    assert_eq!(v2["choices"][0]["text"], text.as_str());
    let v3 = s
        .post(
            "/v1/completions",
            &json!({ "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0, "echo": true }),
        )
        .json();
    assert_eq!(
        v3["choices"][0]["text"],
        format!("The capital of France is{text}")
    );
    // Banning the first token changes the answer.
    let first = s.post("/tokenize", &json!({ "content": text })).json()["tokens"][0].clone();
    let v4 = s
        .post(
            "/v1/completions",
            &json!({ "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0,
                     "logit_bias": { first.to_string(): -100 } }),
        )
        .json();
    assert_ne!(v4["choices"][0]["text"], text.as_str());

    // Several prompts in one request: a choice each, in order, each its solo answer.
    let two = s
        .post(
            "/v1/completions",
            &json!({ "prompt": ["The capital of France is", "One, two, three,"],
                     "max_tokens": 6, "temperature": 0 }),
        )
        .json();
    let solo2 = s
        .post(
            "/v1/completions",
            &json!({ "prompt": "One, two, three,", "max_tokens": 6, "temperature": 0 }),
        )
        .json();
    assert_eq!(two["choices"][0]["text"], text.as_str());
    assert_eq!(two["choices"][1]["text"], solo2["choices"][0]["text"]);
    assert_eq!(two["choices"][1]["index"], 1);
    assert_eq!(two["usage"]["completion_tokens"], 12);

    let m = s.get("/v1/models").json();
    assert_eq!(m["object"], "list");
    assert!(m["data"][0]["id"].as_str().unwrap().ends_with(".gguf"));
    assert_eq!(m["data"][0]["object"], "model");
}

#[test]
fn a_final_assistant_message_is_continued() {
    let s = TestServer::start(config());
    let body = json!({
        "messages": [
            { "role": "user", "content": "What is the capital of France?" },
            { "role": "assistant", "content": "The capital of France is" },
        ],
        "temperature": 0, "max_tokens": 4,
    });
    let v = s.post("/v1/chat/completions", &body).json();
    let text = chat_text(&v);
    assert!(text.contains("Paris"), "{text:?}");
    let prompt = s.post("/apply-template", &body).json()["prompt"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(prompt.ends_with("The capital of France is"), "{prompt:?}");
}

#[test]
fn aliases_name_the_model_as_llama_server_does() {
    let mut c = config();
    c.aliases = ["tinyllama-2", "fim", "code"].map(String::from).to_vec();
    c.tags = ["chat", "small"].map(String::from).to_vec();
    let s = TestServer::start(c);
    let v = s.get("/v1/models").json();
    let m = &v["data"][0];
    // llama-server keeps aliases in a sorted set: the first is the id.
    assert_eq!(m["id"], "code");
    assert_eq!(m["aliases"], json!(["tinyllama-2", "fim", "code"]));
    assert_eq!(m["tags"], json!(["chat", "small"]));
    let r = s.post("/v1/chat/completions", &chat("Hi", 2)).json();
    assert_eq!(r["model"], "code");
    assert_eq!(s.get("/api/tags").json()["models"][0]["name"], "code");
}
