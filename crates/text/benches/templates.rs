//! Chat-template speed: compiling each real template of `tests/fixtures/templates`, rendering
//! every conversation of `expected.json` with it, and rendering a 1,000-message conversation
//! with a few common templates (what a long chat costs per turn).
//!
//! `cargo bench -p text --bench templates` (figures go in docs/benchmarks.md).

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use text::chat_template::{ChatTemplate, DateTime, Message, RenderRequest};

/// The best of `runs` timings of `f`.
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let t = Instant::now();
        black_box(f());
        best = best.min(t.elapsed());
    }
    best
}

fn request<'a>(
    messages: &'a [Message],
    tools: Option<&'a Json>,
    now: DateTime,
) -> RenderRequest<'a> {
    RenderRequest {
        messages,
        tools,
        add_generation_prompt: true,
        bos_token: "<s>",
        eos_token: "</s>",
        now: Some(now),
        extra: None,
        llama_cpp_concat: false,
    }
}

fn main() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates");
    let expected: Json = serde_json::from_str(
        &std::fs::read_to_string(dir.join("expected.json")).expect("expected.json"),
    )
    .expect("json");
    let now: DateTime = "2026-07-26T12:00:00".parse().expect("date");
    let conversations: Vec<(Vec<Message>, Option<Json>)> = expected["conversations"]
        .as_object()
        .expect("conversations")
        .values()
        .map(|c| {
            let messages = c["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .filter_map(|m| Message::from_json(m).ok())
                .collect();
            (messages, c.get("tools").cloned())
        })
        .collect();

    let mut names: Vec<String> = expected["templates"]
        .as_object()
        .expect("templates")
        .keys()
        .cloned()
        .collect();
    names.sort();
    let (mut compile_total, mut render_total, mut renders) = (Duration::ZERO, Duration::ZERO, 0);
    for name in &names {
        let source = std::fs::read_to_string(dir.join(name)).expect("template");
        compile_total += best(5, || ChatTemplate::new(&source));
        let Ok(t) = ChatTemplate::new(&source) else {
            continue;
        };
        for (messages, tools) in &conversations {
            render_total += best(5, || t.render(&request(messages, tools.as_ref(), now)));
            renders += 1;
        }
    }
    println!(
        "compile: {} templates in {:.1} ms ({:.0} µs each)",
        names.len(),
        compile_total.as_secs_f64() * 1e3,
        compile_total.as_secs_f64() * 1e6 / names.len() as f64
    );
    println!(
        "render: {renders} renderings in {:.1} ms ({:.0} µs each)",
        render_total.as_secs_f64() * 1e3,
        render_total.as_secs_f64() * 1e6 / renders.max(1) as f64
    );

    let long: Vec<Message> = (0..1000)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            Message::new(
                role,
                format!("message {i}: the quick brown fox jumps over the lazy dog"),
            )
        })
        .collect();
    for name in [
        "HuggingFaceTB-SmolLM3-3B.jinja",
        "Qwen-Qwen3-0.6B.jinja",
        "google-gemma-4-31B-it.jinja",
        "meta-llama-Llama-3.1-8B-Instruct.jinja",
    ] {
        let Ok(source) = std::fs::read_to_string(dir.join(name)) else {
            println!("{name}: not in the fixtures");
            continue;
        };
        let t = ChatTemplate::new(&source).expect("compiles");
        let took = best(5, || t.render(&request(&long, None, now)));
        println!("1,000 messages, {name}: {:.2} ms", took.as_secs_f64() * 1e3);
    }
}
