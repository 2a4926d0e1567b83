//! Checks on every value a template builds, so that its size stays within what the fuel paid
//! for, and jinja2's `Markup` arithmetic.
//!
//! MiniJinja charges fuel per instruction, but some single instructions can build or walk
//! values of any size:
//!
//! - `list + list` is lazy, so `{% set ns.l = ns.l + ns.l %}` in a loop holds 2^32 items after
//!   32 cheap steps; past 32 levels MiniJinja flattens such a list eagerly and runs out of
//!   memory, and filters like `last` walk it without end.
//! - A list holding one value twice, nested (`{% set ns.l = [ns.l, ns.l] %}`), is a tree of
//!   2^n nodes after n steps; printing it with `~`, `join` or `format`, comparing or hashing it
//!   walks every node.
//! - `{% set ns.me = ns %}` makes a cycle, which those walks follow until the stack overflows
//!   (prevented by our own namespaces, see `namespace`).
//!
//! So [`super::guard_rewrite`] routes every operator, literal, call and filter result and every
//! namespace assignment through the functions here, which [`weigh`] the result: a value may
//! hold at most [`Limits::max_value_nodes`] nodes (counting a shared part each time it
//! appears), nest at most [`MAX_DEPTH`] levels and hold no string longer than the output cap.
//! Each node visited is charged to a per-render work budget, so the checks themselves stay
//! bounded. Format strings are checked before formatting ([`check_format`]): a field width
//! allocates inside one call, before any result could be weighed.
//!
//! `+` also does what jinja2's `Markup` does: `"…"|safe` (or `|e`) is a `Markup` string, and
//! `Markup + str` HTML-escapes the plain side even with autoescaping off (meetkai's functionary
//! templates rely on it). `~` makes a plain string, as jinja2's `str_join` does.

use std::cell::Cell;
use std::sync::OnceLock;

use minijinja::value::{Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Expression, context};

use super::Limits;
use super::env::LimitExceeded;
use super::namespace::{self, Namespace};
use super::pyfmt::{self, Generator};

/// The functions templates are rewritten to call; names no real template uses.
pub(crate) const ADD: &str = "__hearth_add";
pub(crate) const MUL: &str = "__hearth_mul";
pub(crate) const CONCAT: &str = "__hearth_concat";
pub(crate) const LIST: &str = "__hearth_list";
pub(crate) const TUPLE: &str = "__hearth_tuple";
pub(crate) const MAP: &str = "__hearth_map";
pub(crate) const VALUE: &str = "__hearth_value";
pub(crate) const SETATTR: &str = "__hearth_setattr";

/// Nesting deeper than this is refused; it is also where printing stops (`pyfmt`).
pub(crate) const MAX_DEPTH: usize = 256;

/// The bounds the functions apply, copied from [`Limits`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub max_nodes: usize,
    pub max_bytes: usize,
}

impl Bounds {
    pub(crate) fn new(limits: &Limits) -> Bounds {
        Bounds {
            max_nodes: limits.max_value_nodes,
            max_bytes: limits.max_output_bytes,
        }
    }
}

thread_local! {
    /// Nodes the checks may still visit in this render (each render has a thread of its own).
    static WORK_LEFT: Cell<u64> = const { Cell::new(0) };
    /// `+` joins a string with an undefined or none value as with "" (llama.cpp's engine).
    static LENIENT_CONCAT: Cell<bool> = const { Cell::new(false) };
}

/// Sets the work budget and the `+` rule for the render about to run on this thread.
pub(crate) fn start_render(budget: u64, lenient_concat: bool) {
    WORK_LEFT.with(|w| w.set(budget));
    LENIENT_CONCAT.with(|l| l.set(lenient_concat));
}

pub(crate) fn limit(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.clone()).with_source(LimitExceeded(msg))
}

fn charge(nodes: u64) -> Result<(), Error> {
    WORK_LEFT.with(|w| match w.get().checked_sub(nodes) {
        Some(left) => {
            w.set(left);
            Ok(())
        }
        None => Err(limit("too much work checking values".into())),
    })
}

/// Counts the nodes of `v` as a tree (a part shared twice counts twice), failing past
/// `bounds.max_nodes` nodes or [`MAX_DEPTH`] levels. Strings and numbers are single nodes;
/// generators are not walked, since walking one would use it up.
pub(crate) fn weigh(v: &Value, bounds: Bounds) -> Result<usize, Error> {
    walk(v, bounds, |_| Ok(()))
}

/// [`weigh`], calling `visit` on every node as well.
pub(crate) fn walk(
    v: &Value,
    bounds: Bounds,
    mut visit: impl FnMut(&Value) -> Result<(), Error>,
) -> Result<usize, Error> {
    if !is_container(v) {
        charge(1)?;
        check_string(v, bounds)?;
        visit(v)?;
        return Ok(1);
    }
    let mut pending = vec![(v.clone(), 0usize)];
    let mut nodes = 0usize;
    while let Some((v, depth)) = pending.pop() {
        nodes += 1;
        charge(1)?;
        if nodes + pending.len() > bounds.max_nodes {
            return Err(too_many(bounds));
        }
        visit(&v)?;
        if !is_container(&v) {
            check_string(&v, bounds)?;
            continue;
        }
        if depth >= MAX_DEPTH {
            return Err(limit(format!(
                "value nested deeper than {MAX_DEPTH} levels"
            )));
        }
        if let Some(ns) = v.downcast_object_ref::<Namespace>() {
            for value in ns.values() {
                pending.push((value, depth + 1));
            }
            if nodes + pending.len() > bounds.max_nodes {
                return Err(too_many(bounds));
            }
            continue;
        }
        let is_map = v.kind() == ValueKind::Map;
        // An object that cannot be walked holds nothing a template could reach by walking.
        let Ok(items) = v.try_iter() else {
            continue;
        };
        for item in items {
            if is_map && let Ok(value) = v.get_item(&item) {
                pending.push((value, depth + 1));
            }
            pending.push((item, depth + 1));
            if nodes + pending.len() > bounds.max_nodes {
                return Err(too_many(bounds));
            }
        }
    }
    Ok(nodes)
}

fn too_many(bounds: Bounds) -> Error {
    limit(format!("value with more than {} items", bounds.max_nodes))
}

/// No string may be longer than the whole output may be (strings made by filters such as
/// `join` or `replace` are charged only a little fuel per byte).
fn check_string(v: &Value, bounds: Bounds) -> Result<(), Error> {
    match v.as_str() {
        Some(s) if s.len() > bounds.max_bytes => Err(string_too_long(bounds)),
        _ => Ok(()),
    }
}

/// Lists, tuples, maps, lazy sequences and namespaces, but not generators: walking one would
/// use it up.
fn is_container(v: &Value) -> bool {
    (matches!(
        v.kind(),
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map
    ) && v.downcast_object_ref::<Generator>().is_none())
        || v.downcast_object_ref::<Namespace>().is_some()
}

/// Returns `v` once it has passed [`weigh`] (also the check on every call and filter result).
fn checked(v: Value, bounds: Bounds) -> Result<Value, Error> {
    weigh(&v, bounds)?;
    Ok(v)
}

/// Sequences as MiniJinja's `+` and `*` treat them: lists, tuples and lazy iterables.
fn is_sequence(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable)
}

fn string_too_long(bounds: Bounds) -> Error {
    limit(format!("string longer than {} bytes", bounds.max_bytes))
}

/// `a + b`.
pub(crate) fn add(a: &Value, b: &Value, bounds: Bounds) -> Result<Value, Error> {
    let absent = |v: &Value| v.is_undefined() || v.is_none();
    if LENIENT_CONCAT.with(Cell::get)
        && ((a.as_str().is_some() && absent(b)) || (absent(a) && b.as_str().is_some()))
    {
        let s = a.as_str().or(b.as_str()).unwrap_or_default();
        return Ok(Value::from(s));
    }
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        if x.len().saturating_add(y.len()) > bounds.max_bytes {
            return Err(string_too_long(bounds));
        }
        // jinja2: `Markup + str` and `str + Markup` escape the plain side and stay Markup.
        return Ok(match (a.is_safe(), b.is_safe()) {
            (false, false) => Value::from([x, y].concat()),
            (true, true) => Value::from_safe_string([x, y].concat()),
            (true, false) => Value::from_safe_string([x, &pyfmt::markup_escape(y)].concat()),
            (false, true) => Value::from_safe_string([&pyfmt::markup_escape(x), y].concat()),
        });
    }
    if is_sequence(a) && is_sequence(b) {
        let nodes = weigh(a, bounds)?.saturating_add(weigh(b, bounds)?);
        if nodes > bounds.max_nodes {
            return Err(too_many(bounds));
        }
    }
    builtin(&BUILTIN_ADD, "a + b", a, b)
}

/// `a * b`.
pub(crate) fn mul(a: &Value, b: &Value, bounds: Bounds) -> Result<Value, Error> {
    for (seq, n) in [(a, b), (b, a)] {
        if n.kind() != ValueKind::Number {
            continue;
        }
        let Ok(n) = i64::try_from(n.clone()) else {
            continue;
        };
        let n = u64::try_from(n).unwrap_or(0);
        if let Some(s) = seq.as_str() {
            if (s.len() as u64).saturating_mul(n) > bounds.max_bytes as u64 {
                return Err(string_too_long(bounds));
            }
        } else if is_sequence(seq) {
            let nodes = weigh(seq, bounds)? as u64;
            if nodes.saturating_mul(n) > bounds.max_nodes as u64 {
                return Err(too_many(bounds));
            }
        }
    }
    builtin(&BUILTIN_MUL, "a * b", a, b)
}

/// `a ~ b`: both printed as Python's `str()` prints them (jinja2's `str_join`), a plain
/// string.
pub(crate) fn concat(a: &Value, b: &Value, bounds: Bounds) -> Result<Value, Error> {
    let mut s = String::new();
    for v in [a, b] {
        pyfmt::write_str(v, &mut s, bounds.max_bytes).map_err(|e| limit(e.to_string()))?;
    }
    Ok(Value::from(s))
}

/// `[a, b, …]`.
pub(crate) fn list(items: Rest<Value>, bounds: Bounds) -> Result<Value, Error> {
    checked(Value::from(items.0), bounds)
}

/// `(a, b, …)`.
pub(crate) fn tuple(items: Rest<Value>, bounds: Bounds) -> Result<Value, Error> {
    checked(Value::from(minijinja::value::Tuple::from(items.0)), bounds)
}

/// `{k: v, …}`, given as `k, v, …`.
pub(crate) fn map(items: Rest<Value>, bounds: Bounds) -> Result<Value, Error> {
    let pairs: Vec<(Value, Value)> = items
        .0
        .chunks(2)
        .map(|kv| match kv {
            [k, v] => (k.clone(), v.clone()),
            _ => (Value::UNDEFINED, Value::UNDEFINED),
        })
        .collect();
    checked(Value::from_pairs(pairs), bounds)
}

/// Before `fmt|format(…)` or `fmt.format(…)`: refuses a field width or precision larger than
/// the output cap (`%1000000000s`, `{:>1000000000}`), which would allocate that much before
/// anything could check the result. Widths taken from the arguments (`%*s`, `{:{w}}`) are
/// checked through the arguments: then no integer argument may exceed the cap.
pub(crate) fn check_format(fmt: &str, args: &[Value], bounds: Bounds) -> Result<(), Error> {
    let max = bounds.max_bytes as u64;
    let too_wide = || limit(format!("format width larger than {max}"));
    let bytes = fmt.as_bytes();
    let find = |from: usize, byte: u8| {
        bytes
            .get(from..)
            .and_then(|rest| rest.iter().position(|&b| b == byte))
            .map(|p| from + p)
    };
    let mut from_args = false;
    let mut i = 0;
    while i < bytes.len() {
        let (start, end) = match bytes[i] {
            // `%[flags][width][.precision]type`
            b'%' => {
                let mut j = i + 1;
                while bytes.get(j).is_some_and(|b| b"-+ #0".contains(b)) {
                    j += 1;
                }
                let mut end = j;
                while bytes
                    .get(end)
                    .is_some_and(|b| b.is_ascii_digit() || b".*".contains(b))
                {
                    end += 1;
                }
                (j, end)
            }
            // `{field:spec}`: the spec runs from the first `:` to the `}`.
            b'{' => {
                let close = find(i, b'}').unwrap_or(bytes.len());
                let field = bytes.get(i..close).unwrap_or_default();
                match field.iter().position(|&b| b == b':') {
                    Some(colon) => (i + colon + 1, close),
                    None => (close, close),
                }
            }
            _ => (i + 1, i + 1),
        };
        let spec = bytes.get(start..end).unwrap_or_default();
        from_args |= spec.iter().any(|b| b"*{".contains(b));
        let mut n: u64 = 0;
        for &b in spec.iter().chain(std::iter::once(&b' ')) {
            if b.is_ascii_digit() {
                n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
                if n > max {
                    return Err(too_wide());
                }
            } else {
                n = 0;
            }
        }
        i = end.max(i + 1);
    }
    if from_args {
        for a in args {
            if let Ok(n) = i64::try_from(a.clone())
                && n.unsigned_abs() > max
            {
                return Err(too_wide());
            }
        }
    }
    Ok(())
}

/// Before `fmt.format(…)`: refuses a field like `{0[é]}`, an index holding non-ASCII text,
/// which makes MiniJinja 3.1.0's format parser slice inside a character and panic (found by
/// the `template` fuzz target). Python would look the text up as a key; templates do not.
pub(crate) fn check_format_fields(fmt: &str) -> Result<(), Error> {
    let bytes = fmt.as_bytes();
    let mut i = 0;
    while let Some(open) = bytes[i..].iter().position(|&b| b == b'{').map(|p| i + p) {
        let field = &bytes[open + 1..];
        let name_len = field
            .iter()
            .position(|&b| b"}:!".contains(&b))
            .unwrap_or(field.len());
        let name = &field[..name_len];
        if name.contains(&b'[') && !name.is_ascii() {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "format field index must be ASCII",
            ));
        }
        i = open + 1 + name_len;
    }
    Ok(())
}

static BUILTIN_ADD: OnceLock<Option<Expression<'static, 'static>>> = OnceLock::new();
static BUILTIN_MUL: OnceLock<Option<Expression<'static, 'static>>> = OnceLock::new();

/// MiniJinja's own operator, for everything but strings, applied to values already checked.
fn builtin(
    cell: &OnceLock<Option<Expression<'static, 'static>>>,
    source: &'static str,
    a: &Value,
    b: &Value,
) -> Result<Value, Error> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    let compiled = cell.get_or_init(|| {
        ENV.get_or_init(Environment::new)
            .compile_expression(source)
            .ok()
    });
    match compiled {
        Some(expr) => expr.eval(context! { a => a, b => b }),
        None => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot compile `{source}`"),
        )),
    }
}

/// Registers the functions in the template environment.
pub(crate) fn register(env: &mut Environment<'static>, limits: &Limits) {
    let b = Bounds::new(limits);
    env.add_function(ADD, move |x: &Value, y: &Value| add(x, y, b));
    env.add_function(MUL, move |x: &Value, y: &Value| mul(x, y, b));
    env.add_function(CONCAT, move |x: &Value, y: &Value| concat(x, y, b));
    env.add_function(LIST, move |items: Rest<Value>| list(items, b));
    env.add_function(TUPLE, move |items: Rest<Value>| tuple(items, b));
    env.add_function(MAP, move |items: Rest<Value>| map(items, b));
    env.add_function(VALUE, move |v: Value| checked(v, b));
    env.add_function(SETATTR, move |ns: &Value, name: &str, v: Value| {
        namespace::set_attr(ns, name, v, b)
    });
    env.add_function("namespace", namespace::new);
    // MiniJinja's `debug()` prints the whole render state with `{:#?}`, which follows cycles
    // forever; jinja2 has no such global.
    env.remove_global("debug");
}
