//! GBNF, llama.cpp's grammar format, read and rewritten as an llguidance Lark grammar.
//!
//! [`to_lark`] parses GBNF as llama.cpp's `llama_grammar_parser` does (rules `name ::= …` ending
//! at a newline outside parentheses, `"literals"`, `[classes]` and `[^negated]` ones, `.`, rule
//! references, `( … )` groups, `* + ? {m} {m,} {m,n}`, `<[id]>`/`<token>` and `!` for tokens,
//! `#` comments, the same escapes and the same repetition limits) into a small tree, then
//! writes Lark with `root` as `start` and every other rule a lower-case (Earley) rule.
//!
//! **Every lexeme is one character.** llguidance's lexer is greedy: a lexeme that can go on
//! does, so a GBNF rule turned into one multi-character terminal (what llguidance's own
//! `gbnf_to_lark.py` does for rules without recursion) changes the language — with
//! llama.cpp's `arithmetic.gbnf`, `num ::= [0-9]+ ws` would swallow the newline that ends a
//! line. GBNF is a grammar over characters, so literals are split into one lexeme per
//! character and classes stay single characters: the Earley parser then sees exactly
//! llama.cpp's grammar, and greedy decoding under it gives llama.cpp's tokens.
//!
//! Characters are decoded here and written back with escapes of our own choosing (every
//! non-alphanumeric character of a class as `\x{…}`), so no GBNF escape reaches Lark
//! unexamined.

use std::collections::HashMap;
use std::fmt::Write;

/// llama.cpp's `MAX_REPETITION_THRESHOLD`: more than this many repetitions is an error as a
/// minimum and means "unbounded" as a maximum.
const MAX_REPETITION: u64 = 2000;
/// Deepest nesting of parentheses (bounds the recursion on hostile input).
const MAX_DEPTH: usize = 100;

/// A GBNF syntax or reference error, with the line it was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GbnfError(pub String);

impl std::fmt::Display for GbnfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for GbnfError {}

#[derive(Clone, Debug)]
enum Node {
    Literal(String),
    /// A character class: inclusive ranges, matched or (negated) excluded.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `.`: any character.
    Any,
    Rule(usize),
    Token {
        id: u32,
        negated: bool,
    },
    Seq(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u64,
        max: Option<u64>,
    },
}

struct Parser<'a, 't> {
    src: &'a str,
    pos: usize,
    names: HashMap<String, usize>,
    /// Rule names in order of first appearance.
    order: Vec<String>,
    /// Bodies by rule index; `None` until defined.
    bodies: Vec<Option<Node>>,
    token_id: &'t dyn Fn(&str) -> Option<u32>,
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl Parser<'_, '_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.src[self.pos..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error(&self, msg: &str) -> GbnfError {
        let line = self.src[..self.pos].matches('\n').count() + 1;
        let rest: String = self.src[self.pos..].chars().take(24).collect();
        GbnfError(format!("{msg} at line {line}, before {rest:?}"))
    }

    /// Spaces, tabs and `#` comments; newlines too when `newlines`.
    fn space(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                ' ' | '\t' => self.pos += 1,
                '\r' | '\n' if newlines => self.pos += 1,
                '#' => {
                    while self.peek().is_some_and(|c| c != '\r' && c != '\n') {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
    }

    fn name(&mut self) -> Result<String, GbnfError> {
        let start = self.pos;
        while self.peek().is_some_and(is_word) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expected a rule name"));
        }
        Ok(self.src[start..self.pos].to_string())
    }

    fn int(&mut self) -> Result<u64, GbnfError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.error("expected an integer"));
        }
        self.src[start..self.pos]
            .parse()
            .map_err(|_| self.error("integer too large"))
    }

    fn hex(&mut self, digits: usize) -> Result<char, GbnfError> {
        let start = self.pos;
        let mut v: u32 = 0;
        for _ in 0..digits {
            match self.peek().and_then(|c| c.to_digit(16)) {
                Some(d) => {
                    v = v * 16 + d;
                    self.pos += 1;
                }
                None => {
                    self.pos = start;
                    return Err(self.error(&format!("expected {digits} hex digits")));
                }
            }
        }
        char::from_u32(v).ok_or_else(|| self.error(&format!("U+{v:X} is not a character")))
    }

    /// One character of a literal or class, escapes decoded.
    fn char(&mut self) -> Result<char, GbnfError> {
        match self.bump() {
            None => Err(self.error("unexpected end of grammar")),
            Some('\\') => match self.bump() {
                Some('x') => self.hex(2),
                Some('u') => self.hex(4),
                Some('U') => self.hex(8),
                Some('t') => Ok('\t'),
                Some('r') => Ok('\r'),
                Some('n') => Ok('\n'),
                Some(c @ ('\\' | '"' | '[' | ']' | '-')) => Ok(c),
                _ => Err(self.error("unknown escape")),
            },
            Some(c) => Ok(c),
        }
    }

    fn rule_ref(&mut self, name: String) -> usize {
        let n = self.order.len();
        *self.names.entry(name.clone()).or_insert_with(|| {
            self.order.push(name);
            self.bodies.push(None);
            n
        })
    }

    /// `<[id]>` or `<text>` (which must be exactly one token, special tokens included).
    fn token(&mut self) -> Result<u32, GbnfError> {
        let start = self.pos;
        self.bump(); // '<'
        if self.peek() == Some('[') {
            self.bump();
            let id = self.int()?;
            if self.bump() != Some(']') || self.bump() != Some('>') {
                return Err(self.error("expected ']>' after a token id"));
            }
            return u32::try_from(id).map_err(|_| self.error("token id too large"));
        }
        while self.peek().is_some_and(|c| c != '>') {
            self.bump();
        }
        if self.bump() != Some('>') {
            return Err(self.error("expected '>' after a token"));
        }
        let text = &self.src[start..self.pos];
        (self.token_id)(text).ok_or_else(|| GbnfError(format!("{text:?} is not one token")))
    }

    fn alternatives(&mut self, nested: bool, depth: usize) -> Result<Node, GbnfError> {
        if depth > MAX_DEPTH {
            return Err(self.error("parentheses nested too deeply"));
        }
        let mut alts = vec![self.sequence(nested, depth)?];
        while self.peek() == Some('|') {
            self.bump();
            self.space(true);
            alts.push(self.sequence(nested, depth)?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(Node::Seq(Vec::new()))
        } else {
            Node::Alt(alts)
        })
    }

    fn sequence(&mut self, nested: bool, depth: usize) -> Result<Node, GbnfError> {
        let mut seq: Vec<Node> = Vec::new();
        while let Some(c) = self.peek() {
            let node = match c {
                '"' => {
                    self.bump();
                    let mut s = String::new();
                    while self.peek() != Some('"') {
                        s.push(self.char()?);
                    }
                    self.bump();
                    Node::Literal(s)
                }
                '[' => {
                    self.bump();
                    let negated = self.peek() == Some('^');
                    if negated {
                        self.bump();
                    }
                    let mut ranges = Vec::new();
                    while self.peek() != Some(']') {
                        let lo = self.char()?;
                        let mut hi = lo;
                        if self.peek() == Some('-') && self.peek2().is_some_and(|c| c != ']') {
                            self.bump();
                            hi = self.char()?;
                        }
                        if hi < lo {
                            return Err(self.error("a character range runs backwards"));
                        }
                        ranges.push((lo, hi));
                    }
                    self.bump();
                    Node::Class { negated, ranges }
                }
                '<' | '!' => {
                    let negated = c == '!';
                    if negated {
                        self.bump();
                        if self.peek() != Some('<') {
                            return Err(self.error("expected '<' after '!'"));
                        }
                    }
                    let id = self.token()?;
                    Node::Token { id, negated }
                }
                '(' => {
                    self.bump();
                    self.space(true);
                    let inner = self.alternatives(true, depth + 1)?;
                    if self.bump() != Some(')') {
                        return Err(self.error("expected ')'"));
                    }
                    inner
                }
                '.' => {
                    self.bump();
                    Node::Any
                }
                '*' | '+' | '?' | '{' => {
                    let Some(last) = seq.pop() else {
                        return Err(self.error("a repetition operator follows nothing"));
                    };
                    self.bump();
                    let (min, max) = match c {
                        '*' => (0, None),
                        '+' => (1, None),
                        '?' => (0, Some(1)),
                        _ => self.braces()?,
                    };
                    Node::Repeat {
                        node: Box::new(last),
                        min,
                        max,
                    }
                }
                c if is_word(c) => {
                    let name = self.name()?;
                    Node::Rule(self.rule_ref(name))
                }
                _ => break,
            };
            seq.push(node);
            self.space(nested);
        }
        Ok(if seq.len() == 1 {
            seq.pop().unwrap_or(Node::Seq(Vec::new()))
        } else {
            Node::Seq(seq)
        })
    }

    /// `{m}`, `{m,}`, `{m,n}` after the `{`.
    fn braces(&mut self) -> Result<(u64, Option<u64>), GbnfError> {
        self.space(true);
        let min = self.int()?;
        self.space(true);
        let max = match self.bump() {
            Some('}') => Some(min),
            Some(',') => {
                self.space(true);
                let max = if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    Some(self.int()?)
                } else {
                    None
                };
                self.space(true);
                if self.bump() != Some('}') {
                    return Err(self.error("expected '}'"));
                }
                max
            }
            _ => return Err(self.error("expected ',' or '}'")),
        };
        if min > MAX_REPETITION {
            return Err(self.error(&format!(
                "{min} repetitions exceed the limit of {MAX_REPETITION}"
            )));
        }
        let max = max.filter(|&m| m <= MAX_REPETITION);
        if max.is_some_and(|m| m < min) {
            return Err(self.error("a repetition's maximum is below its minimum"));
        }
        Ok((min, max))
    }

    fn grammar(&mut self) -> Result<(), GbnfError> {
        self.space(true);
        while self.peek().is_some() {
            let name = self.name()?;
            let id = self.rule_ref(name);
            self.space(false);
            if !self.src[self.pos..].starts_with("::=") {
                return Err(self.error("expected '::='"));
            }
            self.pos += 3;
            self.space(true);
            let body = self.alternatives(false, 0)?;
            match self.peek() {
                None | Some('\r' | '\n') => {}
                Some(_) => return Err(self.error("expected the end of the rule")),
            }
            // As llama.cpp: a rule defined twice keeps its last definition.
            self.bodies[id] = Some(body);
            self.space(true);
        }
        Ok(())
    }
}

fn is_atomic(n: &Node) -> bool {
    !matches!(n, Node::Seq(_) | Node::Alt(_) | Node::Repeat { .. })
}

/// A character written for a regular-expression class.
fn class_char(out: &mut String, c: char) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:X}}}", c as u32);
    }
}

/// A Lark string literal (JSON escapes).
fn lark_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_node(out: &mut String, n: &Node, names: &[String]) {
    match n {
        Node::Literal(s) if s.chars().nth(1).is_some() => {
            // One lexeme per character (see the module header).
            out.push('(');
            for (i, c) in s.chars().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                lark_string(out, c.encode_utf8(&mut [0; 4]));
            }
            out.push(')');
        }
        Node::Literal(s) => lark_string(out, s),
        Node::Class { negated, ranges } => {
            if ranges.is_empty() {
                // Nothing (or, negated, anything): regex-syntax rejects `[]`.
                out.push_str(if *negated {
                    "/(?s:.)/"
                } else {
                    "/[^\\x{0}-\\x{10FFFF}]/"
                });
                return;
            }
            out.push_str(if *negated { "/[^" } else { "/[" });
            for &(lo, hi) in ranges {
                class_char(out, lo);
                if hi != lo {
                    out.push('-');
                    class_char(out, hi);
                }
            }
            out.push_str("]/");
        }
        Node::Any => out.push_str("/(?s:.)/"),
        Node::Rule(r) => out.push_str(&names[*r]),
        Node::Token { id, negated } => {
            let _ = write!(out, "<[{}{id}]>", if *negated { "^" } else { "" });
        }
        Node::Seq(v) => {
            if v.is_empty() {
                out.push_str("\"\"");
            }
            for (i, c) in v.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                if matches!(c, Node::Alt(_)) {
                    out.push('(');
                    write_node(out, c, names);
                    out.push(')');
                } else {
                    write_node(out, c, names);
                }
            }
        }
        Node::Alt(v) => {
            for (i, c) in v.iter().enumerate() {
                if i > 0 {
                    out.push_str(" | ");
                }
                write_node(out, c, names);
            }
        }
        Node::Repeat { node, min, max } => {
            if is_atomic(node) {
                write_node(out, node, names);
            } else {
                out.push('(');
                write_node(out, node, names);
                out.push(')');
            }
            match (min, max) {
                (0, None) => out.push('*'),
                (1, None) => out.push('+'),
                (0, Some(1)) => out.push('?'),
                (m, None) => {
                    let _ = write!(out, "{{{m},}}");
                }
                (m, Some(x)) => {
                    let _ = write!(out, "{{{m},{x}}}");
                }
            }
        }
    }
}

/// Converts a GBNF grammar to llguidance's Lark. `token_id` turns a `<text>` token reference
/// into its id (`None` when the text is not exactly one token).
pub fn to_lark(src: &str, token_id: &dyn Fn(&str) -> Option<u32>) -> Result<String, GbnfError> {
    let mut p = Parser {
        src,
        pos: 0,
        names: HashMap::new(),
        order: Vec::new(),
        bodies: Vec::new(),
        token_id,
    };
    p.grammar()?;
    let Some(&root) = p.names.get("root") else {
        return Err(GbnfError("the grammar has no `root` rule".into()));
    };
    let mut bodies = Vec::with_capacity(p.bodies.len());
    for (name, body) in p.order.iter().zip(p.bodies) {
        match body {
            Some(b) => bodies.push(b),
            None => return Err(GbnfError(format!("rule `{name}` is used but not defined"))),
        }
    }
    // Names of our own making: GBNF's may collide once case-folded or with Lark keywords.
    let names: Vec<String> = p
        .order
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let base: String = name
                .chars()
                .map(|c| if c == '-' { '_' } else { c })
                .collect();
            if i == root {
                "start".to_string()
            } else {
                format!("r{i}_{}", base.to_ascii_lowercase())
            }
        })
        .collect();
    let mut out = String::from("%llguidance {}\n\n");
    for (i, b) in bodies.iter().enumerate() {
        out.push_str(&names[i]);
        out.push_str(": ");
        write_node(&mut out, b, &names);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(s: &str) -> Result<String, GbnfError> {
        to_lark(s, &|t| (t == "<tok>").then_some(7))
    }

    #[test]
    fn one_lexeme_per_character() {
        let l = conv("root ::= item+\nitem ::= \"- \" [a-z]+ \"\\n\"").unwrap();
        assert!(l.contains("start: r1_item+\n"), "{l}");
        assert!(
            l.contains("r1_item: (\"-\" \" \") /[a-z]/+ \"\\u000a\""),
            "{l}"
        );
    }

    #[test]
    fn recursive_rules_stay_rules() {
        let l = conv("root ::= e\ne ::= \"(\" e \")\" | \"x\"").unwrap();
        assert!(l.contains("r1_e: \"(\" r1_e \")\" | \"x\""), "{l}");
    }

    #[test]
    fn escapes_classes_tokens_and_repetitions() {
        let l =
            conv("root ::= [^\"\\\\\\x7F] . <tok> !<[3]> \"a\"{2,5} (\"b\" | \"c\"){3,}").unwrap();
        assert!(
            l.contains(
                "start: /[^\\x{22}\\x{5C}\\x{7F}]/ /(?s:.)/ <[7]> <[^3]> \"a\"{2,5} (\"b\" | \"c\"){3,}"
            ),
            "{l}"
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let e = conv("root ::= this is (not valid GBNF").unwrap_err();
        assert!(e.0.contains("expected ')'"), "{e}");
        assert!(conv("foo ::= \"a\"").unwrap_err().0.contains("no `root`"));
        assert!(conv("root ::= bar").unwrap_err().0.contains("`bar`"));
        assert!(
            conv("root ::= <nope>")
                .unwrap_err()
                .0
                .contains("not one token")
        );
        assert!(
            conv("root ::= \"a\"{3000}")
                .unwrap_err()
                .0
                .contains("limit")
        );
        assert!(conv("root ::= [z-a]").unwrap_err().0.contains("backwards"));
        let deep = format!("root ::= {}\"a\"{}", "(".repeat(500), ")".repeat(500));
        assert!(conv(&deep).unwrap_err().0.contains("nested"));
    }
}
