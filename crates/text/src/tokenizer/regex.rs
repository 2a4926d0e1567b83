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
//! Patterns compile to a small program run by a backtracking machine with an explicit stack
//! ([`Inst`]), so a group repeated a million times on hostile text costs heap, never call-stack
//! depth; only lookaheads recurse, as deep as the pattern nests them.

use super::unicode::{flag, flags};

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
    prog: Vec<Inst>,
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

/// One instruction of a compiled pattern.
#[derive(Debug, Clone)]
enum Inst {
    /// Consume one unit every set accepts.
    Unit(Vec<Set>),
    /// Consume `min..=max` such units, as many as possible first (or as few, if lazy).
    Repeat {
        sets: Vec<Set>,
        min: u32,
        max: u32,
        greedy: bool,
    },
    /// Go on at `first`; on failure come back and go on at `second`.
    Split {
        first: usize,
        second: usize,
    },
    Jmp(usize),
    Start,
    End,
    Boundary {
        negate: bool,
    },
    /// Run the sub-program at `start` (ending in `Match`) here without consuming.
    Look {
        negate: bool,
        start: usize,
    },
    Match,
}

/// The fewest units `node` can match (0 for assertions).
fn min_len(node: &Node) -> u64 {
    match node {
        Node::Unit(_) => 1,
        Node::Group(alt) => alt_min_len(alt),
        Node::Repeat { node, min, .. } => min_len(node).saturating_mul(u64::from(*min)),
        Node::Look { .. } | Node::Start | Node::End | Node::Boundary { .. } => 0,
    }
}

fn alt_min_len(alt: &Alt) -> u64 {
    alt.0
        .iter()
        .map(|seq| seq.iter().map(min_len).fold(0u64, u64::saturating_add))
        .min()
        .unwrap_or(0)
}

/// Compiles the AST; lookahead bodies go after the main program.
struct Compiler {
    prog: Vec<Inst>,
    /// (index of a `Look` instruction, its body) still to emit.
    looks: Vec<(usize, Alt)>,
}

impl Compiler {
    fn emit(&mut self, i: Inst) -> usize {
        self.prog.push(i);
        self.prog.len() - 1
    }

    fn patch(&mut self, at: usize, to_first: Option<usize>, to_second: Option<usize>) {
        match &mut self.prog[at] {
            Inst::Split { first, second } => {
                if let Some(t) = to_first {
                    *first = t;
                }
                if let Some(t) = to_second {
                    *second = t;
                }
            }
            Inst::Jmp(t) => {
                if let Some(x) = to_first {
                    *t = x;
                }
            }
            _ => {}
        }
    }

    fn alt(&mut self, alt: &Alt) -> Result<(), String> {
        let mut to_end = Vec::new();
        let n = alt.0.len();
        for (i, seq) in alt.0.iter().enumerate() {
            let split = (i + 1 < n).then(|| {
                let at = self.prog.len();
                self.emit(Inst::Split {
                    first: at + 1,
                    second: 0,
                })
            });
            for node in seq {
                self.node(node)?;
            }
            if let Some(split) = split {
                to_end.push(self.emit(Inst::Jmp(0)));
                let next = self.prog.len();
                self.patch(split, None, Some(next));
            }
        }
        let end = self.prog.len();
        for j in to_end {
            self.patch(j, Some(end), None);
        }
        Ok(())
    }

    fn node(&mut self, node: &Node) -> Result<(), String> {
        match node {
            Node::Unit(sets) => {
                self.emit(Inst::Unit(sets.clone()));
            }
            Node::Group(alt) => self.alt(alt)?,
            Node::Start => {
                self.emit(Inst::Start);
            }
            Node::End => {
                self.emit(Inst::End);
            }
            Node::Boundary { negate } => {
                self.emit(Inst::Boundary { negate: *negate });
            }
            Node::Look { negate, alt } => {
                let at = self.emit(Inst::Look {
                    negate: *negate,
                    start: 0,
                });
                self.looks.push((at, alt.clone()));
            }
            Node::Repeat {
                node,
                min,
                max,
                greedy,
            } => {
                if let Node::Unit(sets) = node.as_ref() {
                    self.emit(Inst::Repeat {
                        sets: sets.clone(),
                        min: *min,
                        max: *max,
                        greedy: *greedy,
                    });
                    return Ok(());
                }
                for _ in 0..*min {
                    self.node(node)?;
                }
                let optional = |c: &mut Compiler| -> Result<usize, String> {
                    // Split(body, end) (greedy) or Split(end, body) (lazy); returns the split
                    let split = c.emit(Inst::Split {
                        first: 0,
                        second: 0,
                    });
                    let body = c.prog.len();
                    if *greedy {
                        c.patch(split, Some(body), None);
                    } else {
                        c.patch(split, None, Some(body));
                    }
                    c.node(node)?;
                    Ok(split)
                };
                if *max == u32::MAX {
                    if min_len(node) == 0 {
                        return Err("a loop whose body can match nothing".into());
                    }
                    let split = optional(self)?;
                    self.emit(Inst::Jmp(split));
                    let end = self.prog.len();
                    if *greedy {
                        self.patch(split, None, Some(end));
                    } else {
                        self.patch(split, Some(end), None);
                    }
                } else {
                    let mut splits = Vec::new();
                    for _ in *min..*max {
                        splits.push(optional(self)?);
                    }
                    let end = self.prog.len();
                    for split in splits {
                        if *greedy {
                            self.patch(split, None, Some(end));
                        } else {
                            self.patch(split, Some(end), None);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(mut self, root: &Alt) -> Result<Vec<Inst>, String> {
        self.alt(root)?;
        self.emit(Inst::Match);
        while let Some((at, alt)) = self.looks.pop() {
            let start = self.prog.len();
            if let Inst::Look { start: s, .. } = &mut self.prog[at] {
                *s = start;
            }
            self.alt(&alt)?;
            self.emit(Inst::Match);
        }
        if self.prog.len() > 100_000 {
            return Err("pattern too large".into());
        }
        Ok(self.prog)
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
        let prog = Compiler {
            prog: Vec::new(),
            looks: Vec::new(),
        }
        .finish(&root)
        .map_err(|e| format!("{e} in pattern {pattern:?}"))?;
        Ok(Regex {
            prog,
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
        let mut m = Machine {
            prog: &self.prog,
            units,
            stack: Vec::new(),
            lead_run: self.lead_run.as_deref(),
        };
        let mut done = 0; // end of the last match
        let mut from = 0; // where the next search starts
        let mut last_empty: Option<usize> = None;
        loop {
            let found = match last_empty {
                Some(p) if p == units.len() => None,
                Some(p) => m.at(p, true).map(|e| (p, e)).or_else(|| m.search(p + 1)),
                None => m.search(from),
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

/// A saved choice to come back to.
#[derive(Debug, Clone, Copy)]
enum Frame {
    /// Resume at `pc`, position `pos`.
    Alt { pc: usize, pos: usize },
    /// A greedy repeat took `n` units from `base`; retry with fewer (down to `min`).
    Fewer {
        pc: usize,
        base: usize,
        n: usize,
        min: usize,
    },
    /// A lazy repeat took `n` units from `base`; retry with more (up to `max`).
    More {
        pc: usize,
        base: usize,
        n: usize,
        max: usize,
    },
}

struct Machine<'a> {
    prog: &'a [Inst],
    units: &'a [u32],
    stack: Vec<Frame>,
    lead_run: Option<&'a [Set]>,
}

impl Machine<'_> {
    /// The leftmost match starting at or after `from`: (start, end).
    fn search(&mut self, from: usize) -> Option<(usize, usize)> {
        let mut s = from;
        while s <= self.units.len() {
            if let Some(e) = self.at(s, false) {
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

    fn unit_at(&self, sets: &[Set], pos: usize) -> bool {
        self.units.get(pos).is_some_and(|&u| unit_accepts(sets, u))
    }

    /// The end of the first match anchored at `start` (non-empty if `not_null`).
    fn at(&mut self, start: usize, not_null: bool) -> Option<usize> {
        let mut stack = std::mem::take(&mut self.stack);
        let r = self.run(0, start, not_null, &mut stack);
        self.stack = stack;
        r
    }

    /// Runs the program from `pc` at `pos` with backtracking; the end position of the first
    /// path that reaches `Match`.
    fn run(&self, pc: usize, pos: usize, not_null: bool, stack: &mut Vec<Frame>) -> Option<usize> {
        stack.clear();
        let (start, mut pc, mut pos) = (pos, pc, pos);
        loop {
            let ok = match self.prog.get(pc) {
                Some(Inst::Unit(sets)) => {
                    let ok = self.unit_at(sets, pos);
                    pc += 1;
                    pos += 1;
                    ok
                }
                Some(Inst::Repeat {
                    sets,
                    min,
                    max,
                    greedy,
                }) => {
                    let (min, max) = (*min as usize, *max as usize);
                    let mut n = 0;
                    while n < max && self.unit_at(sets, pos + n) {
                        n += 1;
                    }
                    pc += 1;
                    if n < min {
                        false
                    } else if *greedy {
                        if n > min {
                            stack.push(Frame::Fewer {
                                pc,
                                base: pos,
                                n,
                                min,
                            });
                        }
                        pos += n;
                        true
                    } else {
                        if n > min {
                            stack.push(Frame::More {
                                pc,
                                base: pos,
                                n: min,
                                max: n,
                            });
                        }
                        pos += min;
                        true
                    }
                }
                Some(Inst::Split { first, second }) => {
                    stack.push(Frame::Alt { pc: *second, pos });
                    pc = *first;
                    true
                }
                Some(Inst::Jmp(t)) => {
                    pc = *t;
                    true
                }
                Some(Inst::Start) => {
                    pc += 1;
                    pos == 0
                }
                Some(Inst::End) => {
                    pc += 1;
                    pos == self.units.len()
                }
                Some(Inst::Boundary { negate }) => {
                    let before = pos > 0 && self.units.get(pos - 1).is_some_and(|&u| is_word(u));
                    let after = self.units.get(pos).is_some_and(|&u| is_word(u));
                    pc += 1;
                    (before != after) != *negate
                }
                Some(Inst::Look { negate, start }) => {
                    let found = self.run(*start, pos, false, &mut Vec::new()).is_some();
                    pc += 1;
                    found != *negate
                }
                Some(Inst::Match) if !(not_null && pos == start) => return Some(pos),
                Some(Inst::Match) | None => false,
            };
            if ok {
                continue;
            }
            // backtrack to the most recent choice
            match stack.pop()? {
                Frame::Alt { pc: p, pos: q } => {
                    (pc, pos) = (p, q);
                }
                Frame::Fewer {
                    pc: p,
                    base,
                    n,
                    min,
                } => {
                    let n = n - 1;
                    if n > min {
                        stack.push(Frame::Fewer {
                            pc: p,
                            base,
                            n,
                            min,
                        });
                    }
                    (pc, pos) = (p, base + n);
                }
                Frame::More {
                    pc: p,
                    base,
                    n,
                    max,
                } => {
                    let n = n + 1;
                    if n < max {
                        stack.push(Frame::More {
                            pc: p,
                            base,
                            n,
                            max,
                        });
                    }
                    (pc, pos) = (p, base + n);
                }
            }
        }
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
    fn long_group_repetitions_match_whole_without_deep_recursion() {
        let p = r"(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+";
        let text = "a ".repeat(200_000) + "b";
        assert_eq!(split(p, &text), [text.as_str()]);
        let digits = "1".repeat(6_000);
        let pieces = split(r"\d{1,3}(?=(?:\d{3})*\b)", &digits);
        assert_eq!(pieces.len(), 2_000);
        // alternation order and lazy repeats
        assert_eq!(split(r"a|ab", "ab"), ["a", "b"]);
        assert_eq!(split(r"a+?", "aaa"), ["a", "a", "a"]);
        assert_eq!(split(r"(?:ab)+?c|b", "ababc"), ["ababc"]);
        assert_eq!(split(r"x(?:ab){1,2}", "xababab"), ["xabab", "ab"]);
        assert!(Regex::new(r"(?:a?)*").is_err());
    }
}
