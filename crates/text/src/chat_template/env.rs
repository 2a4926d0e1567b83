//! The MiniJinja environment, configured as transformers' `apply_chat_template` configures
//! jinja2: `trim_blocks`, `lstrip_blocks`, loop controls, no autoescaping, the `tojson` filter
//! with Python's exact `json.dumps` output, `raise_exception`, Python's `str()` for printed
//! values, Python string/dict methods (minijinja-contrib's pycompat plus a few it lacks), and
//! lazy `map`/`select` results that, like jinja2's generators, refuse to become JSON.
//!
//! The sandbox: no loader (so `include`/`import`/`extends` find nothing), no file or environment
//! access (MiniJinja has none to begin with), a fuel budget bounding work and memory, a recursion
//! cap, and an output cap applied by the renderer.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Rest, Value, ValueKind, ValueOrKwargs};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};

use super::Limits;
use super::guard;
use super::pyfmt::{self, Generator, JsonOptions};

/// Set as the source of the error `raise_exception(message)` returns, so the renderer can tell
/// the template's own refusal (bad roles, unsupported features) from a failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Raised(pub String);

/// Set as the source of errors for values too large or deep to print or dump; the renderer
/// reports them as a limit hit.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct LimitExceeded(pub String);

fn too_big(e: &pyfmt::TooBig) -> Error {
    Error::new(ErrorKind::InvalidOperation, e.to_string()).with_source(LimitExceeded(e.to_string()))
}

/// The template's name inside its environment; it has no extension, so nothing is autoescaped.
pub(crate) const TEMPLATE_NAME: &str = "chat_template";

/// transformers' jinja2 settings: `trim_blocks` and `lstrip_blocks`.
pub(crate) fn syntax() -> Result<SyntaxConfig, Error> {
    SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
}

pub(crate) fn environment(limits: &Limits) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(syntax()?);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    let max = limits.max_output_bytes;
    env.set_formatter(move |out, _state, value| {
        let mut s = String::new();
        pyfmt::write_str(value, &mut s, max).map_err(|e| too_big(&e))?;
        out.write_str(&s).map_err(Error::from)
    });
    let bounds = guard::Bounds::new(limits);
    env.set_unknown_method_callback(move |state, value, method, args| {
        if method == "format"
            && let Some(fmt) = value.as_str()
        {
            guard::check_format(fmt, args, bounds)?;
            guard::check_format_fields(fmt)?;
        }
        python_method(state, value, method, args)
    });
    env.set_fuel(Some(limits.fuel));
    env.set_recursion_limit(limits.max_recursion);

    env.add_filter("tojson", move |v: &Value, args: Rest<ValueOrKwargs>| {
        tojson(v, args, max)
    });
    env.add_filter("string", move |v: &Value| -> Result<Value, Error> {
        if v.kind() == ValueKind::String {
            return Ok(v.clone());
        }
        let mut s = String::new();
        pyfmt::write_str(v, &mut s, max).map_err(|e| too_big(&e))?;
        Ok(Value::from(s))
    });
    // jinja2's `map`, `select`, `reject`, `selectattr` and `rejectattr` return generators.
    let lazy = [
        ("map", Value::from_function(minijinja::filters::map)),
        ("select", Value::from_function(minijinja::filters::select)),
        ("reject", Value::from_function(minijinja::filters::reject)),
        (
            "selectattr",
            Value::from_function(minijinja::filters::selectattr),
        ),
        (
            "rejectattr",
            Value::from_function(minijinja::filters::rejectattr),
        ),
    ];
    for (name, builtin) in lazy {
        env.add_filter(name, move |state: &mut State, args: Rest<ValueOrKwargs>| {
            let list = builtin.call(state, &args.into_values())?;
            Ok::<_, Error>(Generator::value(list.try_iter()?.collect()))
        });
    }
    guard::register(&mut env, limits);
    let bounds = guard::Bounds::new(limits);
    let format = Value::from_function(minijinja::filters::format);
    env.add_filter(
        "format",
        move |state: &mut State, args: Rest<ValueOrKwargs>| {
            let args = args.into_values();
            if let Some((fmt, rest)) = args.split_first() {
                guard::check_format(fmt.as_str().unwrap_or_default(), rest, bounds)?;
            }
            format.call(state, &args)
        },
    );
    env.add_filter("int", py_int);
    env.add_filter("float", py_float);
    for name in ["escape", "e", "forceescape"] {
        env.add_filter(name, move |v: &Value| -> Result<Value, Error> {
            if v.is_safe() {
                return Ok(v.clone());
            }
            let mut s = String::new();
            pyfmt::write_str(v, &mut s, max).map_err(|e| too_big(&e))?;
            Ok(Value::from_safe_string(pyfmt::markup_escape(&s)))
        });
    }
    env.add_function(
        "raise_exception",
        move |message: Option<Value>| -> Result<Value, Error> {
            let mut text = String::new();
            if let Some(m) = &message {
                pyfmt::write_str(m, &mut text, max).map_err(|e| too_big(&e))?;
            }
            Err(Error::new(ErrorKind::InvalidOperation, text.clone()).with_source(Raised(text)))
        },
    );
    Ok(env)
}

/// jinja2's `int(value, default=0, base=10)`: Python's `int()`, else `int(float())`, else the
/// default.
fn py_int(value: &Value, default: Option<Value>, base: Option<u32>) -> Value {
    let default = default.unwrap_or(Value::from(0));
    match value.kind() {
        ValueKind::Bool => Value::from(i64::from(value.is_true())),
        ValueKind::Number if value.is_integer() => value.clone(),
        ValueKind::Number => match f64::try_from(value.clone()) {
            Ok(f) if f.is_finite() => Value::from(f.trunc() as i64),
            _ => default,
        },
        ValueKind::String => {
            let text = value.as_str().unwrap_or_default().trim().replace('_', "");
            let base = base.unwrap_or(10);
            if let Some(i) = (2..=36)
                .contains(&base)
                .then(|| i64::from_str_radix(&text, base).ok())
                .flatten()
            {
                Value::from(i)
            } else if let Some(f) = pyfmt::parse_float(&text).filter(|f| f.is_finite()) {
                Value::from(f.trunc() as i64)
            } else {
                default
            }
        }
        _ => default,
    }
}

/// jinja2's `float(value, default=0.0)`.
fn py_float(value: &Value, default: Option<Value>) -> Value {
    let default = default.unwrap_or(Value::from(0.0));
    match value.kind() {
        ValueKind::Bool => Value::from(if value.is_true() { 1.0 } else { 0.0 }),
        ValueKind::Number => f64::try_from(value.clone()).map_or(default, Value::from),
        ValueKind::String => {
            let text = value.as_str().unwrap_or_default().trim().replace('_', "");
            pyfmt::parse_float(&text).map_or(default, Value::from)
        }
        _ => default,
    }
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(value: &Value, args: Rest<ValueOrKwargs>, max_bytes: usize) -> Result<Value, Error> {
    let args = args.into_values();
    let (positional, kwargs): (&[Value], Kwargs) = minijinja::value::from_args(&args)?;
    if positional.len() > 4 {
        return Err(Error::from(ErrorKind::TooManyArguments));
    }
    let arg = |i: usize| positional.get(i).cloned();
    let (ensure_ascii, indent, separators, sort_keys) = (arg(0), arg(1), arg(2), arg(3));
    let pick = |pos: Option<Value>, key: &str| -> Result<Option<Value>, Error> {
        let kw: Option<Value> = kwargs.get(key)?;
        Ok(kw.or(pos).filter(|v| !v.is_none() && !v.is_undefined()))
    };
    let mut opts = JsonOptions {
        ensure_ascii: pick(ensure_ascii, "ensure_ascii")?.is_some_and(|v| v.is_true()),
        sort_keys: pick(sort_keys, "sort_keys")?.is_some_and(|v| v.is_true()),
        ..JsonOptions::default()
    };
    if let Some(indent) = pick(indent, "indent")? {
        opts.indent = Some(match (indent.as_str(), i64::try_from(indent.clone())) {
            (Some(s), _) => s.to_owned(),
            (None, Ok(n)) => " ".repeat(usize::try_from(n).unwrap_or(0).min(64)),
            _ => return Err(type_error("indent must be an int or a str")),
        });
    }
    if let Some(seps) = pick(separators, "separators")? {
        let parts: Vec<Value> = seps.try_iter()?.collect();
        match parts.as_slice() {
            [a, b] if a.as_str().is_some() && b.as_str().is_some() => {
                opts.separators = Some((
                    a.as_str().unwrap_or_default().to_owned(),
                    b.as_str().unwrap_or_default().to_owned(),
                ));
            }
            _ => return Err(type_error("separators must be a pair of strings")),
        }
    }
    kwargs.assert_all_used()?;
    match pyfmt::dumps(value, &opts, max_bytes) {
        Ok(text) => Ok(Value::from(text)),
        Err(pyfmt::JsonError::Type(msg)) => Err(type_error(&msg)),
        Err(pyfmt::JsonError::TooBig(e)) => Err(too_big(&e)),
    }
}

fn type_error(msg: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("TypeError: {msg}"))
}

/// Python methods called on values: minijinja-contrib's pycompat first, then the few that
/// real templates use and it lacks.
fn python_method(
    state: &mut State,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    match minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args) {
        Err(e) if e.kind() == ErrorKind::UnknownMethod => {}
        other => return other,
    }
    if let Some(s) = value.as_str()
        && let Some(v) = string_method(s, method, args)?
    {
        return Ok(v);
    }
    Err(Error::new(
        ErrorKind::UnknownMethod,
        format!("{} has no method named {method}", value.kind()),
    ))
}

/// String methods pycompat lacks.
fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Option<Value>, Error> {
    Ok(Some(match method {
        "rsplit" => {
            let (sep, maxsplit): (Option<&str>, Option<i64>) = minijinja::value::from_args(args)?;
            let maxsplit = maxsplit.and_then(|m| usize::try_from(m).ok());
            let mut parts: Vec<&str> = match sep {
                Some("") => return Err(Error::new(ErrorKind::InvalidOperation, "empty separator")),
                Some(sep) => match maxsplit {
                    Some(n) => s.rsplitn(n + 1, sep).collect(),
                    None => s.rsplit(sep).collect(),
                },
                None => {
                    // Whitespace runs separate; leading/trailing whitespace yields nothing,
                    // except that text before the last allowed split is kept whole.
                    let mut parts = Vec::new();
                    let mut rest = s.trim_end();
                    while !rest.is_empty() {
                        if maxsplit.is_some_and(|n| parts.len() == n) {
                            parts.push(rest);
                            break;
                        }
                        match rest.rfind(char::is_whitespace) {
                            Some(i) => {
                                let ws_len = rest[i..].chars().next().map_or(1, char::len_utf8);
                                parts.push(&rest[i + ws_len..]);
                                rest = rest[..i].trim_end();
                            }
                            None => {
                                parts.push(rest);
                                rest = "";
                            }
                        }
                    }
                    parts
                }
            };
            parts.reverse();
            Value::from_iter(parts)
        }
        "removeprefix" | "removesuffix" => {
            let (affix,): (&str,) = minijinja::value::from_args(args)?;
            let out = if method == "removeprefix" {
                s.strip_prefix(affix)
            } else {
                s.strip_suffix(affix)
            };
            Value::from(out.unwrap_or(s))
        }
        "partition" | "rpartition" => {
            let (sep,): (&str,) = minijinja::value::from_args(args)?;
            if sep.is_empty() {
                return Err(Error::new(ErrorKind::InvalidOperation, "empty separator"));
            }
            let found = if method == "partition" {
                s.split_once(sep)
            } else {
                s.rsplit_once(sep)
            };
            let parts = match (found, method) {
                (Some((a, b)), _) => [a, sep, b],
                (None, "partition") => [s, "", ""],
                (None, _) => ["", "", s],
            };
            Value::from(minijinja::value::Tuple::from(
                parts.map(Value::from).to_vec(),
            ))
        }
        _ => return Ok(None),
    }))
}
