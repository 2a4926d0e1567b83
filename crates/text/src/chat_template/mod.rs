//! Chat templates: turning a conversation into the prompt text a model was trained on.
//!
//! A model file carries its template as Jinja source (`tokenizer.chat_template`), written for
//! Python's jinja2 as transformers' `apply_chat_template` sets it up. [`ChatTemplate`] compiles
//! such source with MiniJinja configured to behave the same way (see `env`), and
//! [`ChatTemplate::render`] renders a [`RenderRequest`]: the [`Message`]s, optional tool
//! definitions, whether to open the assistant's turn, the BOS/EOS texts and the date that
//! `strftime_now` reports. Files without a template get a built-in one by architecture
//! ([`ChatTemplate::builtin_for_arch`]); a transformers checkpoint folder's template is found
//! where transformers finds it ([`ChatTemplate::from_checkpoint_dir`]).
//!
//! Templates come from downloaded files and are hostile until proven otherwise: compiling and
//! rendering run under [`Limits`] (work, output size, value size, recursion) on threads of
//! their own, and every failure, including a template's own `raise_exception`, is a
//! [`TemplateError`], not a panic or a hang. MiniJinja's fuel bounds the instructions a
//! template runs, but some single instructions build or walk values of any size (lazy list
//! `+`, trees of shared values, namespace cycles); `guard_rewrite` rewrites the source so that
//! every operator, literal, call and namespace assignment passes through `guard`, which bounds
//! the value it makes. The same rewrite gives `+` jinja2's `Markup` semantics.

mod builtin;
mod checkpoint;
mod clock;
mod env;
mod guard;
mod guard_rewrite;
mod model_file;
mod namespace;
mod pyfmt;
mod source;

use std::fmt;
use std::io;

use minijinja::value::{Serde, Value};
use minijinja::{Environment, ErrorKind};
use serde_json::{Map, Value as Json};

pub use clock::{DateTime, DateTimeParseError};
pub use model_file::{SpecialTokens, TemplateOrigin, special_tokens};

/// Why a template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The source is not a valid template.
    #[error("chat template does not compile: {0}")]
    Syntax(String),
    /// The template called `raise_exception(message)`: it refuses this conversation (a role it
    /// does not support, roles out of order…).
    #[error("chat template refused the conversation: {0}")]
    Raised(String),
    /// Rendering ran past a [`Limits`] bound (runaway loop, recursion, huge output).
    #[error("chat template exceeded its limits: {0}")]
    Limit(String),
    /// Any other failure while rendering (undefined variable used, type error, …).
    #[error("chat template failed: {0}")]
    Render(String),
    /// A message given as JSON is not a chat message.
    #[error("invalid message: {0}")]
    Message(String),
    /// The template could not be found or read (a checkpoint folder without one, a
    /// malformed `tokenizer_config.json`).
    #[error("cannot load the chat template: {0}")]
    Source(String),
}

/// Bounds on one render. The defaults leave room for very long conversations (the most
/// demanding template in the fixtures, Gemma 4's, spends 4.4M fuel on 1,000 messages) while
/// stopping a runaway template within about a second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// MiniJinja fuel: roughly one per instruction executed and per 64 bytes of data created.
    /// It also bounds how deeply a template can nest values, and so the stack the render
    /// thread needs (see [`ChatTemplate::render`]).
    pub fuel: u64,
    /// Bytes of rendered prompt.
    pub max_output_bytes: usize,
    /// Nesting depth of loops, macros and calls (MiniJinja caps this at 500).
    pub max_recursion: usize,
    /// Nodes in any one value the template builds, counting a shared part each time it
    /// appears (see `guard`): without this bound a template could double a list to 2^40
    /// items in 40 cheap steps. The checks that enforce it may visit at most twice `fuel`
    /// nodes per render.
    pub max_value_nodes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            fuel: 20_000_000,
            max_output_bytes: 8 << 20,
            max_recursion: 200,
            max_value_nodes: 1_000_000,
        }
    }
}

/// One tool call made by the assistant, as OpenAI's API gives it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ToolCall {
    pub id: Option<String>,
    /// The function's name.
    pub name: String,
    /// The arguments as JSON text. Templates see them parsed when they are a JSON object
    /// (most templates print `arguments | tojson` or iterate its items), as the text otherwise.
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    /// `system`, `user`, `assistant`, `tool`, or whatever the template knows.
    pub role: String,
    /// The text; `None` is passed as `null` (an assistant turn that only calls tools).
    pub content: Option<String>,
    /// The assistant's reasoning, for templates that show or drop it (`reasoning_content`).
    pub reasoning_content: Option<String>,
    /// A tool message's function name, or a participant's name.
    pub name: Option<String>,
    /// The call a tool message answers.
    pub tool_call_id: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    /// Further keys passed to the template as they are (they replace the fields above when
    /// named the same, e.g. a `content` given as a list of parts).
    pub extra: Map<String, Json>,
}

impl Message {
    /// A message with a role and text.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: Some(content.into()),
            ..Message::default()
        }
    }

    /// A message from its OpenAI-style JSON object (`role`, `content`, `tool_calls` with
    /// `function.name` and `function.arguments` as text or object, …).
    pub fn from_json(value: &Json) -> Result<Message, TemplateError> {
        let bad = |what: &str| TemplateError::Message(what.to_owned());
        let obj = value
            .as_object()
            .ok_or_else(|| bad("a message must be a JSON object"))?;
        let opt_str = |key: &str| -> Result<Option<String>, TemplateError> {
            match obj.get(key) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(&format!("`{key}` must be a string"))),
            }
        };
        let role = opt_str("role")?.ok_or_else(|| bad("a message needs a `role` string"))?;
        let mut msg = Message {
            role,
            reasoning_content: opt_str("reasoning_content")?,
            name: opt_str("name")?,
            tool_call_id: opt_str("tool_call_id")?,
            ..Message::default()
        };
        for (key, v) in obj {
            match (key.as_str(), v) {
                ("role" | "reasoning_content" | "name" | "tool_call_id", _) => {}
                ("content", Json::String(s)) => msg.content = Some(s.clone()),
                ("content", Json::Null) => {}
                ("tool_calls", Json::Array(calls)) => {
                    for call in calls {
                        msg.tool_calls.push(tool_call_from_json(call)?);
                    }
                }
                ("tool_calls", Json::Null) => {}
                ("tool_calls", _) => return Err(bad("`tool_calls` must be a list")),
                _ => {
                    msg.extra.insert(key.clone(), v.clone());
                }
            }
        }
        Ok(msg)
    }

    /// The message as the template sees it.
    fn to_json(&self) -> Json {
        let mut m = Map::new();
        m.insert("role".into(), Json::String(self.role.clone()));
        m.insert(
            "content".into(),
            self.content.clone().map_or(Json::Null, Json::String),
        );
        let opt = |m: &mut Map<String, Json>, key: &str, v: &Option<String>| {
            if let Some(v) = v {
                m.insert(key.into(), Json::String(v.clone()));
            }
        };
        opt(&mut m, "reasoning_content", &self.reasoning_content);
        opt(&mut m, "name", &self.name);
        opt(&mut m, "tool_call_id", &self.tool_call_id);
        if !self.tool_calls.is_empty() {
            let calls = self.tool_calls.iter().map(ToolCall::to_json).collect();
            m.insert("tool_calls".into(), Json::Array(calls));
        }
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        Json::Object(m)
    }
}

fn tool_call_from_json(call: &Json) -> Result<ToolCall, TemplateError> {
    let bad = |what: &str| TemplateError::Message(format!("tool call: {what}"));
    let func = call
        .get("function")
        .and_then(Json::as_object)
        .ok_or_else(|| bad("needs a `function` object"))?;
    let name = func
        .get("name")
        .and_then(Json::as_str)
        .ok_or_else(|| bad("needs `function.name`"))?;
    let arguments = match func.get("arguments") {
        None | Some(Json::Null) => String::from("{}"),
        Some(Json::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    };
    Ok(ToolCall {
        id: call.get("id").and_then(Json::as_str).map(str::to_owned),
        name: name.to_owned(),
        arguments,
    })
}

impl ToolCall {
    fn to_json(&self) -> Json {
        // Arguments that are a JSON object become a mapping, as transformers expects them;
        // anything else stays the text it was.
        let arguments = match serde_json::from_str::<Json>(&self.arguments) {
            Ok(v @ Json::Object(_)) => v,
            _ => Json::String(self.arguments.clone()),
        };
        let mut function = Map::new();
        function.insert("name".into(), Json::String(self.name.clone()));
        function.insert("arguments".into(), arguments);
        let mut m = Map::new();
        if let Some(id) = &self.id {
            m.insert("id".into(), Json::String(id.clone()));
        }
        m.insert("type".into(), Json::String("function".into()));
        m.insert("function".into(), Json::Object(function));
        Json::Object(m)
    }
}

/// What to render: the conversation and the variables transformers passes alongside it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderRequest<'a> {
    pub messages: &'a [Message],
    /// Tool definitions (a JSON list of `{"type": "function", "function": {…}}`), or `None`
    /// to leave `tools` undefined as transformers does when none are given.
    pub tools: Option<&'a Json>,
    /// End with the opening of the assistant's turn.
    pub add_generation_prompt: bool,
    pub bos_token: &'a str,
    pub eos_token: &'a str,
    /// What `strftime_now` formats; `None` is the current UTC time.
    pub now: Option<DateTime>,
    /// More template variables (`enable_thinking`, `unk_token`, …); they do not override the
    /// ones above.
    pub extra: Option<&'a Map<String, Json>>,
    /// Render as llama.cpp's own Jinja engine where it is more lenient than jinja2:
    /// - `+` of a string and an undefined or none value gives the string (llama-server
    ///   renders FireFunction's template, which adds an undefined `functions`, that way);
    /// - an item or attribute of an undefined value is undefined, not an error (llama-server
    ///   renders Llama 3.1's `messages[0]['role']` on an empty list, as when it continues a
    ///   lone user message).
    ///
    /// Off, both are the errors jinja2 raises, as transformers renders.
    pub llama_cpp_concat: bool,
}

/// A compiled chat template, ready to render any number of conversations.
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The same template with llama.cpp's undefined values (see
    /// [`RenderRequest::llama_cpp_concat`]).
    env_llama_cpp: Environment<'static>,
    limits: Limits,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles Jinja source with the default [`Limits`].
    pub fn new(source: &str) -> Result<ChatTemplate, TemplateError> {
        ChatTemplate::with_limits(source, Limits::default())
    }

    /// Compiles Jinja source with the given limits.
    ///
    /// Like rendering, compiling runs on a thread of its own: a chain of operators
    /// (`1 + 1 + … + 1`) parses into a tree as deep as the chain is long, which MiniJinja
    /// compiles and drops recursively, so the stack grows with the source's length.
    pub fn with_limits(source: &str, limits: Limits) -> Result<ChatTemplate, TemplateError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(TemplateError::Limit(format!(
                "template source longer than {MAX_SOURCE_BYTES} bytes"
            )));
        }
        let stack = source
            .len()
            .saturating_mul(COMPILE_STACK_BYTES_PER_SOURCE_BYTE)
            .saturating_add(BASE_STACK_BYTES);
        on_big_stack(stack, || ChatTemplate::compile(source, limits))
    }

    fn compile(source: &str, limits: Limits) -> Result<ChatTemplate, TemplateError> {
        let mut env =
            env::environment(&limits).map_err(|e| TemplateError::Syntax(e.to_string()))?;
        let syntax = env::syntax().map_err(|e| TemplateError::Syntax(e.to_string()))?;
        let source = guard_rewrite::rewrite(&source::rewrite(source), env::TEMPLATE_NAME, syntax)
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        let mut env_llama_cpp =
            env::environment(&limits).map_err(|e| TemplateError::Syntax(e.to_string()))?;
        env_llama_cpp.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        env_llama_cpp
            .add_template_owned(env::TEMPLATE_NAME, source.clone())
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        env.add_template_owned(env::TEMPLATE_NAME, source)
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        Ok(ChatTemplate {
            env,
            env_llama_cpp,
            limits,
        })
    }

    /// The built-in template for a file that has none, by its `general.architecture`, and
    /// the template's name (`"gemma"`, `"chatml"`) for the log.
    pub fn builtin_for_arch(arch: &str) -> (ChatTemplate, &'static str) {
        let (source, name) = builtin::for_arch(arch);
        match ChatTemplate::new(source) {
            Ok(t) => (t, name),
            // The built-ins compile (tested); this arm only keeps the signature infallible.
            Err(_) => (ChatTemplate::empty(), name),
        }
    }

    fn empty() -> ChatTemplate {
        ChatTemplate {
            env: Environment::new(),
            env_llama_cpp: Environment::new(),
            limits: Limits::default(),
        }
    }

    /// Renders a conversation into prompt text.
    ///
    /// The render runs on a thread of its own whose stack grows with the fuel budget: MiniJinja
    /// drops nested values recursively, and a template can nest a list about once per 8 fuel
    /// (`{% set ns.l = [ns.l] %}` in a loop), each level taking about 100 bytes of stack to drop.
    /// The stack is only reserved address space; pages are used as the render touches them.
    pub fn render(&self, req: &RenderRequest<'_>) -> Result<String, TemplateError> {
        let stack = usize::try_from(self.limits.fuel)
            .unwrap_or(usize::MAX)
            .saturating_mul(STACK_BYTES_PER_FUEL)
            .saturating_add(BASE_STACK_BYTES);
        on_big_stack(stack, || self.render_on_this_thread(req))
    }

    fn render_on_this_thread(&self, req: &RenderRequest<'_>) -> Result<String, TemplateError> {
        guard::start_render(self.limits.fuel.saturating_mul(2), req.llama_cpp_concat);
        let env = if req.llama_cpp_concat {
            &self.env_llama_cpp
        } else {
            &self.env
        };
        let template = env
            .get_template(env::TEMPLATE_NAME)
            .map_err(|e| TemplateError::Syntax(describe(&e)))?;
        let now = req.now.unwrap_or_else(DateTime::now_utc);
        let messages: Vec<Json> = req.messages.iter().map(Message::to_json).collect();
        let mut ctx: Vec<(String, Value)> = vec![
            ("messages".into(), Value::from(Serde(&messages))),
            (
                "add_generation_prompt".into(),
                Value::from(req.add_generation_prompt),
            ),
            ("bos_token".into(), Value::from(req.bos_token)),
            ("eos_token".into(), Value::from(req.eos_token)),
            (
                "strftime_now".into(),
                Value::from_function(move |format: &str| now.strftime(format)),
            ),
        ];
        if let Some(tools) = req.tools {
            ctx.push(("tools".into(), Value::from(Serde(tools))));
        }
        if let Some(extra) = req.extra {
            for (k, v) in extra {
                if !ctx.iter().any(|(name, _)| name == k) {
                    ctx.push((k.clone(), Value::from(Serde(v))));
                }
            }
        }
        let mut out = CappedWriter {
            buf: Vec::new(),
            cap: self.limits.max_output_bytes,
        };
        template
            .render_captured_to(Value::from_pairs(ctx), &mut out)
            .map_err(|e| classify(&e))?;
        String::from_utf8(out.buf).map_err(|_| TemplateError::Render("output is not UTF-8".into()))
    }
}

/// Stack for the render thread: a base for the engine's own recursion (capped by
/// `max_recursion`) plus room to drop values nested as deeply as the fuel allows (one level per
/// ~8 fuel, ~100 bytes of stack each, doubled for margin).
const BASE_STACK_BYTES: usize = 16 << 20;
const STACK_BYTES_PER_FUEL: usize = 24;
const MAX_STACK_BYTES: usize = 4 << 30;
const FALLBACK_STACK_BYTES: usize = 64 << 20;

/// Template sources are a few KB (the largest in the fixtures, Gemma 4's, is 16 KB).
const MAX_SOURCE_BYTES: usize = 256 << 10;
/// Stack for compiling, per byte of source: an operator chain nests one level per two bytes
/// (`+1`), and MiniJinja spends several hundred bytes of stack per level.
const COMPILE_STACK_BYTES_PER_SOURCE_BYTE: usize = 1024;

/// Runs `work` on a scoped thread with a stack of `size` bytes (at most [`MAX_STACK_BYTES`]).
/// The stack is only reserved address space; pages are used as the work touches them. Where
/// address space is tight (overcommit disabled) it falls back to a smaller stack: enough for
/// any real template, short only for a hostile one.
fn on_big_stack<T: Send>(
    size: usize,
    work: impl FnOnce() -> Result<T, TemplateError> + Send,
) -> Result<T, TemplateError> {
    let work = std::sync::Mutex::new(Some(work));
    std::thread::scope(|scope| {
        let spawn = |size: usize| {
            std::thread::Builder::new()
                .name("chat-template".into())
                .stack_size(size.min(MAX_STACK_BYTES))
                .spawn_scoped(scope, || {
                    let work = work.lock().ok().and_then(|mut w| w.take());
                    work.map_or_else(|| Err(TemplateError::Render("no work".into())), |w| w())
                })
        };
        let handle = spawn(size)
            .or_else(|_| spawn(FALLBACK_STACK_BYTES))
            .map_err(|e| TemplateError::Limit(format!("cannot start the template thread: {e}")))?;
        handle
            .join()
            .unwrap_or_else(|_| Err(TemplateError::Render("the template engine panicked".into())))
    })
}

/// An `io::Write` into memory that fails once the output passes `cap` bytes, which stops the
/// render there.
struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            return Err(io::Error::other(OutputTooLarge(self.cap)));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("output longer than {0} bytes")]
struct OutputTooLarge(usize);

/// One line: MiniJinja's message with the template line it happened on.
fn describe(e: &minijinja::Error) -> String {
    let mut s = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        s.push_str(&format!(" (line {line})"));
    }
    s
}

fn classify(e: &minijinja::Error) -> TemplateError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(raised) = err.downcast_ref::<env::Raised>() {
            return TemplateError::Raised(raised.0.clone());
        }
        if let Some(limit) = err.downcast_ref::<env::LimitExceeded>() {
            return TemplateError::Limit(limit.0.clone());
        }
        if err.downcast_ref::<OutputTooLarge>().is_some() {
            return TemplateError::Limit(err.to_string());
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
            && inner.downcast_ref::<OutputTooLarge>().is_some()
        {
            return TemplateError::Limit(inner.to_string());
        }
        source = err.source();
    }
    match e.kind() {
        ErrorKind::OutOfFuel => TemplateError::Limit("too much work (out of fuel)".into()),
        ErrorKind::InvalidOperation if e.detail().is_some_and(|d| d.contains("recursion")) => {
            TemplateError::Limit(describe(e))
        }
        ErrorKind::SyntaxError => TemplateError::Syntax(describe(e)),
        _ => TemplateError::Render(describe(e)),
    }
}
