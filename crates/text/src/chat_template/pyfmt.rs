//! How Python writes values: `str()`/`repr()` of the few types a chat template handles (what
//! jinja2 prints for `{{ value }}`) and `json.dumps` with its exact separators and escapes (what
//! transformers' `tojson` filter returns). Templates print lists of tools and dump JSON schemas
//! into prompts, so these must match CPython byte for byte, not merely be valid JSON.

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value, ValueKind};

/// A Python generator: what jinja2's `map`, `select`, `reject`, `selectattr` and `rejectattr`
/// return (MiniJinja's return lists). Iterable once, always true, and not JSON: `tojson` of one
/// fails in transformers, and templates that do it must fail here too.
#[derive(Debug)]
pub(crate) struct Generator(Mutex<Option<Vec<Value>>>);

impl Generator {
    /// A template value holding a generator over `items`.
    pub(crate) fn value(items: Vec<Value>) -> Value {
        Value::from_object(Generator(Mutex::new(Some(items))))
    }
}

impl Object for Generator {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Iterable
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        let items = self
            .0
            .lock()
            .ok()
            .and_then(|mut g| g.take())
            .unwrap_or_default();
        Enumerator::Iter(Box::new(items.into_iter()))
    }

    fn is_true(self: &Arc<Self>) -> bool {
        true
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<generator object>")
    }
}

fn is_generator(value: &Value) -> bool {
    value.downcast_object_ref::<Generator>().is_some()
}

/// A list in Python terms: a sequence, or a lazy concatenation (`a + b`) that is not a generator.
fn is_list(value: &Value) -> bool {
    match value.kind() {
        ValueKind::Seq => true,
        ValueKind::Iterable => !is_generator(value),
        _ => false,
    }
}

/// Python's `repr(float)`: the shortest text that round-trips, positional for exponents in
/// [-4, 16), `1e+16` style outside, always with a `.0` or exponent so it reads back as a float.
pub(crate) fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits as CPython's repr, as `d.ddde-5`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len() as i32;
    let mut out = String::from(sign);
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else if exp + 1 >= n {
            out.push_str(&digits);
            out.extend(std::iter::repeat_n('0', (exp + 1 - n) as usize));
            out.push_str(".0");
        } else {
            let (int, frac) = digits.split_at((exp + 1) as usize);
            let _ = write!(out, "{int}.{frac}");
        }
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            let _ = write!(out, ".{rest}");
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    }
    out
}

/// Whether CPython's `str.isprintable()` is false for `c`, so `repr()` escapes it. Exact for
/// the control, separator and format characters that occur in text; other unassigned or private
/// code points print as themselves here.
fn python_nonprintable(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{a0}' | '\u{ad}' | '\u{1680}' | '\u{2000}'..='\u{200f}' | '\u{2028}'..='\u{202f}'
            | '\u{205f}'..='\u{2064}' | '\u{2066}'..='\u{206f}' | '\u{3000}' | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}' | '\u{e000}'..='\u{f8ff}')
}

/// Python's `repr(str)`: single quotes unless the text holds `'` and no `"`.
pub(crate) fn str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if python_nonprintable(c) => {
                let v = c as u32;
                let _ = match v {
                    0..=0xff => write!(out, "\\x{v:02x}"),
                    0x100..=0xffff => write!(out, "\\u{v:04x}"),
                    _ => write!(out, "\\U{v:08x}"),
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Text past a caller's byte budget, or nesting past [`MAX_DEPTH`]: printing or dumping such a
/// value is refused (a template can build huge or deeply nested values cheaply, e.g. by repeated
/// `l = l + l`, and must not be able to turn them into a hang or a stack overflow).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TooBig {
    Bytes(usize),
    Depth,
}

impl fmt::Display for TooBig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TooBig::Bytes(n) => write!(f, "value text longer than {n} bytes"),
            TooBig::Depth => write!(f, "value nested deeper than {MAX_DEPTH} levels"),
        }
    }
}

/// Nesting beyond this is refused, as Python's recursion limit would.
pub(crate) const MAX_DEPTH: usize = 256;

/// Python's `str(value)`, as jinja2 prints `{{ value }}`: strings bare, containers as `repr`.
/// Fails once `out` passes `max_bytes`.
pub(crate) fn write_str(value: &Value, out: &mut String, max_bytes: usize) -> Result<(), TooBig> {
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        _ => write_repr(value, out, max_bytes, 0)?,
    }
    if out.len() > max_bytes {
        return Err(TooBig::Bytes(max_bytes));
    }
    Ok(())
}

/// Python's `repr(value)` for the values a template sees: None, bools, numbers, strings, lists,
/// tuples and dicts. Other objects (macros, namespaces, loops) print as MiniJinja shows them.
fn write_repr(value: &Value, out: &mut String, max: usize, depth: usize) -> Result<(), TooBig> {
    if depth > MAX_DEPTH {
        return Err(TooBig::Depth);
    }
    if out.len() > max {
        return Err(TooBig::Bytes(max));
    }
    match value.kind() {
        ValueKind::Undefined => {}
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number => write_number(value, out),
        ValueKind::String => str_repr(value.as_str().unwrap_or_default(), out),
        _ if is_list(value) => {
            let (open, close) = if value.is_tuple() {
                ('(', ')')
            } else {
                ('[', ']')
            };
            out.push(open);
            let mut n = 0;
            if let Ok(items) = value.try_iter() {
                for item in items {
                    if n > 0 {
                        out.push_str(", ");
                    }
                    write_repr(&item, out, max, depth + 1)?;
                    n += 1;
                }
            }
            if n == 1 && value.is_tuple() {
                out.push(',');
            }
            out.push(close);
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(keys) = value.try_iter() {
                for (i, key) in keys.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_repr(&key, out, max, depth + 1)?;
                    out.push_str(": ");
                    let item = value.get_item(&key).unwrap_or_default();
                    write_repr(&item, out, max, depth + 1)?;
                }
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
    Ok(())
}

fn write_number(value: &Value, out: &mut String) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
    } else {
        let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
        out.push_str(&float_repr(f));
    }
}

/// markupsafe's `escape` (jinja2's `escape`/`e` filters): `& < > " '` as `&amp; &lt; &gt; &#34;
/// &#39;`.
pub(crate) fn markup_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Python's `float(text)` for trimmed text without underscores: Rust's parser takes the same
/// decimal, exponent, `inf`/`infinity`/`nan` forms.
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    text.parse().ok()
}

/// The options of Python's `json.dumps` that transformers' `tojson` passes through.
#[derive(Debug, Clone, Default)]
pub(crate) struct JsonOptions {
    pub ensure_ascii: bool,
    /// `None`: one line; `Some(s)`: newline and `s` per level (`indent=2` is two spaces).
    pub indent: Option<String>,
    /// Item and key separators; `None` picks Python's defaults for the indent mode.
    pub separators: Option<(String, String)>,
    pub sort_keys: bool,
}

/// Why a value cannot be dumped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonError {
    /// What Python's `TypeError` says.
    Type(String),
    TooBig(TooBig),
}

/// `json.dumps(value, ensure_ascii=…, indent=…, separators=…, sort_keys=…)`, failing once the
/// text passes `max_bytes`.
pub(crate) fn dumps(
    value: &Value,
    opts: &JsonOptions,
    max_bytes: usize,
) -> Result<String, JsonError> {
    let (item_sep, key_sep) = match &opts.separators {
        Some((i, k)) => (i.as_str(), k.as_str()),
        None if opts.indent.is_some() => (",", ": "),
        None => (", ", ": "),
    };
    let mut w = JsonWriter {
        opts,
        item_sep,
        key_sep,
        max_bytes,
        out: String::new(),
    };
    w.value(value, 0)?;
    if w.out.len() > max_bytes {
        return Err(JsonError::TooBig(TooBig::Bytes(max_bytes)));
    }
    Ok(w.out)
}

struct JsonWriter<'a> {
    opts: &'a JsonOptions,
    item_sep: &'a str,
    key_sep: &'a str,
    max_bytes: usize,
    out: String,
}

impl JsonWriter<'_> {
    fn newline(&mut self, depth: usize) {
        if let Some(indent) = &self.opts.indent {
            self.out.push('\n');
            for _ in 0..depth {
                self.out.push_str(indent);
            }
        }
    }

    fn value(&mut self, value: &Value, depth: usize) -> Result<(), JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::TooBig(TooBig::Depth));
        }
        if self.out.len() > self.max_bytes {
            return Err(JsonError::TooBig(TooBig::Bytes(self.max_bytes)));
        }
        match value.kind() {
            ValueKind::None => self.out.push_str("null"),
            ValueKind::Bool => self
                .out
                .push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => self.number(value),
            ValueKind::String => self.string(value.as_str().unwrap_or_default()),
            _ if is_list(value) => {
                // Lazily: a template can build lists far larger than memory (`l + l` is lazy).
                let mut n = 0;
                for item in value.try_iter().into_iter().flatten() {
                    self.out.push_str(if n == 0 { "[" } else { self.item_sep });
                    self.newline(depth + 1);
                    self.value(&item, depth + 1)?;
                    n += 1;
                }
                if n == 0 {
                    self.out.push_str("[]");
                } else {
                    self.newline(depth);
                    self.out.push(']');
                }
            }
            ValueKind::Map => {
                let mut entries = Vec::new();
                for key in value.try_iter().into_iter().flatten() {
                    let item = value.get_item(&key).unwrap_or_default();
                    entries.push((self.key_text(&key)?, item));
                }
                if self.opts.sort_keys {
                    // Python compares str by code point, as Rust's str ordering does.
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                if entries.is_empty() {
                    self.out.push_str("{}");
                    return Ok(());
                }
                self.out.push('{');
                for (i, (key, item)) in entries.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(self.item_sep);
                    }
                    self.newline(depth + 1);
                    self.string(key);
                    self.out.push_str(self.key_sep);
                    self.value(item, depth + 1)?;
                }
                self.newline(depth);
                self.out.push('}');
            }
            kind => return Err(JsonError::Type(not_serializable(kind))),
        }
        Ok(())
    }

    /// Dict keys: Python writes str keys as is and converts numbers, bools and None.
    fn key_text(&self, key: &Value) -> Result<String, JsonError> {
        Ok(match key.kind() {
            ValueKind::String => key.as_str().unwrap_or_default().to_owned(),
            ValueKind::None => "null".into(),
            ValueKind::Bool => if key.is_true() { "true" } else { "false" }.into(),
            ValueKind::Number => {
                let mut s = String::new();
                write_number_json(key, &mut s);
                s
            }
            _ => {
                return Err(JsonError::Type(format!(
                    "keys must be str, int, float, bool or None, not {}",
                    python_type_name(key.kind())
                )));
            }
        })
    }

    fn number(&mut self, value: &Value) {
        write_number_json(value, &mut self.out);
    }

    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                '\u{8}' => self.out.push_str("\\b"),
                '\u{c}' => self.out.push_str("\\f"),
                c if (c as u32) < 0x20 => {
                    let _ = write!(self.out, "\\u{:04x}", c as u32);
                }
                c if self.opts.ensure_ascii && (c as u32) >= 0x7f => {
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        let _ = write!(self.out, "\\u{u:04x}");
                    }
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

fn write_number_json(value: &Value, out: &mut String) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
        return;
    }
    let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
    if f.is_nan() {
        out.push_str("NaN");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        out.push_str(&float_repr(f));
    }
}

/// The Python type a template author would see in the error, e.g. `generator` for the lazy
/// results of `map` and `select`.
fn python_type_name(kind: ValueKind) -> &'static str {
    match kind {
        ValueKind::Undefined => "Undefined",
        ValueKind::Iterable => "generator",
        ValueKind::Bytes => "bytes",
        ValueKind::Seq => "list",
        ValueKind::Map => "dict",
        _ => "object",
    }
}

fn not_serializable(kind: ValueKind) -> String {
    format!(
        "Object of type {} is not JSON serializable",
        python_type_name(kind)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    #[test]
    fn float_repr_matches_python() {
        // Expected strings are CPython 3.11's repr().
        let cases = [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.6, "123456789012345.6"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (1e100, "1e+100"),
            (f64::INFINITY, "inf"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn str_repr_quotes_like_python() {
        let cases = [
            ("abc", "'abc'"),
            ("it's", "\"it's\""),
            ("say \"hi\" it's", "'say \"hi\" it\\'s'"),
            ("a\nb\\c\t", "'a\\nb\\\\c\\t'"),
            ("\u{1}\u{7f}é€\u{a0}", "'\\x01\\x7fé€\\xa0'"),
        ];
        for (s, want) in cases {
            let mut out = String::new();
            str_repr(s, &mut out);
            assert_eq!(out, want);
        }
    }

    fn json_of(text: &str) -> Value {
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        Value::from(minijinja::value::Serde(&v))
    }

    #[test]
    fn dumps_matches_python() {
        let v =
            json_of(r#"{"b": [1, 2.0, {"x": null}], "a": "é\"\n", "c": {}, "d": [], "e": true}"#);
        let plain = JsonOptions::default();
        // json.dumps(v, ensure_ascii=False)
        assert_eq!(
            dumps(&v, &plain, MAX).unwrap(),
            r#"{"b": [1, 2.0, {"x": null}], "a": "é\"\n", "c": {}, "d": [], "e": true}"#
        );
        // json.dumps(v, ensure_ascii=True, indent=2, sort_keys=True)
        let opts = JsonOptions {
            ensure_ascii: true,
            indent: Some("  ".into()),
            sort_keys: true,
            ..Default::default()
        };
        assert_eq!(
            dumps(&v, &opts, MAX).unwrap(),
            "{\n  \"a\": \"\\u00e9\\\"\\n\",\n  \"b\": [\n    1,\n    2.0,\n    {\n      \"x\": null\n    }\n  ],\n  \"c\": {},\n  \"d\": [],\n  \"e\": true\n}"
        );
        // json.dumps("😀\x7f", ensure_ascii=True) and separators=(',', ':')
        assert_eq!(
            dumps(&json_of(r#""😀\u007f""#), &opts, MAX).unwrap(),
            r#""\ud83d\ude00\u007f""#
        );
        let compact = JsonOptions {
            separators: Some((",".into(), ":".into())),
            ..Default::default()
        };
        assert_eq!(
            dumps(&json_of(r#"{"a": [1, 2]}"#), &compact, MAX).unwrap(),
            r#"{"a":[1,2]}"#
        );
    }

    #[test]
    fn dumps_refuses_undefined() {
        let err = dumps(&Value::UNDEFINED, &JsonOptions::default(), MAX).unwrap_err();
        assert_eq!(
            err,
            JsonError::Type("Object of type Undefined is not JSON serializable".into())
        );
    }
}
