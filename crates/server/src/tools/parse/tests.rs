//! The expectations of llama.cpp's `tests/test-chat.cpp` for each format (the same model
//! outputs and the messages it expects), and streaming checks: deltas sent piece by piece add
//! up to the whole reply's parse.

use super::*;
use crate::tools::ChatStream;

const HELLO: &str = "Hello, world!\nWhat's up?";
const THINKING: &str = "I'm\nthinking";

fn syn(format: Format) -> Syntax {
    Syntax {
        format,
        tools: true,
        reasoning: false,
        legacy: false,
        think: None,
        starts_thinking: false,
        defs: None,
    }
}

fn thinking(format: Format, open: &'static str, close: &'static str) -> Syntax {
    Syntax {
        reasoning: true,
        think: Some((open, close)),
        ..syn(format)
    }
}

fn msg(content: &str, reasoning: &str, calls: &[(&str, &str)]) -> Parsed {
    Parsed {
        content: content.into(),
        reasoning: reasoning.into(),
        calls: calls
            .iter()
            .map(|(n, a)| Call {
                name: (*n).into(),
                arguments: (*a).into(),
                id: String::new(),
            })
            .collect(),
    }
}

/// llama.cpp compares arguments as renormalized JSON and some contents stripped.
fn norm(mut p: Parsed) -> Parsed {
    for c in &mut p.calls {
        if let Ok(v) = serde_json::from_str::<Value>(&c.arguments) {
            c.arguments = v.to_string();
        }
        c.id.clear();
    }
    p.content = p.content.trim().to_owned();
    p.reasoning = p.reasoning.trim().to_owned();
    p
}

/// Parses `text` whole, and streamed in pieces of every size from 1 to 7 bytes: the deltas
/// must rebuild the whole parse.
#[track_caller]
fn check(text: &str, syn: Syntax, want: Parsed) {
    let got = parse(text, false, &syn);
    assert_eq!(norm(got.clone()), norm(want), "parsing {text:?}");
    for size in 1..=7 {
        let mut s = ChatStream::new(syn.clone());
        let mut rebuilt = Parsed::default();
        let mut deltas = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        for piece in chars.chunks(size) {
            deltas.extend(s.push(&piece.iter().collect::<String>()));
        }
        deltas.extend(s.finish());
        for d in deltas {
            if let Some(t) = d.get("content").and_then(|v| v.as_str()) {
                rebuilt.content.push_str(t);
            }
            if let Some(t) = d.get("reasoning_content").and_then(|v| v.as_str()) {
                rebuilt.reasoning.push_str(t);
            }
            if let Some(tc) = d.get("tool_calls").and_then(|v| v.get(0)) {
                let i = tc["index"].as_u64().unwrap() as usize;
                if let Some(name) = tc["function"].get("name").and_then(|v| v.as_str()) {
                    assert_eq!(i, rebuilt.calls.len(), "a new call comes in order");
                    assert!(tc["id"].as_str().is_some_and(|id| !id.is_empty()));
                    rebuilt.calls.push(Call {
                        name: name.into(),
                        ..Call::default()
                    });
                }
                if let Some(a) = tc["function"].get("arguments").and_then(|v| v.as_str()) {
                    rebuilt.calls[i].arguments.push_str(a);
                }
            }
        }
        let mut whole = got.clone();
        whole.calls.iter_mut().for_each(|c| c.id.clear());
        assert_eq!(rebuilt, whole, "streaming {text:?} in pieces of {size}");
    }
}

#[test]
fn plain_text_is_content() {
    check(HELLO, Syntax::plain(), msg(HELLO, "", &[]));
    check(HELLO, syn(Format::Hermes), msg(HELLO, "", &[]));
    check(HELLO, syn(Format::Llama3), msg(HELLO, "", &[]));
    check(HELLO, syn(Format::Mistral), msg(HELLO, "", &[]));
}

#[test]
fn hermes_qwen_calls() {
    let call = [("special_function", "{\"arg1\": 1}")];
    // Hermes 2 Pro
    check(
        "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}</tool_call>",
        syn(Format::Hermes),
        msg("", "", &call),
    );
    check(
        "Hello, world!\nWhat's up?<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}</tool_call>",
        syn(Format::Hermes),
        msg(HELLO, "", &call),
    );
    // MiMo-VL / Hermes 3 / Qwen 2.5
    check(
        "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n</tool_call>",
        syn(Format::Hermes),
        msg("", "", &call),
    );
    // Reka Edge (the same markup): parallel calls, and content before a call
    check(
        "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n</tool_call>\n<tool_call>\n{\"name\": \"special_function_with_opt\", \"arguments\": {\"arg1\": 1, \"arg2\": 2}}\n</tool_call>",
        syn(Format::Hermes),
        msg(
            "",
            "",
            &[
                ("special_function", "{\"arg1\": 1}"),
                ("special_function_with_opt", "{\"arg1\": 1, \"arg2\": 2}"),
            ],
        ),
    );
    check(
        "Hello, world!\nWhat's up?\n<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n</tool_call>",
        syn(Format::Hermes),
        msg(HELLO, "", &call),
    );
    // Thinking first (Qwen 3)
    check(
        "<think>I'm\nthinking</think>\n\n<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}}\n</tool_call>",
        thinking(Format::Hermes, "<think>", "</think>"),
        msg("", THINKING, &call),
    );
}

#[test]
fn hermes_partial_call_shows_its_arguments_so_far() {
    // message_assist_call_cutoff_args
    let p = parse(
        "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg",
        true,
        &syn(Format::Hermes),
    );
    assert_eq!(p, msg("", "", &[("special_function", "{\"arg")]));
    // Whole (cut by max_tokens), it is still the call, as the stream showed it.
    let p = parse(
        "<tool_call>\n{\"name\": \"special_function\", \"arguments\": {\"arg",
        false,
        &syn(Format::Hermes),
    );
    assert_eq!(p, msg("", "", &[("special_function", "{\"arg")]));
    // The opening tag, cut, is not content yet.
    let p = parse("Hello <tool_", true, &syn(Format::Hermes));
    assert_eq!(p.content, "Hello");
    assert!(p.calls.is_empty());
    // Whole, a cut tag is content.
    let p = parse("Hello <tool_", false, &syn(Format::Hermes));
    assert_eq!(p.content, "Hello <tool_");
}

#[test]
fn hermes_text_that_is_not_a_call_stays_content() {
    let text = "<tool_call>not json</tool_call>";
    check(text, syn(Format::Hermes), msg(text, "", &[]));
}

#[test]
fn without_tools_markup_is_content() {
    let text = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
    let s = Syntax {
        tools: false,
        ..syn(Format::Hermes)
    };
    check(text, s.clone(), msg(text, "", &[]));
}

#[test]
fn llama3_json_calls() {
    check(
        "{\"name\": \"special_function\", \"parameters\": {\"arg1\": 1}}",
        syn(Format::Llama3),
        msg("", "", &[("special_function", "{\"arg1\": 1}")]),
    );
    check(
        "{\"type\": \"function\", \"name\": \"special_function\", \"parameters\": {\"arg1\": 1}}",
        syn(Format::Llama3),
        msg("", "", &[("special_function", "{\"arg1\": 1}")]),
    );
    // JSON that is no call is content (llama.cpp's Llama 3.1 structured-output case).
    check("\"42\"\n", syn(Format::Llama3), msg("\"42\"", "", &[]));
    check(
        "{\"a\": 1}",
        syn(Format::Llama3),
        msg("{\"a\": 1}", "", &[]),
    );
}

#[test]
fn llama3_python_tag() {
    check(
        "<|python_tag|>print('hey')",
        syn(Format::Llama3),
        msg("", "", &[("python", "{\"code\":\"print('hey')\"}")]),
    );
    check(
        "<|python_tag|>{\"name\": \"special_function\", \"parameters\": {\"arg1\": 1}}",
        syn(Format::Llama3),
        msg("", "", &[("special_function", "{\"arg1\": 1}")]),
    );
}

#[test]
fn mistral_nemo_calls_carry_their_ids() {
    let text = "[TOOL_CALLS][{\"name\": \"special_function\", \"arguments\": {\"arg1\": 1}, \"id\": \"123456789\"}]";
    check(
        text,
        syn(Format::Mistral),
        msg("", "", &[("special_function", "{\"arg1\":1}")]),
    );
    assert_eq!(
        parse(text, false, &syn(Format::Mistral)).calls[0].id,
        "123456789"
    );
}

#[test]
fn ministral_args_calls_and_think_blocks() {
    let think = thinking(Format::MistralArgs, "[THINK]", "[/THINK]");
    check(
        "[TOOL_CALLS]special_function[ARGS]{\"arg1\":1}",
        think.clone(),
        msg("", "", &[("special_function", "{\"arg1\":1}")]),
    );
    check(
        "[THINK]I'm\nthinking[/THINK][TOOL_CALLS]special_function[ARGS]{\"arg1\":1}",
        think.clone(),
        msg("", THINKING, &[("special_function", "{\"arg1\":1}")]),
    );
    check(
        "[TOOL_CALLS]special_function[ARGS]{\"arg1\": 1}[TOOL_CALLS]special_function_with_opt[ARGS]{\"arg1\": 1, \"arg2\": 2}",
        think.clone(),
        msg(
            "",
            "",
            &[
                ("special_function", "{\"arg1\": 1}"),
                ("special_function_with_opt", "{\"arg1\": 1, \"arg2\": 2}"),
            ],
        ),
    );
    // Markup inside the thinking block is reasoning.
    check(
        "[THINK]Let me think about [TOOL_CALLS]special_function[ARGS]{\"arg1\":1} and more[/THINK][TOOL_CALLS]special_function[ARGS]{\"arg1\": 1}",
        think.clone(),
        msg(
            "",
            "Let me think about [TOOL_CALLS]special_function[ARGS]{\"arg1\":1} and more",
            &[("special_function", "{\"arg1\": 1}")],
        ),
    );
    // reasoning_format none: the block stays in the content.
    let text = "[THINK]I'm\nthinking[/THINK]Hello, world!\nWhat's up?";
    let none = Syntax {
        reasoning: false,
        ..think.clone()
    };
    check(text, none.clone(), msg(text, "", &[]));
    check(text, think.clone(), msg(HELLO, THINKING, &[]));
}

#[test]
fn gpt_oss_channels() {
    let s = thinking(Format::GptOss, "<think>", "</think>");
    check(
        "<|channel|>final<|message|>Hello, world!\nWhat's up?",
        s.clone(),
        msg(HELLO, "", &[]),
    );
    check(
        "<|channel|>commentary<|message|>Hello, world!\nWhat's up?",
        s.clone(),
        msg(HELLO, "", &[]),
    );
    check(
        "<|channel|>analysis<|message|>I'm\nthinking<|end|><|start|>assistant<|channel|>final<|message|>Hello, world!\nWhat's up?",
        s.clone(),
        msg(HELLO, THINKING, &[]),
    );
    let none = Syntax {
        reasoning: false,
        ..s.clone()
    };
    check(
        "<|channel|>analysis<|message|>I'm\nthinking<|end|><|start|>assistant<|channel|>final<|message|>Hello, world!\nWhat's up?",
        none.clone(),
        msg(
            "<|channel|>analysis<|message|>I'm\nthinking<|end|>Hello, world!\nWhat's up?",
            "",
            &[],
        ),
    );
    let p = parse("<|channel|>analysis<|message|>I'm\nthinking", true, &s);
    assert_eq!(p, msg("", THINKING, &[]));
    let call = [("special_function", "{\"arg1\": 1}")];
    for text in [
        " to=functions.special_function<|channel|>analysis<|message|>{\"arg1\": 1}",
        "<|channel|>analysis to=functions.special_function<|message|>{\"arg1\": 1}",
        " to=functions.special_function<|channel|>analysis <|constrain|>json<|message|>{\"arg1\": 1}",
        "<|channel|>commentary to=functions.special_function<|message|>{\"arg1\": 1}",
    ] {
        check(text, s.clone(), msg("", "", &call));
    }
    check(
        "<|channel|>analysis<|message|>I'm\nthinking<|end|><|start|>assistant to=functions.special_function<|channel|>analysis<|message|>{\"arg1\": 1}",
        s.clone(),
        msg("", THINKING, &call),
    );
    check(
        "<|channel|>analysis<|message|>Thinking about edit...<|end|><|start|>assistant<|channel|>commentary to=functions.edit <|constrain|>json<|message|>{\"oldString\": \"if (part < railCount - 1) {\", \"newString\": \"if (part < 4) {\", \"replaceAll\": false}",
        s.clone(),
        msg(
            "",
            "Thinking about edit...",
            &[(
                "edit",
                "{\"oldString\": \"if (part < railCount - 1) {\", \"newString\": \"if (part < 4) {\", \"replaceAll\": false}",
            )],
        ),
    );
    // Calls to built-in tools the request did not define are dropped.
    check(
        "<|channel|>analysis<|message|>I will execute python to say hello<|end|><|start|>assistant to=container.exec<|channel|>commentary<|message|>python3 -c 'print(\"hello\")'",
        s.clone(),
        msg("", "I will execute python to say hello", &[]),
    );
}

#[test]
fn gemma4_calls_and_thought_channel() {
    let s = thinking(Format::Gemma4, "<|channel>thought", "<channel|>");
    check("Hello, world!", s.clone(), msg("Hello, world!", "", &[]));
    check(
        "<|channel>thought\nI'm\nthinking<channel|>Hello, world!\nWhat's up?",
        s.clone(),
        msg(HELLO, THINKING, &[]),
    );
    check(
        "<|channel>thought<channel|>Hello, world!\nWhat's up?",
        s.clone(),
        msg(HELLO, "", &[]),
    );
    check(
        "<|tool_call>call:get_time{city:<|\"|>London<|\"|>}<tool_call|>",
        s.clone(),
        msg("", "", &[("get_time", "{\"city\": \"London\"}")]),
    );
    check(
        "<|tool_call>call:get_time{city:<|\"|>San Francisco<|\"|>}<tool_call|>",
        s.clone(),
        msg("", "", &[("get_time", "{\"city\": \"San Francisco\"}")]),
    );
    check(
        "<|tool_call>call:empty_args{}<tool_call|>",
        s.clone(),
        msg("", "", &[("empty_args", "{}")]),
    );
    check(
        "Hello, world!\nWhat's up?<|tool_call>call:get_time{city:<|\"|>Paris<|\"|>}<tool_call|>",
        s.clone(),
        msg(HELLO, "", &[("get_time", "{\"city\": \"Paris\"}")]),
    );
    check(
        "<|channel>thought\nI'm\nthinking<channel|><|tool_call>call:get_time{city:<|\"|>Paris<|\"|>}<tool_call|>",
        s.clone(),
        msg("", THINKING, &[("get_time", "{\"city\": \"Paris\"}")]),
    );
    check(
        "<|tool_call>call:f{n:3,ok:true,xs:[1,2],o:{k:<|\"|>v<|\"|>}}<tool_call|>",
        s.clone(),
        msg(
            "",
            "",
            &[(
                "f",
                "{\"n\":3,\"ok\":true,\"xs\":[1,2],\"o\":{\"k\":\"v\"}}",
            )],
        ),
    );
}

#[test]
fn thinking_blocks() {
    // Granite / DeepSeek R1 style, block in the reply.
    let s = Syntax {
        tools: false,
        ..thinking(Format::Content, "<think>", "</think>")
    };
    check(
        "<think>I'm\nthinking</think>Hello, world!\nWhat's up?",
        s.clone(),
        msg(HELLO, THINKING, &[]),
    );
    // DeepSeek R1 Distill: the prompt opened the block (forced open).
    let open = Syntax {
        starts_thinking: true,
        ..s.clone()
    };
    check(
        "I'm\nthinking</think>Hello, world!\nWhat's up?",
        open.clone(),
        msg(HELLO, THINKING, &[]),
    );
    check(
        "</think>Hello, world!\nWhat's up?",
        open.clone(),
        msg(HELLO, "", &[]),
    );
    // A reply cut inside the block is all reasoning.
    check("I'm\nthinking", open.clone(), msg("", THINKING, &[]));
    // reasoning_format none: the reply as it came.
    let none = Syntax {
        reasoning: false,
        ..s.clone()
    };
    let text = "<think>I'm\nthinking</think>Hello, world!\nWhat's up?";
    check(text, none.clone(), msg(text, "", &[]));
    // The opening tag, cut, waits.
    assert_eq!(parse("<thi", true, &s), Parsed::default());
    // deepseek-legacy: reasoning_content, and the block stays in the content.
    let legacy = Syntax {
        legacy: true,
        ..s.clone()
    };
    check(text, legacy.clone(), msg(text, THINKING, &[]));
}

#[test]
fn gemma4_args_reject_malformed_input() {
    for bad in ["{city:<|\"|>London}", "{a:1", "}", "{a:1]}"] {
        assert_eq!(gemma4_args(bad), None, "{bad}");
    }
}

#[test]
fn json_end_finds_values() {
    assert_eq!(json_end("{\"a\": \"}\"} x"), Scan::Done(10));
    assert_eq!(json_end("[1, [2]]"), Scan::Done(8));
    assert_eq!(json_end("{\"a\": \"\\\"}"), Scan::Partial);
    assert_eq!(json_end("{]"), Scan::Invalid);
    assert_eq!(json_end("  12 "), Scan::Done(4));
    assert_eq!(json_end("<x"), Scan::Invalid);
}

/// Tools of llama.cpp's `test-chat.cpp` cases, as a request gives them.
fn q3c() -> Syntax {
    let tools = serde_json::json!([
        {"type": "function", "function": {"name": "special_function", "parameters": {
            "type": "object", "properties": {"arg1": {"type": "integer"}}, "required": ["arg1"]}}},
        {"type": "function", "function": {"name": "special_function_with_opt", "parameters": {
            "type": "object", "properties": {"arg1": {"type": "integer"}, "arg2": {"type": "integer"}},
            "required": ["arg1"]}}},
        {"type": "function", "function": {"name": "python", "parameters": {
            "type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}}},
        {"type": "function", "function": {"name": "todo_list", "parameters": {
            "type": "object", "properties": {"todos": {"type": "array"}}, "required": ["todos"]}}},
        {"type": "function", "function": {"name": "tool_2req_4opt", "parameters": {
            "type": "object", "properties": {"req1": {"type": "string"}, "req2": {"type": "integer"},
            "opt1": {"type": "string"}, "opt2": {"type": "integer"}, "opt3": {"type": ["string", "integer"]}},
            "required": ["req1", "req2"]}}},
    ]);
    Syntax {
        defs: Some(Arc::new(tools)),
        ..syn(Format::Qwen3Coder)
    }
}

#[test]
fn qwen3_coder_xml_calls() {
    check(HELLO, q3c(), msg(HELLO, "", &[]));
    let one = "<tool_call>\n<function=special_function>\n<parameter=arg1>\n1\n</parameter>\n</function>\n</tool_call>";
    let call = [("special_function", "{\"arg1\": 1}")];
    check(one, q3c(), msg("", "", &call));
    // llama.cpp builds the arguments compact.
    assert_eq!(parse(one, false, &q3c()).calls[0].arguments, "{\"arg1\":1}");
    // The first call may skip its <tool_call>.
    let bare = one.strip_prefix("<tool_call>\n").unwrap();
    check(bare, q3c(), msg("", "", &call));
    check(
        &format!("Let me call it.\n{bare}"),
        q3c(),
        msg("Let me call it.", "", &call),
    );
    let two = format!(
        "{one}\n<tool_call>\n<function=special_function_with_opt>\n<parameter=arg1>\n1\n</parameter>\n\
         <parameter=arg2>\n2\n</parameter>\n</function>\n</tool_call>"
    );
    check(
        &two,
        q3c(),
        msg(
            "",
            "",
            &[
                call[0],
                ("special_function_with_opt", "{\"arg1\": 1, \"arg2\": 2}"),
            ],
        ),
    );
    check(
        "<tool_call>\n<function=python>\n<parameter=code>\ndef hello():\n    print(\"Hello, world!\")\n\nhello()\n</parameter>\n</function>\n</tool_call>",
        q3c(),
        msg(
            "",
            "",
            &[(
                "python",
                "{\"code\": \"def hello():\\n    print(\\\"Hello, world!\\\")\\n\\nhello()\"}",
            )],
        ),
    );
    check(
        "<tool_call>\n<function=python>\n<parameter=code>\n格\n</parameter>\n</function>\n</tool_call>",
        q3c(),
        msg("", "", &[("python", "{\"code\": \"格\"}")]),
    );
    check(
        "<tool_call>\n<function=python>\n<parameter=code>\n<html>\n <head>\n</html>\n</parameter>\n</function>\n</tool_call>",
        q3c(),
        msg(
            "",
            "",
            &[("python", "{\"code\": \"<html>\\n <head>\\n</html>\"}")],
        ),
    );
    check(
        "<tool_call>\n<function=todo_list>\n<parameter=todos>\n[{\"item\": \"Check stuff\", \"selected\": false}]\n</parameter>\n</function>\n</tool_call>",
        q3c(),
        msg(
            "",
            "",
            &[(
                "todo_list",
                "{\"todos\": [{\"item\": \"Check stuff\", \"selected\": false}]}",
            )],
        ),
    );
    // Required arguments in any order; a string-or-integer value is JSON when it parses.
    check(
        "<tool_call>\n<function=tool_2req_4opt>\n<parameter=req2>\n42\n</parameter>\n\
         <parameter=req1>\nhello\n</parameter>\n<parameter=opt2>\n200\n</parameter>\n\
         <parameter=opt3>\n7\n</parameter>\n<parameter=opt1>\n8\n</parameter>\n</function>\n</tool_call>",
        q3c(),
        msg(
            "",
            "",
            &[(
                "tool_2req_4opt",
                "{\"req2\": 42, \"req1\": \"hello\", \"opt2\": 200, \"opt3\": 7, \"opt1\": \"8\"}",
            )],
        ),
    );
    // Cut by the end of the reply: the call with what it has.
    let cut = parse(
        "<tool_call>\n<function=python>\n<parameter=code>\nprint(1)",
        false,
        &q3c(),
    );
    assert_eq!((cut.calls.len(), cut.calls[0].name.as_str()), (1, "python"));
    // A thinking template: `<function=` alone does not start a call.
    let think = Syntax {
        think: Some(("<think>", "</think>")),
        reasoning: true,
        ..q3c()
    };
    check(
        &format!("<think>\nhm\n</think>\n{one}"),
        think.clone(),
        msg("", "hm", &call),
    );
    check(bare, think, msg(bare, "", &[]));
}

#[test]
fn functionary_v32_recipients() {
    let f = syn(Format::FunctionaryV32);
    // llama.cpp's test-chat.cpp cases.
    check(
        "all\nHello, world!\nWhat's up?",
        f.clone(),
        msg(HELLO, "", &[]),
    );
    check(
        "special_function\n{\"arg1\": 1}",
        f.clone(),
        msg("", "", &[("special_function", "{\"arg1\": 1}")]),
    );
    // Content, then calls.
    check(
        "all\nLet me check.>>>special_function\n{\"arg1\": 1}>>>python\n{\"code\": \"1\"}",
        f.clone(),
        msg(
            "Let me check.",
            "",
            &[
                ("special_function", "{\"arg1\": 1}"),
                ("python", "{\"code\": \"1\"}"),
            ],
        ),
    );
    // Without tools the recipient line goes, the rest is content.
    let none = Syntax {
        tools: false,
        ..f.clone()
    };
    check("all\nHi >>> there", none, msg("Hi >>> there", "", &[]));
    // Not a recipient line: content as it is.
    check(
        "Hello there, friend",
        f,
        msg("Hello there, friend", "", &[]),
    );
}
