//! Token probabilities (`n_probs`, `post_sampling_probs`, OpenAI's `logprobs`) against
//! llama.cpp on the same model (tests/fixtures/llama_server_probs.jsonl, made by
//! scripts/gen_server_probs_fixture.sh with llama.cpp built from the llama-cpp-python 0.3.36
//! sdist).
//!
//! In llama.cpp a token's logits depend on the batch it is evaluated in: llama-server
//! evaluates the prompt as one batch but each generated token alone, on its single-token
//! kernels. The server here evaluates every token with `batch_invariant` on (so a sequence's
//! results never depend on its neighbours), which gives each token llama.cpp's prompt-batch
//! arithmetic. So the fixture holds both: llama-server's answers (the wire format, the tokens,
//! and the first token's probabilities, which come from the prompt batch in both) and the
//! log-probabilities llama.cpp computes for the same tokens evaluated as one batch (in f64
//! from its f32 logits), which the server must reproduce. Later tokens differ from
//! llama-server's own by up to ~0.2 in log-probability on this small quantized model.

use serde_json::{Value, json};

use crate::client::{TestServer, config};

/// `top` (ours, objects with `id` and `key`) against `reference` (`(id, value)` pairs): ours
/// is sorted; entries present in both agree within `tol`; one only in the reference lies within
/// `tol` of our cut-off (near-ties may swap at the edge of the list).
fn assert_same_top(top: &[Value], key: &str, reference: &[(u64, f64)], tol: f64) {
    assert_eq!(top.len(), reference.len(), "{top:?} vs {reference:?}");
    let value = |x: &Value| x[key].as_f64().unwrap();
    assert!(
        top.windows(2).all(|w| value(&w[0]) >= value(&w[1])),
        "order: {top:?}"
    );
    let cutoff = top.last().map_or(f64::NEG_INFINITY, value);
    for &(id, v) in reference {
        match top.iter().find(|x| x["id"] == id) {
            Some(x) => assert!((value(x) - v).abs() <= tol, "{key} of {id}: {x} vs {v}"),
            None => assert!(v <= cutoff + tol, "{id} ({v}) missing from {top:?}"),
        }
    }
}

/// Our answer to a fixture's request: its text and its per-token probabilities.
fn ask(s: &TestServer, req: &Value) -> (Value, Vec<Value>) {
    if req.get("messages").is_some() {
        let v = s.post("/v1/chat/completions", req).json();
        let c = &v["choices"][0];
        let p = c["logprobs"]["content"].as_array().unwrap().clone();
        (c["message"]["content"].clone(), p)
    } else {
        let v = s.post("/completion", req).json();
        let p = v["completion_probabilities"].as_array().unwrap().clone();
        (v["content"].clone(), p)
    }
}

#[test]
fn probabilities_equal_llama_cpps() {
    let s = TestServer::start(config());
    let fixtures = include_str!("../fixtures/llama_server_probs.jsonl");
    let mut n_exact = 0;
    for line in fixtures.lines() {
        let case: Value = serde_json::from_str(line).unwrap();
        let req = &case["request"];
        let post = req["post_sampling_probs"] == true;
        let (key, top_key) = if post {
            ("prob", "top_probs")
        } else {
            ("logprob", "top_logprobs")
        };
        let (content, ours) = ask(&s, req);
        // llama-server's tokens, texts and format; its values to the tolerance above.
        assert_eq!(content, case["content"], "{req}");
        let theirs = case["completion_probabilities"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len());
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            for f in ["id", "token", "bytes"] {
                assert_eq!(a[f], b[f], "{f}: {a} vs {b}");
            }
            let tol = match (i, post) {
                (0, _) => 1e-5,
                (_, true) => 0.05,
                (_, false) => 0.25,
            };
            let (pa, pb) = (a[key].as_f64().unwrap(), b[key].as_f64().unwrap());
            assert!((pa - pb).abs() <= tol, "{key} {pa} vs {pb}");
            let reference: Vec<(u64, f64)> = b[top_key]
                .as_array()
                .unwrap()
                .iter()
                .map(|y| (y["id"].as_u64().unwrap(), y[key].as_f64().unwrap()))
                .collect();
            assert_same_top(a[top_key].as_array().unwrap(), key, &reference, tol);
        }
        // llama.cpp's batch arithmetic, to the precision of the f64 reference.
        let Some(batch) = case["llama_cpp_batch"].as_array() else {
            continue;
        };
        for (a, b) in ours.iter().zip(batch) {
            assert_eq!(a["id"], b["id"]);
            let (pa, pb) = (a[key].as_f64().unwrap(), b["logprob"].as_f64().unwrap());
            assert!((pa - pb).abs() <= 5e-4, "{key} {pa} vs {pb}");
            let reference: Vec<(u64, f64)> = b["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| (t[0].as_u64().unwrap(), t[1].as_f64().unwrap()))
                .collect();
            assert_same_top(a[top_key].as_array().unwrap(), key, &reference, 5e-4);
            n_exact += 1;
        }
    }
    assert_eq!(
        n_exact, 11,
        "tokens checked against llama.cpp's batch logits"
    );
}

#[test]
fn streamed_probabilities_come_one_per_token() {
    let s = TestServer::start(config());
    let req = json!({ "prompt": "I believe the meaning of life is", "n_probs": 4,
                      "temperature": 0, "n_predict": 5, "stream": true });
    let events = s.stream("/completion", &req).collect_all();
    let objs: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let mut text = String::new();
    for o in &objs[..objs.len() - 1] {
        assert_eq!(o["stop"], false);
        let p = o["completion_probabilities"].as_array().unwrap();
        assert_eq!(p.len(), 1, "{o}");
        assert_eq!(p[0]["top_logprobs"].as_array().unwrap().len(), 4);
        assert_eq!(p[0]["token"], o["content"]);
        text.push_str(o["content"].as_str().unwrap());
    }
    assert_eq!(objs.len(), 6);
    // The same as not streamed.
    let mut plain = req.clone();
    plain["stream"] = json!(false);
    let v = s.post("/completion", &plain).json();
    assert_eq!(v["content"].as_str().unwrap(), text);
    // Without `n_probs`, no probabilities.
    let v = s
        .post(
            "/completion",
            &json!({ "prompt": "Hi", "n_predict": 2, "temperature": 0 }),
        )
        .json();
    assert!(v.get("completion_probabilities").is_none(), "{v}");
    // OpenAI completions take `logprobs` as the count.
    let v = s
        .post(
            "/v1/completions",
            &json!({ "prompt": "I believe the meaning of life is", "logprobs": 2,
                     "max_tokens": 3, "temperature": 0 }),
        )
        .json();
    let content = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(content.len(), 3);
    assert_eq!(content[0]["top_logprobs"].as_array().unwrap().len(), 2);
    // Too many is a clear error.
    s.post("/completion", &json!({ "prompt": "Hi", "n_probs": 100000 }))
        .expect_error(400, "invalid_request_error");
}
