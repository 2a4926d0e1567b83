//! SentencePiece-style tokenization (`tokenizer.ggml.model = llama`): spaces become `▁`, the
//! text starts as one symbol per character, and the adjacent pair whose concatenation is the
//! highest-scoring token is merged (leftmost first on ties) until no pair forms a token, as
//! llama.cpp's `llm_tokenizer_spm_session` does. A final symbol that is not a token (a
//! character missing from the vocabulary) becomes its bytes' `<0xNN>` tokens.

use std::collections::BinaryHeap;

use super::unicode::utf8_len;
use super::vocab::Vocab;

/// The `▁` (U+2581) that stands for a space in SentencePiece vocabularies.
pub(crate) const SPACE_MARK: &str = "\u{2581}";

#[derive(Debug, Clone, Copy)]
struct Sym {
    start: u32,
    /// Bytes; 0 once merged into the symbol on its left.
    len: u32,
    prev: i32,
    next: i32,
}

/// A candidate merge; the heap pops the highest score, then the leftmost.
#[derive(Debug, Clone, Copy)]
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Bigram {}

impl Ord for Bigram {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&other.score)
            .then(other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Buffers reused across fragments.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    text: Vec<u8>,
    syms: Vec<Sym>,
    heap: BinaryHeap<Bigram>,
}

/// Tokenizes one fragment: `prefix_space` puts a space before it (add_space_prefix after a
/// special token or at the start); `byte_tokens[b]` is the fallback token of byte `b`.
pub(crate) fn encode(
    vocab: &Vocab,
    byte_tokens: &[Option<u32>; 256],
    unk: Option<u32>,
    fragment: &str,
    prefix_space: bool,
    out: &mut Vec<u32>,
    s: &mut Scratch,
) {
    s.text.clear();
    if prefix_space {
        s.text.extend_from_slice(SPACE_MARK.as_bytes());
    }
    for &b in fragment.as_bytes() {
        if b == b' ' {
            s.text.extend_from_slice(SPACE_MARK.as_bytes());
        } else {
            s.text.push(b);
        }
    }
    let text = &s.text[..];
    let syms = &mut s.syms;
    syms.clear();
    let mut off = 0usize;
    while off < text.len() {
        let len = utf8_len(text[off]).min(text.len() - off);
        let i = syms.len() as i32;
        off += len;
        syms.push(Sym {
            start: (off - len) as u32,
            len: len as u32,
            prev: i - 1,
            next: if off == text.len() { -1 } else { i + 1 },
        });
    }
    let heap = &mut s.heap;
    heap.clear();
    for i in 1..syms.len() {
        try_add(vocab, text, syms, heap, i as i32 - 1, i as i32);
    }
    while let Some(b) = heap.pop() {
        let (l, r) = (b.left as usize, b.right as usize);
        let (left, right) = (syms[l], syms[r]);
        if left.len == 0 || right.len == 0 || left.len + right.len != b.size {
            continue;
        }
        syms[l].len += right.len;
        syms[r].len = 0;
        syms[l].next = right.next;
        if right.next >= 0 {
            syms[right.next as usize].prev = l as i32;
        }
        try_add(vocab, text, syms, heap, syms[l].prev, l as i32);
        try_add(vocab, text, syms, heap, l as i32, syms[l].next);
    }
    if syms.is_empty() {
        return;
    }
    let mut i = 0i32;
    while i >= 0 {
        let sym = syms[i as usize];
        let piece = &text[sym.start as usize..(sym.start + sym.len) as usize];
        match vocab.get(piece) {
            Some(id) => out.push(id),
            None => {
                for &byte in piece {
                    if let Some(id) = byte_tokens[usize::from(byte)].or(unk) {
                        out.push(id);
                    }
                }
            }
        }
        i = sym.next;
    }
}

fn try_add(
    vocab: &Vocab,
    text: &[u8],
    syms: &[Sym],
    heap: &mut BinaryHeap<Bigram>,
    left: i32,
    right: i32,
) {
    if left < 0 || right < 0 {
        return;
    }
    let (l, r) = (syms[left as usize], syms[right as usize]);
    let size = l.len + r.len;
    let piece = &text[l.start as usize..(l.start + size) as usize];
    if let Some(id) = vocab.get(piece) {
        heap.push(Bigram {
            score: vocab.score(id),
            left: left as u32,
            right: right as u32,
            size,
        });
    }
}
