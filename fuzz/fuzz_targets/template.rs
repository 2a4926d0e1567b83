//! Fuzz target `template`: any text is compiled as a chat template and rendered for a short
//! conversation with tools, under small limits. Compiling or rendering may fail, but only with
//! a `TemplateError`: a panic, an abort (a stack overflow), running out of memory or libFuzzer's
//! timeout is a finding. Seed it with the real templates:
//! `cp ../crates/text/tests/fixtures/templates/*.jinja corpus/template/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use text::chat_template::{ChatTemplate, DateTime, Limits, Message, RenderRequest};

fuzz_target!(|data: &[u8]| {
    let source = String::from_utf8_lossy(data);
    let limits = Limits {
        fuel: 200_000,
        max_output_bytes: 1 << 16,
        max_value_nodes: 10_000,
        ..Limits::default()
    };
    let Ok(template) = ChatTemplate::with_limits(&source, limits) else {
        return;
    };
    let mut call = Message::new("assistant", "");
    call.tool_calls.push(text::chat_template::ToolCall {
        id: Some("call0".into()),
        name: "get_weather".into(),
        arguments: r#"{"city": "Paris"}"#.into(),
    });
    let messages = [
        Message::new("system", "Be brief."),
        Message::new("user", "Weather in Paris? <b>&'\"</b>"),
        call,
        Message::new("tool", r#"{"temp": 22}"#),
    ];
    let tools = serde_json::json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let _ = template.render(&RenderRequest {
        messages: &messages,
        tools: Some(&tools),
        add_generation_prompt: true,
        bos_token: "<s>",
        eos_token: "</s>",
        now: Some(DateTime::from_unix_seconds(0)),
        extra: None,
        llama_cpp_concat: false,
    });
});
