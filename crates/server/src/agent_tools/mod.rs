//! llama-server's experimental built-in agent tools (`--tools`): `GET /tools` lists them and
//! `POST /tools {"tool", "params"}` runs one, for a web UI that lets a model read and write
//! files and run shell commands on the server's machine. Opt-in only, and dangerous by design:
//! whoever can reach the server can do what its user can.
//!
//! [`AgentTool`] names the seven tools (llama.cpp's `tools/server/server-tools.cpp`): each has
//! llama-server's definition (the JSON schema a model sees), parameter names, results
//! (`plain_text_response`, …) and error results (`{"error": "…"}` with status 200). Request
//! fields are read as llama-server reads them ([`Params`]): a missing or mistyped required field
//! is a 400 in its words, a mistyped optional one takes the default. The tools run on the host
//! only (`x-tool-runtime` isolates — containers, ssh — are refused), on a blocking thread, with
//! llama-server's limits (16 KB reads, 16 KB and 60 s for commands, 100 results, 15 s listings)
//! and a few of hearth's where llama-server has none (files read for grep and edit, grep's
//! output and time).
//!
//! - `files` — `read_file`, `write_file`, `edit_file` (exact, then whitespace- and
//!   quote-tolerant replacement).
//! - `search` — listings (`git ls-files`, else a bounded walk that never enters junk
//!   directories), llama.cpp's glob matcher, `file_glob_search`, `grep_search`.
//! - `exec` — a subprocess with a deadline and an output cap, `exec_shell_command` (also
//!   streamed) and `get_info`.

mod exec;
mod files;
mod search;

use std::path::{Component, Path, PathBuf};

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::http::{AppState, read_body_bytes, sse};

/// One of llama-server's built-in tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentTool {
    ReadFile,
    FileGlobSearch,
    GrepSearch,
    ExecShellCommand,
    WriteFile,
    EditFile,
    GetInfo,
}

impl AgentTool {
    /// Every tool, in llama-server's order (that of `GET /tools`).
    pub const ALL: [AgentTool; 7] = [
        AgentTool::ReadFile,
        AgentTool::FileGlobSearch,
        AgentTool::GrepSearch,
        AgentTool::ExecShellCommand,
        AgentTool::WriteFile,
        AgentTool::EditFile,
        AgentTool::GetInfo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AgentTool::ReadFile => "read_file",
            AgentTool::FileGlobSearch => "file_glob_search",
            AgentTool::GrepSearch => "grep_search",
            AgentTool::ExecShellCommand => "exec_shell_command",
            AgentTool::WriteFile => "write_file",
            AgentTool::EditFile => "edit_file",
            AgentTool::GetInfo => "get_info",
        }
    }

    fn display_name(self) -> &'static str {
        match self {
            AgentTool::ReadFile => "Read file",
            AgentTool::FileGlobSearch => "File search",
            AgentTool::GrepSearch => "Grep search",
            AgentTool::ExecShellCommand => "Execute shell command",
            AgentTool::WriteFile => "Write file",
            AgentTool::EditFile => "Edit file",
            AgentTool::GetInfo => "Get Runtime Info",
        }
    }

    fn permission_write(self) -> bool {
        matches!(
            self,
            AgentTool::ExecShellCommand | AgentTool::WriteFile | AgentTool::EditFile
        )
    }

    fn supports_stream(self) -> bool {
        self == AgentTool::ExecShellCommand
    }

    /// The tools `--tools` names (comma-separated in the flag; `all` is every tool), in
    /// llama-server's order; an unknown name is an error listing the known ones.
    pub fn parse_list(names: &[String]) -> Result<Vec<AgentTool>, String> {
        for n in names {
            if n != "all" && !AgentTool::ALL.iter().any(|t| t.name() == n) {
                let known: Vec<&str> = AgentTool::ALL.iter().map(|t| t.name()).collect();
                return Err(format!(
                    "unknown tool \"{n}\". available tools: {}",
                    known.join(", ")
                ));
            }
        }
        let all = names.iter().any(|n| n == "all");
        Ok(AgentTool::ALL
            .into_iter()
            .filter(|t| all || names.iter().any(|n| n == t.name()))
            .collect())
    }

    /// The function definition a model sees (llama-server's `get_definition`).
    fn definition(self) -> Value {
        let (description, properties, required): (String, Value, Vec<&str>) = match self {
            AgentTool::ReadFile => (
                "Read the contents of a file. Optionally specify a 1-based line range. If \
                 append_loc is true, each line is prefixed with its line number (e.g. \
                 \"1\u{2192}...\")."
                    .into(),
                json!({
                    "path": {"type": "string", "description": "Path to the file"},
                    "start_line": {"type": "integer", "description": "First line to read, 1-based (default: 1)"},
                    "end_line": {"type": "integer", "description": "Last line to read, 1-based inclusive (default: end of file)"},
                    "append_loc": {"type": "boolean", "description": "Prefix each line with its line number"},
                }),
                vec!["path"],
            ),
            AgentTool::FileGlobSearch => (
                "Recursively search for files matching a glob pattern under a directory. \
                 Automatically skips files ignored by .gitignore (when the directory is inside \
                 a git repo) and common junk directories (.git, node_modules, build, dist, etc.) \
                 otherwise. A pattern with no '/' (e.g. \"*.cpp\") matches the file's basename \
                 at any depth. A pattern containing '/' matches the full relative path; unless \
                 already anchored with \"**/\" or a leading '/', it is automatically prefixed \
                 with \"**/\". Use type=\"dir\" or \"all\" to also list directories; directory \
                 entries are suffixed with '/' in the output. Note: directory listings do not \
                 apply .gitignore filtering."
                    .into(),
                json!({
                    "path": {"type": "string", "description": "Base directory to search in"},
                    "include": {"type": "string", "description": "Glob pattern for files to include (e.g. \"*.cpp\" or \"src/**/*.cpp\"). Default: **"},
                    "exclude": {"type": "string", "description": "Glob pattern for files to exclude"},
                    "type": {"type": "string", "description": "Entry type to return: \"file\" (default), \"dir\" or \"all\""},
                    "max_depth": {"type": "integer", "description": "Maximum depth to descend into subdirectories (default: 0 = unlimited; 1 = direct children only)"},
                    "limit": {"type": "integer", "description": format!("Maximum number of results to return, capped at {0} (default {0})", search::MAX_RESULTS)},
                }),
                vec!["path"],
            ),
            AgentTool::GrepSearch => (
                "Search for a pattern in files under a path. Returns matching lines with file \
                 paths (and, unless searching a single file, paths relative to the given \
                 directory). Automatically skips files ignored by .gitignore (when the directory \
                 is inside a git repo) and common junk directories (.git, node_modules, build, \
                 dist, etc.) otherwise. include/exclude: a pattern with no '/' matches the \
                 basename at any depth; a pattern containing '/' matches the full relative path \
                 (auto-anchored with \"**/\" unless already anchored)."
                    .into(),
                json!({
                    "path": {"type": "string", "description": "File or directory to search in"},
                    "pattern": {"type": "string", "description": "Pattern to search for (regular expression unless literal is true)"},
                    "include": {"type": "string", "description": "Glob pattern to filter files (default: **)"},
                    "exclude": {"type": "string", "description": "Glob pattern to exclude files"},
                    "return_line_numbers": {"type": "boolean", "description": "If true, include line numbers in results"},
                    "literal": {"type": "boolean", "description": "Treat pattern as a literal string instead of a regular expression (default: false)"},
                    "ignore_case": {"type": "boolean", "description": "Case-insensitive search (default: false)"},
                    "context_lines": {"type": "integer", "description": "Number of lines of context to show before and after each match (default: 0)"},
                }),
                vec!["path", "pattern"],
            ),
            AgentTool::ExecShellCommand => (
                "Execute a shell command and return its output (stdout and stderr combined)."
                    .into(),
                json!({
                    "command": {"type": "string", "description": "Shell command to execute"},
                    "timeout": {"type": "integer", "description": format!("Timeout in seconds (default 10, max {})", exec::MAX_TIMEOUT_S)},
                    "max_output_size": {"type": "integer", "description": format!("Maximum output size in bytes (default {})", exec::MAX_OUTPUT)},
                }),
                vec!["command"],
            ),
            AgentTool::WriteFile => (
                "Write content to a file, creating it (including parent directories) if it does \
                 not exist. May use with edit_file for more complex edits."
                    .into(),
                json!({
                    "path": {"type": "string", "description": "Path of the file to write"},
                    "content": {"type": "string", "description": "Content to write"},
                }),
                vec!["path", "content"],
            ),
            AgentTool::EditFile => (
                "Edit a file using exact text replacement. Each edits[].old_text must be unique \
                 in the file and is matched against the original content, not incrementally. \
                 Merge nearby changes into one edit instead of overlapping edits. Use write_file \
                 to replace the whole file."
                    .into(),
                json!({
                    "path": {"type": "string", "description": "Path to the file to edit"},
                    "edits": {
                        "type": "array",
                        "description": "One or more exact text replacements to apply",
                        "items": {
                            "type": "object",
                            "properties": {
                                "old_text": {"type": "string", "description": "Exact text to find; must be unique in the file and must not overlap with other edits"},
                                "new_text": {"type": "string", "description": "Text to replace old_text with"},
                            },
                            "required": ["old_text", "new_text"],
                        },
                    },
                }),
                vec!["path", "edits"],
            ),
            AgentTool::GetInfo => (
                "Returns runtime info: the OS name/version and the current working directory"
                    .into(),
                json!({}),
                vec![],
            ),
        };
        let mut parameters = Map::new();
        parameters.insert("type".into(), "object".into());
        parameters.insert("properties".into(), properties);
        if !required.is_empty() {
            parameters.insert("required".into(), json!(required));
        }
        json!({
            "type": "function",
            "function": {
                "name": self.name(),
                "description": description,
                "parameters": parameters,
            },
        })
    }

    /// One entry of `GET /tools`.
    fn to_json(self) -> Value {
        json!({
            "display_name": self.display_name(),
            "tool": self.name(),
            "type": "server",
            "permissions": {"write": self.permission_write()},
            "uses_cwd": true,
            "definition": self.definition(),
        })
    }

    /// Runs the tool (blocking: file system and subprocesses). `chunk`, for a streamed call,
    /// takes each piece of output and says whether the client is still there.
    fn invoke(
        self,
        p: &Params,
        chunk: Option<&mut dyn FnMut(String) -> bool>,
    ) -> Result<Value, CallError> {
        match self {
            AgentTool::ReadFile => files::read_file(p),
            AgentTool::FileGlobSearch => search::file_glob_search(p),
            AgentTool::GrepSearch => search::grep_search(p),
            AgentTool::ExecShellCommand => exec::exec_shell_command(p, chunk),
            AgentTool::WriteFile => files::write_file(p),
            AgentTool::EditFile => files::edit_file(p),
            AgentTool::GetInfo => exec::get_info(p),
        }
    }
}

/// Why a call has no result: llama-server's exceptions, which become statuses.
#[derive(Debug)]
pub(crate) enum CallError {
    /// A request field missing or of the wrong type (llama-server's JSON exceptions): 400.
    Json(String),
    /// Anything else that stops a call before it runs (a refused runtime): 500.
    Server(String),
}

impl CallError {
    fn message(&self) -> &str {
        match self {
            CallError::Json(m) | CallError::Server(m) => m,
        }
    }

    /// llama-server's answer: the error object itself, not wrapped in `{"error": …}`.
    fn into_response(self) -> Response {
        let (status, kind) = match &self {
            CallError::Json(_) => (StatusCode::BAD_REQUEST, "invalid_request_error"),
            CallError::Server(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        };
        let body = json!({"code": status.as_u16(), "message": self.message(), "type": kind});
        (status, axum::Json(body)).into_response()
    }
}

/// A tool's error result: status 200, `{"error": message}`.
pub(crate) fn tool_error(message: impl Into<String>) -> Value {
    json!({ "error": message.into() })
}

/// nlohmann::json's name for a value's type, as in llama-server's messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A call's `params`, read as llama-server reads them: required fields with `at()` (missing or
/// mistyped: a 400 in nlohmann's words), optional ones with `json_value` (absent, null or
/// mistyped: the default).
pub(crate) struct Params(Value);

impl Params {
    fn at(&self, key: &str) -> Result<&Value, CallError> {
        at(&self.0, key)
    }

    pub fn str(&self, key: &str) -> Result<String, CallError> {
        as_string(self.at(key)?)
    }

    fn opt(&self, key: &str) -> Option<&Value> {
        self.0.as_object()?.get(key).filter(|v| !v.is_null())
    }

    pub fn opt_str(&self, key: &str, default: &str) -> String {
        match self.opt(key) {
            Some(Value::String(s)) => s.clone(),
            _ => default.to_owned(),
        }
    }

    /// An integer field (a float is truncated, a boolean is 0 or 1, as nlohmann converts).
    pub fn opt_int(&self, key: &str, default: i64) -> i64 {
        match self.opt(key) {
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_u64().map(|_| i64::MAX))
                .or_else(|| n.as_f64().map(|f| f as i64))
                .unwrap_or(default),
            Some(Value::Bool(b)) => i64::from(*b),
            _ => default,
        }
    }

    pub fn opt_bool(&self, key: &str, default: bool) -> bool {
        match self.opt(key) {
            Some(Value::Bool(b)) => *b,
            _ => default,
        }
    }

    /// The working directory the call resolves paths against (`x-tool-cwd`; empty: the
    /// server's).
    pub fn cwd(&self) -> String {
        self.opt_str("cwd", "")
    }

    /// `path` made absolute as llama-server's `resolve`: a leading `~` is the home folder, a
    /// relative path is joined to the call's working directory, `.` and `..` are dropped
    /// lexically.
    pub fn resolve(&self, path: &str) -> PathBuf {
        resolve(&self.cwd(), path)
    }
}

fn at<'a>(v: &'a Value, key: &str) -> Result<&'a Value, CallError> {
    match v {
        Value::Object(m) => m.get(key).ok_or_else(|| {
            CallError::Json(format!(
                "[json.exception.out_of_range.403] key '{key}' not found"
            ))
        }),
        other => Err(CallError::Json(format!(
            "[json.exception.type_error.304] cannot use at() with {}",
            type_name(other)
        ))),
    }
}

fn as_string(v: &Value) -> Result<String, CallError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(CallError::Json(format!(
            "[json.exception.type_error.302] type must be string, but is {}",
            type_name(other)
        ))),
    }
}

fn resolve(cwd: &str, path: &str) -> PathBuf {
    let expanded = match path.strip_prefix('~') {
        Some(rest) if rest.is_empty() || rest.starts_with('/') || rest.starts_with('\\') => {
            match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
                Some(home) => {
                    let mut h = home.into_string().unwrap_or_default();
                    h.push_str(rest);
                    h
                }
                None => path.to_owned(),
            }
        }
        _ => path.to_owned(),
    };
    let p = Path::new(&expanded);
    let full = if p.is_absolute() {
        p.to_path_buf()
    } else if cwd.is_empty() {
        match std::env::current_dir() {
            Ok(d) => d.join(p),
            Err(_) => return p.to_path_buf(),
        }
    } else {
        Path::new(cwd).join(p)
    };
    let mut out = PathBuf::new();
    for c in full.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    out.pop();
                } else if !out.has_root() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A path as the answers show it: UTF-8 (lossy), `/`-separated.
pub(crate) fn display(p: &Path) -> String {
    p.to_string_lossy().replace('\\', "/")
}

/// The isolate an `x-tool-runtime` header names, refused: hearth runs tools on the host only.
/// The spec is checked first, with llama-server's messages, so a hostile value (an ssh
/// target or container id that would be read as an option) is named as such.
fn refuse_runtime(spec: &str) -> CallError {
    let container = ["docker", "podman"].into_iter().find_map(|bin| {
        if let Some(id) = spec.strip_prefix(&format!("{bin}-container:")) {
            Some((true, id))
        } else {
            spec.strip_prefix(&format!("{bin}:"))
                .map(|img| (false, img))
        }
    });
    let msg = if let Some((attach, arg)) = container {
        let valid_id = arg
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
            && arg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !attach {
            format!("tool runtime must name a running container: {spec}")
        } else if !valid_id {
            format!("invalid container id: {arg}")
        } else {
            format!(
                "tool runtime {spec}: container runtimes are not supported by hearth (tools run on the host)"
            )
        }
    } else if let Some(target) = spec.strip_prefix("ssh:") {
        let valid = !target.is_empty()
            && !target.starts_with('-')
            && target
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@'));
        if valid {
            format!(
                "tool runtime {spec}: ssh runtimes are not supported by hearth (tools run on the host)"
            )
        } else {
            format!("invalid ssh target: {target}")
        }
    } else {
        format!("unknown tool runtime: {spec}")
    };
    CallError::Server(msg)
}

/// llama-server's answer to `/tools` without `--tools`.
fn disabled() -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(
            json!({"error": {"message": "this feature is disabled", "type": "feature_disabled"}}),
        ),
    )
        .into_response()
}

/// `GET /tools`: the enabled tools, each with its definition.
pub(crate) async fn list(State(app): AppState) -> Response {
    if app.config.tools.is_empty() {
        return disabled();
    }
    let tools: Vec<Value> = app.config.tools.iter().map(|t| t.to_json()).collect();
    axum::Json(Value::Array(tools)).into_response()
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Why a `POST /tools` request is refused before a tool runs.
enum Refusal {
    Call(CallError),
    /// An unknown tool, or streaming asked of a tool that cannot (404).
    NotFound(String),
}

impl From<CallError> for Refusal {
    fn from(e: CallError) -> Self {
        Refusal::Call(e)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Call(e) => e.into_response(),
            Refusal::NotFound(m) => crate::ApiError::not_found(m).into_response(),
        }
    }
}

/// A parsed `POST /tools` request.
struct Call {
    tool: AgentTool,
    params: Params,
    stream: bool,
}

fn parse_call(tools: &[AgentTool], headers: &HeaderMap, bytes: &[u8]) -> Result<Call, Refusal> {
    let body: Value =
        serde_json::from_slice(bytes).map_err(|e| CallError::Json(format!("parse error: {e}")))?;
    let name = at(&body, "tool").and_then(as_string)?;
    let mut params = body.get("params").cloned().unwrap_or_else(|| json!({}));
    let stream = match body.get("stream") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(CallError::Json(format!(
                "[json.exception.type_error.302] type must be boolean, but is {}",
                type_name(other)
            ))
            .into());
        }
    };
    // The working directory, runtime and answer type come from headers (the web UI's), never
    // from the model's arguments.
    if let Value::Object(m) = &mut params {
        for k in ["cwd", "runtime", "resp_type"] {
            m.remove(k);
        }
    }
    for (h, key) in [("x-tool-cwd", "cwd"), ("x-resp-type", "resp_type")] {
        let v = header(headers, h);
        if !v.is_empty() {
            if params.is_null() {
                params = json!({});
            }
            match &mut params {
                Value::Object(m) => {
                    m.insert(key.into(), v.into());
                }
                other => {
                    return Err(CallError::Json(format!(
                        "[json.exception.type_error.305] cannot use operator[] with a string \
                         argument with {}",
                        type_name(other)
                    ))
                    .into());
                }
            }
        }
    }
    let runtime = header(headers, "x-tool-runtime");
    let Some(tool) = tools.iter().copied().find(|t| t.name() == name) else {
        return Err(Refusal::NotFound(format!("unknown tool \"{name}\"")));
    };
    if stream && !tool.supports_stream() {
        return Err(Refusal::NotFound(format!(
            "tool \"{name}\" does not support stream = true"
        )));
    }
    if !runtime.is_empty() {
        return Err(refuse_runtime(&runtime).into());
    }
    Ok(Call {
        tool,
        params: Params(params),
        stream,
    })
}

/// `POST /tools {"tool", "params", "stream"}`: runs one tool on a blocking thread. A streamed
/// call (`exec_shell_command`) answers server-sent events `{"chunk"}` … `{"done": true}`; a
/// client that goes away ends the command.
pub(crate) async fn call(
    State(app): AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if app.config.tools.is_empty() {
        return disabled();
    }
    let bytes = match read_body_bytes(body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let call = match parse_call(&app.config.tools, &headers, &bytes) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    if !call.stream {
        let Call { tool, params, .. } = call;
        return match tokio::task::spawn_blocking(move || tool.invoke(&params, None)).await {
            Ok(Ok(v)) => axum::Json(v).into_response(),
            Ok(Err(e)) => e.into_response(),
            Err(e) => CallError::Server(format!("the tool failed: {e}")).into_response(),
        };
    }
    crate::http::stream(&app, "text/event-stream", move |sink| async move {
        let (tx, mut rx) = mpsc::channel::<String>(16);
        let Call { tool, params, .. } = call;
        let task = tokio::task::spawn_blocking(move || {
            // An empty chunk only asks whether the client is still there.
            let mut push = |c: String| {
                if c.is_empty() {
                    !tx.is_closed()
                } else {
                    tx.blocking_send(c).is_ok()
                }
            };
            tool.invoke(&params, Some(&mut push))
        });
        loop {
            let gone = tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => !sink.send(sse(&json!({ "chunk": c }))).await,
                    None => break,
                },
                _ = sink.closed() => true,
            };
            if gone {
                // Dropping the receiver tells the tool the client is gone.
                drop(rx);
                let _ = task.await;
                return;
            }
        }
        let done = match task.await {
            Ok(Ok(_)) => json!({"done": true}),
            Ok(Err(e)) => json!({"done": true, "error": e.message()}),
            Err(e) => json!({"done": true, "error": format!("the tool failed: {e}")}),
        };
        let _ = sink.send(sse(&done)).await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_is_lexical_and_joins_the_cwd() {
        assert_eq!(resolve("/w", "a/./b/../c"), PathBuf::from("/w/a/c"));
        assert_eq!(resolve("/w", "/abs/x/.."), PathBuf::from("/abs"));
        assert_eq!(resolve("/w", "../../.."), PathBuf::from("/"));
        assert_eq!(resolve("/w/d", "sub/"), PathBuf::from("/w/d/sub"));
    }

    #[test]
    fn runtime_specs_are_refused_with_llama_servers_messages() {
        let m = |s: &str| refuse_runtime(s).message().to_owned();
        assert_eq!(m("fake:x"), "unknown tool runtime: fake:x");
        assert_eq!(
            m("ssh:-oProxyCommand=x"),
            "invalid ssh target: -oProxyCommand=x"
        );
        assert_eq!(
            m("docker-container:--privileged"),
            "invalid container id: --privileged"
        );
        assert!(m("podman:busybox").contains("must name a running container"));
        assert!(m("ssh:user@host").contains("not supported by hearth"));
        assert!(m("docker-container:abc123").contains("not supported by hearth"));
    }

    #[test]
    fn tool_lists_expand_all_and_name_unknown_tools() {
        assert_eq!(AgentTool::parse_list(&["all".into()]).unwrap().len(), 7);
        assert_eq!(
            AgentTool::parse_list(&["get_info".into(), "read_file".into()]).unwrap(),
            [AgentTool::ReadFile, AgentTool::GetInfo]
        );
        let e = AgentTool::parse_list(&["rm_rf".into()]).unwrap_err();
        assert!(
            e.starts_with("unknown tool \"rm_rf\". available tools: read_file,"),
            "{e}"
        );
    }
}
