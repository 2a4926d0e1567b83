//! `read_file`, `write_file` and `edit_file`, as llama-server's `server-tools.cpp` has them.
//! Reads are bounded: `read_file` streams lines and keeps at most 16 KB of text (a base64
//! answer at most 32 MB); `edit_file` refuses files over 64 MB.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};

use base64::Engine as _;
use serde_json::{Value, json};

use super::{CallError, Params, as_string, at, tool_error};

/// Most text `read_file` returns (llama-server's `SERVER_TOOL_READ_FILE_MAX_SIZE`); a file
/// larger than this is read only with a line range.
pub(super) const READ_MAX: usize = 16 * 1024;
/// Largest file `read_file` returns as base64 (`x-resp-type: base64`).
const READ_MAX_BASE64: u64 = 32 * 1024 * 1024;
/// Largest file `edit_file` (and `grep_search`) reads whole.
pub(super) const WHOLE_READ_MAX: u64 = 64 * 1024 * 1024;

pub(super) fn read_file(p: &Params) -> Result<Value, CallError> {
    let path = p.str("path")?;
    let start_line = p.opt_int("start_line", 1);
    let end_line = p.opt_int("end_line", -1);
    let append_loc = p.opt_bool("append_loc", false);
    let as_base64 = p.opt_str("resp_type", "") == "base64";
    let full = p.resolve(&path);
    let size = match std::fs::metadata(&full) {
        Ok(m) if m.is_file() => m.len(),
        _ => return Ok(tool_error(format!("cannot stat file: {path}"))),
    };
    if as_base64 {
        if size > READ_MAX_BASE64 {
            return Ok(tool_error(format!(
                "file too large ({size} bytes, max {READ_MAX_BASE64})"
            )));
        }
        let mut content = Vec::new();
        let read =
            File::open(&full).and_then(|f| f.take(READ_MAX_BASE64 + 1).read_to_end(&mut content));
        if read.is_err() || content.len() as u64 > READ_MAX_BASE64 {
            return Ok(tool_error(format!("failed to open file: {path}")));
        }
        return Ok(json!({
            "base64": base64::engine::general_purpose::STANDARD.encode(&content),
            "size_bytes": content.len(),
        }));
    }
    if size > READ_MAX as u64 && end_line == -1 {
        return Ok(tool_error(format!(
            "file too large ({size} bytes, max {READ_MAX}). Use start_line/end_line to read a \
             portion."
        )));
    }
    let Ok(f) = File::open(&full) else {
        return Ok(tool_error(format!("failed to open file: {path}")));
    };
    let mut r = BufReader::new(f);
    let mut result: Vec<u8> = Vec::new();
    let mut lineno: i64 = 0;
    // A line longer than the whole answer can hold only truncates it: keep that much of it.
    let mut line = Vec::new();
    while let Some(complete) = read_line_capped(&mut r, &mut line, READ_MAX + 1) {
        lineno += 1;
        if lineno < start_line {
            continue;
        }
        if end_line != -1 && lineno > end_line {
            break;
        }
        let prefix = if append_loc {
            format!("{lineno}\u{2192}")
        } else {
            String::new()
        };
        let len = prefix.len() + line.len() + 1;
        if !complete || result.len() + len > READ_MAX {
            result.extend_from_slice(b"[output truncated]");
            break;
        }
        result.extend_from_slice(prefix.as_bytes());
        result.extend_from_slice(&line);
        result.push(b'\n');
    }
    Ok(json!({ "plain_text_response": String::from_utf8_lossy(&result) }))
}

/// Reads the next line (without its `\n`, as `std::getline`) into `line`, keeping at most
/// `cap` bytes of it and skipping the rest. `None` at the end of the input (or on a read
/// error); otherwise whether the whole line was kept.
pub(super) fn read_line_capped(
    r: &mut impl BufRead,
    line: &mut Vec<u8>,
    cap: usize,
) -> Option<bool> {
    line.clear();
    let mut complete = true;
    let mut any = false;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return any.then_some(complete),
        };
        if buf.is_empty() {
            return any.then_some(complete);
        }
        any = true;
        let (piece, used, end) = match memchr_nl(buf) {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        let room = cap.saturating_sub(line.len());
        if piece.len() > room {
            complete = false;
        }
        line.extend_from_slice(&piece[..piece.len().min(room)]);
        r.consume(used);
        if end {
            return Some(complete);
        }
    }
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

pub(super) fn write_file(p: &Params) -> Result<Value, CallError> {
    let path = p.str("path")?;
    let content = p.str("content")?;
    let full = p.resolve(&path);
    let ok = full
        .parent()
        .is_none_or(|d| std::fs::create_dir_all(d).is_ok())
        && std::fs::write(&full, content.as_bytes()).is_ok();
    if !ok {
        return Ok(tool_error(format!("failed to write file: {path}")));
    }
    Ok(json!({"result": "file written successfully", "path": path, "bytes": content.len()}))
}

/// One replacement found in the text it applies to.
struct Matched {
    edit_index: usize,
    at: usize,
    len: usize,
    new_text: String,
}

pub(super) fn edit_file(p: &Params) -> Result<Value, CallError> {
    let path = p.str("path")?;
    let edits_json = p.at("edits")?;
    let list = match edits_json {
        Value::Array(a) if !a.is_empty() => a,
        _ => return Ok(tool_error("\"edits\" must be a non-empty array")),
    };
    let mut edits = Vec::with_capacity(list.len());
    for e in list {
        let old_text = as_string(at(e, "old_text")?)?;
        let new_text = as_string(at(e, "new_text")?)?;
        if old_text.is_empty() {
            return Ok(tool_error(format!(
                "edits[{}].old_text must not be empty",
                edits.len()
            )));
        }
        edits.push((old_text, new_text));
    }
    let full = p.resolve(&path);
    let original = match std::fs::metadata(&full) {
        Ok(m) if m.len() > WHOLE_READ_MAX => {
            return Ok(tool_error(format!(
                "file too large ({} bytes, max {WHOLE_READ_MAX})",
                m.len()
            )));
        }
        Ok(m) if m.is_file() => match std::fs::read(&full).map(String::from_utf8) {
            Ok(Ok(s)) => s,
            // Replacing its invalid bytes would change the file where no edit asked to.
            Ok(Err(_)) => {
                return Ok(tool_error(format!(
                    "cannot edit {path}: it is not UTF-8 text"
                )));
            }
            Err(_) => return Ok(tool_error(format!("failed to open file: {path}"))),
        },
        _ => return Ok(tool_error(format!("failed to open file: {path}"))),
    };
    // Does any old_text need the tolerant match (no exact match)?
    let mut any_fuzzy = false;
    let fuzzy_original = normalize(&original);
    for (i, (old, _)) in edits.iter().enumerate() {
        if original.contains(old.as_str()) {
            continue;
        }
        if !fuzzy_original.contains(normalize(old).as_str()) {
            return Ok(tool_error(format!(
                "could not find edits[{i}].old_text in {path}, it must match the file's current \
                 content exactly"
            )));
        }
        any_fuzzy = true;
    }
    let base = if any_fuzzy {
        fuzzy_original.clone()
    } else {
        original.clone()
    };
    let mut matched = Vec::with_capacity(edits.len());
    for (i, (old, new)) in edits.iter().enumerate() {
        let needle = if any_fuzzy {
            normalize(old)
        } else {
            old.clone()
        };
        // Uniqueness is judged on the tolerant text, so a whitespace-only duplicate counts.
        let n = count_occurrences(&fuzzy_original, &normalize(old));
        if n > 1 {
            return Ok(tool_error(format!(
                "found {n} occurrences of edits[{i}].old_text in {path}, it must be unique"
            )));
        }
        let Some(at) = base.find(needle.as_str()) else {
            return Ok(tool_error(format!(
                "could not find edits[{i}].old_text in {path}, it must match the file's current \
                 content exactly"
            )));
        };
        matched.push(Matched {
            edit_index: i,
            at,
            len: needle.len(),
            new_text: new.clone(),
        });
    }
    matched.sort_by_key(|m| m.at);
    for w in matched.windows(2) {
        if w[0].at + w[0].len > w[1].at {
            return Ok(tool_error(format!(
                "edits[{}] and edits[{}] overlap in {path}; merge them into one edit or target \
                 disjoint regions",
                w[0].edit_index, w[1].edit_index
            )));
        }
    }
    let new_content = if any_fuzzy {
        apply_keeping_unchanged_lines(&original, &base, &matched)
    } else {
        apply(&base, &matched, 0)
    };
    if new_content == original {
        return Ok(tool_error(
            "no changes made: the replacement(s) produced identical content",
        ));
    }
    if std::fs::write(&full, new_content.as_bytes()).is_err() {
        return Ok(tool_error(format!("failed to write file: {path}")));
    }
    Ok(json!({"result": "file edited successfully", "path": path, "edits_applied": matched.len()}))
}

/// One line made tolerant: trailing spaces, tabs and `\r` dropped; typographic quotes,
/// dashes, the minus sign and special spaces replaced by their ASCII forms.
fn normalize_line(line: &str) -> String {
    let line = line.trim_end_matches([' ', '\t', '\r']);
    line.chars()
        .map(|c| match c {
            '\u{2018}'..='\u{201B}' => '\'',
            '\u{201C}'..='\u{201F}' => '"',
            '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
            '\u{00A0}' | '\u{2002}'..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}' => ' ',
            c => c,
        })
        .collect()
}

/// Every line of `content` made tolerant; the line count stays.
fn normalize(content: &str) -> String {
    content
        .split('\n')
        .map(normalize_line)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Non-overlapping occurrences of `needle`.
fn count_occurrences(content: &str, needle: &str) -> usize {
    if needle.is_empty() {
        0
    } else {
        content.matches(needle).count()
    }
}

/// The replacements (sorted, disjoint, positions relative to `offset`) applied to `content`.
fn apply(content: &str, reps: &[Matched], offset: usize) -> String {
    let mut out = String::with_capacity(content.len());
    let mut pos = 0;
    for r in reps {
        let at = r.at - offset;
        out.push_str(&content[pos..at]);
        out.push_str(&r.new_text);
        pos = at + r.len;
    }
    out.push_str(&content[pos..]);
    out
}

/// Lines with their `\n`.
fn lines_with_endings(content: &str) -> Vec<&str> {
    content.split_inclusive('\n').collect()
}

/// The tolerant replacements applied line group by line group: lines no replacement touches
/// come from the original text unchanged (their trailing spaces and typography kept).
fn apply_keeping_unchanged_lines(original: &str, base: &str, reps: &[Matched]) -> String {
    let original_lines = lines_with_endings(original);
    let mut spans = Vec::new();
    let mut off = 0;
    for l in lines_with_endings(base) {
        spans.push((off, off + l.len()));
        off += l.len();
    }
    // Groups of replacements over overlapping line ranges: (first line, end line, members).
    let mut groups: Vec<(usize, usize, Vec<&Matched>)> = Vec::new();
    for r in reps {
        let start = r.at;
        let end = r.at + r.len;
        let Some(first) = spans.iter().position(|&(s, e)| start >= s && start < e) else {
            continue;
        };
        let mut last = first;
        while last < spans.len() && spans[last].1 < end {
            last += 1;
        }
        if last >= spans.len() {
            continue;
        }
        match groups.last_mut() {
            Some(g) if first < g.1 => {
                g.1 = g.1.max(last + 1);
                g.2.push(r);
            }
            _ => groups.push((first, last + 1, vec![r])),
        }
    }
    let mut out = String::with_capacity(original.len());
    let mut next = 0;
    for (first, end, members) in groups {
        for l in original_lines.iter().take(first).skip(next) {
            out.push_str(l);
        }
        let (s, e) = (spans[first].0, spans[end - 1].1);
        let mut slice_out = String::new();
        let mut pos = s;
        for r in members {
            slice_out.push_str(&base[pos..r.at]);
            slice_out.push_str(&r.new_text);
            pos = r.at + r.len;
        }
        slice_out.push_str(&base[pos..e]);
        out.push_str(&slice_out);
        next = end;
    }
    for l in original_lines.iter().skip(next) {
        out.push_str(l);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerant_edits_keep_untouched_lines_verbatim() {
        let original = "keep  \nsay \u{201C}hi\u{201D}\t\nend\u{00A0}x  \n";
        let base = normalize(original);
        assert_eq!(base, "keep\nsay \"hi\"\nend x\n");
        let at = base.find("say \"hi\"").unwrap();
        let reps = [Matched {
            edit_index: 0,
            at,
            len: "say \"hi\"".len(),
            new_text: "say bye".into(),
        }];
        assert_eq!(
            apply_keeping_unchanged_lines(original, &base, &reps),
            "keep  \nsay bye\nend\u{00A0}x  \n"
        );
    }

    #[test]
    fn capped_lines_are_cut_and_flagged() {
        let mut r = BufReader::new(&b"abcdef\nxy\nlast"[..]);
        let mut l = Vec::new();
        assert_eq!(read_line_capped(&mut r, &mut l, 3), Some(false));
        assert_eq!(l, b"abc");
        assert_eq!(read_line_capped(&mut r, &mut l, 3), Some(true));
        assert_eq!(l, b"xy");
        assert_eq!(read_line_capped(&mut r, &mut l, 3), Some(false));
        assert_eq!(read_line_capped(&mut r, &mut l, 3), None);
    }
}
