//! A small backtracking regex engine with the semantics llama.cpp gets from `std::regex`
//! (ECMAScript: leftmost-first alternation, greedy backtracking, lookahead), for the
//! pre-tokenizer patterns that llama.cpp has no hand-written splitter for.
//!
//! llama.cpp runs those patterns over a transformed text, and so does this engine: a pattern
//! that uses a Unicode category (`\p{L}`, …) runs in *collapsed* mode, where every non-ASCII
//! code point becomes one stand-in unit (0x0B for white space, 0xD1..0xD5 for number, letter,
//! punctuation, mark, symbol, 0xD0 for anything else) and `\p{X}` matches that unit or the
//! ASCII characters of class X (from llama.cpp's table, which, for one, leaves `~` out of
//! `\p{S}`). A pattern without categories runs in *wide* mode over code points, with non-ASCII
//! white space turned into 0x0B so that `\s` sees it. [`units`] does the transformation.
//!
//! Only the syntax the pre-tokenizer table needs is accepted: literals and escapes, classes
//! with ranges, `\s \S \d \D \w \W \p{..}`, groups `( )` `(?: )`, lookahead `(?= )` `(?! )`,
//! `^ $ \b \B .`, and the quantifiers `? * + {n} {n,} {n,m}` (lazy with a trailing `?`).
//!
//! Matching recurses per sub-expression, never per repeated character of a one-unit item
//! (`\p{L}+` loops), and a group repeated thousands of times gives up at a fixed depth
//! ([`MAX_DEPTH`]) rather than overflow the stack on hostile text: the match attempt then fails
//! as if the pattern did not match there.

use std::cell::Cell;

use super::unicode::{flag, flags};

/// Nesting of group repetitions and sub-matches after which a match attempt is abandoned.
pub(crate) const MAX_DEPTH: u32 = 400;

/// The stand-in units of collapsed mode.
const CAT_OTHER: u32 = 0xD0;
const CAT_NUMBER: u32 = 0xD1;
const CAT_LETTER: u32 = 0xD2;
const CAT_PUNCT: u32 = 0xD3;
const CAT_MARK: u32 = 0xD4;
const CAT_SYMBOL: u32 = 0xD5;
const VT: u32 = 0x0B;

/// Converts code points to the units a pattern of the given mode runs over.
pub(crate) fn units(cps: &[u32], collapsed: bool, out: &mut Vec<u32>) {
    out.clear();
    out.extend(cps.iter().map(|&cp| {
        if cp < 128 {
            return cp;
        }
        let f = flags(cp);
        if f.is_whitespace() {
            return VT;
        }
        if !collapsed {
            return cp;
        }
        match f.category() {
            flag::NUMBER => CAT_NUMBER,
            flag::LETTER => CAT_LETTER,
            flag::PUNCTUATION => CAT_PUNCT,
            flag::MARK => CAT_MARK,
            flag::SYMBOL => CAT_SYMBOL,
            _ => CAT_OTHER,
        }
    }));
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    root: Alt,
    collapsed: bool,
    /// When the whole pattern starts with `X+` (greedy, X one unit): X. A failed attempt at a
    /// run of X means every later start inside the run fails too (they try a subset of the
    /// same continuation positions), which keeps `\s+$` linear on long runs of spaces.
    lead_run: Option<Vec<Set>>,
}

#[derive(Debug, Clone)]
struct Alt(Vec<Vec<Node>>);

#[derive(Debug, Clone)]
enum Node {
    /// One unit that every set accepts.
    Unit(Vec<Set>),
    Group(Alt),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: u32,
        greedy: bool,
    },
    Look {
        negate: bool,
        alt: Alt,
    },
    Start,
    End,
    Boundary {
        negate: bool,
    },
}

#[derive(Debug, Clone)]
struct Set {
    negated: bool,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Copy)]
enum Item {
    Range(u32, u32),
    Space,
    NotSpace,
    Digit,
    NotDigit,
    Word,
    NotWord,
    /// Anything but `\n` and `\r` (`.`).
    NotNewline,
}

fn is_space(u: u32) -> bool {
    matches!(u, 0x09..=0x0D | 0x20)
}

fn is_word(u: u32) -> bool {
    matches!(u, 0x30..=0x39 | 0x41..=0x5A | 0x61..=0x7A | 0x5F)
}

impl Item {
    fn accepts(self, u: u32) -> bool {
        match self {
            Item::Range(a, b) => a <= u && u <= b,
            Item::Space => is_space(u),
            Item::NotSpace => !is_space(u),
            Item::Digit => (0x30..=0x39).contains(&u),
            Item::NotDigit => !(0x30..=0x39).contains(&u),
            Item::Word => is_word(u),
            Item::NotWord => !is_word(u),
            Item::NotNewline => u != 0x0A && u != 0x0D,
        }
    }
}

impl Set {
    fn accepts(&self, u: u32) -> bool {
        self.items.iter().any(|i| i.accepts(u)) != self.negated
    }

    fn of(item: Item) -> Set {
        Set {
            negated: false,
            items: vec![item],
        }
    }
}

fn unit_accepts(sets: &[Set], u: u32) -> bool {
    sets.iter().all(|s| s.accepts(u))
}

/// Items for `\p{X}` in collapsed mode: the stand-in unit plus X's ASCII members as
/// llama.cpp lists them.
fn category_items(name: &str) -> Option<Vec<Item>> {
    let r = |a: u8, b: u8| Item::Range(a.into(), b.into());
    let c = |u: u32| Item::Range(u, u);
    Some(match name {
        "N" => vec![c(CAT_NUMBER), r(b'0', b'9')],
        "L" | "Lu" | "Ll" | "Lt" | "Lm" | "Lo" => vec![c(CAT_LETTER), r(b'A', b'Z'), r(b'a', b'z')],
        "P" => vec![
            c(CAT_PUNCT),
            r(0x21, 0x23),
            r(0x25, 0x2A),
            r(0x2C, 0x2F),
            r(0x3A, 0x3B),
            r(0x3F, 0x40),
            r(0x5B, 0x5D),
            r(0x5F, 0x5F),
            r(0x7B, 0x7B),
            r(0x7D, 0x7D),
        ],
        "M" => vec![c(CAT_MARK)],
        "S" => vec![
            c(CAT_SYMBOL),
            r(0x24, 0x24),
            r(0x2B, 0x2B),
            r(0x3C, 0x3E),
            r(0x5E, 0x5E),
            r(0x60, 0x60),
            r(0x7C, 0x7C),
        ],
        _ => return None,
    })
}

/// Whether llama.cpp runs `pattern` collapsed: it names one of the categories it maps.
fn uses_categories(pattern: &str) -> bool {
    ["N", "L", "P", "M", "S", "Lu", "Ll", "Lt", "Lm", "Lo"]
        .iter()
        .any(|c| pattern.contains(&format!("\\p{{{c}}}")))
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    collapsed: bool,
    pattern: &'a str,
}

type ParseResult<T> = Result<T, String>;

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> ParseResult<char> {
        let c = self
            .peek()
            .ok_or_else(|| format!("pattern {:?} ends early", self.pattern))?;
        self.pos += 1;
        Ok(c)
    }

    fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self
            .chars
            .get(self.pos..self.pos + n)
            .is_some_and(|w| w.iter().copied().eq(s.chars()))
        {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn err<T>(&self, what: &str) -> ParseResult<T> {
        Err(format!(
            "{what} at {} in pattern {:?}",
            self.pos, self.pattern
        ))
    }

    fn alt(&mut self) -> ParseResult<Alt> {
        let mut alts = vec![self.seq()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alts.push(self.seq()?);
        }
        Ok(Alt(alts))
    }

    fn seq(&mut self) -> ParseResult<Vec<Node>> {
        let mut seq = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            seq.push(self.quantified(atom)?);
        }
        Ok(seq)
    }

    fn quantified(&mut self, atom: Node) -> ParseResult<Node> {
        let (min, max) = match self.peek() {
            Some('?') => (0, 1),
            Some('*') => (0, u32::MAX),
            Some('+') => (1, u32::MAX),
            Some('{') => {
                self.pos += 1;
                let min = self.number()?;
                let max = if self.eat(",") {
                    if self.peek() == Some('}') {
                        u32::MAX
                    } else {
                        self.number()?
                    }
                } else {
                    min
                };
                if self.peek() != Some('}') || max < min {
                    return self.err("bad {n,m} quantifier");
                }
                (min, max)
            }
            _ => return Ok(atom),
        };
        self.pos += 1;
        let greedy = !self.eat("?");
        if matches!(
            atom,
            Node::Start | Node::End | Node::Boundary { .. } | Node::Look { .. }
        ) {
            return self.err("quantified assertion");
        }
        Ok(Node::Repeat {
            node: Box::new(atom),
            min,
            max,
            greedy,
        })
    }

    fn number(&mut self) -> ParseResult<u32> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let s: String = self.chars[start..self.pos].iter().collect();
        s.parse().or_else(|_| self.err("bad number"))
    }

    fn atom(&mut self) -> ParseResult<Node> {
        let c = self.next()?;
        Ok(match c {
            '(' => {
                let node = if self.eat("?:") {
                    Node::Group(self.alt()?)
                } else if self.eat("?=") {
                    Node::Look {
                        negate: false,
                        alt: self.alt()?,
                    }
                } else if self.eat("?!") {
                    Node::Look {
                        negate: true,
                        alt: self.alt()?,
                    }
                } else if self.peek() == Some('?') {
                    return self.err("unsupported group");
                } else {
                    Node::Group(self.alt()?)
                };
                if self.next()? != ')' {
                    return self.err("missing )");
                }
                simplify(node)
            }
            '[' => Node::Unit(vec![self.class()?]),
            '.' => Node::Unit(vec![Set::of(Item::NotNewline)]),
            '^' => Node::Start,
            '$' => Node::End,
            '\\' => match self.peek() {
                Some('b') => {
                    self.pos += 1;
                    Node::Boundary { negate: false }
                }
                Some('B') => {
                    self.pos += 1;
                    Node::Boundary { negate: true }
                }
                _ => Node::Unit(vec![Set {
                    negated: false,
                    items: self.escape(false)?,
                }]),
            },
            '*' | '+' | '?' | '{' | ')' => return self.err("misplaced operator"),
            c => {
                let u = self.literal(c)?;
                Node::Unit(vec![Set::of(Item::Range(u, u))])
            }
        })
    }

    /// A literal character's unit (non-ASCII literals cannot be told apart from the stand-in
    /// units of collapsed mode, so llama.cpp rejects them there).
    fn literal(&self, c: char) -> ParseResult<u32> {
        let u = c as u32;
        if self.collapsed && u >= 128 {
            return self.err("non-ASCII character in a pattern with Unicode categories");
        }
        Ok(u)
    }

    /// The items of an escape sequence (after the backslash).
    fn escape(&mut self, in_class: bool) -> ParseResult<Vec<Item>> {
        let c = self.next()?;
        let lit = |u: u32| Ok(vec![Item::Range(u, u)]);
        match c {
            's' => Ok(vec![Item::Space]),
            'S' => Ok(vec![Item::NotSpace]),
            'd' => Ok(vec![Item::Digit]),
            'D' => Ok(vec![Item::NotDigit]),
            'w' => Ok(vec![Item::Word]),
            'W' => Ok(vec![Item::NotWord]),
            'p' => {
                if !self.eat("{") {
                    return self.err("bad \\p");
                }
                let start = self.pos;
                while self.peek().is_some_and(|c| c != '}') {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                self.pos += 1;
                match category_items(&name) {
                    Some(items) if self.collapsed => Ok(items),
                    _ => self.err(&format!("unsupported category \\p{{{name}}}")),
                }
            }
            'r' => lit(0x0D),
            'n' => lit(0x0A),
            't' => lit(0x09),
            'v' => lit(0x0B),
            'f' => lit(0x0C),
            '0' => lit(0),
            'b' if in_class => lit(0x08),
            'x' | 'u' => {
                let n = if c == 'x' { 2 } else { 4 };
                let digits: String = self
                    .chars
                    .get(self.pos..self.pos + n)
                    .unwrap_or(&[])
                    .iter()
                    .collect();
                self.pos += n;
                match u32::from_str_radix(&digits, 16) {
                    Ok(u) if digits.len() == n => lit(u),
                    _ => self.err("bad hex escape"),
                }
            }
            c if c.is_ascii_alphanumeric() => self.err("unsupported escape"),
            c => lit(self.literal(c)?),
        }
    }

    fn class(&mut self) -> ParseResult<Set> {
        let negated = self.eat("^");
        let mut items = Vec::new();
        loop {
            let c = self.next()?;
            if c == ']' {
                break;
            }
            let first = if c == '\\' {
                let esc = self.escape(true)?;
                match esc.as_slice() {
                    [Item::Range(a, b)] if a == b => *a,
                    _ => {
                        items.extend(esc);
                        continue;
                    }
                }
            } else {
                self.literal(c)?
            };
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|&c| c != ']') {
                self.pos += 1;
                let c = self.next()?;
                let last = if c == '\\' {
                    match self.escape(true)?.as_slice() {
                        [Item::Range(a, b)] if a == b => *a,
                        _ => return self.err("class in a range"),
                    }
                } else {
                    self.literal(c)?
                };
                if last < first {
                    return self.err("reversed range");
                }
                items.push(Item::Range(first, last));
            } else {
                items.push(Item::Range(first, first));
            }
        }
        Ok(Set { negated, items })
    }
}

/// The sets of a node that always matches exactly one unit, if it is one: a unit, or a group
/// of one alternative made of lookaheads over single units followed by a single unit
/// (`(?=[\p{L}])([^a-z])` is "a letter that is not a-z").
fn as_unit(node: &Node) -> Option<Vec<Set>> {
    match node {
        Node::Unit(sets) => Some(sets.clone()),
        Node::Group(Alt(alts)) if alts.len() == 1 => {
            let (last, looks) = alts[0].split_last()?;
            let mut sets = as_unit(last)?;
            for look in looks {
                let Node::Look {
                    negate,
                    alt: Alt(la),
                } = look
                else {
                    return None;
                };
                let [seq] = la.as_slice() else { return None };
                let [inner] = seq.as_slice() else { return None };
                let inner = as_unit(inner)?;
                if *negate {
                    // not (A and B): only a single set can be negated as one set
                    let [s] = inner.as_slice() else { return None };
                    sets.push(Set {
                        negated: !s.negated,
                        items: s.items.clone(),
                    });
                } else {
                    sets.extend(inner);
                }
            }
            Some(sets)
        }
        _ => None,
    }
}

fn simplify(node: Node) -> Node {
    match as_unit(&node) {
        Some(sets) => Node::Unit(sets),
        None => node,
    }
}

impl Regex {
    pub fn new(pattern: &str) -> Result<Regex, String> {
        let collapsed = uses_categories(pattern);
        let mut p = Parser {
            chars: pattern.chars().collect(),
            pos: 0,
            collapsed,
            pattern,
        };
        let root = p.alt()?;
        if p.pos != p.chars.len() {
            return p.err("unbalanced )");
        }
        let lead_run = match root.0.as_slice() {
            [seq] => match seq.first() {
                Some(Node::Repeat {
                    node,
                    min,
                    max: u32::MAX,
                    greedy: true,
                }) if *min >= 1 => match node.as_ref() {
                    Node::Unit(sets) => Some(sets.clone()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        };
        Ok(Regex {
            root,
            collapsed,
            lead_run,
        })
    }

    /// Whether the pattern runs over collapsed units (see [`units`]).
    pub fn collapsed(&self) -> bool {
        self.collapsed
    }

    /// Splits `units` (one chunk) as llama.cpp's `std::regex_iterator` loop does: every match,
    /// and every stretch between matches, becomes a piece; lengths are pushed to `out`
    /// (an empty match pushes 0, as llama.cpp does).
    pub fn split(&self, units: &[u32], out: &mut Vec<u32>) {
        let m = Matcher {
            units,
            depth: Cell::new(0),
            lead_run: self.lead_run.as_deref(),
        };
        let mut done = 0; // end of the last match
        let mut from = 0; // where the next search starts
        let mut last_empty: Option<usize> = None;
        loop {
            let found = match last_empty {
                Some(p) => {
                    if p == units.len() {
                        None
                    } else {
                        m.at(&self.root, p, true)
                            .map(|e| (p, e))
                            .or_else(|| m.search(&self.root, p + 1))
                    }
                }
                None => m.search(&self.root, from),
            };
            let Some((start, end)) = found else { break };
            if start > done {
                out.push((start - done) as u32);
            }
            out.push((end - start) as u32);
            done = end;
            from = end;
            last_empty = (start == end).then_some(end);
        }
        if done < units.len() {
            out.push((units.len() - done) as u32);
        }
    }
}

struct Matcher<'a> {
    units: &'a [u32],
    depth: Cell<u32>,
    lead_run: Option<&'a [Set]>,
}

impl Matcher<'_> {
    /// The leftmost match starting at or after `from`: (start, end).
    fn search(&self, root: &Alt, from: usize) -> Option<(usize, usize)> {
        let mut s = from;
        while s <= self.units.len() {
            if let Some(e) = self.at(root, s, false) {
                return Some((s, e));
            }
            match self.lead_run {
                Some(sets) if self.unit_at(sets, s) => {
                    while self.unit_at(sets, s) {
                        s += 1;
                    }
                }
                _ => s += 1,
            }
        }
        None
    }

    /// The end of the first match anchored at `start` (non-empty if `not_null`).
    fn at(&self, root: &Alt, start: usize, not_null: bool) -> Option<usize> {
        self.depth.set(0);
        let mut end = None;
        let found = self.alt(root, start, &mut |e| {
            if not_null && e == start {
                return false;
            }
            end = Some(e);
            true
        });
        if found { end } else { None }
    }

    fn enter(&self) -> bool {
        let d = self.depth.get();
        if d >= MAX_DEPTH {
            return false;
        }
        self.depth.set(d + 1);
        true
    }

    fn leave(&self) {
        self.depth.set(self.depth.get().saturating_sub(1));
    }

    fn alt(&self, alt: &Alt, pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        alt.0.iter().any(|seq| self.seq(seq, pos, k))
    }

    fn seq(&self, seq: &[Node], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        match seq.split_first() {
            None => k(pos),
            Some((node, [])) => self.node(node, pos, k),
            Some((node, rest)) => self.node(node, pos, &mut |p| self.seq(rest, p, k)),
        }
    }

    fn unit_at(&self, sets: &[Set], pos: usize) -> bool {
        self.units.get(pos).is_some_and(|&u| unit_accepts(sets, u))
    }

    fn node(&self, node: &Node, pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
        match node {
            Node::Unit(sets) => self.unit_at(sets, pos) && k(pos + 1),
            Node::Start => pos == 0 && k(pos),
            Node::End => pos == self.units.len() && k(pos),
            Node::Boundary { negate } => {
                let before = pos > 0 && self.units.get(pos - 1).is_some_and(|&u| is_word(u));
                let after = self.units.get(pos).is_some_and(|&u| is_word(u));
                ((before != after) != *negate) && k(pos)
            }
            Node::Group(alt) => {
                if !self.enter() {
                    return false;
                }
                let r = self.alt(alt, pos, k);
                self.leave();
                r
            }
            Node::Look { negate, alt } => {
                if !self.enter() {
                    return false;
                }
                let found = self.alt(alt, pos, &mut |_| true);
                self.leave();
                found != *negate && k(pos)
            }
            Node::Repeat {
                node,
                min,
                max,
                greedy,
            } => match node.as_ref() {
                Node::Unit(sets) => self.repeat_unit(sets, *min, *max, *greedy, pos, k),
                inner => self.repeat(inner, *min, *max, *greedy, 0, pos, k),
            },
        }
    }

    fn repeat_unit(
        &self,
        sets: &[Set],
        min: u32,
        max: u32,
        greedy: bool,
        pos: usize,
        k: &mut dyn FnMut(usize) -> bool,
    ) -> bool {
        let mut n = 0usize;
        let max = max as usize;
        while n < max && self.unit_at(sets, pos + n) {
            n += 1;
        }
        let min = min as usize;
        if n < min {
            return false;
        }
        if greedy {
            (min..=n).rev().any(|c| k(pos + c))
        } else {
            (min..=n).any(|c| k(pos + c))
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn repeat(
        &self,
        node: &Node,
        min: u32,
        max: u32,
        greedy: bool,
        count: u32,
        pos: usize,
        k: &mut dyn FnMut(usize) -> bool,
    ) -> bool {
        if !self.enter() {
            return false;
        }
        let done = count >= min;
        let r = (!greedy && done && k(pos))
            || (count < max
                && self.node(node, pos, &mut |p| {
                    // an iteration that matched nothing ends the loop (ECMAScript)
                    !(p == pos && done) && self.repeat(node, min, max, greedy, count + 1, p, k)
                }))
            || (greedy && done && k(pos));
        self.leave();
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pattern: &str, text: &str) -> Vec<String> {
        let re = Regex::new(pattern).unwrap();
        let cps: Vec<u32> = text.chars().map(|c| c as u32).collect();
        let mut u = Vec::new();
        units(&cps, re.collapsed(), &mut u);
        let mut lens = Vec::new();
        re.split(&u, &mut lens);
        let chars: Vec<char> = text.chars().collect();
        let mut at = 0;
        lens.iter()
            .map(|&n| {
                let s: String = chars[at..at + n as usize].iter().collect();
                at += n as usize;
                s
            })
            .collect()
    }

    #[test]
    fn qwen2_style_pattern() {
        let p = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        assert_eq!(
            split(p, "Hello, y'all!  How 12 are\n\n you"),
            [
                "Hello", ",", " y", "'all", "!", " ", " How", " ", "1", "2", " are", "\n\n", " you"
            ]
        );
        assert_eq!(split(p, "Äpfel  "), ["Äpfel", "  "]);
    }

    #[test]
    fn lookahead_units_and_anchors() {
        assert_eq!(split(r"\s+$", "a  b  "), ["a  b", "  "]);
        assert_eq!(split(r"[0-9][0-9][0-9]", "12345"), ["123", "45"]);
        // tekken-style "upper* lower+" with lookahead units
        let p = r"((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+";
        assert_eq!(split(p, "HelloWORLDworld"), ["Hello", "WORLDworld"]);
        assert_eq!(split(r"\p{N}{1,3}", "1234567"), ["123", "456", "7"]);
        // an empty match is pushed as a 0-length piece, as llama.cpp does
        assert_eq!(split(r"(?=(\d{3})+(?!\d))", "1234"), ["1", "", "234"]);
    }

    #[test]
    fn collapsed_categories_follow_llama_cpp() {
        // '~' is not in llama.cpp's ASCII list for \p{S}; CJK is one letter unit
        assert_eq!(split(r"\p{S}+", "a$+~b"), ["a", "$+", "~b"]);
        assert_eq!(split(r"\p{L}+", "我想a1"), ["我想a", "1"]);
        assert!(Regex::new(r"\p{L}é").is_err());
        assert!(Regex::new(r"\p{Han}+").is_err());
        assert!(Regex::new(r"(?i:a)").is_err());
    }

    #[test]
    fn a_failing_leading_run_is_skipped_not_retried() {
        let text = " ".repeat(200_000) + "x";
        assert_eq!(split(r"\s+$", &text), [text.as_str()]);
        assert_eq!(split(r"a+b", "aaaab aac"), ["aaaab", " aac"]);
    }

    #[test]
    fn deep_group_repetition_gives_up_without_overflow() {
        let p = r"(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+";
        let text = "a ".repeat(50_000);
        let pieces = split(p, &text);
        assert_eq!(pieces.concat(), text);
    }
}
