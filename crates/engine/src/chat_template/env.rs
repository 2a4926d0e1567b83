//! The MiniJinja environment, configured as transformers' `apply_chat_template` configures
//! jinja2: `trim_blocks`, `lstrip_blocks`, loop controls, no autoescaping, the `tojson` filter
//! with Python's exact `json.dumps` output, `raise_exception`, Python's `str()` for printed
//! values, Python string/dict methods (minijinja-contrib's pycompat plus a few it lacks), and
//! lazy `map`/`select` results that, like jinja2's generators, refuse to become JSON.
//!
//! The sandbox: no loader (so `include`/`import`/`extends` find nothing), no file or environment
//! access (MiniJinja has none to begin with), a fuel budget bounding work and memory, a recursion
//! cap, and an output cap applied by the renderer.

use minijinja::value::{Kwargs, Rest, Value, ValueKind, ValueOrKwargs};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior};

use super::pyfmt::{self, JsonOptions};
use super::Limits;

/// Set as the source of the error `raise_exception(message)` returns, so the renderer can tell
/// the template's own refusal (bad roles, unsupported features) from a failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Raised(pub String);

/// The template's name inside its environment; it has no extension, so nothing is autoescaped.
pub(crate) const TEMPLATE_NAME: &str = "chat_template";

pub(crate) fn environment(limits: &Limits) -> Result<Environment<'static>, Error> {
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()?,
    );
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_formatter(|out, _state, value| {
        let mut s = String::new();
        pyfmt::write_str(value, &mut s);
        out.write_str(&s).map_err(Error::from)
    });
    env.set_unknown_method_callback(python_method);
    env.set_fuel(Some(limits.fuel));
    env.set_recursion_limit(limits.max_recursion);

    env.add_filter("tojson", tojson);
    env.add_filter("string", |v: &Value| {
        if v.kind() == ValueKind::String {
            return v.clone();
        }
        let mut s = String::new();
        pyfmt::write_str(v, &mut s);
        Value::from(s)
    });
    // jinja2's `map`, `select`, `reject`, `selectattr` and `rejectattr` return generators;
    // MiniJinja returns lists. A one-shot iterator keeps what templates rely on (iteration,
    // `| list`, `| first`, `| join`) and the one thing they trip over: in transformers, `tojson`
    // of a generator is an error.
    let lazy = [
        ("map", Value::from_function(minijinja::filters::map)),
        ("select", Value::from_function(minijinja::filters::select)),
        ("reject", Value::from_function(minijinja::filters::reject)),
        ("selectattr", Value::from_function(minijinja::filters::selectattr)),
        ("rejectattr", Value::from_function(minijinja::filters::rejectattr)),
    ];
    for (name, builtin) in lazy {
        env.add_filter(name, move |state: &mut State, args: Rest<Value>| {
            let list = builtin.call(state, &args)?;
            let items: Vec<Value> = list.try_iter()?.collect();
            Ok::<_, Error>(Value::make_one_shot_iterator(items.into_iter()))
        });
    }
    env.add_function("raise_exception", |message: Option<Value>| -> Result<Value, Error> {
        let mut text = String::new();
        if let Some(m) = &message {
            pyfmt::write_str(m, &mut text);
        }
        Err(Error::new(ErrorKind::InvalidOperation, text.clone()).with_source(Raised(text)))
    });
    Ok(env)
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(value: &Value, args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
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
    pyfmt::dumps(value, &opts)
        .map(Value::from)
        .map_err(|e| type_error(&e.0))
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
    Err(Error::new(
        ErrorKind::UnknownMethod,
        format!("{} has no method named {method}", value.kind()),
    ))
}
