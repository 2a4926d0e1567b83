//! Every real template in `tests/fixtures/templates` rendered for every conversation of the
//! reference files, compared byte for byte; where the reference raised an error, we must fail
//! too.
//!
//! `expected.json` was rendered by jinja2 configured as transformers' `apply_chat_template`, but
//! without the `{% generation %}` tag transformers registers, so four templates fail to compile
//! there. We accept that tag as transformers does; `extra_expected.json`
//! (`scripts/template_reference.py extra`) has the reference with the tag, for the same
//! conversations and three more (a tool-call round trip, reasoning, text needing escapes), and
//! supplies the expectation for those four templates.

use std::path::PathBuf;

use serde_json::Value as Json;
use text::chat_template::{ChatTemplate, DateTime, Message, RenderRequest, TemplateError};

pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates")
}

pub(crate) fn load(name: &str) -> Json {
    let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// What a reference rendering says: the text, or that it failed.
#[derive(Debug)]
enum Expect {
    Output(String),
    Error(String),
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Output(o) => write!(f, "{o:?}"),
            Expect::Error(e) => write!(f, "an error ({e})"),
        }
    }
}

fn expectation(v: &Json) -> Expect {
    match (v.get("output"), v.get("error")) {
        (Some(o), _) => Expect::Output(o.as_str().unwrap().to_owned()),
        (_, Some(e)) => Expect::Error(e.as_str().unwrap().to_owned()),
        _ => panic!("bad expectation {v}"),
    }
}

pub(crate) struct Conversation {
    pub(crate) messages: Vec<Message>,
    pub(crate) tools: Option<Json>,
    pub(crate) add_generation_prompt: bool,
}

/// The reference gives tool-call arguments as mappings (transformers' form); we pass them as
/// JSON text, as OpenAI's API sends them, to check that they are parsed before rendering.
fn openai_message(m: &Json) -> Json {
    let mut m = m.clone();
    if let Some(calls) = m.get_mut("tool_calls").and_then(Json::as_array_mut) {
        for call in calls {
            let args = &mut call["function"]["arguments"];
            *args = Json::String(args.to_string());
        }
    }
    m
}

pub(crate) fn conversation(v: &Json) -> Conversation {
    Conversation {
        messages: v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message::from_json(&openai_message(m)).unwrap())
            .collect(),
        tools: v.get("tools").cloned(),
        add_generation_prompt: v["add_generation_prompt"].as_bool().unwrap(),
    }
}

/// Renders `template` for `conv` with the reference's context.
fn render(
    template: &ChatTemplate,
    context: &Json,
    now: DateTime,
    conv: &Conversation,
) -> Result<String, TemplateError> {
    let extra = context.as_object().unwrap();
    template.render(&RenderRequest {
        messages: &conv.messages,
        tools: conv.tools.as_ref(),
        add_generation_prompt: conv.add_generation_prompt,
        bos_token: context["bos_token"].as_str().unwrap(),
        eos_token: context["eos_token"].as_str().unwrap(),
        now: Some(now),
        extra: Some(extra),
        llama_cpp_concat: false,
    })
}

/// Where `file` says a template cannot compile because of the `generation` tag, the reference
/// rendering with the tag (`extra_expected.json`) is what we must produce.
fn want_for(file: &str, template: &str, per_conv: &Json, conv: &str) -> Expect {
    if let Some(v) = per_conv.get(conv) {
        return expectation(v);
    }
    let err = per_conv["compile_error"].as_str().unwrap();
    if file == "expected.json" && err.contains("unknown tag 'generation'") {
        return expectation(&load("extra_expected.json")["templates"][template][conv]);
    }
    Expect::Error(err.to_owned())
}

/// Runs every template × conversation of a reference file; returns (passed, total, failures as
/// (template, conversation, description)).
fn check_reference(file: &str) -> (usize, usize, Vec<(String, String, String)>) {
    let exp = load(file);
    let context = &exp["context"];
    let now: DateTime = exp["strftime_now"].as_str().unwrap().parse().unwrap();
    let convs: Vec<(String, Conversation)> = exp["conversations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), conversation(v)))
        .collect();
    let (mut passed, mut total, mut failures) = (0, 0, Vec::new());
    for (name, per_conv) in exp["templates"].as_object().unwrap() {
        let source = std::fs::read_to_string(fixtures().join(name)).unwrap();
        let compiled = ChatTemplate::new(&source);
        for (conv_name, conv) in &convs {
            total += 1;
            let want = want_for(file, name, per_conv, conv_name);
            let got = compiled
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|t| render(t, context, now, conv));
            match (&want, &got) {
                (Expect::Output(w), Ok(g)) if w == g => passed += 1,
                (Expect::Error(_), Err(_)) => passed += 1,
                _ => failures.push((
                    name.clone(),
                    conv_name.clone(),
                    format!("{name} × {conv_name}:\n  want {want}\n  got  {got:?}"),
                )),
            }
        }
    }
    (passed, total, failures)
}

fn check(file: &str) {
    let (passed, total, failures) = check_reference(file);
    eprintln!("{file}: {passed}/{total} renderings match");
    for (_, _, detail) in &failures {
        eprintln!("{detail}");
    }
    assert!(failures.is_empty(), "{} renderings differ", failures.len());
}

#[test]
fn real_templates_match_transformers() {
    check("expected.json");
}

#[test]
fn real_templates_match_transformers_with_generation_tag() {
    check("extra_expected.json");
}
