//! Tool calls and reasoning extraction on a real model: SmolLM2 with other models' real chat
//! templates (llama.cpp's `models/templates`, the text crate's fixtures), the official openai
//! client for the forced calls, llama-server's `reasoning_format` and Ollama's `think`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{TestServer, config};

fn template(name: &str) -> String {
    let path = format!(
        "{}/../text/tests/fixtures/templates/{name}.jinja",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn server_with(name: &str) -> TestServer {
    let mut c = config();
    c.n_parallel = 1;
    c.chat_template = Some(server::TemplateChoice::Source(template(name)));
    TestServer::start(c)
}

fn weather() -> Value {
    json!([{ "type": "function", "function": {
        "name": "get_weather", "description": "Get the weather in a city",
        "parameters": { "type": "object", "properties": { "city": { "type": "string" } },
                        "required": ["city"] } } }])
}

#[test]
fn openai_client_gets_forced_tool_calls_whole_and_streamed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/test-venv.sh"))
        .output()
        .expect("run scripts/test-venv.sh");
    assert!(
        out.status.success(),
        "scripts/test-venv.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let s = server_with("Qwen-Qwen2.5-7B-Instruct");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tools.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}", s.addr))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tools.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// SmolLM2's own template knows no tools: llama-server renders it without them and answers
/// with content; so does hearth.
#[test]
fn tools_for_a_template_without_tools_leave_a_plain_answer() {
    let s = TestServer::start(config());
    let body = json!({
        "messages": [{ "role": "user", "content": "Weather in Paris?" }],
        "tools": weather(), "tool_choice": "required", "max_tokens": 8, "temperature": 0,
    });
    let v = s.post("/v1/chat/completions", &body).json();
    let m = &v["choices"][0]["message"];
    assert!(m["content"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    assert!(m.get("tool_calls").is_none(), "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
}

fn reasoning_request(format: Option<&str>, stream: bool) -> Value {
    let mut b = json!({
        "messages": [{ "role": "user", "content": "Why is the sky blue?" }],
        "max_tokens": 12, "temperature": 0, "stream": stream,
    });
    if let Some(f) = format {
        b["reasoning_format"] = f.into();
    }
    b
}

/// DeepSeek R1's template opens `<think>` in the prompt: the reply starts inside the block,
/// so with reasoning extracted (llama-server's default `auto`) all of a reply cut before
/// `</think>` is `reasoning_content`; with `none` it is the content, as generated.
#[test]
fn reasoning_from_a_block_the_prompt_opened() {
    let s = server_with("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B");
    let p = "/v1/chat/completions";
    let raw = s.post(p, &reasoning_request(Some("none"), false)).json();
    let text = raw["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!text.is_empty() && !text.contains("</think>"), "{raw}");
    assert!(
        raw["choices"][0]["message"]
            .get("reasoning_content")
            .is_none()
    );
    for format in [None, Some("auto"), Some("deepseek")] {
        let v = s.post(p, &reasoning_request(format, false)).json();
        let m = &v["choices"][0]["message"];
        assert_eq!(m["reasoning_content"], text.trim(), "{format:?}: {v}");
        assert_eq!(m["content"], "", "{format:?}: {v}");
    }
    // Streamed: the pieces come as delta.reasoning_content, none as content.
    let events = s.stream(p, &reasoning_request(None, true)).collect_all();
    let (mut reasoning, mut content) = (String::new(), String::new());
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let v: Value = serde_json::from_str(e).unwrap();
        let d = &v["choices"][0]["delta"];
        reasoning.push_str(d["reasoning_content"].as_str().unwrap_or(""));
        content.push_str(d["content"].as_str().unwrap_or(""));
    }
    assert_eq!(reasoning, text.trim());
    assert_eq!(content, "");
}

/// Ollama's `think`: the thinking goes to `message.thinking`, whole and streamed.
#[test]
fn ollama_think_returns_thinking() {
    let s = server_with("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B");
    let body = |think: Option<bool>, stream: bool| {
        let mut b = json!({
            "model": "m", "stream": stream,
            "messages": [{ "role": "user", "content": "Why is the sky blue?" }],
            "options": { "num_predict": 12, "temperature": 0 },
        });
        if let Some(t) = think {
            b["think"] = t.into();
        }
        b
    };
    let plain = s.post("/api/chat", &body(None, false)).json();
    let text = plain["message"]["content"].as_str().unwrap().to_owned();
    assert!(!text.contains("</think>"), "{plain}");
    let v = s.post("/api/chat", &body(Some(true), false)).json();
    assert_eq!(v["message"]["thinking"], text.trim(), "{v}");
    assert_eq!(v["message"]["content"], "", "{v}");
    let lines = s.stream("/api/chat", &body(Some(true), true)).collect_all();
    let mut thinking = String::new();
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap();
        thinking.push_str(v["message"]["thinking"].as_str().unwrap_or(""));
        assert_eq!(v["message"]["content"], "", "{v}");
    }
    assert_eq!(thinking, text.trim());
}

/// Ollama's `tools` reach the template: Qwen 2.5's tool preamble is in the prompt.
#[test]
fn ollama_takes_tools() {
    let s = server_with("Qwen-Qwen2.5-7B-Instruct");
    let body = |tools: Value| {
        json!({
            "model": "m", "stream": false, "tools": tools,
            "messages": [{ "role": "user", "content": "Weather in Paris?" }],
            "options": { "num_predict": 4, "temperature": 0 },
        })
    };
    let without = s.post("/api/chat", &body(json!([]))).json();
    let with = s.post("/api/chat", &body(weather())).json();
    let n = |v: &Value| v["prompt_eval_count"].as_u64().unwrap();
    assert!(n(&with) > n(&without) + 50, "{with} vs {without}");
    assert_eq!(with["done"], true);
}

/// Ollama has no `tool_choice`; its `format` schema makes SmolLM2 answer with Llama 3.1's call
/// JSON (`{"name": …, "parameters": …}`), which comes back as `message.tool_calls` with the
/// arguments as an object — whole, and streamed as one line before the last.
#[test]
fn ollama_tool_calls_from_llama3_json() {
    let s = server_with("meta-llama-Llama-3.1-8B-Instruct");
    let call_schema = json!({
        "type": "object",
        "properties": {
            "name": { "const": "get_weather" },
            "parameters": weather()[0]["function"]["parameters"],
        },
        "required": ["name", "parameters"],
    });
    let body = |stream: bool| {
        json!({
            "model": "m", "stream": stream, "tools": weather(), "format": call_schema,
            "messages": [{ "role": "user", "content": "Weather in Paris?" }],
            "options": { "num_predict": 48, "temperature": 0 },
        })
    };
    let v = s.post("/api/chat", &body(false)).json();
    let calls = v["message"]["tool_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(calls.len(), 1, "{v}");
    let f = &calls[0]["function"];
    assert_eq!(f["name"], "get_weather", "{v}");
    assert!(f["arguments"]["city"].is_string(), "{v}");
    assert_eq!(v["message"]["content"], "", "{v}");
    let lines = s.stream("/api/chat", &body(true)).collect_all();
    let streamed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["message"].get("tool_calls").is_some())
        .collect();
    assert_eq!(streamed.len(), 1, "{lines:?}");
    assert_eq!(
        streamed[0]["message"]["tool_calls"],
        v["message"]["tool_calls"]
    );
    let content: String = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["message"]["content"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(content, "");
}

/// Qwen3-Coder's template with `tool_choice: "required"`: the grammar makes SmolLM2 write an
/// XML call, which comes back as `tool_calls` with JSON arguments, whole and streamed alike.
/// (The parameters are not strings: a string's value is free text up to
/// `\n</parameter>\n`, in llama.cpp's grammar too, and this small model does not end it.)
#[test]
fn qwen3_coder_forced_calls_come_back_as_json_arguments() {
    let s = server_with("Qwen3-Coder");
    let tools = json!([{ "type": "function", "function": {
        "name": "get_weather", "description": "Get the weather in a city",
        "parameters": { "type": "object", "properties": {
            "days": { "type": "integer" }, "metric": { "type": "boolean" } },
            "required": ["days", "metric"] } } }]);
    let body = json!({
        "messages": [{ "role": "user", "content": "Weather in Paris for 3 days?" }],
        "tools": tools, "tool_choice": "required", "max_tokens": 60, "temperature": 0,
    });
    let v = s.post("/v1/chat/completions", &body).json();
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let call = &choice["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert!(
        args["days"].is_i64() && args["metric"].is_boolean(),
        "{args}"
    );
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = s.stream("/v1/chat/completions", &streamed).collect_all();
    let mut arguments = String::new();
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let e: Value = serde_json::from_str(e).unwrap();
        if let Some(a) = e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        {
            arguments.push_str(a);
        }
    }
    assert_eq!(arguments, call["arguments"].as_str().unwrap());
}
