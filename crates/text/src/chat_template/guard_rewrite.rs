//! Rewrites a template so that every value it builds passes through [`super::guard`].
//!
//! MiniJinja has no hook for its operators or literals, and some of them let a template build
//! values far larger than the work it is charged for (see `guard`). So before compiling, we
//! parse the source with MiniJinja's own parser and edit only the text around expressions:
//!
//! | template                  | becomes                                                  |
//! |---------------------------|----------------------------------------------------------|
//! | `a + b`, `a * b`, `a ~ b` | `__hearth_add(a, b)`, `…_mul`, `…_concat`                |
//! | `[a, b]`, `(a, b)`, `{k: v}` | `__hearth_list(a, b)`, `…_tuple`, `__hearth_map(k, v)` |
//! | `f(x)`, `x|f`             | `__hearth_value(f(x))`, `__hearth_value(x|f)`            |
//! | `{% set ns.x = v %}`      | `{% set __hearth_set_1 = v %}{% do __hearth_setattr(ns, "x", __hearth_set_1) %}` |
//!
//! Each operand is still evaluated once and in the same order, and no newline is added or
//! removed, so error lines stay true. The `do` tag takes over the original tag's closing
//! whitespace marker, so `trim_blocks` and `-%}` strip exactly what they stripped before.
//! Attribute assignments go through our own `namespace` objects, which refuse to hold
//! themselves (see `namespace`).

use minijinja::machinery::ast::{self, BinOpKind, CallArg, Expr, Stmt};
use minijinja::machinery::{Span, parse};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Error, ErrorKind};

use super::guard;

/// The source with every operator, literal and namespace assignment routed through the
/// functions of [`super::guard`].
pub(crate) fn rewrite(source: &str, name: &str, syntax: SyntaxConfig) -> Result<String, Error> {
    let tree = parse(source, name, syntax)?;
    let mut edits = Edits {
        src: source,
        list: Vec::new(),
        temps: 0,
    };
    edits.stmt(&tree)?;
    apply(source, edits.list)
}

/// One change to the source: `text` replaces `delete` bytes at `offset`.
struct Edit {
    offset: usize,
    /// Orders edits at one offset: inserted closings (inner node first), then replaced
    /// operators and closing brackets, then inserted openings (outer node first), then replaced
    /// opening brackets.
    rank: (u8, i64),
    delete: usize,
    text: String,
}

const CLOSE: u8 = 0;
const REPLACE: u8 = 1;
const OPEN: u8 = 2;
const REPLACE_OPENING: u8 = 3;

fn apply(source: &str, mut edits: Vec<Edit>) -> Result<String, Error> {
    edits.sort_by_key(|e| (e.offset, e.rank));
    let mut out = String::with_capacity(source.len() + edits.len() * 12);
    let mut at = 0;
    for e in edits {
        let before = source
            .get(at..e.offset)
            .ok_or_else(|| internal(format!("overlapping edits at byte {}", e.offset)))?;
        out.push_str(before);
        out.push_str(&e.text);
        at = e.offset + e.delete;
    }
    out.push_str(source.get(at..).unwrap_or_default());
    Ok(out)
}

/// Where an expression's text starts and ends. A node's own span does not always cover its
/// operands (a filter's starts at the `|`), so extents are gathered bottom-up.
type Extent = (usize, usize);

const NOTHING: Extent = (usize::MAX, 0);

fn offsets(span: Span) -> Extent {
    (span.start_offset as usize, span.end_offset as usize)
}

fn join(a: Extent, b: Extent) -> Extent {
    (a.0.min(b.0), a.1.max(b.1))
}

/// An error for source whose spans are not what the rewrite expects: the template is refused
/// rather than left unguarded.
fn internal(msg: String) -> Error {
    Error::new(ErrorKind::SyntaxError, msg)
}

struct Edits<'s> {
    src: &'s str,
    list: Vec<Edit>,
    /// Variables made for assignments so far.
    temps: usize,
}

impl Edits<'_> {
    fn push(&mut self, offset: usize, rank: (u8, i64), delete: usize, text: impl Into<String>) {
        self.list.push(Edit {
            offset,
            rank,
            delete,
            text: text.into(),
        });
    }

    /// Wraps the text of `whole` in a call of `function`: its opening before, `)` after.
    fn wrap(&mut self, whole: Extent, function: &str) {
        let (s, e) = whole;
        self.push(s, (OPEN, -(e as i64)), 0, format!("{function}("));
        self.push(e, (CLOSE, -(s as i64)), 0, ")");
    }

    /// Replaces the one `sep` character between two neighbouring expressions with `,`.
    /// Between them lie only `sep`, blanks and parentheses closing the left one or opening the
    /// right one.
    fn separator(&mut self, left_end: usize, right_start: usize, sep: char) -> Result<(), Error> {
        let gap = self
            .src
            .get(left_end..right_start)
            .ok_or_else(|| internal(format!("cannot find the `{sep}` at byte {left_end}")))?;
        let at = gap.find(sep).filter(|&i| {
            gap.char_indices()
                .all(|(j, c)| j == i || c.is_whitespace() || c == '(' || c == ')')
        });
        let Some(at) = at else {
            return Err(internal(format!(
                "unexpected text {gap:?} around the `{sep}` at byte {left_end}"
            )));
        };
        self.push(left_end + at, (REPLACE, 0), 1, ",");
        Ok(())
    }

    /// The extent of a filter's or test's operand with the parentheses that group it: for
    /// `(x)|f` the operand's own extent is `x`, and the filter's span starts at `f`. Every `)`
    /// right after the operand closes a `(` right before it.
    fn grouped(&self, (s, e): Extent) -> Extent {
        let rest = self.src.get(e..).unwrap_or_default();
        let run = rest
            .find(|c: char| c != ')' && !c.is_whitespace())
            .unwrap_or(rest.len());
        let mut closing = rest[..run].matches(')').count();
        let end = e + rest[..run].rfind(')').map_or(0, |i| i + 1);
        let bytes = self.src.as_bytes();
        let (mut start, mut i) = (s, s);
        while closing > 0 && i > 0 {
            match bytes.get(i - 1) {
                Some(b'(') => {
                    closing -= 1;
                    start = i - 1;
                }
                Some(b' ' | b'\t' | b'\n' | b'\r') => {}
                _ => break,
            }
            i -= 1;
        }
        if closing > 0 {
            return (s, e);
        }
        (start, end)
    }

    /// `extent` widened over the parentheses around its first and last items (an extent
    /// leaves out an item's own parentheses).
    fn with_parentheses(&self, (mut s, mut e): Extent) -> Extent {
        let bytes = self.src.as_bytes();
        let mut i = s;
        while i > 0 && matches!(bytes.get(i - 1), Some(b'(' | b' ' | b'\t' | b'\n' | b'\r')) {
            i -= 1;
            if bytes.get(i) == Some(&b'(') {
                s = i;
            }
        }
        let mut j = e;
        while matches!(bytes.get(j), Some(b')' | b' ' | b'\t' | b'\n' | b'\r')) {
            j += 1;
            if bytes.get(j - 1) == Some(&b')') {
                e = j;
            }
        }
        (s, e)
    }

    /// Turns the bracketed literal spanning `whole` into a call of `function`.
    fn bracketed(&mut self, whole: Extent, brackets: (char, char), function: &str) -> bool {
        let (s, e) = whole;
        let text = self.src.get(s..e).unwrap_or_default();
        if !(text.starts_with(brackets.0) && text.ends_with(brackets.1) && e - s >= 2) {
            return false;
        }
        self.push(s, (REPLACE_OPENING, 0), 1, format!("{function}("));
        self.push(e - 1, (REPLACE, 0), 1, ")");
        true
    }

    fn stmts(&mut self, stmts: &[Stmt<'_>]) -> Result<(), Error> {
        stmts.iter().try_for_each(|s| self.stmt(s))
    }

    /// Assignment targets (`for x in`, `set a, b =`, `with`) are names, not values, and are
    /// left alone.
    fn stmt(&mut self, stmt: &Stmt<'_>) -> Result<(), Error> {
        match stmt {
            Stmt::Template(t) => self.stmts(&t.children),
            Stmt::EmitExpr(e) => self.expr(&e.expr).map(drop),
            Stmt::EmitRaw(_) | Stmt::Continue(_) | Stmt::Break(_) => Ok(()),
            Stmt::ForLoop(f) => {
                self.expr(&f.iter)?;
                if let Some(filter) = &f.filter_expr {
                    self.expr(filter)?;
                }
                self.stmts(&f.body)?;
                self.stmts(&f.else_body)
            }
            Stmt::IfCond(i) => {
                self.expr(&i.expr)?;
                self.stmts(&i.true_body)?;
                self.stmts(&i.false_body)
            }
            Stmt::WithBlock(w) => {
                for (_, value) in &w.assignments {
                    self.expr(value)?;
                }
                self.stmts(&w.body)
            }
            Stmt::Set(set) => {
                let value = self.expr(&set.expr)?;
                let mut assigned = Vec::new();
                self.attribute_targets(&set.target, &mut assigned)?;
                if !assigned.is_empty() {
                    self.assign_after_tag(value.1.max(offsets(set.span()).1), &assigned)?;
                }
                Ok(())
            }
            Stmt::SetBlock(set) => {
                if let Some(filter) = &set.filter {
                    self.filter_chain(filter)?;
                }
                self.stmts(&set.body)?;
                let mut assigned = Vec::new();
                self.attribute_targets(&set.target, &mut assigned)?;
                if !assigned.is_empty() {
                    // After `{% endset %}`, where the statement's span ends.
                    self.assign_after_tag(offsets(set.span()).1, &assigned)?;
                }
                Ok(())
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled)?;
                self.stmts(&a.body)
            }
            Stmt::FilterBlock(f) => {
                self.filter_chain(&f.filter)?;
                self.stmts(&f.body)
            }
            Stmt::Macro(m) => self.macro_decl(m),
            Stmt::CallBlock(c) => {
                self.call(&c.call, c.call.span())?;
                self.macro_decl(&c.macro_decl)
            }
            Stmt::Do(d) => self.call(&d.call, d.call.span()).map(drop),
        }
    }

    /// Replaces each `ns.x` in an assignment target with a fresh variable, and returns
    /// `(ns, x, variable)` for each.
    fn attribute_targets(
        &mut self,
        target: &Expr<'_>,
        out: &mut Vec<(String, String, String)>,
    ) -> Result<(), Error> {
        match target {
            Expr::GetAttr(g) => {
                let Expr::Var(ns) = &g.expr else {
                    return Err(internal(format!(
                        "unexpected assignment target at byte {}",
                        offsets(g.span()).0
                    )));
                };
                let (s, e) = join(offsets(ns.span()), offsets(g.span()));
                let text: String = self
                    .src
                    .get(s..e)
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                if text != format!("{}.{}", ns.id, g.name) {
                    return Err(internal(format!("unexpected assignment target {text:?}")));
                }
                self.temps += 1;
                let temp = format!("__hearth_set_{}", self.temps);
                self.push(s, (REPLACE, 0), e - s, temp.clone());
                out.push((ns.id.to_owned(), g.name.to_owned(), temp));
                Ok(())
            }
            // `a, ns.b = …` parses as a list of targets.
            Expr::List(l) => l
                .items
                .iter()
                .try_for_each(|e| self.attribute_targets(e, out)),
            Expr::Tuple(t) => t
                .items
                .iter()
                .try_for_each(|e| self.attribute_targets(e, out)),
            _ => Ok(()),
        }
    }

    /// After the tag that ends at or after `pos` (`{% set … %}` or `{% endset %}`): one
    /// `{% do __hearth_setattr(ns, "x", variable) %}` per assignment, the last taking over the
    /// tag's closing marker (`%}`, `-%}` or `+%}`) so the whitespace after it is treated as
    /// before.
    fn assign_after_tag(
        &mut self,
        pos: usize,
        assigned: &[(String, String, String)],
    ) -> Result<(), Error> {
        let rest = self.src.get(pos..).unwrap_or_default();
        let skipped = rest.len()
            - rest
                .trim_start_matches(|c: char| c == ')' || c.is_whitespace())
                .len();
        let tail = &rest[skipped..];
        let marker = match tail.as_bytes() {
            [b'%', b'}', ..] => "",
            [b'-', b'%', b'}', ..] => "-",
            [b'+', b'%', b'}', ..] => "+",
            _ => {
                return Err(internal(format!(
                    "no end of the `set` tag after byte {pos}"
                )));
            }
        };
        let tag_end = pos + skipped + marker.len() + 2;
        let mut tags = String::new();
        for (i, (ns, name, temp)) in assigned.iter().enumerate() {
            let last = if i + 1 == assigned.len() { marker } else { "" };
            tags.push_str(&format!(
                "{{% do {}({ns}, \"{name}\", {temp}) {last}%}}",
                guard::SETATTR
            ));
        }
        self.push(tag_end, (OPEN, 0), 0, tags);
        Ok(())
    }

    /// The filters of `{% filter f|g %}` and `{% set x | f %}`: not values, so only their
    /// arguments are visited.
    fn filter_chain(&mut self, e: &Expr<'_>) -> Result<(), Error> {
        match e {
            Expr::Filter(f) => {
                self.args(&f.args)?;
                f.expr
                    .as_ref()
                    .map_or(Ok(()), |inner| self.filter_chain(inner))
            }
            other => self.expr(other).map(drop),
        }
    }

    fn macro_decl(&mut self, m: &ast::Macro<'_>) -> Result<(), Error> {
        for e in &m.defaults {
            self.expr(e)?;
        }
        self.stmts(&m.body)
    }

    fn call(&mut self, c: &ast::Call<'_>, span: Span) -> Result<Extent, Error> {
        let callee = self.expr(&c.expr)?;
        let args = self.args(&c.args)?;
        Ok(join(join(offsets(span), callee), args))
    }

    fn args(&mut self, args: &[CallArg<'_>]) -> Result<Extent, Error> {
        let mut extent = NOTHING;
        for a in args {
            let (CallArg::Pos(e)
            | CallArg::Kwarg(_, e)
            | CallArg::PosSplat(e)
            | CallArg::KwargSplat(e)) = a;
            extent = join(extent, self.expr(e)?);
        }
        Ok(extent)
    }

    fn all<'e>(
        &mut self,
        exprs: impl IntoIterator<Item = &'e Expr<'e>>,
        own: Span,
    ) -> Result<Extent, Error> {
        let mut extent = offsets(own);
        for e in exprs {
            extent = join(extent, self.expr(e)?);
        }
        Ok(extent)
    }

    /// Records the edits inside `expr` and returns its extent.
    fn expr(&mut self, expr: &Expr<'_>) -> Result<Extent, Error> {
        match expr {
            Expr::Var(n) => Ok(offsets(n.span())),
            Expr::Const(n) => Ok(offsets(n.span())),
            Expr::Slice(s) => {
                let parts = [&s.start, &s.stop, &s.step].into_iter().flatten();
                self.all(std::iter::once(&s.expr).chain(parts), s.span())
            }
            Expr::UnaryOp(u) => self.all([&u.expr], u.span()),
            Expr::BinOp(b) => {
                let left = self.expr(&b.left)?;
                let right = self.expr(&b.right)?;
                let whole = join(join(offsets(b.span()), left), right);
                let guarded = match b.op {
                    BinOpKind::Add => Some(('+', guard::ADD)),
                    BinOpKind::Mul => Some(('*', guard::MUL)),
                    BinOpKind::Concat => Some(('~', guard::CONCAT)),
                    _ => None,
                };
                if let Some((op, function)) = guarded {
                    self.separator(left.1, right.0, op)?;
                    self.wrap(whole, function);
                }
                Ok(whole)
            }
            Expr::Compare(c) => {
                let ops = c.ops.iter().map(|op| &op.expr);
                self.all(std::iter::once(&c.expr).chain(ops), c.span())
            }
            Expr::IfExpr(i) => {
                let parts = [&i.test_expr, &i.true_expr]
                    .into_iter()
                    .chain(&i.false_expr);
                self.all(parts, i.span())
            }
            Expr::Filter(f) => {
                let own = offsets(f.span());
                let operand = match &f.expr {
                    Some(e) => {
                        let inner = self.expr(e)?;
                        self.grouped(inner)
                    }
                    None => own,
                };
                let whole = join(join(operand, own), self.args(&f.args)?);
                self.wrap(whole, guard::VALUE);
                Ok(whole)
            }
            Expr::Test(t) => {
                let own = offsets(t.span());
                let inner = self.expr(&t.expr)?;
                let operand = self.grouped(inner);
                Ok(join(join(operand, own), self.args(&t.args)?))
            }
            Expr::GetAttr(g) => self.all([&g.expr], g.span()),
            Expr::GetItem(g) => self.all([&g.expr, &g.subscript_expr], g.span()),
            Expr::Call(c) => {
                let whole = self.call(c, c.span())?;
                self.wrap(whole, guard::VALUE);
                Ok(whole)
            }
            Expr::List(l) => {
                let whole = self.all(&l.items, l.span())?;
                if !self.bracketed(whole, ('[', ']'), guard::LIST) {
                    return Err(internal(format!("unexpected list at byte {}", whole.0)));
                }
                Ok(whole)
            }
            Expr::Tuple(t) => {
                let own = offsets(t.span());
                let mut items = NOTHING;
                for e in &t.items {
                    items = join(items, self.expr(e)?);
                }
                let whole = join(own, items);
                // `(a, b)` starts at its parenthesis; a bare `a, b` (the value of a `set`)
                // has a span that starts after its first item.
                if own.0 <= items.0 && self.bracketed(whole, ('(', ')'), guard::TUPLE) {
                    return Ok(whole);
                }
                let bare = self.with_parentheses(items);
                self.wrap(bare, guard::TUPLE);
                Ok(join(whole, bare))
            }
            Expr::Map(m) => {
                let mut whole = offsets(m.span());
                for (k, v) in m.keys.iter().zip(&m.values) {
                    let key = self.expr(k)?;
                    let value = self.expr(v)?;
                    self.separator(key.1, value.0, ':')?;
                    whole = join(whole, join(key, value));
                }
                if !self.bracketed(whole, ('{', '}'), guard::MAP) {
                    return Err(internal(format!("unexpected map at byte {}", whole.0)));
                }
                Ok(whole)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(src: &str) -> String {
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .unwrap();
        rewrite(src, "t", syntax).unwrap()
    }

    /// Parentheses stay with what they group, whichever node's span leaves them out.
    #[test]
    fn calls_wrap_exactly_the_expression() {
        let cases = [
            ("{{ (x)|f }}", "{{ __hearth_value((x)|f) }}"),
            ("{{ (x).y|f }}", "{{ __hearth_value((x).y|f) }}"),
            ("{{ (x)(1) }}", "{{ __hearth_value((x)(1)) }}"),
            ("{{ ((x))[0] + 1 }}", "{{ __hearth_add(((x))[0] , 1) }}"),
            ("{{ (x) is defined }}", "{{ (x) is defined }}"),
            ("{{ -(x)|f }}", "{{ __hearth_value(-(x)|f) }}"),
            ("{{ not (x)|f }}", "{{ not __hearth_value((x)|f) }}"),
            (
                "{{ (a if b else c)|f }}",
                "{{ __hearth_value((a if b else c)|f) }}",
            ),
            (
                "{{ a if b else (c)|f }}",
                "{{ a if b else __hearth_value((c)|f) }}",
            ),
            (
                "{% set x = (a), (b)|f %}",
                "{% set x = __hearth_tuple((a), __hearth_value((b)|f)) %}",
            ),
            ("{{ ( (x) )|f }}", "{{ __hearth_value(( (x) )|f) }}"),
            (
                "{{ f((x)|g) }}",
                "{{ __hearth_value(f(__hearth_value((x)|g))) }}",
            ),
            (
                "{{ ((x)|g) + 1 }}",
                "{{ __hearth_add((__hearth_value((x)|g)) , 1) }}",
            ),
            (
                "{{ (x) if ((y)|f) else z }}",
                "{{ (x) if (__hearth_value((y)|f)) else z }}",
            ),
            (
                "{{ ('(' ~ x)|f }}",
                "{{ __hearth_value((__hearth_concat('(' , x))|f) }}",
            ),
            (
                "{{ (a)|f|g }}",
                "{{ __hearth_value(__hearth_value((a)|f)|g) }}",
            ),
            ("{{ ((a) == b)|f }}", "{{ __hearth_value(((a) == b)|f) }}"),
            (
                "{{ ((a) ~ b)|f }}",
                "{{ __hearth_value((__hearth_concat((a) , b))|f) }}",
            ),
            (
                "{{ ((a) if b else c)|f }}",
                "{{ __hearth_value(((a) if b else c)|f) }}",
            ),
            ("{{ ((a)[1:])|f }}", "{{ __hearth_value(((a)[1:])|f) }}"),
            ("{{ ((a) is x)|f }}", "{{ __hearth_value(((a) is x)|f) }}"),
            ("{{ ((a) and b)|f }}", "{{ __hearth_value(((a) and b)|f) }}"),
            ("{{ ((a) in b)|f }}", "{{ __hearth_value(((a) in b)|f) }}"),
        ];
        for (src, want) in cases {
            assert_eq!(rw(src), want, "{src}");
        }
    }
}
