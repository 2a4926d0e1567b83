//! llama-server's own endpoints.

use serde_json::json;

use crate::client::{TestServer, config};

#[test]
fn native_completion_props_slots_metrics_tokenize() {
    let s = TestServer::start(config());
    let v = s
        .post(
            "/completion",
            &json!({ "prompt": "The capital of France is", "n_predict": 6, "temperature": 0 }),
        )
        .json();
    assert!(v["content"].as_str().unwrap().contains("Paris"), "{v}");
    assert_eq!(v["stop"], true);
    assert_eq!(v["stop_type"], "limit");
    assert_eq!(v["tokens_predicted"], 6);
    assert!(v["timings"]["predicted_per_second"].as_f64().is_some());
    assert_eq!(v["generation_settings"]["n_predict"], 6);
    // The same prompt again on slot 0 or 1 comes from the cache when the slot is named.
    let slot = v["id_slot"].as_u64().unwrap();
    let again = s
        .post(
            "/completion",
            &json!({ "prompt": "The capital of France is", "n_predict": 6, "temperature": 0,
                     "id_slot": slot }),
        )
        .json();
    assert_eq!(again["content"], v["content"]);
    assert_eq!(again["id_slot"], slot);
    assert_eq!(again["timings"]["prompt_n"], 1);
    let none = s
        .post(
            "/completion",
            &json!({ "prompt": "The capital of France is", "n_predict": 2, "temperature": 0,
                     "id_slot": slot, "cache_prompt": false }),
        )
        .json();
    assert_eq!(none["timings"]["cache_n"], 0);
    // Streamed: pieces with stop false, then a final object with the timings.
    let events = s
        .stream(
            "/completion",
            &json!({ "prompt": "The capital of France is", "n_predict": 6, "temperature": 0,
                     "stream": true }),
        )
        .collect_all();
    let objs: Vec<serde_json::Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let text: String = objs.iter().filter_map(|o| o["content"].as_str()).collect();
    assert_eq!(text, v["content"].as_str().unwrap());
    assert_eq!(objs.last().unwrap()["stop"], true);
    assert!(objs.last().unwrap()["timings"].is_object());

    // A list of prompts gets a list of answers.
    let ids = s
        .post(
            "/tokenize",
            &json!({ "content": "The capital of France is" }),
        )
        .json()["tokens"]
        .clone();
    let many = s
        .post(
            "/completion",
            &json!({ "prompt": [ids, "The capital of France is"], "n_predict": 6,
                     "temperature": 0 }),
        )
        .json();
    let many = many.as_array().unwrap();
    assert_eq!(many.len(), 2);
    assert_eq!(many[0]["content"], v["content"]);
    assert_eq!(many[1]["content"], v["content"]);
    assert_eq!(many[1]["index"], 1);

    let p = s.get("/props").json();
    assert_eq!(p["total_slots"], 2);
    assert_eq!(p["default_generation_settings"]["n_ctx"], 1024);
    assert!(p["chat_template"].as_str().unwrap().contains("im_start"));
    let slots = s.slots();
    assert_eq!(slots.len(), 2);
    assert_eq!(slots[0]["n_ctx"], 1024);
    let m = s.get("/metrics");
    assert_eq!(m.status, 200);
    for name in [
        "prompt_tokens_total",
        "tokens_predicted_total",
        "prompt_tokens_seconds",
        "predicted_tokens_seconds",
        "requests_processing",
        "requests_deferred",
        "n_decode_total",
        "kv_cache_tokens",
    ] {
        assert!(
            m.body.contains(&format!("# TYPE llamacpp:{name} ")),
            "{name}"
        );
    }
    // 6 + 6 + 2 + 6 + 2 × 6 tokens generated (published just after the last answer is sent).
    s.wait_until("the metrics of the last step", |s| {
        s.metric("tokens_predicted_total") == 32.0
    });

    let t = s
        .post(
            "/tokenize",
            &json!({ "content": "Hello world", "with_pieces": true }),
        )
        .json();
    assert_eq!(
        t["tokens"],
        json!([{ "id": 19556, "piece": "Hello" }, { "id": 905, "piece": " world" }])
    );
    let d = s
        .post("/detokenize", &json!({ "tokens": [19556, 905] }))
        .json();
    assert_eq!(d["content"], "Hello world");
    s.post("/detokenize", &json!({ "tokens": [99_999_999] }))
        .expect_error(400, "invalid_request_error");
    let a = s
        .post(
            "/apply-template",
            &json!({ "messages": [{ "role": "user", "content": "Hi" }] }),
        )
        .json();
    assert!(
        a["prompt"]
            .as_str()
            .unwrap()
            .ends_with("<|im_start|>assistant\n"),
        "{a}"
    );
    // As llama-server: `add_generation_prompt: false` leaves the assistant's turn unopened.
    let a = s
        .post(
            "/apply-template",
            &json!({ "messages": [{ "role": "user", "content": "Hi" }],
                     "add_generation_prompt": false }),
        )
        .json();
    let p = a["prompt"].as_str().unwrap();
    assert!(p.ends_with("Hi<|im_end|>\n"), "{a}");
    s.post(
        "/apply-template",
        &json!({ "messages": [{ "role": "user", "content": "Hi" }], "tools": 3 }),
    )
    .expect_error(400, "invalid_request_error");
}

/// `/apply-template` hands the request's tools to the template, as llama-server does.
#[test]
fn apply_template_passes_tools_to_the_template() {
    let mut c = config();
    c.chat_template = Some(server::TemplateChoice::Source(
        "{% for t in tools %}[{{ t.function.name }}]{% endfor %}\
         {% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
            .into(),
    ));
    let s = TestServer::start(c);
    let tool = json!({ "type": "function", "function": { "name": "get_weather_now",
                        "parameters": { "type": "object" } } });
    let a = s
        .post(
            "/apply-template",
            &json!({ "messages": [{ "role": "user", "content": "Hi" }], "tools": [tool] }),
        )
        .json();
    assert_eq!(a["prompt"], "[get_weather_now]user: Hi\n");
}
