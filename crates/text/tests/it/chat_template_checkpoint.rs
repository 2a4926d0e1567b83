//! Chat templates of transformers checkpoint folders, found where transformers finds them:
//! `chat_template.jinja`, `additional_chat_templates/`, or the `chat_template` field of
//! `tokenizer_config.json` (a string or a list of named templates), with the special tokens of
//! `tokenizer_config.json`. Renderings are compared with jinja2's (`checkpoints/expected.json`
//! from `scripts/template_reference.py checkpoints`, and `expected.json`).

use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};
use text::chat_template::{ChatTemplate, DateTime, RenderRequest, SpecialTokens, TemplateError};

use super::chat_template_fixtures::{Conversation, conversation, fixtures, load};

fn now() -> DateTime {
    "2026-07-26T12:00:00".parse().unwrap()
}

fn render(t: &ChatTemplate, tokens: &SpecialTokens, conv: &Conversation) -> String {
    let extra = tokens.extra_context();
    t.render(&RenderRequest {
        messages: &conv.messages,
        tools: conv.tools.as_ref(),
        add_generation_prompt: conv.add_generation_prompt,
        bos_token: tokens.bos.as_deref().unwrap_or(""),
        eos_token: tokens.eos.as_deref().unwrap_or(""),
        now: Some(now()),
        extra: Some(&extra),
        llama_cpp_concat: false,
    })
    .unwrap()
}

/// A fresh folder under the system's temporary directory.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hearth-ckpt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn real_checkpoint_folders_render_as_transformers() {
    let checkpoints = fixtures().parent().unwrap().join("checkpoints");
    let want: Json =
        serde_json::from_str(&std::fs::read_to_string(checkpoints.join("expected.json")).unwrap())
            .unwrap();
    let conversations = &load("expected.json")["conversations"];
    let mut checked = 0;
    for (name, renderings) in want["checkpoints"].as_object().unwrap() {
        let (t, tokens) = ChatTemplate::from_checkpoint_dir(&checkpoints.join(name), false)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for (conv, expect) in renderings.as_object().unwrap() {
            let c = conversation(&conversations[conv]);
            let c = Conversation { tools: None, ..c };
            assert_eq!(
                render(&t, &tokens, &c),
                expect["output"].as_str().unwrap(),
                "{name} × {conv}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 10);
}

/// Older checkpoints keep their templates in `tokenizer_config.json`; with tools, transformers
/// picks the `tool_use` one. Templates and expected renderings come from `expected.json`.
#[test]
fn templates_inside_tokenizer_config_json() {
    let expected = load("expected.json");
    let source = |name: &str| std::fs::read_to_string(fixtures().join(name)).unwrap();
    let (default, tool_use) = (
        "Qwen-Qwen2.5-7B-Instruct.jinja",
        "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja",
    );
    let dir = temp_dir("config-list");
    let config = json!({
        "bos_token": {"content": "<s>", "lstrip": false, "normalized": false},
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "chat_template": [
            {"name": "default", "template": source(default)},
            {"name": "tool_use", "template": source(tool_use)},
        ],
    });
    write(&dir, "tokenizer_config.json", &config.to_string());
    for (conv_name, conv) in expected["conversations"].as_object().unwrap() {
        let c = conversation(conv);
        let with_tools = c.tools.is_some();
        let (t, tokens) = ChatTemplate::from_checkpoint_dir(&dir, with_tools).unwrap();
        assert_eq!(tokens.bos.as_deref(), Some("<s>"));
        let template = if with_tools { tool_use } else { default };
        let want = expected["templates"][template][conv_name]["output"].as_str();
        assert_eq!(Some(render(&t, &tokens, &c).as_str()), want, "{conv_name}");
    }

    // One template as a plain string.
    let dir = temp_dir("config-string");
    let config = json!({"eos_token": "</s>", "bos_token": "<s>", "chat_template": source(default)});
    write(&dir, "tokenizer_config.json", &config.to_string());
    let (t, tokens) = ChatTemplate::from_checkpoint_dir(&dir, true).unwrap();
    let c = conversation(&expected["conversations"]["multi-turn"]);
    assert_eq!(
        Some(render(&t, &tokens, &c).as_str()),
        expected["templates"][default]["multi-turn"]["output"].as_str()
    );
}

/// transformers 4.43+ writes `chat_template.jinja`, and named ones beside it.
#[test]
fn chat_template_jinja_wins_and_named_templates_sit_beside_it() {
    let dir = temp_dir("jinja");
    write(
        &dir,
        "chat_template.jinja",
        "default:{{ messages[0].content }}",
    );
    write(
        &dir,
        "additional_chat_templates/tool_use.jinja",
        "tools:{{ tools | length }}",
    );
    write(
        &dir,
        "tokenizer_config.json",
        r#"{"chat_template": "from the config", "eos_token": null}"#,
    );
    let c = conversation(&load("expected.json")["conversations"]["tools"]);
    let (t, tokens) = ChatTemplate::from_checkpoint_dir(&dir, false).unwrap();
    assert_eq!(tokens.eos, None);
    assert_eq!(
        render(&t, &tokens, &c),
        "default:What is the weather in Paris?"
    );
    let (t, tokens) = ChatTemplate::from_checkpoint_dir(&dir, true).unwrap();
    assert_eq!(render(&t, &tokens, &c), "tools:1");
}

#[test]
fn folders_without_a_usable_template_are_clear_errors() {
    let cases = [
        ("empty", None),
        ("not-json", Some("{ not json")),
        ("not-object", Some("[1, 2]")),
        ("bad-field", Some(r#"{"chat_template": 5}"#)),
        (
            "bad-entry",
            Some(r#"{"chat_template": [{"name": "default"}]}"#),
        ),
        (
            "no-default",
            Some(r#"{"chat_template": [{"name": "rag", "template": "x"}]}"#),
        ),
        ("no-template", Some(r#"{"bos_token": "<s>"}"#)),
    ];
    for (name, config) in cases {
        let dir = temp_dir(name);
        if let Some(text) = config {
            write(&dir, "tokenizer_config.json", text);
        }
        match ChatTemplate::from_checkpoint_dir(&dir, false) {
            Err(TemplateError::Source(msg)) => {
                assert!(msg.contains(&*dir.to_string_lossy()), "{msg}")
            }
            other => panic!("{name}: expected a Source error, got {other:?}"),
        }
    }
    let dir = temp_dir("syntax");
    write(&dir, "chat_template.jinja", "{% for %}");
    assert!(matches!(
        ChatTemplate::from_checkpoint_dir(&dir, false),
        Err(TemplateError::Syntax(_))
    ));
}
