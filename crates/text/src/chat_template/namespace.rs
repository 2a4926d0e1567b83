//! jinja2's `namespace()`: the one mutable value of a template (`{% set ns.x = … %}`).
//!
//! MiniJinja has its own, but it gives no way to tell whether a value holds a given
//! namespace, and `{% set ns.me = ns %}` then makes a cycle: a value that never drops (a leak
//! per render) and that MiniJinja's own walks (`~`, `==`, `debug()`) follow until the stack
//! overflows or a lock deadlocks. So templates get this one instead: `guard_rewrite` turns
//! every attribute assignment into `__hearth_setattr(ns, "x", value)`, which refuses a value
//! that holds `ns` itself, so no cycle can form.

use std::fmt;
use std::sync::{Arc, Mutex};

use minijinja::value::{Object, ObjectRepr, Value, ValueOrKwargs};
use minijinja::{Error, ErrorKind};

use super::guard::{self, Bounds};
use super::pyfmt;

/// Attributes in the order they were first set, as jinja2's (a dict) keeps them; a template
/// sets a handful, so a list is the right map.
#[derive(Debug, Default)]
pub(crate) struct Namespace(Mutex<Vec<(Arc<str>, Value)>>);

impl Namespace {
    /// The attributes, for the guard to walk.
    pub(crate) fn values(&self) -> Vec<Value> {
        self.0
            .lock()
            .map(|data| data.iter().map(|(_, v)| v.clone()).collect())
            .unwrap_or_default()
    }

    fn insert(data: &mut Vec<(Arc<str>, Value)>, name: &str, value: Value) {
        match data.iter_mut().find(|(k, _)| &**k == name) {
            Some(slot) => slot.1 = value,
            None => data.push((name.into(), value)),
        }
    }
}

/// Like jinja2's: attributes by `ns.x` or `ns['x']`, always true, not a mapping, not iterable,
/// printed as `<Namespace {'x': 1}>`.
impl Object for Namespace {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let data = self.0.lock().ok()?;
        let name = key.as_str()?;
        data.iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v.clone())
    }

    fn is_true(self: &Arc<Self>) -> bool {
        true
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs = self.0.lock().map(|d| d.clone()).unwrap_or_default();
        let dict = Value::from_pairs(pairs.into_iter().map(|(k, v)| (Value::from(&*k), v)));
        let mut text = String::new();
        // Bounded: `guard` refuses values deeper than the printer goes.
        let _ = pyfmt::write_str(&dict, &mut text, usize::MAX);
        write!(f, "<Namespace {text}>")
    }
}

/// `namespace()`, `namespace(a=1)` or `namespace({'a': 1})`.
pub(crate) fn new(defaults: Option<ValueOrKwargs>) -> Result<Value, Error> {
    let ns = Namespace::default();
    if let Some(defaults) = defaults {
        let defaults = defaults.into_value();
        if defaults.kind() != minijinja::value::ValueKind::Map {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!(
                    "expected object or keyword arguments, got {}",
                    defaults.kind()
                ),
            ));
        }
        let mut data =
            ns.0.lock()
                .map_err(|_| Error::new(ErrorKind::InvalidOperation, "namespace poisoned"))?;
        for key in defaults.try_iter()? {
            if let Some(name) = key.as_str() {
                Namespace::insert(&mut data, name, defaults.get_item(&key)?);
            }
        }
    }
    Ok(Value::from_object(ns))
}

/// `{% set ns.name = value %}`: refused unless `ns` is a namespace and `value` passes the
/// guard's bounds without holding `ns` itself.
pub(crate) fn set_attr(ns: &Value, name: &str, value: Value, bounds: Bounds) -> Result<(), Error> {
    let Some(target) = ns.downcast_object_ref::<Namespace>() else {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "can only assign to namespaces",
        ));
    };
    guard::walk(&value, bounds, |node| {
        match node.downcast_object_ref::<Namespace>() {
            Some(inner) if std::ptr::eq(inner, target) => {
                Err(guard::limit("a namespace cannot hold itself".into()))
            }
            _ => Ok(()),
        }
    })?;
    let mut data = target
        .0
        .lock()
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "namespace poisoned"))?;
    Namespace::insert(&mut data, name, value);
    Ok(())
}
