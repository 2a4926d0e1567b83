//! Tool calling and reasoning extraction for chat requests, as llama-server does them: the
//! request's `tools` go to the chat template, and the reply is parsed back into
//! `message.content`, `message.reasoning_content` and `message.tool_calls`.
//!
//! - [`Format`]: how a model writes tool calls, detected from its template's source as
//!   llama.cpp's `common/chat.cpp` does (Hermes/Qwen `<tool_call>`, Llama 3.x JSON and
//!   `<|python_tag|>`, Mistral `[TOOL_CALLS]`, gpt-oss harmony channels, Gemma 4
//!   `<|tool_call>call:`); a template that does not know tools gets none, and its replies stay
//!   content (llama-server ignores `tools` there too).
//! - [`ChatRequest`]: `tools`, `tool_choice`, `parallel_tool_calls`, `reasoning_format` of a
//!   request; `tool_choice` `required` or a named function constrains the output with a
//!   grammar ([`ChatRequest::grammar`]) so the model must write a valid call.
//! - `parse`: the reply's text into a [`Parsed`] message, whole or as generated so far.
//! - `stream`: the differences between successive partial parses, as llama-server's
//!   `delta.content` / `delta.reasoning_content` / `delta.tool_calls` chunks.

mod parse;
mod stream;

use engine::grammar::GrammarSource;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::params::{Body, type_error};

pub(crate) use parse::{Parsed, Syntax};
pub(crate) use stream::ChatStream;

/// How a template's model writes tool calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// No tool calls: the reply is content (and maybe a thinking block).
    Content,
    /// `<tool_call>{"name": …, "arguments": …}</tool_call>` (Hermes 2 Pro/3, Qwen 2.5, Qwen 3).
    Hermes,
    /// `{"name": …, "parameters": …}` or `<|python_tag|>…` (Llama 3.1/3.2/3.3).
    Llama3,
    /// `[TOOL_CALLS][{"name": …, "arguments": …, "id": …}]` (Mistral Nemo).
    Mistral,
    /// `[TOOL_CALLS]name[ARGS]{…}` (Ministral 3, Mistral Small 3.2, Devstral).
    MistralArgs,
    /// gpt-oss's harmony channels.
    GptOss,
    /// `<|tool_call>call:name{key:<|"|>text<|"|>}<tool_call|>` (Gemma 4).
    Gemma4,
    /// `<tool_call>\n<function=NAME>\n<parameter=P>\nVALUE\n</parameter>\n</function>\n</tool_call>`
    /// (Qwen3-Coder, Qwen 3.5, Nemotron Nano 3).
    Qwen3Coder,
    /// Functionary v3.2: the prompt ends with `>>>`, the reply names its recipient —
    /// `all\n` and content, or `NAME\n` and the JSON arguments — and `>>>` starts the next.
    FunctionaryV32,
}

impl Format {
    /// The format of a template, from markers in its source (llama.cpp's detection).
    pub fn detect(source: &str) -> Format {
        let has = |s: &str| source.contains(s);
        if has("<|channel|>") {
            Format::GptOss
        } else if has(">>>all") && has(">>>${recipient}") {
            Format::FunctionaryV32
        } else if has("'<|tool_call>call:'") {
            Format::Gemma4
        } else if has("[TOOL_CALLS]") {
            if has("[ARGS]") {
                Format::MistralArgs
            } else {
                Format::Mistral
            }
        } else if has("<tool_call>") && has("<function=") && has("<parameter=") {
            // llama.cpp leaves templates that write no newline between the tags to its
            // generic parser, which hearth does not have.
            if has("'<tool_call><function=' ~ tool_call.name ~ '>'") {
                Format::Content
            } else {
                Format::Qwen3Coder
            }
        } else if has("<tool_call>") {
            Format::Hermes
        } else if has("<|python_tag|>") || (has("ipython") && has("parameters")) {
            Format::Llama3
        } else {
            Format::Content
        }
    }
}

/// llama-server's `reasoning_format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReasoningFormat {
    /// Thinking blocks stay in the content.
    None,
    /// Thinking blocks become `reasoning_content`.
    Deepseek,
    /// `reasoning_content` too, and the block also stays in the content.
    DeepseekLegacy,
    /// As `deepseek` (llama-server's default).
    #[default]
    Auto,
}

impl ReasoningFormat {
    pub fn from_name(name: &str) -> Option<ReasoningFormat> {
        match name {
            "none" => Some(ReasoningFormat::None),
            "deepseek" => Some(ReasoningFormat::Deepseek),
            "deepseek-legacy" => Some(ReasoningFormat::DeepseekLegacy),
            "auto" => Some(ReasoningFormat::Auto),
            _ => None,
        }
    }
}

/// `tool_choice`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    /// `{"type": "function", "function": {"name": …}}`: this function must be called.
    Function(String),
}

/// The tool and reasoning fields of a chat request.
#[derive(Clone, Debug)]
pub struct ChatRequest {
    /// The tool definitions, for the template; `None` without tools.
    pub tools: Option<Value>,
    pub choice: ToolChoice,
    pub parallel: bool,
    pub reasoning: ReasoningFormat,
}

impl ChatRequest {
    /// Reads an OpenAI chat request's fields; `default_reasoning` is `--reasoning-format`.
    pub fn openai(body: &Body, default_reasoning: ReasoningFormat) -> Result<Self, ApiError> {
        let tools = tools(body.get("tools"))?;
        let choice = match body.get("tool_choice") {
            None | Some(Value::Null) => ToolChoice::Auto,
            Some(Value::String(s)) => match s.as_str() {
                "auto" => ToolChoice::Auto,
                "none" => ToolChoice::None,
                "required" => ToolChoice::Required,
                other => {
                    return Err(ApiError::invalid(format!("Invalid tool_choice: {other}")));
                }
            },
            Some(Value::Object(o)) => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        type_error(
                            "tool_choice",
                            "\"auto\", \"none\", \"required\" or a function",
                        )
                    })?;
                ToolChoice::Function(name.to_owned())
            }
            Some(_) => {
                return Err(type_error(
                    "tool_choice",
                    "\"auto\", \"none\", \"required\" or a function",
                ));
            }
        };
        if let ToolChoice::Function(name) = &choice
            && !tool_names(tools.as_ref()).any(|n| n == name)
        {
            return Err(ApiError::invalid(format!(
                "`tool_choice` names `{name}`, which is not in `tools`"
            )));
        }
        if tools.is_some() && choice != ToolChoice::None && body.get("grammar").is_some() {
            return Err(ApiError::invalid(
                "Cannot use custom grammar constraints with tools.",
            ));
        }
        let parallel = body.bool("parallel_tool_calls")?.unwrap_or(false);
        let reasoning = match body.get("reasoning_format") {
            None | Some(Value::Null) => default_reasoning,
            Some(Value::String(s)) => ReasoningFormat::from_name(s)
                .ok_or_else(|| ApiError::invalid(format!("Unknown reasoning format: {s}")))?,
            Some(_) => return Err(type_error("reasoning_format", "a string")),
        };
        Ok(ChatRequest {
            tools,
            choice,
            parallel,
            reasoning,
        })
    }

    /// Reads an Ollama chat request's `tools`; reasoning is extracted when `think` is set.
    pub fn ollama(body: &Body) -> Result<Self, ApiError> {
        Ok(ChatRequest {
            tools: tools(body.get("tools"))?,
            choice: ToolChoice::Auto,
            parallel: true,
            reasoning: match body.bool("think")? {
                Some(true) => ReasoningFormat::Deepseek,
                _ => ReasoningFormat::None,
            },
        })
    }

    /// How to read the reply of a prompt rendered for this request: `format` is the
    /// template's, `think` its thinking markers, `prompt` the rendered prompt.
    pub fn syntax(
        &self,
        format: Format,
        think: Option<(&'static str, &'static str)>,
        prompt: &str,
    ) -> Syntax {
        let reasoning = self.reasoning != ReasoningFormat::None;
        let think = match format {
            Format::Gemma4 => Some(("<|channel>thought", "<channel|>")),
            _ => think,
        };
        Syntax {
            format,
            tools: self.tools.is_some() && self.choice != ToolChoice::None,
            reasoning,
            legacy: self.reasoning == ReasoningFormat::DeepseekLegacy,
            think,
            starts_thinking: think.is_some_and(|(open, _)| prompt.trim_end().ends_with(open)),
            defs: match format {
                Format::Qwen3Coder => self.tools.clone().map(std::sync::Arc::new),
                _ => None,
            },
        }
    }

    /// The grammar of the calls, as llama-server builds it for each `tool_choice`:
    ///
    /// - `required` or a named function, in the formats whose calls are plain text (Hermes,
    ///   Llama 3.x, Qwen3-Coder): the reply must be a valid call. A thinking block may come
    ///   first (free text up to its closing tag, as llama.cpp's grammars allow), and must when
    ///   the prompt opened it.
    /// - `auto`, Hermes and Qwen3-Coder: a lazy grammar, llama.cpp's `grammar_lazy` with its
    ///   trigger word (`<tool_call>\n`, `<tool_call>`). The reply is free until the trigger
    ///   appears, and from there it must be a valid call. A leading thinking block never
    ///   triggers (llama.cpp holds lazy grammars back while the model thinks). Llama 3.x calls
    ///   have no trigger word, so llama-server (and hearth) constrain nothing there.
    ///
    /// `None`: no constraint. Parameter schemas admit no properties they do not list, at
    /// any depth, as llama.cpp's `json-schema-to-grammar`.
    pub fn grammar(&self, syn: &Syntax) -> Option<GrammarSource> {
        let tools = self.tools.as_ref()?.as_array()?;
        let (only, lazy) = match &self.choice {
            ToolChoice::Required => (None, false),
            ToolChoice::Function(name) => (Some(name.as_str()), false),
            ToolChoice::Auto => (None, true),
            ToolChoice::None => return None,
        };
        let functions: Vec<&Value> = tools
            .iter()
            .filter_map(|t| t.get("function"))
            .filter(|f| only.is_none_or(|n| f.get("name").and_then(Value::as_str) == Some(n)))
            .collect();
        let params = |f: &Value| {
            let mut p = f
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| json!({ "type": "object" }));
            close_objects(&mut p);
            p
        };
        // Each format's call: `trigger open_rest body`, where the trigger is what starts a
        // call (the lazy grammar's trigger word) and `body` a rule, with `rules` beside it.
        let (trigger, open_rest, body, rules, sep) = match syn.format {
            Format::Hermes | Format::Llama3 => {
                let args_key = if syn.format == Format::Hermes {
                    "arguments"
                } else {
                    "parameters"
                };
                let calls: Vec<Value> = functions
                    .iter()
                    .map(|f| {
                        json!({
                            "type": "object",
                            "properties": {
                                "name": { "const": f.get("name") },
                                args_key: params(f),
                            },
                            "required": ["name", args_key],
                            "additionalProperties": false,
                        })
                    })
                    .collect();
                let schema = json!({ "anyOf": calls });
                if syn.format == Format::Hermes {
                    let body = format!("%json {schema} \"\\n</tool_call>\"");
                    ("<tool_call>\n", "", body, String::new(), "\"\\n\"")
                } else if lazy {
                    return None;
                } else {
                    ("", "", format!("%json {schema}"), String::new(), "\"; \"")
                }
            }
            Format::Qwen3Coder => {
                let (body, rules) = qwen3_coder_rules(&functions, params);
                ("<tool_call>", "\"\\n\" ", body, rules, "\"\\n\"")
            }
            // The reply starts right after the prompt's `>>>`; content may come first
            // (`all\n…`), and `>>>` separates the calls (llama.cpp's `functionary-v3-2.cpp`).
            // With `auto` llama.cpp's trigger is a pattern after the content, which this
            // grammar does not follow: the reply is parsed, not constrained.
            Format::FunctionaryV32 if !lazy => {
                let calls: Vec<String> = functions
                    .iter()
                    .map(|f| {
                        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                        format!("{} %json {}", lark_str(&format!("{name}\n")), params(f))
                    })
                    .collect();
                let start = format!(
                    "start: (lead)? call {}\nlead[lazy]: \"all\\n\" /(?s:.*)/ \">>>\"\ncall: {}\n",
                    if self.parallel && only.is_none() {
                        "(\">>>\" call)*"
                    } else {
                        ""
                    },
                    calls.join(" | "),
                );
                return Some(GrammarSource::Lark(start));
            }
            _ => return None,
        };
        let more = if (self.parallel || lazy) && only.is_none() {
            format!("({sep} call)*")
        } else {
            String::new()
        };
        let calls = if lazy {
            // The first call's trigger is the end of the free text (`PREFIX`); text without
            // the trigger is a reply without calls (`TEXT`). llama.cpp's lazy grammar lets
            // the model go on with more calls after the first, whatever `parallel_tool_calls`.
            let trigger_re = regex_escape(trigger);
            let no_think = match syn.think {
                Some((begin, _)) if !syn.starts_thinking => {
                    format!(" & ~/{}(?s:.*)/", regex_escape(begin))
                }
                _ => String::new(),
            };
            format!(
                "calls: TEXT? | PREFIX {open_rest}body {more}\n\
                 TEXT: /(?s:.+)/ & ~/(?s:.*{trigger_re}.*)/{no_think}\n\
                 PREFIX: /(?s:.*){trigger_re}/ & ~/(?s:.*{trigger_re}.+)/{no_think}\n"
            )
        } else {
            format!("calls: call {more}\n")
        };
        let calls = format!(
            "{calls}call: {} {open_rest}body\nbody: {body}\n{rules}",
            lark_str(trigger)
        );
        let ws = if lazy { " " } else { " /[ \\t\\r\\n]*/ " };
        let start = match syn.think {
            Some((_, end)) if syn.starts_thinking => format!(
                "start: think{ws}calls\nthink[lazy]: /(?s:.*)/ {}\n",
                lark_str(end)
            ),
            Some((begin, end)) => format!(
                "start: (think{ws})? calls\nthink[lazy]: {} /(?s:.*)/ {}\n",
                lark_str(begin),
                lark_str(end)
            ),
            None => "start: calls\n".to_owned(),
        };
        Some(GrammarSource::Lark(format!("{start}{calls}")))
    }
}

/// Qwen3-Coder's calls as Lark, as llama.cpp's `qwen3-coder.cpp` builds its grammar: the
/// `body` rule (one of the functions, then `</tool_call>`) and the rules it uses. A function
/// is `<function=NAME>\n`, its required parameters in any order (in the given order past
/// four), then optional ones, and `</function>\n`; a parameter is
/// `<parameter=P>\nVALUE\n</parameter>\n`, its value free text when its schema allows a
/// string (llama.cpp keeps only the text rule there too), else JSON of its schema.
fn qwen3_coder_rules(functions: &[&Value], params: impl Fn(&Value) -> Value) -> (String, String) {
    let mut rules = String::new();
    let mut choices = Vec::new();
    for (i, f) in functions.iter().enumerate() {
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        let p = params(f);
        let required: Vec<&str> = p
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let props = p.get("properties").and_then(Value::as_object);
        let mut req_rules = Vec::new();
        let mut opt_rules = Vec::new();
        for (j, (pname, schema)) in props.into_iter().flatten().enumerate() {
            let rule = format!("p{i}_{j}");
            let open = lark_str(&format!("<parameter={pname}>\n"));
            let text = match schema.get("type") {
                None => true,
                Some(Value::String(t)) => t == "string",
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
                Some(_) => true,
            };
            if text {
                rules.push_str(&format!(
                    "{rule}[lazy]: {open} /(?s:.*)/ \"\\n</parameter>\\n\"\n"
                ));
            } else {
                rules.push_str(&format!(
                    "{rule}: {open} %json {schema} \"\\n</parameter>\\n\"\n"
                ));
            }
            if required.contains(&pname.as_str()) {
                req_rules.push(rule);
            } else {
                opt_rules.push(rule);
            }
        }
        let mut orders: Vec<String> = if req_rules.len() <= 4 {
            permutations(&req_rules)
                .iter()
                .map(|o| o.join(" "))
                .collect()
        } else {
            vec![req_rules.join(" ")]
        };
        orders.retain(|o| !o.is_empty());
        let req = if orders.is_empty() {
            String::new()
        } else {
            format!("({})", orders.join(" | "))
        };
        let opt = if opt_rules.is_empty() {
            String::new()
        } else {
            format!(" ({})*", opt_rules.join(" | "))
        };
        rules.push_str(&format!(
            "f{i}: {} {req}{opt} \"</function>\\n\"\n",
            lark_str(&format!("<function={name}>\n"))
        ));
        choices.push(format!("f{i}"));
    }
    (format!("({}) \"</tool_call>\"", choices.join(" | ")), rules)
}

/// Every order of `items`.
fn permutations(items: &[String]) -> Vec<Vec<String>> {
    if items.is_empty() {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

/// `s` as a regular expression that matches it literally (inside a Lark `/…/`).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '/' => out.push_str("\\/"),
            c if "\\.+*?()|[]{}^$".contains(c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Closes every object schema that lists its `properties` to other properties
/// (`additionalProperties: false` unless the schema says otherwise), at every depth: llama.cpp's
/// schema grammars allow only the listed properties, where JSON Schema (and llguidance) allow
/// any. An object without `properties` stays any object, as in llama.cpp. The members of an
/// `allOf` are merged into one object there, so they are not closed one by one.
fn close_objects(schema: &mut Value) {
    close_objects_at(schema, true);
}

fn close_objects_at(schema: &mut Value, close_here: bool) {
    let Value::Object(o) = schema else { return };
    if close_here && o.contains_key("properties") && !o.contains_key("additionalProperties") {
        o.insert("additionalProperties".into(), false.into());
    }
    for (key, sub) in o.iter_mut() {
        match key.as_str() {
            // Maps of names to schemas.
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                if let Value::Object(m) = sub {
                    m.values_mut().for_each(|s| close_objects_at(s, true));
                }
            }
            // One schema, or a list of them.
            "items"
            | "additionalProperties"
            | "not"
            | "if"
            | "then"
            | "else"
            | "contains"
            | "prefixItems"
            | "anyOf"
            | "oneOf" => match sub {
                Value::Array(list) => list.iter_mut().for_each(|s| close_objects_at(s, true)),
                s => close_objects_at(s, true),
            },
            "allOf" => {
                if let Value::Array(list) = sub {
                    list.iter_mut().for_each(|s| close_objects_at(s, false));
                }
            }
            _ => {}
        }
    }
}

/// A Lark string literal (or nothing for an empty one).
fn lark_str(s: &str) -> String {
    if s.is_empty() {
        String::new()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// The names of the tools.
pub(crate) fn tool_names(tools: Option<&Value>) -> impl Iterator<Item = &str> {
    tools
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("function")?.get("name")?.as_str())
}

/// `tools`: a list of `{"type": "function", "function": {"name": …, …}}`; an empty list is
/// none.
fn tools(v: Option<&Value>) -> Result<Option<Value>, ApiError> {
    let list = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) if a.is_empty() => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(type_error("tools", "a list of tools")),
    };
    for t in list {
        let ok = t
            .get("function")
            .and_then(|f| f.get("name"))
            .is_some_and(Value::is_string)
            && t.get("type").is_none_or(|k| k == "function");
        if !ok {
            return Err(ApiError::invalid(
                "each tool must be {\"type\": \"function\", \"function\": {\"name\": …}}",
            ));
        }
    }
    Ok(Some(Value::Array(list.clone())))
}

/// A tool call id as llama-server makes them: 32 random letters and digits.
pub(crate) fn new_call_id() -> String {
    const CHARS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut seed = rand_seed();
    (0..32)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            CHARS[(seed % CHARS.len() as u64) as usize] as char
        })
        .collect()
}

fn rand_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish() | 1
}

/// The OpenAI message of a parsed reply: `content` (`""` when there is none, as
/// llama-server), `reasoning_content` when there is some, `tool_calls` when there are some.
pub(crate) fn openai_message(p: &Parsed, ids: &[String]) -> Value {
    let mut m = json!({ "role": "assistant", "content": p.content });
    if !p.reasoning.is_empty() {
        m["reasoning_content"] = p.reasoning.clone().into();
    }
    if !p.calls.is_empty() {
        let calls: Vec<Value> = p
            .calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({
                    "type": "function",
                    "function": { "name": c.name, "arguments": c.arguments },
                    "id": ids.get(i).cloned().unwrap_or_default(),
                })
            })
            .collect();
        m["tool_calls"] = calls.into();
    }
    m
}

/// The Ollama message of a parsed reply: `thinking` when there is reasoning, `tool_calls`
/// with arguments as objects.
pub(crate) fn ollama_message(p: &Parsed) -> Value {
    let mut m = json!({ "role": "assistant", "content": p.content });
    if !p.reasoning.is_empty() {
        m["thinking"] = p.reasoning.clone().into();
    }
    if !p.calls.is_empty() {
        m["tool_calls"] = ollama_calls(p).into();
    }
    m
}

/// The calls as Ollama writes them (arguments that are not a JSON object: `{}`).
pub(crate) fn ollama_calls(p: &Parsed) -> Vec<Value> {
    p.calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let args = serde_json::from_str::<Value>(&c.arguments)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({}));
            json!({ "function": { "index": i, "name": c.name, "arguments": args } })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real template: the text crate's fixtures (shared with its template suite), or this
    /// crate's for the ones only the server needs.
    fn template(name: &str) -> String {
        let dir = env!("CARGO_MANIFEST_DIR");
        let shared = format!("{dir}/../text/tests/fixtures/templates/{name}.jinja");
        let own = format!("{dir}/tests/fixtures/templates/{name}.jinja");
        std::fs::read_to_string(&shared)
            .or_else(|_| std::fs::read_to_string(&own))
            .unwrap_or_else(|e| panic!("{own}: {e}"))
    }

    #[test]
    fn formats_are_detected_from_the_real_templates() {
        for (name, want) in [
            ("Qwen-Qwen2.5-7B-Instruct", Format::Hermes),
            ("Qwen-Qwen3-0.6B", Format::Hermes),
            (
                "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use",
                Format::Hermes,
            ),
            ("meta-llama-Llama-3.1-8B-Instruct", Format::Llama3),
            ("meta-llama-Llama-3.2-3B-Instruct", Format::Llama3),
            ("mistralai-Mistral-Nemo-Instruct-2407", Format::Mistral),
            (
                "mistralai-Ministral-3-14B-Reasoning-2512",
                Format::MistralArgs,
            ),
            ("openai-gpt-oss-120b", Format::GptOss),
            ("google-gemma-4-31B-it", Format::Gemma4),
            ("Qwen3-Coder", Format::Qwen3Coder),
            ("meetkai-functionary-medium-v3.2", Format::FunctionaryV32),
            ("Qwen3.5-4B", Format::Qwen3Coder),
            ("NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", Format::Qwen3Coder),
            ("HuggingFaceTB-SmolLM3-3B", Format::Content),
            ("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", Format::Content),
        ] {
            assert_eq!(Format::detect(&template(name)), want, "{name}");
        }
    }

    fn body(v: Value) -> Body {
        match v {
            Value::Object(m) => Body(m),
            _ => unreachable!(),
        }
    }

    fn weather() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}}}])
    }

    #[test]
    fn request_fields_are_read_and_checked() {
        let r = ChatRequest::openai(
            &body(json!({"tools": weather(), "tool_choice": "required"})),
            ReasoningFormat::Auto,
        )
        .unwrap();
        assert_eq!(r.choice, ToolChoice::Required);
        assert!(r.tools.is_some());
        let named = json!({"tools": weather(),
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}}});
        let r = ChatRequest::openai(&body(named), ReasoningFormat::Auto).unwrap();
        assert_eq!(r.choice, ToolChoice::Function("get_weather".into()));
        for bad in [
            json!({"tools": weather(), "tool_choice": "sometimes"}),
            json!({"tools": weather(), "tool_choice": {"type": "function", "function": {"name": "x"}}}),
            json!({"tools": [{"type": "function"}]}),
            json!({"tools": "get_weather"}),
            json!({"reasoning_format": "verbose"}),
            json!({"tools": weather(), "grammar": "root ::= \"x\""}),
        ] {
            assert!(
                ChatRequest::openai(&body(bad.clone()), ReasoningFormat::Auto).is_err(),
                "{bad}"
            );
        }
        let none = ChatRequest::openai(&body(json!({"tools": []})), ReasoningFormat::None).unwrap();
        assert!(none.tools.is_none());
        assert_eq!(none.reasoning, ReasoningFormat::None);
    }

    #[test]
    fn required_builds_a_grammar_for_text_formats_only() {
        let r = ChatRequest::openai(
            &body(json!({"tools": weather(), "tool_choice": "required"})),
            ReasoningFormat::Auto,
        )
        .unwrap();
        let syn = r.syntax(Format::Hermes, None, "<|im_start|>assistant\n");
        let Some(GrammarSource::Lark(g)) = r.grammar(&syn) else {
            panic!("no grammar")
        };
        assert!(
            g.starts_with(
                "start: calls\ncalls: call \ncall: \"<tool_call>\\n\" body\nbody: %json {"
            ),
            "{g}"
        );
        assert!(g.contains("\"const\":\"get_weather\""), "{g}");
        // `auto`: lazy for Hermes, nothing for Llama 3.x (no trigger word), as llama-server.
        let auto =
            ChatRequest::openai(&body(json!({"tools": weather()})), ReasoningFormat::Auto).unwrap();
        assert!(auto.grammar(&syn).is_some());
        assert!(
            auto.grammar(&auto.syntax(Format::Llama3, None, ""))
                .is_none()
        );
        let oss = r.syntax(Format::GptOss, None, "");
        assert!(r.grammar(&oss).is_none());
    }

    /// Whether `grammar` lets SmolLM2 write `text` (token by token, as the sampler would) and
    /// then end.
    fn grammar_takes(grammar: &GrammarSource, text: &str) -> bool {
        use std::sync::OnceLock;
        static MODEL: OnceLock<(engine::Model, engine::grammar::GrammarVocab)> = OnceLock::new();
        let (model, vocab) = MODEL.get_or_init(|| {
            let m = engine::Model::load(&test_models::path(test_models::SMOLLM2)).unwrap();
            let v = engine::grammar::GrammarVocab::new(&m.tokenizer).unwrap();
            (m, v)
        });
        let tok = &model.tokenizer;
        let mut g = vocab.compile(grammar, tok).unwrap();
        for id in tok.encode(text, false, false) {
            if !g.allows(id) {
                return false;
            }
            g.accept(id);
        }
        let eos = (0..tok.n_vocab() as u32).find(|&t| tok.is_eog(t)).unwrap();
        g.allows(eos)
    }

    #[test]
    fn required_grammar_forces_a_valid_call_after_optional_thinking() {
        let tools = json!([weather()[0], {"type": "function", "function": {"name": "get_time",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}},
                           "required": ["zone"]}}}]);
        let req = |choice: Value, parallel: bool| {
            ChatRequest::openai(
                &body(json!({"tools": tools, "tool_choice": choice,
                             "parallel_tool_calls": parallel})),
                ReasoningFormat::Auto,
            )
            .unwrap()
        };
        let think = Some(("<think>", "</think>"));
        let paris = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let utc = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\"}}\n</tool_call>";
        let r = req(json!("required"), false);
        let g = r
            .grammar(&r.syntax(Format::Hermes, think, "…<|im_start|>assistant\n"))
            .unwrap();
        assert!(grammar_takes(&g, paris));
        assert!(grammar_takes(&g, utc));
        assert!(grammar_takes(
            &g,
            &format!("<think>\nLet me see.\n</think>\n\n{paris}")
        ));
        assert!(!grammar_takes(&g, "Paris is sunny."));
        assert!(!grammar_takes(
            &g,
            &paris.replace("get_weather", "get_wether")
        ));
        assert!(!grammar_takes(&g, &paris.replace("city", "town")));
        // Properties the tool does not list are refused, as llama.cpp's grammars do.
        assert!(!grammar_takes(
            &g,
            &paris.replace("}}", ", \"unit\": \"C\"}}")
        ));
        assert!(!grammar_takes(&g, &format!("{paris}\n{utc}")));
        let par = req(json!("required"), true);
        let g = par.grammar(&par.syntax(Format::Hermes, think, "")).unwrap();
        assert!(grammar_takes(&g, &format!("{paris}\n{utc}")));
        // A named function: only that one.
        let named = req(
            json!({"type": "function", "function": {"name": "get_time"}}),
            false,
        );
        let g = named
            .grammar(&named.syntax(Format::Hermes, None, ""))
            .unwrap();
        assert!(grammar_takes(&g, utc));
        assert!(!grammar_takes(&g, paris));
        // The prompt opened the thinking block: the reply must close it first.
        let g = r
            .grammar(&r.syntax(Format::Hermes, think, "…assistant\n<think>\n"))
            .unwrap();
        assert!(grammar_takes(&g, &format!("hmm\n</think>\n{paris}")));
        assert!(!grammar_takes(&g, paris));
        // Llama 3.x: the bare JSON object.
        let g = r.grammar(&r.syntax(Format::Llama3, None, "")).unwrap();
        assert!(grammar_takes(
            &g,
            "{\"name\": \"get_time\", \"parameters\": {\"zone\": \"UTC\"}}"
        ));
        assert!(!grammar_takes(&g, utc));
    }

    /// `tool_choice: "auto"` under a Hermes template: llama-server's lazy grammar (its
    /// `__verbose.generation_settings` for Qwen 2.5's and Qwen 3's templates: `grammar_lazy`,
    /// trigger word `<tool_call>\n`, then `root ::= tool-call | tool-calls`).
    #[test]
    fn auto_grammar_is_free_until_the_trigger_then_forces_a_valid_call() {
        let r =
            ChatRequest::openai(&body(json!({"tools": weather()})), ReasoningFormat::Auto).unwrap();
        let paris = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let g = r
            .grammar(&r.syntax(Format::Hermes, None, "<|im_start|>assistant\n"))
            .unwrap();
        assert!(grammar_takes(&g, "Paris is sunny today."));
        assert!(grammar_takes(&g, ""));
        assert!(grammar_takes(
            &g,
            "Write <tool_call> tags, then {\"x\": 1}."
        ));
        assert!(grammar_takes(&g, paris));
        assert!(grammar_takes(&g, &format!("Let me check.\n{paris}")));
        // More calls may follow (llama.cpp's `tool-calls`), and nothing else.
        assert!(grammar_takes(&g, &format!("{paris}\n{paris}")));
        assert!(!grammar_takes(&g, &format!("{paris}\nDone.")));
        // Past the trigger, only a valid call.
        assert!(!grammar_takes(&g, "Sure.\n<tool_call>\nI will call it."));
        assert!(!grammar_takes(
            &g,
            &paris.replace("get_weather", "get_wether")
        ));
        assert!(!grammar_takes(
            &g,
            &paris.replace("}}", ", \"unit\": \"C\"}}")
        ));
        // A thinking block never triggers; after it, the same rules.
        let think = Some(("<think>", "</think>"));
        let g = r
            .grammar(&r.syntax(Format::Hermes, think, "<|im_start|>assistant\n"))
            .unwrap();
        let musing = "<think>\nI could write <tool_call>\nanything here.\n</think>\n\n";
        assert!(grammar_takes(&g, &format!("{musing}It is sunny.")));
        assert!(grammar_takes(&g, &format!("{musing}{paris}")));
        assert!(!grammar_takes(&g, &format!("{musing}<tool_call>\nno")));
        assert!(grammar_takes(&g, "It is sunny."));
        // The prompt opened the block.
        let g = r
            .grammar(&r.syntax(Format::Hermes, think, "assistant\n<think>\n"))
            .unwrap();
        assert!(grammar_takes(
            &g,
            "I could write <tool_call>\nx.\n</think>\nSunny."
        ));
        assert!(grammar_takes(&g, &format!("hmm\n</think>\n\n{paris}")));
        assert!(!grammar_takes(&g, "hmm\n</think>\n<tool_call>\nno"));
    }

    /// Nested objects admit only their listed properties, as llama.cpp's
    /// `json-schema-to-grammar` (llama-server's grammar for a nested `opts` object:
    /// `"{" space (opts-unit-kv)? space "}"`); an object without `properties` stays any object.
    #[test]
    fn nested_parameter_objects_admit_no_extra_properties() {
        let tools = json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"},
                "opts": {"type": "object", "properties": {"unit": {"type": "string"}}},
                "list": {"type": "array", "items": {"type": "object",
                         "properties": {"k": {"type": "integer"}}}},
                "any": {"type": "object"},
                "open": {"type": "object", "properties": {"a": {"type": "integer"}},
                         "additionalProperties": true}},
            "required": ["city"]}}}]);
        let r = ChatRequest::openai(
            &body(json!({"tools": tools, "tool_choice": "required"})),
            ReasoningFormat::Auto,
        )
        .unwrap();
        let g = r.grammar(&r.syntax(Format::Hermes, None, "")).unwrap();
        let call = |args: &str| {
            format!(
                "<tool_call>\n{{\"name\": \"get_weather\", \"arguments\": {args}}}\n</tool_call>"
            )
        };
        assert!(grammar_takes(
            &g,
            &call(r#"{"city": "Paris", "opts": {"unit": "C"}}"#)
        ));
        assert!(!grammar_takes(
            &g,
            &call(r#"{"city": "Paris", "opts": {"unit": "C", "x": 1}}"#)
        ));
        assert!(grammar_takes(
            &g,
            &call(r#"{"city": "Paris", "list": [{"k": 1}]}"#)
        ));
        assert!(!grammar_takes(
            &g,
            &call(r#"{"city": "Paris", "list": [{"k": 1, "j": 2}]}"#)
        ));
        assert!(grammar_takes(
            &g,
            &call(r#"{"city": "Paris", "any": {"x": [1, 2]}}"#)
        ));
        assert!(grammar_takes(
            &g,
            &call(r#"{"city": "Paris", "open": {"a": 1, "b": "c"}}"#)
        ));
    }

    /// Qwen3-Coder's XML calls, forced (`required`) and lazy (`auto`, trigger `<tool_call>`),
    /// as llama.cpp's `qwen3-coder.cpp` grammar: required parameters in any order, then
    /// optional ones; text values free up to `\n</parameter>\n`, others JSON of their schema.
    #[test]
    fn qwen3_coder_grammar_forces_xml_calls() {
        let tools = json!([{"type": "function", "function": {"name": "edit",
            "parameters": {"type": "object", "properties": {
                "filename": {"type": "string"}, "count": {"type": "integer"},
                "opts": {"type": "object", "properties": {"dry": {"type": "boolean"}}},
                "note": {"type": "string"}},
            "required": ["filename", "count"]}}}]);
        let req = |choice: &str| {
            ChatRequest::openai(
                &body(json!({"tools": tools, "tool_choice": choice})),
                ReasoningFormat::Auto,
            )
            .unwrap()
        };
        let call = |params: &str| {
            format!("<tool_call>\n<function=edit>\n{params}</function>\n</tool_call>")
        };
        let p = |k: &str, v: &str| format!("<parameter={k}>\n{v}\n</parameter>\n");
        let r = req("required");
        let g = r.grammar(&r.syntax(Format::Qwen3Coder, None, "")).unwrap();
        let good = call(&(p("filename", "a.c\n#include <x>") + &p("count", "3")));
        assert!(grammar_takes(&g, &good));
        assert!(grammar_takes(
            &g,
            &call(
                &(p("count", "3")
                    + &p("filename", "a.c")
                    + &p("note", "hi")
                    + &p("opts", "{\"dry\": true}"))
            )
        ));
        assert!(!grammar_takes(&g, &call(&p("filename", "a.c"))));
        assert!(!grammar_takes(
            &g,
            &call(&(p("filename", "a.c") + &p("count", "three")))
        ));
        assert!(!grammar_takes(
            &g,
            &call(&(p("filename", "a.c") + &p("count", "3") + &p("opts", "{\"wet\": 1}")))
        ));
        assert!(!grammar_takes(&g, "I will edit it."));
        assert!(!grammar_takes(
            &g,
            "<tool_call>\n<function=edit>\n<parameter=filename>\nParis</parameter>\n<parameter=count>3</parameter>\n</function>\n</tool_call>\n\nYou can"
        ));
        let r = req("auto");
        let g = r.grammar(&r.syntax(Format::Qwen3Coder, None, "")).unwrap();
        assert!(grammar_takes(&g, "I will edit it."));
        assert!(grammar_takes(&g, &format!("Editing.\n{good}")));
        assert!(!grammar_takes(
            &g,
            "Editing.\n<tool_call>\n<function=delete>\n"
        ));
    }

    /// Functionary v3.2 with `required`: a call right after the prompt's `>>>`, maybe content
    /// (`all\n…>>>`) first (llama.cpp's `functionary-v3-2.cpp` grammar).
    #[test]
    fn functionary_grammar_forces_a_recipient_call() {
        let r = ChatRequest::openai(
            &body(json!({"tools": weather(), "tool_choice": "required"})),
            ReasoningFormat::Auto,
        )
        .unwrap();
        let g = r
            .grammar(&r.syntax(Format::FunctionaryV32, None, ""))
            .unwrap();
        assert!(grammar_takes(&g, "get_weather\n{\"city\": \"Paris\"}"));
        assert!(grammar_takes(
            &g,
            "all\nChecking.>>>get_weather\n{\"city\": \"Paris\"}"
        ));
        assert!(!grammar_takes(&g, "all\nIt is sunny."));
        assert!(!grammar_takes(&g, "get_weather\n{\"town\": \"Paris\"}"));
    }

    #[test]
    fn call_ids_are_32_alphanumerics_and_differ() {
        let a = new_call_id();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, new_call_id());
    }
}
