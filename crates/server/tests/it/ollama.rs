//! Ollama's routes.

use serde_json::{Value, json};

use crate::client::{TestServer, config};

#[test]
fn ollama_routes() {
    let s = TestServer::start(config());
    let r = s.get("/");
    assert_eq!((r.status, r.body.as_str()), (200, "Ollama is running"));
    assert!(s.get("/api/version").json()["version"].is_string());
    let tags = s.get("/api/tags").json();
    let m = &tags["models"][0];
    assert_eq!(m["name"], "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(m["details"]["family"], "llama");
    assert_eq!(m["details"]["quantization_level"], "Q4_1");
    let show = s.post("/api/show", &json!({ "model": m["name"] })).json();
    assert_eq!(show["model_info"]["general.architecture"], "llama");
    assert!(show["template"].as_str().unwrap().contains("im_start"));
    assert_eq!(s.get("/api/ps").json()["models"][0]["name"], m["name"]);

    let body = json!({
        "model": m["name"],
        "messages": [{ "role": "user", "content": "What is the capital of France?" }],
        "stream": false,
        "options": { "temperature": 0, "num_predict": 8, "seed": 1 },
    });
    let v = s.post("/api/chat", &body).json();
    assert_eq!(v["done"], true);
    assert_eq!(v["done_reason"], "length");
    assert_eq!(v["eval_count"], 8);
    assert!(v["total_duration"].as_u64().unwrap() >= v["eval_duration"].as_u64().unwrap());
    let text = v["message"]["content"].as_str().unwrap().to_owned();
    // Streaming is the default: NDJSON, then a final object with done true.
    let mut sbody = body.clone();
    sbody.as_object_mut().unwrap().remove("stream");
    let lines: Vec<Value> = s
        .stream("/api/chat", &sbody)
        .collect_all()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let streamed: String = lines
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    assert!(lines[..lines.len() - 1].iter().all(|l| l["done"] == false));
    assert_eq!(lines.last().unwrap()["done_reason"], "length");

    let g = s
        .post(
            "/api/generate",
            &json!({ "model": "x", "prompt": "The capital of France is", "raw": true,
                     "stream": false, "options": { "temperature": 0, "num_predict": 4 } }),
        )
        .json();
    assert!(g["response"].as_str().unwrap().contains("Paris"), "{g}");
    let g = s
        .post(
            "/api/generate",
            &json!({ "model": "x", "prompt": "What is the capital of France?",
                     "stream": false, "options": { "temperature": 0, "num_predict": 8 } }),
        )
        .json();
    assert_eq!(g["response"].as_str().unwrap(), text);

    for verb in ["/api/pull", "/api/push", "/api/create"] {
        let r = s.post(verb, &json!({ "model": "llama3" }));
        assert_eq!(r.status, 501);
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("not supported")
        );
    }
    let r = s.post(
        "/api/chat",
        &json!({ "model": "x", "messages": [{"role": "user", "content": "x"}], "format": "yaml" }),
    );
    assert_eq!(r.status, 400);
    assert!(r.json()["error"].as_str().unwrap().contains("format"));
}
