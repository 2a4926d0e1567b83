//! The variables a chat template sees, and `--reasoning`: llama.cpp's own server tests
//! (tools/server/tests/unit/test_template.py) with their expected prompt endings, on the real
//! templates they use (shared with text's template suite).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::client::{TestServer, config};

fn template(name: &str) -> String {
    let path = format!(
        "{}/../text/tests/fixtures/templates/{name}.jinja",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn server(name: &str, reasoning: Option<bool>) -> TestServer {
    let mut c = config();
    c.n_parallel = 1;
    c.chat_template = Some(server::TemplateChoice::Source(template(name)));
    c.reasoning = reasoning;
    TestServer::start(c)
}

fn prompt(s: &TestServer, extra: Value) -> String {
    let mut body = json!({ "messages": [{ "role": "user", "content": "What is today?" }] });
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let v = s.post("/apply-template", &body).json();
    v["prompt"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"))
        .to_owned()
}

#[test]
fn reasoning_on_off_auto_end_prompts_as_llama_server_does() {
    let tool = json!([{ "type": "function", "function": {
        "name": "python", "description": "Runs code",
        "parameters": { "type": "object", "properties": { "code": { "type": "string" } },
                        "required": ["code"] } } }]);
    // (template, --reasoning, expected end) from test_template.py::test_reasoning.
    let cases: &[(&str, Option<bool>, &str)] = &[
        (
            "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
            Some(true),
            "<think>\n",
        ),
        (
            "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
            None,
            "<think>\n",
        ),
        (
            "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
            Some(false),
            "<think>\n</think>",
        ),
        ("Qwen-Qwen3-0.6B", None, "<|im_start|>assistant\n"),
        (
            "Qwen-Qwen3-0.6B",
            Some(false),
            "<|im_start|>assistant\n<think>\n\n</think>\n\n",
        ),
        ("Qwen-QwQ-32B", None, "<|im_start|>assistant\n<think>\n"),
        (
            "Qwen-QwQ-32B",
            Some(false),
            "<|im_start|>assistant\n<think>\n</think>",
        ),
        (
            "CohereForAI-c4ai-command-r7b-12-2024-tool_use",
            None,
            "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
        ),
        (
            "CohereForAI-c4ai-command-r7b-12-2024-tool_use",
            Some(false),
            "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_THINKING|><|END_THINKING|>",
        ),
    ];
    for &(name, reasoning, end) in cases {
        let s = server(name, reasoning);
        for tools in [Value::Null, json!([]), tool.clone()] {
            let p = prompt(&s, json!({ "tools": tools }));
            assert!(
                p.ends_with(end),
                "{name} reasoning {reasoning:?} tools {tools}: ends {:?}",
                &p[p.len().saturating_sub(80)..]
            );
        }
    }
    // A request's chat_template_kwargs turn thinking off without the flag.
    let s = server("Qwen-Qwen3-0.6B", None);
    let p = prompt(
        &s,
        json!({ "chat_template_kwargs": { "enable_thinking": false } }),
    );
    assert!(p.ends_with("<think>\n\n</think>\n\n"), "{p}");
    s.post(
        "/apply-template",
        &json!({ "messages": [{ "role": "user", "content": "x" }],
                 "chat_template_kwargs": { "enable_thinking": "no" } }),
    )
    .expect_error(400, "invalid_request_error");
}

/// Today as the templates print it (UTC, the server's clock).
fn today(format: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64;
    let days = secs.div_euclid(86_400);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mon = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format
        .replace("%d", &format!("{d:02}"))
        .replace("%b", mon)
        .replace("%Y", &y.to_string())
}

#[test]
fn templates_see_todays_date() {
    // test_template.py::test_date_inside_prompt.
    for (name, format) in [
        ("meta-llama-Llama-3.3-70B-Instruct", "%d %b %Y"),
        ("fireworks-ai-llama-3-firefunction-v2", "%b %d %Y"),
    ] {
        let s = server(name, None);
        let p = prompt(&s, json!({}));
        // Around midnight the day may turn between the two clocks.
        let (a, b) = (today(format), prompt(&s, json!({})));
        assert!(
            p.contains(&a) || b.contains(&today(format)),
            "{name}: {a} not in {p}"
        );
    }
}
