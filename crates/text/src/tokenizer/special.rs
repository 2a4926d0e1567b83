//! Special-token partition: before a text is tokenized, occurrences of special tokens' texts
//! are cut out and become those tokens (llama.cpp's `tokenizer_st_partition`).
//!
//! With `parse_special` false only user-defined tokens are cut out (Gemma's `"\n"` runs,
//! deepseek's accented letters), never control tokens, so chat text a user typed cannot turn
//! into `<|im_start|>`. Tokens are applied longest first, each splitting every remaining text
//! fragment at its leftmost non-overlapping occurrences, with the LSTRIP / RSTRIP attributes
//! eating white space beside a match, exactly as llama.cpp does. To stay fast for
//! vocabularies with thousands of special tokens (Gemma 3 has 6,414), a trie first finds which
//! ones occur in the text at all; only those take a pass over the fragments.

use std::ops::Range;

use super::vocab::{Vocab, attr};

/// A piece of the text to tokenize, or a special token cut out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fragment {
    Text(Range<usize>),
    Token(u32),
}

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node {
    /// (byte, child index), sorted by byte
    children: Vec<(u8, u32)>,
    token: u32,
}

/// The special tokens of a vocabulary, in the order they are applied, and a trie of them.
#[derive(Debug, Clone)]
pub(crate) struct Specials {
    /// Special token ids, longest text first (then by id).
    order: Vec<u32>,
    /// Trie of their texts; node 0 is the root.
    nodes: Vec<Node>,
}

/// Attributes that make a token special (cut out of the text).
pub(crate) const SPECIAL_ATTRS: u16 = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;

impl Specials {
    pub fn new(vocab: &Vocab) -> Specials {
        let mut order: Vec<u32> = (0..vocab.len() as u32)
            .filter(|&id| vocab.attr(id) & SPECIAL_ATTRS != 0)
            .collect();
        order.sort_by(|&a, &b| {
            (vocab.text(b).len(), a).cmp(&(vocab.text(a).len(), b)) // longest first, then id
        });
        let mut nodes = vec![Node {
            children: Vec::new(),
            token: NONE,
        }];
        for &id in &order {
            let mut n = 0usize;
            for &b in vocab.text(id) {
                n = match nodes[n].children.binary_search_by_key(&b, |&(c, _)| c) {
                    Ok(i) => nodes[n].children[i].1 as usize,
                    Err(i) => {
                        let child = nodes.len();
                        nodes.push(Node {
                            children: Vec::new(),
                            token: NONE,
                        });
                        nodes[n].children.insert(i, (b, child as u32));
                        child
                    }
                };
            }
            nodes[n].token = id;
        }
        Specials { order, nodes }
    }

    /// The special token ids, in the order they are applied.
    pub fn ids(&self) -> &[u32] {
        &self.order
    }

    /// Approximate bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.order.capacity() * 4
            + self
                .nodes
                .iter()
                .map(|n| 32 + n.children.capacity() * 8)
                .sum::<usize>()
    }

    /// Splits `text` into fragments.
    pub fn partition(&self, vocab: &Vocab, text: &str, parse_special: bool) -> Vec<Fragment> {
        if text.is_empty() {
            return Vec::new();
        }
        let eligible =
            |id: u32| parse_special || vocab.attr(id) & (attr::CONTROL | attr::UNKNOWN) == 0;
        let present = self.present(text.as_bytes(), &eligible);
        let mut frags = vec![Fragment::Text(0..text.len())];
        if present.is_empty() {
            return frags;
        }
        let mut next = Vec::new();
        for &id in self
            .order
            .iter()
            .filter(|id| present.binary_search(id).is_ok())
        {
            let a = vocab.attr(id);
            let token = vocab.text(id);
            next.clear();
            for f in &frags {
                match f {
                    Fragment::Token(_) => next.push(f.clone()),
                    Fragment::Text(r) => split(
                        text.as_bytes(),
                        r.clone(),
                        token,
                        id,
                        a & attr::LSTRIP != 0,
                        a & attr::RSTRIP != 0,
                        &mut next,
                    ),
                }
            }
            std::mem::swap(&mut frags, &mut next);
        }
        frags
    }

    /// The eligible special tokens that occur somewhere in `text`, sorted by id.
    fn present(&self, text: &[u8], eligible: &dyn Fn(u32) -> bool) -> Vec<u32> {
        let mut seen = vec![false; self.nodes.len()];
        for start in 0..text.len() {
            let mut n = 0usize;
            for &b in &text[start..] {
                let children = &self.nodes[n].children;
                let Ok(i) = children.binary_search_by_key(&b, |&(c, _)| c) else {
                    break;
                };
                n = children[i].1 as usize;
                seen[n] = true;
            }
        }
        let mut found: Vec<u32> = (0..self.nodes.len())
            .filter(|&n| seen[n])
            .map(|n| self.nodes[n].token)
            .filter(|&t| t != NONE && eligible(t))
            .collect();
        found.sort_unstable();
        found
    }
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let last_start = hay.len().checked_sub(needle.len())?;
    let mut i = 0;
    while i <= last_start {
        let p = hay[i..=last_start].iter().position(|&b| b == first)?;
        let at = i + p;
        if hay[at + 1..at + needle.len()] == *rest {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// Cuts every leftmost non-overlapping occurrence of `token` out of `text[r]`.
fn split(
    text: &[u8],
    r: Range<usize>,
    token: &[u8],
    id: u32,
    lstrip: bool,
    rstrip: bool,
    out: &mut Vec<Fragment>,
) {
    let (mut base, end) = (r.start, r.end);
    loop {
        let Some(m) = find(&text[base..end], token).map(|m| base + m) else {
            if end > base {
                out.push(Fragment::Text(base..end));
            }
            return;
        };
        let mut left_end = m;
        if lstrip {
            while left_end > base && is_c_space(text[left_end - 1]) {
                left_end -= 1;
            }
        }
        if left_end > base {
            out.push(Fragment::Text(base..left_end));
        }
        out.push(Fragment::Token(id));
        let mut right = m + token.len();
        if right >= end {
            return;
        }
        if rstrip {
            while right < end && is_c_space(text[right]) {
                right += 1;
            }
        }
        base = right;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_works() {
        assert_eq!(find(b"hello", b"ll"), Some(2));
        assert_eq!(find(b"hello", b"lo"), Some(3));
        assert_eq!(find(b"hello", b"hello!"), None);
        assert_eq!(find(b"aab", b"ab"), Some(1));
        assert_eq!(find(b"", b"a"), None);
    }

    #[test]
    fn split_strips_as_asked() {
        let text = b"a  <x>  b<x>";
        let mut out = Vec::new();
        split(text, 0..text.len(), b"<x>", 7, true, true, &mut out);
        assert_eq!(
            out,
            [
                Fragment::Text(0..1),
                Fragment::Token(7),
                Fragment::Text(8..9),
                Fragment::Token(7)
            ]
        );
    }
}
