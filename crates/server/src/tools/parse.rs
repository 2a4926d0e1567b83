//! Parsing a model's reply into content, reasoning and tool calls, the way llama.cpp's chat
//! parsers do for each format (`common/chat.cpp` and its tests, `tests/test-chat.cpp`).
//!
//! [`parse`] reads the whole text generated so far. With `partial` (the reply is still being
//! generated) it never shows what may still turn into markup: a trailing prefix of an opening
//! tag, an unfinished call before its name is known, whitespace that may precede a call. So
//! each partial result's content, reasoning and last call's arguments are prefixes of the
//! next result's, and the stream can send the differences (see `stream`).
//!
//! A call's `arguments` is the JSON text as the model wrote it (llama.cpp keeps it raw, too),
//! cut where generation is when partial.

use std::sync::Arc;

use serde_json::Value;

use super::Format;

/// One parsed tool call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Call {
    pub name: String,
    /// JSON text (partial while the call is being generated).
    pub arguments: String,
    /// The id the model wrote (Mistral Nemo); otherwise the server makes one.
    pub id: String,
}

/// A parsed reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub content: String,
    pub reasoning: String,
    pub calls: Vec<Call>,
}

/// How to read one reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Syntax {
    pub format: Format,
    /// Tool calls are looked for (tools were given and `tool_choice` is not `none`).
    pub tools: bool,
    /// Thinking blocks become `reasoning` (`reasoning_format` other than `none`).
    pub reasoning: bool,
    /// `deepseek-legacy`: the thinking block is also left in the content.
    pub legacy: bool,
    /// The thinking block's markers (`<think>`, `</think>`).
    pub think: Option<(&'static str, &'static str)>,
    /// The prompt ends inside an opened thinking block: the reply starts as reasoning.
    pub starts_thinking: bool,
    /// The request's tool definitions, where the format needs them to read a call
    /// (Qwen3-Coder's parameters are text or JSON by their schema's type).
    pub defs: Option<Arc<Value>>,
}

impl Syntax {
    /// Plain text: everything is content.
    #[cfg(test)]
    pub fn plain() -> Syntax {
        Syntax {
            format: Format::Content,
            tools: false,
            reasoning: false,
            legacy: false,
            think: None,
            starts_thinking: false,
            defs: None,
        }
    }

    /// The reply's markup is made of control tokens, so its text must show them.
    pub fn needs_special_tokens(&self) -> bool {
        match self.format {
            Format::GptOss => true,
            Format::Gemma4 | Format::MistralArgs => self.tools || self.reasoning,
            Format::Mistral | Format::Llama3 => self.tools,
            Format::Hermes | Format::Qwen3Coder | Format::FunctionaryV32 | Format::Content => false,
        }
    }
}

/// Parses `text`, the reply generated so far (`partial`) or the whole reply.
pub fn parse(text: &str, partial: bool, syn: &Syntax) -> Parsed {
    if syn.format == Format::GptOss {
        return parse_harmony(text, partial, syn);
    }
    if syn.format == Format::FunctionaryV32 {
        let mut out = Parsed::default();
        parse_functionary_v32(text, partial, syn.tools, &mut out);
        return out;
    }
    let mut out = Parsed::default();
    let rest = match syn.reasoning {
        true if syn.legacy => {
            split_reasoning(text, partial, syn, &mut out);
            text
        }
        true => split_reasoning(text, partial, syn, &mut out),
        false => text,
    };
    if !syn.tools {
        out.content.push_str(rest);
        return out;
    }
    match syn.format {
        Format::Hermes => parse_hermes(rest, partial, &mut out),
        Format::Llama3 => parse_llama3(rest, partial, &mut out),
        Format::Mistral => parse_mistral(rest, partial, &mut out, false),
        Format::MistralArgs => parse_mistral(rest, partial, &mut out, true),
        Format::Gemma4 => parse_gemma4(rest, partial, &mut out),
        Format::Qwen3Coder => parse_qwen3_coder(rest, partial, syn, &mut out),
        Format::Content | Format::GptOss | Format::FunctionaryV32 => out.content.push_str(rest),
    }
    out
}

/// Takes a leading thinking block out of `text` into `out.reasoning`; returns the rest.
fn split_reasoning<'a>(text: &'a str, partial: bool, syn: &Syntax, out: &mut Parsed) -> &'a str {
    let Some((open, close)) = syn.think else {
        return text;
    };
    let body = if syn.starts_thinking {
        text
    } else {
        let t = text.trim_start();
        if let Some(b) = t.strip_prefix(open) {
            b
        } else if partial && open.starts_with(t) {
            // Nothing yet, or the opening tag cut: it may still come.
            return "";
        } else {
            return text;
        }
    };
    match body.find(close) {
        Some(at) => {
            out.reasoning = body[..at].trim().to_owned();
            body[at + close.len()..].trim_start()
        }
        None => {
            let shown = if partial {
                hold_back(body, &[close])
            } else {
                body
            };
            out.reasoning = shown.trim().to_owned();
            ""
        }
    }
}

/// `s` without a trailing prefix of any of `markers` (text that may be the start of one).
fn hold_back<'a>(s: &'a str, markers: &[&str]) -> &'a str {
    let mut cut = s.len();
    for m in markers {
        for (i, _) in s.char_indices().rev().take(m.len()) {
            if m.starts_with(&s[i..]) && i < cut {
                cut = i;
            }
        }
    }
    &s[..cut]
}

/// Content before a tool call: the text before it, without the whitespace that separates
/// them. While partial, trailing whitespace waits (a call may follow it).
fn push_content(out: &mut Parsed, s: &str, trim: bool) {
    out.content.push_str(if trim { s.trim_end() } else { s });
}

/// Hermes 2 Pro, Qwen 2.5, Qwen 3…: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`.
fn parse_hermes(text: &str, partial: bool, out: &mut Parsed) {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let mut pos = 0;
    loop {
        let rest = &text[pos..];
        let Some(at) = rest.find(OPEN) else {
            if out.calls.is_empty() {
                if partial {
                    push_content(out, hold_back(rest, &[OPEN]), true);
                } else {
                    out.content.push_str(rest);
                }
            } else if !partial && !rest.trim().is_empty() {
                // Text after the calls: content, as llama.cpp's parsers keep it.
                out.content.push_str(rest.trim());
            }
            return;
        };
        if out.calls.is_empty() {
            push_content(out, &rest[..at], true);
        }
        let body = &rest[at + OPEN.len()..];
        let json_at = body.len() - body.trim_start().len();
        match json_call(&body[json_at..], &["arguments", "parameters"]) {
            JsonCall::Done { call, len } => {
                out.calls.push(call);
                let after = &body[json_at + len..];
                let after_ws = after.len() - after.trim_start().len();
                let tail = &after[after_ws..];
                let skip = if tail.starts_with(CLOSE) {
                    after_ws + CLOSE.len()
                } else {
                    0
                };
                pos = text.len() - body.len() + json_at + len + skip;
            }
            // A call cut by the end of the reply (by `max_tokens` when whole) is a call once
            // its name is known, as in llama.cpp.
            JsonCall::Partial(Some(call)) => {
                out.calls.push(call);
                return;
            }
            JsonCall::Partial(None) => {
                if !partial {
                    out.content.push_str(&rest[at..]);
                }
                return;
            }
            JsonCall::Invalid => {
                if out.calls.is_empty() || !partial {
                    out.content.push_str(&rest[at..]);
                }
                return;
            }
        }
    }
}

/// Qwen3-Coder (also Qwen 3.5, Nemotron Nano 3): XML calls,
/// `<tool_call>\n<function=NAME>\n<parameter=P>\nVALUE\n</parameter>\n…</function>\n</tool_call>`,
/// as llama.cpp's `common/parsers/qwen3-coder.cpp` reads them. A parameter whose schema is a
/// string is text, taken verbatim; one of other types is JSON; one that may be either is JSON
/// when it parses, else text. The arguments are built as llama.cpp builds them, compact
/// (`{"a":1,"b":"x"}`). Without a thinking block (Qwen3-Coder itself) the first call may come
/// without its `<tool_call>`: `<function=NAME>` of a known tool starts it too.
fn parse_qwen3_coder(text: &str, partial: bool, syn: &Syntax, out: &mut Parsed) {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    const FUNC: &str = "<function=";
    const FUNC_END: &str = "</function>";
    const PARAM: &str = "<parameter=";
    const PARAM_END: &str = "</parameter>";
    let defs = syn.defs.as_deref();
    let bare_starts: Vec<String> = if syn.think.is_none() {
        super::tool_names(defs)
            .map(|n| format!("{FUNC}{n}>"))
            .collect()
    } else {
        Vec::new()
    };
    let mut starts: Vec<&str> = vec![OPEN];
    starts.extend(bare_starts.iter().map(String::as_str));
    let mut pos = 0;
    loop {
        let rest = &text[pos..];
        // Only the first call may come without its `<tool_call>`.
        let allowed = if out.calls.is_empty() {
            &starts[..]
        } else {
            &starts[..1]
        };
        let found = allowed
            .iter()
            .filter_map(|s| rest.find(s).map(|at| (at, *s)))
            .min();
        let Some((at, start)) = found else {
            if out.calls.is_empty() {
                if partial {
                    push_content(out, hold_back(rest, &starts), true);
                } else {
                    out.content.push_str(rest);
                }
            } else if !partial && !rest.trim().is_empty() {
                out.content.push_str(rest.trim());
            }
            return;
        };
        if out.calls.is_empty() {
            push_content(out, &rest[..at], true);
        }
        let mut s = &rest[at..];
        if start == OPEN {
            s = s[OPEN.len()..].trim_start();
        }
        // The function's name.
        let Some(f) = s.strip_prefix(FUNC) else {
            if !partial {
                out.content.push_str(&rest[at..]);
            }
            return;
        };
        let Some(gt) = f.find('>') else { return };
        let name = f[..gt].trim().to_owned();
        let mut body = &f[gt + 1..];
        let mut args = String::from("{");
        let mut n_args = 0;
        let mut closed = false;
        loop {
            let b = body.trim_start();
            if let Some(p) = b.strip_prefix(PARAM) {
                let Some(gt) = p.find('>') else { break };
                let param = p[..gt].trim();
                let v = &p[gt + 1..];
                let v = v.strip_prefix('\n').unwrap_or(v);
                let kind = arg_kind(defs, &name, param);
                let sep = if n_args > 0 { "," } else { "" };
                let key = serde_json::to_string(param).unwrap_or_default();
                match v.find(PARAM_END) {
                    Some(end) => {
                        let raw = &v[..end];
                        let raw = raw.strip_suffix('\n').unwrap_or(raw);
                        args.push_str(&format!("{sep}{key}:{}", arg_value(raw, kind)));
                        n_args += 1;
                        body = &v[end + PARAM_END.len()..];
                    }
                    None => {
                        // Still being written: a text value shows as far as it surely goes.
                        if partial && kind == ArgKind::Text {
                            let shown = hold_back(v, &["\n</parameter>", PARAM_END]);
                            let json = serde_json::to_string(shown).unwrap_or_default();
                            args.push_str(&format!("{sep}{key}:{}", &json[..json.len() - 1]));
                        }
                        break;
                    }
                }
            } else if let Some(after) = b.strip_prefix(FUNC_END) {
                args.push('}');
                closed = true;
                let after_ws = after.trim_start();
                body = after_ws.strip_prefix(CLOSE).unwrap_or(after_ws);
                break;
            } else {
                break;
            }
        }
        out.calls.push(Call {
            name,
            arguments: args,
            id: String::new(),
        });
        if !closed {
            return;
        }
        pos = text.len() - body.len();
    }
}

/// Functionary v3.2, as llama.cpp's `functionary-v3-2.cpp` reads it: the reply continues the
/// prompt's `>>>` with a recipient line, `all` for content (up to the next `>>>` when tools
/// were given) or a function's name followed by its JSON arguments; more `>>>` messages may
/// follow. A reply that fits neither is content as it is.
fn parse_functionary_v32(text: &str, partial: bool, tools: bool, out: &mut Parsed) {
    const ALL: &str = "all\n";
    const NEXT: &str = ">>>";
    let mut rest = text;
    loop {
        if let Some(c) = rest.strip_prefix(ALL) {
            match c.find(NEXT).filter(|_| tools) {
                Some(at) => {
                    out.content.push_str(&c[..at]);
                    rest = &c[at + NEXT.len()..];
                    continue;
                }
                None => {
                    let shown = if partial && tools {
                        hold_back(c, &[NEXT])
                    } else {
                        c
                    };
                    out.content.push_str(shown);
                    return;
                }
            }
        }
        if partial && ALL.starts_with(rest) {
            return;
        }
        let name_end = rest.find('\n');
        let name = name_end.map_or(rest, |nl| &rest[..nl]);
        let is_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !tools || !is_name {
            if !(partial && is_name && name_end.is_none()) {
                out.content.push_str(rest);
            }
            return;
        }
        let Some(nl) = name_end else { return };
        let body = &rest[nl + 1..];
        let lead = body.len() - body.trim_start().len();
        let args = &body[lead..];
        match json_end(args) {
            Scan::Done(len) => {
                out.calls.push(Call {
                    name: name.to_owned(),
                    arguments: args[..len].to_owned(),
                    id: String::new(),
                });
                let after = args[len..].trim_start();
                match after.strip_prefix(NEXT) {
                    Some(next) => rest = next,
                    None => {
                        if !partial && !after.is_empty() {
                            out.content.push_str(after);
                        }
                        return;
                    }
                }
            }
            Scan::Partial => {
                out.calls.push(Call {
                    name: name.to_owned(),
                    arguments: args.to_owned(),
                    id: String::new(),
                });
                return;
            }
            Scan::Invalid => {
                if !partial {
                    out.content.push_str(rest);
                }
                return;
            }
        }
    }
}

/// How a Qwen3-Coder parameter's value is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArgKind {
    /// The schema says string: the text itself.
    Text,
    /// Another type: JSON.
    Json,
    /// Either (no type, or string among others): JSON when it parses.
    Either,
}

/// The kind of parameter `param` of tool `func` in the request's tool definitions.
fn arg_kind(defs: Option<&Value>, func: &str, param: &str) -> ArgKind {
    let schema = defs
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("function"))
        .find(|f| f.get("name").and_then(Value::as_str) == Some(func))
        .and_then(|f| f.get("parameters")?.get("properties")?.get(param));
    let types: Vec<&str> = match schema.and_then(|s| s.get("type")) {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return ArgKind::Either,
    };
    match (types.contains(&"string"), types.len()) {
        (true, 1) => ArgKind::Text,
        (true, _) => ArgKind::Either,
        (false, _) => ArgKind::Json,
    }
}

/// A complete parameter value as JSON text.
fn arg_value(raw: &str, kind: ArgKind) -> String {
    let as_json = || {
        let t = raw.trim();
        serde_json::from_str::<Value>(t).ok().map(|_| t.to_owned())
    };
    match kind {
        ArgKind::Text => None,
        ArgKind::Json | ArgKind::Either => as_json(),
    }
    .unwrap_or_else(|| serde_json::to_string(raw).unwrap_or_default())
}

/// Llama 3.x: the reply is one JSON call `{"name": …, "parameters": {…}}`, or
/// `<|python_tag|>` and a JSON call or code for the built-in `python` tool.
fn parse_llama3(text: &str, partial: bool, out: &mut Parsed) {
    const TAG: &str = "<|python_tag|>";
    let t = text.trim_start();
    if let Some(at) = text.find(TAG) {
        push_content(out, &text[..at], true);
        let body = text[at + TAG.len()..].trim_start();
        if body.starts_with('{') {
            match json_call(body, &["parameters", "arguments"]) {
                JsonCall::Done { call, .. } | JsonCall::Partial(Some(call)) => out.calls.push(call),
                JsonCall::Partial(None) if partial => {}
                _ => out.content.push_str(&text[at..]),
            }
        } else if !(partial && body.is_empty()) {
            let code = serde_json::to_string(body).unwrap_or_default();
            out.calls.push(Call {
                name: "python".into(),
                arguments: if partial {
                    // The closing quote and brace come when the code is whole.
                    format!("{{\"code\":{}", &code[..code.len() - 1])
                } else {
                    format!("{{\"code\":{code}}}")
                },
                id: String::new(),
            });
        }
        return;
    }
    if partial && !t.is_empty() && TAG.starts_with(t) {
        return;
    }
    if !t.starts_with('{') {
        if partial {
            out.content.push_str(hold_back(text, &[TAG]));
        } else {
            out.content.push_str(text);
        }
        return;
    }
    match json_call(t, &["parameters", "arguments"]) {
        JsonCall::Done { call, len } => {
            out.calls.push(call);
            // Several calls separated by `;` (Llama 3.1 sometimes), as llama.cpp reads them.
            let mut rest = &t[len..];
            loop {
                let r = rest.trim_start();
                let Some(r) = r.strip_prefix(';') else { break };
                let r = r.trim_start();
                match json_call(r, &["parameters", "arguments"]) {
                    JsonCall::Done { call, len } => {
                        out.calls.push(call);
                        rest = &r[len..];
                    }
                    JsonCall::Partial(Some(call)) => {
                        out.calls.push(call);
                        break;
                    }
                    _ => break,
                }
            }
        }
        JsonCall::Partial(Some(call)) => out.calls.push(call),
        JsonCall::Partial(None) if partial => {}
        // JSON that is not a call, or cut before its name: content.
        JsonCall::Partial(None) | JsonCall::Invalid => out.content.push_str(text),
    }
}

/// Mistral: `[TOOL_CALLS][{"name": …, "arguments": {…}, "id": …}, …]` (Nemo), or with
/// `args_marker`, `[TOOL_CALLS]name[ARGS]{…}` repeated (Ministral 3, Mistral Small 3.2,
/// Devstral).
fn parse_mistral(text: &str, partial: bool, out: &mut Parsed, args_marker: bool) {
    const TAG: &str = "[TOOL_CALLS]";
    const ARGS: &str = "[ARGS]";
    let Some(at) = text.find(TAG) else {
        if partial {
            push_content(out, hold_back(text, &[TAG]), true);
        } else {
            out.content.push_str(text);
        }
        return;
    };
    push_content(out, &text[..at], true);
    let mut rest = &text[at + TAG.len()..];
    if args_marker {
        loop {
            let Some(a) = rest.find(ARGS) else {
                // The name is still being written.
                if !partial && !rest.trim().is_empty() {
                    out.content.push_str(rest);
                }
                return;
            };
            let name = rest[..a].trim().to_owned();
            let body = &rest[a + ARGS.len()..];
            match json_end(body) {
                Scan::Done(len) => {
                    out.calls.push(Call {
                        name,
                        arguments: body[..len].trim().to_owned(),
                        id: String::new(),
                    });
                    let next = body[len..].trim_start();
                    match next.strip_prefix(TAG) {
                        Some(n) => rest = n,
                        None => return,
                    }
                }
                Scan::Partial => {
                    out.calls.push(Call {
                        name,
                        arguments: body.trim_start().to_owned(),
                        id: String::new(),
                    });
                    return;
                }
                Scan::Invalid => {
                    if !partial {
                        out.content.push_str(&rest[a..]);
                    }
                    return;
                }
            }
        }
    }
    // Nemo: a JSON list of calls.
    let list = rest.trim_start();
    let Some(mut items) = list.strip_prefix('[') else {
        if !partial && !list.is_empty() {
            out.content.push_str(rest);
        }
        return;
    };
    loop {
        items = items.trim_start();
        if items.is_empty() || items.starts_with(']') {
            return;
        }
        match json_call(items, &["arguments", "parameters"]) {
            JsonCall::Done { call, len } => {
                out.calls.push(call);
                items = items[len..].trim_start();
                match items.strip_prefix(',') {
                    Some(r) => items = r,
                    None => return,
                }
            }
            JsonCall::Partial(call) => {
                out.calls.extend(call);
                return;
            }
            JsonCall::Invalid => return,
        }
    }
}

/// gpt-oss's harmony format: messages `<|channel|>analysis<|message|>…<|end|>` (reasoning),
/// `<|channel|>final<|message|>…` (content), and calls
/// `<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{…}<|call|>` (the
/// recipient may also come before the channel: `<|start|>assistant to=functions.NAME…`).
fn parse_harmony(text: &str, partial: bool, syn: &Syntax) -> Parsed {
    const MSG: &str = "<|message|>";
    const ENDS: [&str; 3] = ["<|end|>", "<|call|>", "<|return|>"];
    const START: &str = "<|start|>";
    let mut out = Parsed::default();
    let mut rest = text;
    loop {
        // A message's header runs to `<|message|>`.
        let Some(m) = rest.find(MSG) else {
            if !partial && !rest.trim().is_empty() && out == Parsed::default() {
                out.content.push_str(rest);
            }
            return out;
        };
        let header = &rest[..m];
        let body_all = &rest[m + MSG.len()..];
        let (body, next) = match ENDS
            .iter()
            .filter_map(|e| body_all.find(e).map(|at| (at, e.len())))
            .min()
        {
            Some((at, len)) => (&body_all[..at], Some(&body_all[at + len..])),
            None => (
                if partial {
                    hold_back(body_all, &ENDS)
                } else {
                    body_all
                },
                None,
            ),
        };
        let recipient = header
            .split_whitespace()
            .chain(header.split("<|channel|>"))
            .find_map(|w| w.trim().strip_prefix("to="))
            .map(|r| r.split(['<', ' ']).next().unwrap_or(r));
        let channel = header
            .split("<|channel|>")
            .nth(1)
            .map(|c| c.split([' ', '<']).next().unwrap_or(c).trim());
        match (recipient, channel) {
            (Some(r), _) if r.starts_with("functions.") => {
                if syn.tools {
                    out.calls.push(Call {
                        name: r["functions.".len()..].to_owned(),
                        arguments: body.trim_start().to_owned(),
                        id: String::new(),
                    });
                }
            }
            // Calls to built-in tools the request did not define: dropped, as llama.cpp.
            (Some(_), _) => {}
            (None, Some("analysis")) if syn.reasoning => {
                if !out.reasoning.is_empty() {
                    out.reasoning.push('\n');
                }
                out.reasoning.push_str(body);
            }
            (None, Some("analysis")) => {
                out.content.push_str(&rest[..m + MSG.len()]);
                out.content.push_str(body);
                if next.is_some() {
                    out.content.push_str("<|end|>");
                }
            }
            _ => out.content.push_str(body),
        }
        let Some(next) = next else { return out };
        rest = next;
        if let Some(r) = rest.strip_prefix(START) {
            rest = r;
        }
        rest = rest.strip_prefix("assistant").unwrap_or(rest);
    }
}

/// Gemma 4: `<|tool_call>call:NAME{key:<|"|>text<|"|>,n:1}<tool_call|>`, its own notation
/// for the arguments (keys bare, strings between `<|"|>`), turned into JSON when the call is
/// whole; until then the call shows with empty arguments.
fn parse_gemma4(text: &str, partial: bool, out: &mut Parsed) {
    const OPEN: &str = "<|tool_call>call:";
    const CLOSE: &str = "<tool_call|>";
    let mut rest = text;
    loop {
        let Some(at) = rest.find(OPEN) else {
            if out.calls.is_empty() {
                if partial {
                    push_content(out, hold_back(rest, &[OPEN]), true);
                } else {
                    out.content.push_str(rest);
                }
            }
            return;
        };
        if out.calls.is_empty() {
            push_content(out, &rest[..at], true);
        }
        let body = &rest[at + OPEN.len()..];
        let Some(brace) = body.find('{') else {
            if !partial {
                out.content.push_str(&rest[at..]);
            }
            return;
        };
        let name = body[..brace].trim().to_owned();
        match gemma4_args(&body[brace..]) {
            Some((json, len)) => {
                out.calls.push(Call {
                    name,
                    arguments: json,
                    id: String::new(),
                });
                let after = body[brace + len..].trim_start();
                rest = after.strip_prefix(CLOSE).unwrap_or(after);
            }
            None => {
                out.calls.push(Call {
                    name,
                    ..Call::default()
                });
                return;
            }
        }
    }
}

/// Gemma 4's argument object at the start of `s` as JSON text, and its length; `None` when
/// it is cut or malformed.
fn gemma4_args(s: &str) -> Option<(String, usize)> {
    const QUOTE: &str = "<|\"|>";
    let mut json = String::new();
    let mut depth = 0usize;
    let mut i = 0;
    let b = s.as_bytes();
    while i < s.len() {
        let rest = &s[i..];
        if let Some(r) = rest.strip_prefix(QUOTE) {
            let end = r.find(QUOTE)?;
            json.push_str(&serde_json::to_string(&r[..end]).ok()?);
            i += QUOTE.len() * 2 + end;
            continue;
        }
        let c = b[i];
        match c {
            b'{' | b'[' => {
                depth += 1;
                json.push(c as char);
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                json.push(c as char);
                if depth == 0 {
                    serde_json::from_str::<Value>(&json).ok()?;
                    return Some((json, i + 1));
                }
            }
            b',' | b':' => json.push(c as char),
            c if c.is_ascii_whitespace() => {}
            _ => {
                let n = rest
                    .bytes()
                    .take_while(|c| !matches!(c, b',' | b':' | b'}' | b']' | b'{' | b'[' | b'<'))
                    .count();
                let word = rest[..n].trim();
                let is_key = rest[n..].starts_with(':');
                let literal = !is_key
                    && (matches!(word, "true" | "false" | "null")
                        || serde_json::from_str::<f64>(word).is_ok());
                if literal {
                    json.push_str(word);
                } else {
                    json.push_str(&serde_json::to_string(word).ok()?);
                }
                i += n.max(1);
                continue;
            }
        }
        i += 1;
    }
    None
}

/// Where a JSON value starting at the beginning of a text ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scan {
    /// Its length in bytes.
    Done(usize),
    /// The text ends inside it.
    Partial,
    /// It is not JSON.
    Invalid,
}

/// Finds the end of the JSON value at the start of `s` (after leading whitespace).
fn json_end(s: &str) -> Scan {
    let b = s.as_bytes();
    let mut i = s.len() - s.trim_start().len();
    let Some(&first) = b.get(i) else {
        return Scan::Partial;
    };
    match first {
        b'{' | b'[' => {
            let mut depth = Vec::new();
            while i < b.len() {
                match b[i] {
                    c @ (b'{' | b'[') => depth.push(if c == b'{' { b'}' } else { b']' }),
                    c @ (b'}' | b']') => {
                        if depth.pop() != Some(c) {
                            return Scan::Invalid;
                        }
                        if depth.is_empty() {
                            return Scan::Done(i + 1);
                        }
                    }
                    b'"' => match string_end(&b[i..]) {
                        Some(n) => i += n - 1,
                        None => return Scan::Partial,
                    },
                    _ => {}
                }
                i += 1;
            }
            Scan::Partial
        }
        b'"' => match string_end(&b[i..]) {
            Some(n) => Scan::Done(i + n),
            None => Scan::Partial,
        },
        c if c == b'-' || c.is_ascii_alphanumeric() => {
            let n = b[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'+' | b'.'))
                .count();
            if i + n == b.len() {
                Scan::Partial
            } else {
                Scan::Done(i + n)
            }
        }
        _ => Scan::Invalid,
    }
}

/// The length of the JSON string starting at `b[0] == '"'`, or `None` when it is cut.
fn string_end(b: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// A JSON call object read so far.
#[derive(Debug)]
enum JsonCall {
    /// A whole call and the object's length.
    Done { call: Call, len: usize },
    /// The text ends inside the object; the call once its name is known.
    Partial(Option<Call>),
    /// Not a call object.
    Invalid,
}

/// Reads `{"name": "…", "<args key>": {…}, "id": "…"}` at the start of `s`. The arguments are
/// the first of `args_keys` present, as written (a string holding JSON is unwrapped).
fn json_call(s: &str, args_keys: &[&str]) -> JsonCall {
    let b = s.as_bytes();
    match b.first() {
        None => return JsonCall::Partial(None),
        Some(b'{') => {}
        Some(_) => return JsonCall::Invalid,
    }
    let mut call = Call::default();
    let mut have_name = false;
    let mut have_args = false;
    let mut i = 1;
    loop {
        i += ws(&b[i..]);
        match b.get(i) {
            None => break,
            Some(b'}') => {
                if !have_name {
                    return JsonCall::Invalid;
                }
                if !have_args {
                    call.arguments = "{}".into();
                }
                return JsonCall::Done { call, len: i + 1 };
            }
            Some(b',') => {
                i += 1;
                continue;
            }
            Some(b'"') => {}
            Some(_) => return JsonCall::Invalid,
        }
        let Some(klen) = string_end(&b[i..]) else {
            break;
        };
        let Ok(key) = serde_json::from_str::<String>(&s[i..i + klen]) else {
            return JsonCall::Invalid;
        };
        i += klen;
        i += ws(&b[i..]);
        match b.get(i) {
            None => break,
            Some(b':') => i += 1,
            Some(_) => return JsonCall::Invalid,
        }
        i += ws(&b[i..]);
        let value = &s[i..];
        let is_args = !have_args && args_keys.contains(&key.as_str());
        match json_end(value) {
            Scan::Invalid => return JsonCall::Invalid,
            Scan::Partial => {
                if is_args && have_name {
                    call.arguments = value.to_owned();
                    return JsonCall::Partial(Some(call));
                }
                break;
            }
            Scan::Done(len) => {
                let raw = &value[..len];
                match key.as_str() {
                    "name" if !have_name => {
                        let Ok(name) = serde_json::from_str::<String>(raw) else {
                            return JsonCall::Invalid;
                        };
                        call.name = name;
                        have_name = true;
                    }
                    "id" => {
                        if let Ok(id) = serde_json::from_str::<String>(raw) {
                            call.id = id;
                        }
                    }
                    _ if is_args => {
                        call.arguments = match serde_json::from_str::<Value>(raw) {
                            Ok(Value::String(inner)) => inner,
                            _ => raw.to_owned(),
                        };
                        have_args = true;
                    }
                    _ => {}
                }
                i += len;
            }
        }
    }
    JsonCall::Partial(have_name.then_some(call))
}

fn ws(b: &[u8]) -> usize {
    b.iter().take_while(|c| c.is_ascii_whitespace()).count()
}

#[cfg(test)]
mod tests;
