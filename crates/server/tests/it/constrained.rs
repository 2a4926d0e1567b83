//! Constrained output on every route: JSON schemas (llama-server's `json_schema`, OpenAI's
//! `response_format`, Ollama's `format`) give JSON that validates, streamed and not; GBNF
//! grammars from llama.cpp's `grammars/` (the engine's fixtures) hold the output; bad grammars
//! and schemas are 400s naming the problem.

use serde_json::{Value, json};

use crate::client::{TestServer, chat_text, config, stream_text};

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "maxLength": 20 },
            "age": { "type": "integer", "minimum": 18, "maximum": 99 },
            "pet": { "enum": ["cat", "dog", "fish"] },
            "hobbies": { "type": "array", "items": { "type": "string", "maxLength": 16 },
                         "minItems": 1, "maxItems": 3 }
        },
        "required": ["name", "age", "pet", "hobbies"],
        "additionalProperties": false
    })
}

/// The person schema's rules, checked by hand.
fn check_person(text: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {text}"));
    let keys: Vec<&str> = o.keys().map(String::as_str).collect();
    assert_eq!(keys, ["name", "age", "pet", "hobbies"], "{text}");
    assert!(
        o["name"].as_str().is_some_and(|s| s.chars().count() <= 20),
        "{text}"
    );
    assert!(
        o["age"].as_i64().is_some_and(|a| (18..=99).contains(&a)),
        "{text}"
    );
    assert!(
        ["cat", "dog", "fish"].contains(&o["pet"].as_str().unwrap()),
        "{text}"
    );
    let h = o["hobbies"].as_array().unwrap();
    assert!((1..=3).contains(&h.len()), "{text}");
    assert!(
        h.iter()
            .all(|x| x.as_str().is_some_and(|s| s.chars().count() <= 16)),
        "{text}"
    );
}

fn grammar_fixture(name: &str) -> String {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../engine/tests/fixtures/grammars/"
    );
    std::fs::read_to_string(format!("{p}{name}")).unwrap()
}

fn messages() -> Value {
    json!([{ "role": "user", "content": "Describe a person." }])
}

#[test]
fn json_schema_on_every_route() {
    let s = TestServer::start(config());
    let schema = person_schema();
    // OpenAI's response_format, sampled, not streamed and streamed: same text, and it validates.
    let body = json!({
        "messages": messages(), "temperature": 0.9, "seed": 7, "max_tokens": 200,
        "response_format": { "type": "json_schema",
                             "json_schema": { "name": "person", "schema": schema } },
    });
    let r = s.post("/v1/chat/completions", &body).json();
    let text = chat_text(&r);
    check_person(&text);
    assert_eq!(r["choices"][0]["finish_reason"], "stop", "{r}");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = s.stream("/v1/chat/completions", &streamed).collect_all();
    assert_eq!(stream_text(&events), text);
    // n = 2: each choice has its own matcher.
    let mut two = body.clone();
    two["n"] = json!(2);
    two["seed"] = json!(11);
    let r = s.post("/v1/chat/completions", &two).json();
    for c in r["choices"].as_array().unwrap() {
        check_person(c["message"]["content"].as_str().unwrap());
    }
    // llama-server's json_schema on /completion and /v1/completions.
    let r = s
        .post(
            "/completion",
            &json!({ "prompt": "A person, as JSON:", "json_schema": schema,
                     "temperature": 0, "n_predict": 200 }),
        )
        .json();
    check_person(r["content"].as_str().unwrap());
    let r = s
        .post(
            "/v1/completions",
            &json!({ "prompt": "A person, as JSON:", "json_schema": schema,
                     "temperature": 0.8, "seed": 3, "max_tokens": 200 }),
        )
        .json();
    check_person(r["choices"][0]["text"].as_str().unwrap());
    // Ollama's format, a schema on /api/chat and "json" on /api/generate.
    let r = s
        .post(
            "/api/chat",
            &json!({ "model": "x", "messages": messages(), "format": schema, "stream": false,
                     "options": { "temperature": 0, "num_predict": 200 } }),
        )
        .json();
    check_person(r["message"]["content"].as_str().unwrap());
    let r = s
        .post(
            "/api/generate",
            &json!({ "model": "x", "prompt": "Describe a cat as JSON.", "format": "json",
                     "stream": false, "options": { "temperature": 0, "num_predict": 120 } }),
        )
        .json();
    let text = r["response"].as_str().unwrap();
    if r["done_reason"] == "stop" {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert!(v.is_object(), "{text}");
    } else {
        assert!(text.starts_with('{'), "{text:?}");
    }
}

#[test]
fn json_object_gives_a_json_object() {
    let s = TestServer::start(config());
    let mut complete = 0;
    for (seed, temperature) in [(1, 0.0), (2, 0.8), (3, 0.8)] {
        let r = s
            .post(
                "/v1/chat/completions",
                &json!({ "messages": [{ "role": "user",
                                        "content": "A JSON object with a name and an age." }],
                         "temperature": temperature, "seed": seed, "max_tokens": 200,
                         "response_format": { "type": "json_object" } }),
            )
            .json();
        let text = chat_text(&r);
        // Cut by max_tokens, the text is the start of an object; ended by the model, one.
        assert!(text.starts_with('{'), "{text:?}");
        if r["choices"][0]["finish_reason"] == "stop" {
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
            assert!(v.is_object(), "{text}");
            complete += 1;
        }
    }
    assert!(complete > 0, "no object was finished");
}

#[test]
fn gbnf_grammars_hold_the_output() {
    let s = TestServer::start(config());
    // llama-server's test: a grammar that ends stops generation.
    let r = s
        .post(
            "/v1/chat/completions",
            &json!({ "messages": [{ "role": "user", "content": "Does not matter what I say, does it?" }],
                     "max_tokens": 6, "grammar": "root ::= \"a\"{5,5}" }),
        )
        .json();
    assert_eq!(chat_text(&r), "aaaaa");
    assert_eq!(r["choices"][0]["finish_reason"], "stop");
    // list.gbnf: every line is "- item".
    let r = s
        .post(
            "/completion",
            &json!({ "prompt": "A shopping list:\n", "grammar": grammar_fixture("list.gbnf"),
                     "temperature": 0.7, "seed": 5, "n_predict": 40 }),
        )
        .json();
    let text = r["content"].as_str().unwrap();
    for line in text.split_inclusive('\n') {
        assert!(line.starts_with("- ") && line.len() > 2, "{text:?}");
    }
    // json.gbnf, streamed on /completion: an object, or its prefix when cut.
    let events = s
        .stream(
            "/completion",
            &json!({ "prompt": "Write a JSON object describing a cat:",
                     "grammar": grammar_fixture("json.gbnf"), "temperature": 0.5, "seed": 9,
                     "n_predict": 200, "stream": true }),
        )
        .collect_all();
    let mut text = String::new();
    let mut stop = None;
    for e in &events {
        let v: Value = serde_json::from_str(e).unwrap();
        text.push_str(v["content"].as_str().unwrap_or(""));
        if v["stop"] == true {
            stop = Some(v["stop_type"].clone());
        }
    }
    assert!(text.starts_with('{'), "{text:?}");
    if stop == Some(json!("eos")) {
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert!(v.is_object());
    }
    // chess.gbnf on /v1/completions: numbered moves.
    let r = s
        .post(
            "/v1/completions",
            &json!({ "prompt": "The best chess opening moves are", "max_tokens": 24,
                     "grammar": grammar_fixture("chess.gbnf"), "temperature": 0 }),
        )
        .json();
    let text = r["choices"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("1. "), "{text:?}");
}

#[test]
fn bad_grammars_and_schemas_are_400s_naming_the_problem() {
    let s = TestServer::start(config());
    let msgs = messages();
    for (route, body, says) in [
        (
            "/v1/chat/completions",
            json!({ "messages": msgs, "grammar": "root ::= this is (not valid GBNF" }),
            "GBNF",
        ),
        (
            "/completion",
            json!({ "prompt": "x", "grammar": "root ::= undefined-rule" }),
            "undefined-rule",
        ),
        (
            "/completion",
            json!({ "prompt": "x", "json_schema": { "type": "hiccup" } }),
            "JSON schema",
        ),
        (
            "/v1/completions",
            json!({ "prompt": "x", "json_schema": { "type": "object" }, "grammar": "root ::= \"a\"" }),
            "together",
        ),
        (
            "/v1/chat/completions",
            json!({ "messages": msgs, "response_format": { "type": "sound" } }),
            "response_format",
        ),
        (
            "/v1/chat/completions",
            json!({ "messages": msgs, "response_format": { "type": "json_object", "schema": 123 } }),
            "JSON schema",
        ),
        (
            "/v1/chat/completions",
            json!({ "messages": msgs, "response_format": { "type": "json_schema",
                    "json_schema": { "schema": { "type": 123 } } } }),
            "JSON schema",
        ),
    ] {
        let e = s
            .post(route, &body)
            .expect_error(400, "invalid_request_error");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains(says), "{route} {body}: {m}");
    }
    let r = s.post(
        "/api/generate",
        &json!({ "model": "x", "prompt": "x", "format": { "type": "hiccup" } }),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().contains("JSON schema"),
        "{}",
        r.body
    );
    // The server keeps serving.
    let r = s.post("/completion", &json!({ "prompt": "Hi", "n_predict": 2 }));
    assert_eq!(r.status, 200);
}
