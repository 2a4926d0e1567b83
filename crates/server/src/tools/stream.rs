//! A reply parsed as it streams: each piece of text re-parses the whole reply so far and
//! yields the differences from the previous parse, as llama-server's
//! `common_chat_msg_diff::compute_diffs`: new reasoning text, new content text, a new call
//! (index, id, name and its arguments so far) or more of the last call's arguments.

use serde_json::{Value, json};

use super::parse::{Parsed, Syntax, parse};

/// One difference, as an OpenAI `delta` object.
pub(crate) type Delta = Value;

/// The state of one streamed reply.
pub(crate) struct ChatStream {
    syntax: Syntax,
    text: String,
    last: Parsed,
    /// The ids given to the calls, in order.
    ids: Vec<String>,
}

impl ChatStream {
    pub fn new(syntax: Syntax) -> ChatStream {
        ChatStream {
            syntax,
            text: String::new(),
            last: Parsed::default(),
            ids: Vec::new(),
        }
    }

    /// Adds generated text; returns the deltas it makes.
    pub fn push(&mut self, piece: &str) -> Vec<Delta> {
        self.text.push_str(piece);
        let now = parse(&self.text, true, &self.syntax);
        self.advance(now)
    }

    /// The reply is whole: the last deltas (the final parse may differ from the partial one,
    /// e.g. held-back text that turned out to be content).
    pub fn finish(&mut self) -> Vec<Delta> {
        let now = parse(&self.text, false, &self.syntax);
        self.advance(now)
    }

    /// The message parsed so far.
    pub fn parsed(&self) -> &Parsed {
        &self.last
    }

    /// The calls' ids.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    fn advance(&mut self, mut now: Parsed) -> Vec<Delta> {
        for (i, c) in now.calls.iter().enumerate() {
            if self.ids.len() <= i {
                self.ids.push(if c.id.is_empty() {
                    super::new_call_id()
                } else {
                    c.id.clone()
                });
            }
        }
        let mut out = Vec::new();
        if let Some(d) = grown(&self.last.reasoning, &now.reasoning) {
            out.push(json!({ "reasoning_content": d }));
        }
        if let Some(d) = grown(&self.last.content, &now.content) {
            out.push(json!({ "content": d }));
        }
        // Calls never go away once seen; a parse that lost one (text that looked like a
        // call and was not) keeps what was sent.
        if now.calls.len() < self.last.calls.len() {
            now.calls = self.last.calls.clone();
        }
        let prev = self.last.calls.len();
        if prev > 0 {
            let i = prev - 1;
            if let Some(d) = grown(&self.last.calls[i].arguments, &now.calls[i].arguments) {
                out.push(json!({ "tool_calls": [{ "index": i, "function": { "arguments": d } }] }));
            } else if now.calls[i].arguments.len() < self.last.calls[i].arguments.len() {
                now.calls[i].arguments = self.last.calls[i].arguments.clone();
            }
        }
        for (i, c) in now.calls.iter().enumerate().skip(prev) {
            let mut function = json!({ "name": c.name });
            if !c.arguments.is_empty() {
                function["arguments"] = c.arguments.clone().into();
            }
            out.push(json!({ "tool_calls": [{
                "index": i,
                "id": self.ids[i],
                "type": "function",
                "function": function,
            }] }));
        }
        // Text that shrank (never in a well-formed stream) stays as sent.
        if !now.content.starts_with(&self.last.content) {
            now.content = self.last.content.clone();
        }
        if !now.reasoning.starts_with(&self.last.reasoning) {
            now.reasoning = self.last.reasoning.clone();
        }
        self.last = now;
        out
    }
}

/// What `now` adds to `before`, if it extends it.
fn grown<'a>(before: &str, now: &'a str) -> Option<&'a str> {
    match now.strip_prefix(before) {
        Some(d) if !d.is_empty() => Some(d),
        _ => None,
    }
}
