//! `POST /infill` against llama-server's answers (`tests/fixtures/infill.json`, recorded by
//! `scripts/gen_infill_fixture.py` from llama-server on the same model with the same flags):
//! SmolLM2 with four unused special tokens renamed to fill-in-the-middle tokens, so both find
//! `<fim_prefix>`, `<fim_suffix>`, `<fim_middle>` and `<|file_sep|>` by their text. The prompt
//! laid out (extra files, repo and file separators, the prefix's end, the suffix's start) gives
//! the same prompt text and token count, and greedy decoding the same completion, as
//! llama-server's; bad extra context gets its 400s, and a model without the tokens its 501.
//! Ollama's `/api/generate` with a `suffix` lays the prompt out as Ollama's code-model
//! templates do (`<PRE>prompt<SUF>suffix<MID>`) and answers as llama-server completes that
//! layout given as token ids.

use serde_json::{Value, json};

use crate::client::{TestServer, config};

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/infill.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// SmolLM2 with the fixture's tokens renamed, written with hearth's GGUF writer.
fn edited_model(fx: &Value, dir: &std::path::Path) -> std::path::PathBuf {
    let bytes = std::fs::read(test_models::path(test_models::SMOLLM2)).unwrap();
    let file = gguf::Gguf::parse(&bytes).unwrap();
    let mut tokens: Vec<String> = file
        .get_str_array("tokenizer.ggml.tokens")
        .unwrap()
        .into_iter()
        .map(str::to_owned)
        .collect();
    for (id, text) in fx["fim_renames"].as_object().unwrap() {
        tokens[id.parse::<usize>().unwrap()] = text.as_str().unwrap().to_owned();
    }
    let mut b = gguf::Builder::from_gguf(&file);
    b.set(
        "tokenizer.ggml.tokens",
        gguf::Value::Array(gguf::Array::from_strs(&tokens)),
    )
    .unwrap();
    let path = dir.join("smollm2-fim.gguf");
    b.write_to(std::io::BufWriter::new(
        std::fs::File::create(&path).unwrap(),
    ))
    .unwrap();
    path
}

/// The test server's configuration as the fixture's llama-server flags give it.
fn fim_config(model: std::path::PathBuf) -> server::Config {
    let mut c = config();
    c.model = model;
    c.n_ctx = 2048;
    c.n_parallel = 2;
    c.n_threads = 1;
    c.n_batch = 256;
    c
}

#[test]
fn infill_answers_as_llama_server() {
    let fx = fixture();
    assert_eq!(
        fx["server_args"],
        json!([
            "-c", "2048", "-np", "2", "-t", "1", "-b", "256", "--temp", "0", "--seed", "1"
        ])
    );
    // Without fill-in-the-middle tokens: llama-server's 501.
    let plain = TestServer::start(config());
    let case0 = &fx["cases"][0]["request"];
    let r = plain.post("/infill", case0);
    assert_eq!(r.status, 501, "{}", r.body);
    assert_eq!(r.json()["error"], fx["unsupported"]["error"]);
    let show = |s: &TestServer| s.post("/api/show", &json!({"model": "m"})).json();
    assert_eq!(show(&plain)["capabilities"], json!(["completion"]));
    // …and Ollama's 400 for a suffix.
    let r = plain.post(
        "/api/generate",
        &json!({"model": "m", "prompt": "def f(", "suffix": ")", "stream": false}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("does not support insert"),
        "{}",
        r.body
    );
    drop(plain);

    let tmp = tempfile::tempdir().unwrap();
    let s = TestServer::start(fim_config(edited_model(&fx, tmp.path())));
    assert_eq!(show(&s)["capabilities"], json!(["completion", "insert"]));
    for (i, case) in fx["cases"].as_array().unwrap().iter().enumerate() {
        let mut req = case["request"].clone();
        req["temperature"] = 0.into();
        let want = &case["answer"];
        if req["stream"] == true {
            let events: Vec<Value> = s
                .stream("/infill", &req)
                .collect_all()
                .iter()
                .map(|e| serde_json::from_str(e).unwrap())
                .collect();
            let text: String = events
                .iter()
                .filter_map(|e| e["content"].as_str())
                .collect();
            assert_eq!(text, want["content"].as_str().unwrap(), "case {i}");
            let last = events.last().unwrap();
            for k in ["stop", "stop_type", "tokens_evaluated", "tokens_predicted"] {
                assert_eq!(last[k], want["last"][k], "case {i}: {k}");
            }
            continue;
        }
        let r = s.post("/infill", &req);
        assert_eq!(r.status, 200, "case {i}: {}", r.body);
        let got = r.json();
        for k in [
            "prompt",
            "tokens_evaluated",
            "content",
            "tokens_predicted",
            "stop_type",
        ] {
            assert_eq!(got[k], want[k], "case {i}: {k}");
        }
    }
    // Ollama's `/api/generate` with a suffix: llama-server's completion of the same layout.
    for case in fx["ollama_insert"].as_array().unwrap() {
        let req = &case["request"];
        let want = &case["answer"];
        let got = s
            .post(
                "/api/generate",
                &json!({"model": "m", "prompt": req["prompt"], "suffix": req["suffix"],
                        "stream": false,
                        "options": {"temperature": 0, "num_predict": req["num_predict"]}}),
            )
            .json();
        assert_eq!(got["response"], want["content"], "{req}");
        assert_eq!(got["prompt_eval_count"], want["tokens_evaluated"], "{req}");
        assert_eq!(got["eval_count"], want["tokens_predicted"], "{req}");
    }
    for bad in fx["bad_extra"].as_array().unwrap() {
        let mut req = fx["cases"][0]["request"].clone();
        req["input_extra"] = json!([bad["input_extra"]]);
        let r = s.post("/infill", &req);
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.json()["error"], bad["answer"]["error"], "{bad}");
    }
    drop(s);
    // `--spm-infill`: the suffix first.
    let mut c = fim_config(edited_model(&fx, tmp.path()));
    c.spm_infill = true;
    let s = TestServer::start(c);
    let case = &fx["spm_case"];
    let mut req = case["request"].clone();
    req["temperature"] = 0.into();
    let got = s.post("/infill", &req).json();
    for k in ["prompt", "tokens_evaluated", "content", "tokens_predicted"] {
        assert_eq!(got[k], case["answer"][k], "spm: {k}");
    }
    // hearth's own refusals, where llama-server answers 500 or ignores the field.
    for (req, what) in [
        (json!({"input_suffix": "}"}), "input_prefix"),
        (json!({"input_prefix": "int"}), "input_suffix"),
        (
            json!({"input_prefix": "a", "input_suffix": "b", "prompt": 3}),
            "prompt",
        ),
        (
            json!({"input_prefix": ["a", 99999999], "input_suffix": "b"}),
            "input_prefix",
        ),
        (
            json!({"input_prefix": {"a": 1}, "input_suffix": "b"}),
            "input_prefix",
        ),
    ] {
        let r = s.post("/infill", &req);
        assert_eq!(r.status, 400, "{req}: {}", r.body);
        let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(msg.contains(what), "{req}: {msg}");
    }
}
