//! `file_glob_search` and `grep_search` over a listing made as llama-server makes it: `git
//! ls-files` (tracked and untracked files, `.gitignore` applied) when files are asked for and
//! the folder is in a git work tree, else a walk that reports junk directories (`.git`,
//! `node_modules`, `target`, …) but never enters them nor follows links. A listing has 15 s;
//! what it could not see marks the answer. hearth adds bounds llama-server lacks: at most
//! [`MAX_ENTRIES`] entries, and for grep 64 MB per file, [`GREP_MAX_OUTPUT`] of text and
//! [`GREP_TIME`].

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::exec::{self, Output};
use super::files::{WHOLE_READ_MAX, read_line_capped};
use super::{CallError, Params, display, tool_error};

/// Most results a search returns (llama-server's 100).
pub(super) const MAX_RESULTS: usize = 100;
/// Time one listing may take (llama-server's `SERVER_TOOL_LIST_ENTRIES_TIMEOUT`).
const LIST_TIME: Duration = Duration::from_secs(15);
/// Most bytes of `git ls-files` output read.
const GIT_MAX_OUTPUT: usize = 8 * 1024 * 1024;
/// Most entries a listing holds (hearth's bound on memory).
const MAX_ENTRIES: usize = 500_000;
/// Most text grep returns (hearth's bound: with context lines llama-server's has none).
const GREP_MAX_OUTPUT: usize = 1024 * 1024;
/// Time grep may spend reading files after the listing (hearth's bound).
const GREP_TIME: Duration = Duration::from_secs(30);
/// Longest line grep looks at; the rest of a longer line is skipped.
const GREP_MAX_LINE: usize = 1024 * 1024;
/// Longest include/exclude pattern (matching costs its length times the path's).
const MAX_GLOB: usize = 4096;

/// An error result for an include or exclude pattern too long to match cheaply.
fn glob_too_long(include: &str, exclude: &str) -> Option<Value> {
    (include.len().max(exclude.len()) > MAX_GLOB)
        .then(|| tool_error(format!("glob pattern too long (max {MAX_GLOB} bytes)")))
}

/// Directories a listing reports but never enters (lower case; compared case-sensitively as on
/// Linux).
const JUNK_DIRS: &[&str] = &[
    ".git",
    ".svn",
    ".hg",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    "dist",
    "build",
    "target",
    ".cache",
    ".idea",
    ".vscode",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Files,
    Dirs,
    All,
}

struct Entry {
    /// `/`-separated, relative to the listed folder.
    rel: String,
    is_dir: bool,
}

struct Listing {
    entries: Vec<Entry>,
    /// Something could not be seen (time, an unreadable folder, the entry bound).
    truncated: bool,
}

/// `rel`'s depth: `a/b/c` is 3.
fn depth(rel: &str) -> usize {
    1 + rel.bytes().filter(|&b| b == b'/').count()
}

/// Entries under `base` (absolute); `max_depth` 0 is unlimited, 1 the direct children.
fn list_entries(base: &Path, max_depth: usize, kind: Kind) -> Result<Listing, String> {
    if !base.is_dir() {
        return Err("path does not exist or is not a directory".into());
    }
    let deadline = Instant::now() + LIST_TIME;
    // git cannot list directories: the walker does, without .gitignore.
    if kind == Kind::Files {
        let b = display(base);
        let args = [
            "git",
            "-c",
            "core.quotePath=false",
            "-C",
            &b,
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
        ];
        let res = exec::run(&args, "", GIT_MAX_OUTPUT, LIST_TIME, None);
        if let Output {
            exit_code: 0,
            timed_out: false,
            ..
        } = res
        {
            let mut out = Listing {
                entries: Vec::new(),
                truncated: res.truncated,
            };
            for line in res.text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if line.is_empty() {
                    continue;
                }
                let rel = line.replace('\\', "/");
                if max_depth > 0 && depth(&rel) > max_depth {
                    continue;
                }
                if base.join(&rel).is_file() {
                    if out.entries.len() >= MAX_ENTRIES {
                        out.truncated = true;
                        break;
                    }
                    out.entries.push(Entry { rel, is_dir: false });
                }
            }
            return Ok(out);
        }
    }
    Ok(walk(base, max_depth, kind, deadline))
}

/// llama-server's fallback walker: depth first (a stack), directory order as the system gives
/// it, links to directories reported but not followed (one could point at an ancestor).
fn walk(base: &Path, max_depth: usize, kind: Kind, deadline: Instant) -> Listing {
    let mut out = Listing {
        entries: Vec::new(),
        truncated: false,
    };
    let mut stack = vec![(base.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, rel_dir, d)) = stack.pop() {
        if Instant::now() >= deadline {
            out.truncated = true;
            return out;
        }
        let it = match std::fs::read_dir(&dir) {
            Ok(it) => it,
            // Unreadable folders are skipped quietly, as `skip_permission_denied` does.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => continue,
            Err(_) => {
                out.truncated = true;
                continue;
            }
        };
        for entry in it {
            let Ok(entry) = entry else {
                out.truncated = true;
                break;
            };
            if Instant::now() >= deadline || out.entries.len() >= MAX_ENTRIES {
                out.truncated = true;
                return out;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel_dir.is_empty() {
                name.clone()
            } else {
                format!("{rel_dir}/{name}")
            };
            let Ok(ft) = entry.file_type() else { continue };
            let is_link = ft.is_symlink();
            // Links are judged by what they point at.
            let (is_dir, is_file) = if is_link {
                match std::fs::metadata(entry.path()) {
                    Ok(m) => (m.is_dir(), m.is_file()),
                    Err(_) => continue,
                }
            } else {
                (ft.is_dir(), ft.is_file())
            };
            if is_dir {
                if kind != Kind::Files {
                    out.entries.push(Entry {
                        rel: rel.clone(),
                        is_dir: true,
                    });
                }
                if JUNK_DIRS.contains(&name.as_str()) {
                    continue;
                }
                if !is_link && (max_depth == 0 || d + 1 < max_depth) {
                    stack.push((entry.path(), rel, d + 1));
                }
            } else if is_file && kind != Kind::Dirs {
                out.entries.push(Entry { rel, is_dir: false });
            }
        }
    }
    out
}

/// llama.cpp's `glob_match`: `*` any run of characters but `/`, `**` any run, `?` one
/// character but `/`, `[…]` a class (`!` negates, `a-z` ranges), bytewise.
pub(super) fn glob_match(pattern: &[u8], s: &[u8]) -> bool {
    // Iterative over `**`/`*` with the recursion llama.cpp uses, bounded by backtracking on
    // the pattern positions: memoised on (pattern index, string index).
    let mut memo = vec![None; (pattern.len() + 1) * (s.len() + 1)];
    glob_at(pattern, s, 0, 0, &mut memo)
}

fn glob_at(p: &[u8], s: &[u8], pi: usize, si: usize, memo: &mut [Option<bool>]) -> bool {
    let key = pi * (s.len() + 1) + si;
    if let Some(r) = memo[key] {
        return r;
    }
    let r = glob_step(p, s, pi, si, memo);
    memo[key] = Some(r);
    r
}

fn glob_step(p: &[u8], s: &[u8], pi: usize, si: usize, memo: &mut [Option<bool>]) -> bool {
    let Some(&pc) = p.get(pi) else {
        return si == s.len();
    };
    let sc = s.get(si).copied();
    if pc == b'*' && p.get(pi + 1) == Some(&b'*') {
        if glob_at(p, s, pi + 2, si, memo) {
            return true;
        }
        return sc.is_some() && glob_at(p, s, pi, si + 1, memo);
    }
    if pc == b'*' {
        let mut k = si;
        while k < s.len() && s[k] != b'/' {
            if glob_at(p, s, pi + 1, k, memo) {
                return true;
            }
            k += 1;
        }
        return glob_at(p, s, pi + 1, k, memo);
    }
    if pc == b'?' && sc.is_some_and(|c| c != b'/') {
        return glob_at(p, s, pi + 1, si + 1, memo);
    }
    if pc == b'[' {
        let mut end = pi + 1;
        if matches!(p.get(end), Some(b']') | Some(b'-')) {
            end += 1;
        }
        while end < p.len() && p[end] != b']' {
            end += 1;
        }
        if end < p.len() {
            let Some(c) = sc else { return false };
            return class_match(c, &p[pi + 1..end]) && glob_at(p, s, end + 1, si + 1, memo);
        }
        return sc == Some(b'[') && glob_at(p, s, pi + 1, si + 1, memo);
    }
    if sc == Some(pc) {
        return glob_at(p, s, pi + 1, si + 1, memo);
    }
    false
}

/// llama.cpp's `glob_class_match` over a class's bytes (between `[` and `]`).
fn class_match(c: u8, class: &[u8]) -> bool {
    let mut i = 0;
    let mut negated = false;
    if class.first() == Some(&b'!') {
        negated = true;
        i = 1;
    }
    if matches!(class.get(i), Some(b']') | Some(b'-')) {
        if class[i] == c {
            return !negated;
        }
        i += 1;
    }
    let mut matched = false;
    while i < class.len() {
        if i + 2 < class.len() && class[i + 1] == b'-' && class[i + 2] != b']' {
            if c >= class[i] && c <= class[i + 2] {
                matched = true;
                break;
            }
            i += 3;
        } else {
            if class[i] == c {
                matched = true;
                break;
            }
            i += 1;
        }
    }
    matched != negated
}

/// A pattern without `/` matches the base name at any depth; one with `/` the whole relative
/// path, anchored with `**/` unless it starts with `**`, `**/` or `/`.
fn path_glob_match(pattern: &str, rel: &str) -> bool {
    if !pattern.contains('/') {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        return glob_match(pattern.as_bytes(), name.as_bytes());
    }
    if pattern == "**" || pattern.starts_with("**/") || pattern.starts_with('/') {
        return glob_match(pattern.as_bytes(), rel.as_bytes());
    }
    glob_match(format!("**/{pattern}").as_bytes(), rel.as_bytes())
}

pub(super) fn file_glob_search(p: &Params) -> Result<Value, CallError> {
    let path = p.str("path")?;
    let base = p.resolve(&path);
    let include = p.opt_str("include", "**");
    let exclude = p.opt_str("exclude", "");
    let type_ = p.opt_str("type", "file");
    let max_depth = p.opt_int("max_depth", 0).max(0) as usize;
    if let Some(e) = glob_too_long(&include, &exclude) {
        return Ok(e);
    }
    let limit_req = p.opt_int("limit", MAX_RESULTS as i64);
    if limit_req < 1 {
        return Ok(tool_error(format!(
            "invalid limit: {limit_req} (expected 1 or more)"
        )));
    }
    let limit = (limit_req as usize).min(MAX_RESULTS);
    let kind = match type_.as_str() {
        "file" => Kind::Files,
        "dir" => Kind::Dirs,
        "all" => Kind::All,
        _ => {
            return Ok(tool_error(format!(
                "invalid type: {type_} (expected \"file\", \"dir\" or \"all\")"
            )));
        }
    };
    let listing = match list_entries(&base, max_depth, kind) {
        Ok(l) => l,
        Err(e) => return Ok(tool_error(format!("{e}: {path}"))),
    };
    let mut total = 0usize;
    let mut text = String::new();
    let mut entries = Vec::new();
    for e in &listing.entries {
        if !path_glob_match(&include, &e.rel)
            || (!exclude.is_empty() && path_glob_match(&exclude, &e.rel))
        {
            continue;
        }
        total += 1;
        if entries.len() < limit {
            text.push_str(&e.rel);
            text.push_str(if e.is_dir { "/\n" } else { "\n" });
            entries.push(json!({"path": e.rel, "type": if e.is_dir { "dir" } else { "file" }}));
        }
    }
    let shown = entries.len();
    text.push_str(&format!("\n---\nTotal matches: {total}\n"));
    if total > shown {
        text.push_str(&format!(
            "[{shown} results limit reached ({total} total matches). Refine the glob pattern to \
             narrow the search.]\n"
        ));
    }
    if listing.truncated {
        text.push_str("[results truncated: time budget or unreadable directory]\n");
    }
    Ok(json!({"plain_text_response": text, "entries": entries, "base": display(&base)}))
}

pub(super) fn grep_search(p: &Params) -> Result<Value, CallError> {
    let path = p.str("path")?;
    let pattern = p.str("pattern")?;
    let include = p.opt_str("include", "**");
    let exclude = p.opt_str("exclude", "");
    let show_lineno = p.opt_bool("return_line_numbers", false);
    let literal = p.opt_bool("literal", false);
    let ignore_case = p.opt_bool("ignore_case", false);
    let ctx = p.opt_int("context_lines", 0).max(0) as usize;
    if let Some(e) = glob_too_long(&include, &exclude) {
        return Ok(e);
    }
    let source = if literal {
        regex::escape(&pattern)
    } else {
        pattern
    };
    // Linear-time matching and a bounded compiled size: a hostile pattern is an error, never
    // a hang (ECMAScript's back-references and look-around are not supported).
    let re = match regex::bytes::RegexBuilder::new(&source)
        .case_insensitive(ignore_case)
        .size_limit(16 << 20)
        .build()
    {
        Ok(r) => r,
        Err(e) => return Ok(tool_error(format!("invalid regex: {e}"))),
    };
    let abs = p.resolve(&path);
    let mut files = Vec::new();
    let mut truncated = false;
    if abs.is_file() {
        files.push((abs.clone(), path.clone()));
    } else if abs.is_dir() {
        let listing = match list_entries(&abs, 0, Kind::Files) {
            Ok(l) => l,
            Err(e) => return Ok(tool_error(format!("{e}: {path}"))),
        };
        truncated = listing.truncated;
        for e in listing.entries {
            if !path_glob_match(&include, &e.rel)
                || (!exclude.is_empty() && path_glob_match(&exclude, &e.rel))
            {
                continue;
            }
            files.push((abs.join(&e.rel), e.rel));
        }
    } else {
        return Ok(tool_error(format!("path does not exist: {path}")));
    }
    let deadline = Instant::now() + GREP_TIME;
    let show_num = show_lineno || ctx > 0;
    let mut out: Vec<u8> = Vec::new();
    let mut total = 0usize;
    let mut limit_reached = false;
    let mut stopped = None;
    let mut skipped_large = 0usize;
    'files: for (fpath, shown) in &files {
        if limit_reached {
            break;
        }
        if Instant::now() >= deadline {
            stopped = Some("[search stopped: time budget reached]\n");
            break;
        }
        let Ok(f) = File::open(fpath) else { continue };
        if f.metadata().map_or(true, |m| m.len() > WHOLE_READ_MAX) {
            skipped_large += 1;
            continue;
        }
        let mut r = BufReader::new(f);
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut line = Vec::new();
        while read_line_capped(&mut r, &mut line, GREP_MAX_LINE).is_some() {
            lines.push(std::mem::take(&mut line));
        }
        for i in 0..lines.len() {
            if total >= MAX_RESULTS {
                limit_reached = true;
                break;
            }
            if !re.is_match(&lines[i]) {
                continue;
            }
            let (from, to) = if ctx > 0 {
                (i.saturating_sub(ctx), (i + ctx).min(lines.len() - 1))
            } else {
                (i, i)
            };
            for (j, l) in lines.iter().enumerate().take(to + 1).skip(from) {
                let sep = if j == i { b':' } else { b'-' };
                out.extend_from_slice(shown.as_bytes());
                out.push(sep);
                if show_num {
                    out.extend_from_slice((j + 1).to_string().as_bytes());
                    out.push(sep);
                }
                out.extend_from_slice(l);
                out.push(b'\n');
                if out.len() > GREP_MAX_OUTPUT {
                    stopped = Some("[output truncated]\n");
                    total += 1;
                    break 'files;
                }
            }
            if ctx > 0 {
                out.extend_from_slice(b"--\n");
            }
            total += 1;
        }
    }
    let mut text = String::from_utf8_lossy(&out).into_owned();
    text.push_str(&format!("\n---\nTotal matches: {total}\n"));
    if limit_reached {
        text.push_str(&format!(
            "[{MAX_RESULTS} matches limit reached. Narrow the path/pattern/include to see more.]\n"
        ));
    }
    if let Some(s) = stopped {
        text.push_str(s);
    }
    if truncated {
        text.push_str("[results truncated: time budget or unreadable directory]\n");
    }
    if skipped_large > 0 {
        text.push_str(&format!(
            "[{skipped_large} files over {} MB not searched]\n",
            WHOLE_READ_MAX >> 20
        ));
    }
    Ok(json!({ "plain_text_response": text }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_llama_cpp() {
        let m = |p: &str, s: &str| glob_match(p.as_bytes(), s.as_bytes());
        assert!(m("*.cpp", "main.cpp"));
        assert!(!m("*.cpp", "src/main.cpp"));
        assert!(m("**/*.cpp", "src/a/main.cpp"));
        assert!(m("**", "a/b/c"));
        assert!(m("src/**/*.rs", "src/x/y/z.rs"));
        assert!(m("?.txt", "a.txt") && !m("?.txt", "/.txt"));
        assert!(m("[a-c]x", "bx") && !m("[!a-c]x", "bx") && m("[!a-c]x", "dx"));
        assert!(m("[]]", "]") && m("[-a]", "-"));
        assert!(m("a[b", "a[b") && !m("a[b", "axb"));
        assert!(!m("", "a") && m("", ""));
        // Many stars stay fast (memoised).
        let long = "a".repeat(200);
        assert!(!m(
            &"*a".repeat(30).replace('a', "*a*"),
            &format!("{long}b/")
        ));
        assert!(path_glob_match("*proj*", "project-alpha"));
        assert!(path_glob_match("src/*.cpp", "x/src/main.cpp"));
        assert!(path_glob_match(
            "test_tools_builtin.py",
            "tools/server/tests/unit/test_tools_builtin.py"
        ));
    }
}
