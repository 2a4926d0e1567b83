//! One small template per jinja2 behaviour a chat template may lean on (undefined values,
//! how values print, filters, Python methods, loop controls), each compared with what jinja2
//! configured as transformers does (`semantics.json`, from `scripts/template_reference.py
//! probes`): the same text, or an error where jinja2 raised one.

use std::path::PathBuf;

use serde_json::Value as Json;
use text::chat_template::{ChatTemplate, DateTime, Message, RenderRequest};

#[test]
fn template_semantics_match_jinja2() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates/semantics.json");
    let doc: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ctx = &doc["context"];
    let messages: Vec<Message> = ctx["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| Message::from_json(m).unwrap())
        .collect();
    let now: DateTime = doc["strftime_now"].as_str().unwrap().parse().unwrap();
    let req = RenderRequest {
        messages: &messages,
        add_generation_prompt: ctx["add_generation_prompt"].as_bool().unwrap(),
        bos_token: ctx["bos_token"].as_str().unwrap(),
        eos_token: ctx["eos_token"].as_str().unwrap(),
        now: Some(now),
        ..RenderRequest::default()
    };
    let mut failures = Vec::new();
    let probes = doc["probes"].as_array().unwrap();
    for probe in probes {
        let src = probe["template"].as_str().unwrap();
        let got = ChatTemplate::new(src).and_then(|t| t.render(&req));
        let ok = match (probe.get("output"), &got) {
            (Some(want), Ok(g)) => want.as_str().unwrap() == g,
            (None, Err(_)) => true,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{src:?}\n  want {}\n  got  {got:?}",
                probe.get("output").unwrap_or(&probe["error"])
            ));
        }
    }
    eprintln!(
        "semantics.json: {}/{} probes match",
        probes.len() - failures.len(),
        probes.len()
    );
    for f in &failures {
        eprintln!("{f}");
    }
    assert!(failures.is_empty(), "{} probes differ", failures.len());
}

/// `str + undefined` (and `+ none`) is jinja2's error by default, and the string with
/// `llama_cpp_concat`, as llama.cpp's own engine renders it (FireFunction's template adds an
/// undefined `functions`).
#[test]
fn llama_cpp_concat_joins_a_string_with_nothing() {
    let t = ChatTemplate::new("{{ 'a' + missing }}|{{ none + 'b' }}|{{ 'c' + 'd' }}").unwrap();
    let msgs = [Message::new("user", "hi")];
    let strict = RenderRequest {
        messages: &msgs,
        ..RenderRequest::default()
    };
    assert!(t.render(&strict).is_err());
    let lenient = RenderRequest {
        llama_cpp_concat: true,
        ..strict
    };
    assert_eq!(t.render(&lenient).unwrap(), "a|b|cd");
    // Other operations on undefined values stay errors.
    let t = ChatTemplate::new("{{ 1 + missing }}").unwrap();
    assert!(t.render(&lenient).is_err());
}

/// An item or attribute of an undefined value is jinja2's error by default, and undefined with
/// `llama_cpp_concat`, as llama.cpp's engine renders Llama 3.1's `messages[0]['role']` when
/// there are no messages.
#[test]
fn llama_cpp_mode_reads_through_undefined_values() {
    let t = ChatTemplate::new(
        "{% if messages[0]['role'] == 'system' %}S{% else %}N{% endif %}|{{ missing.a.b }}|x",
    )
    .unwrap();
    let strict = RenderRequest {
        messages: &[],
        ..RenderRequest::default()
    };
    assert!(t.render(&strict).is_err());
    let lenient = RenderRequest {
        llama_cpp_concat: true,
        ..strict
    };
    assert_eq!(t.render(&lenient).unwrap(), "N||x");
}
