//! SentencePiece-style tokenization (`tokenizer.ggml.model = llama`): spaces become `▁`, the
//! text starts as one symbol per character, and the adjacent pair whose concatenation is the
//! highest-scoring token is merged (leftmost first on ties) until no pair forms a token, as
//! llama.cpp's `llm_tokenizer_spm_session` does. A final symbol that is not a token (a
//! character missing from the vocabulary) becomes its bytes' `<0xNN>` tokens.
//!
//! llama.cpp merges over a whole fragment at once. A merge can only join two symbols whose
//! concatenation is a token, so where no token spans a boundary the two sides merge
//! independently; cutting the text there gives the same ids. Before a `▁` that follows
//! another character is such a boundary unless some token contains that character followed by
//! `▁` (Gemma 3 has one: `>▁</`), so the text is cut into words there ([`Cuts`]) and repeated
//! words are memoized ([`WordCache`]).

use std::collections::BinaryHeap;

use super::cache::WordCache;
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
    word: Vec<u32>,
    cache: WordCache,
    /// Merge each fragment whole and memoize nothing, as llama.cpp (a test oracle).
    pub no_shortcuts: bool,
}

/// Where a text may be cut without changing its tokens: before a `▁` that follows a
/// character other than `▁`, unless a token contains that character followed by `▁`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cuts {
    /// The characters (UTF-8) that some token has right before a `▁`.
    joined_before_mark: Vec<Box<[u8]>>,
}

impl Cuts {
    pub fn new(vocab: &Vocab) -> Cuts {
        let mark = SPACE_MARK.as_bytes();
        let mut joined: Vec<Box<[u8]>> = Vec::new();
        for id in 0..vocab.len() as u32 {
            let t = vocab.text(id);
            let mut prev: Option<&[u8]> = None;
            let mut i = 0;
            while i < t.len() {
                let n = utf8_len(t[i]).min(t.len() - i);
                let ch = &t[i..i + n];
                if let Some(p) = prev.filter(|&p| ch == mark && p != mark)
                    && !joined.iter().any(|j| &j[..] == p)
                {
                    joined.push(p.into());
                }
                prev = Some(ch);
                i += n;
            }
        }
        Cuts {
            joined_before_mark: joined,
        }
    }

    /// The word boundaries of `text` (byte offsets, excluding 0 and the end).
    fn word_starts<'a>(&'a self, text: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
        let mark = SPACE_MARK.as_bytes();
        let mut i = 0usize;
        let mut prev: &[u8] = &[];
        std::iter::from_fn(move || {
            while i < text.len() {
                let n = utf8_len(text[i]).min(text.len() - i);
                let ch = &text[i..i + n];
                let at = i;
                let cut = ch == mark
                    && !prev.is_empty()
                    && prev != mark
                    && !self.joined_before_mark.iter().any(|j| &j[..] == prev);
                prev = ch;
                i += n;
                if cut {
                    return Some(at);
                }
            }
            None
        })
    }
}

/// What SPM encoding needs besides the vocabulary.
pub(crate) struct Spm<'a> {
    pub vocab: &'a Vocab,
    /// `byte_tokens[b]` is the fallback token of byte `b`.
    pub byte_tokens: &'a [Option<u32>; 256],
    pub unk: Option<u32>,
    pub cuts: &'a Cuts,
}

/// Tokenizes one fragment: `prefix_space` puts a space before it (add_space_prefix after a
/// special token or at the start).
pub(crate) fn encode(
    spm: &Spm<'_>,
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
    let Scratch {
        text,
        syms,
        heap,
        word,
        cache,
        no_shortcuts,
    } = s;
    if *no_shortcuts {
        merge(spm, text, out, syms, heap);
        return;
    }
    let mut start = 0;
    let ends = spm
        .cuts
        .word_starts(text)
        .chain(std::iter::once(text.len()));
    for end in ends {
        let w = &text[start..end];
        start = end;
        if let Some(ids) = cache.get(w) {
            out.extend_from_slice(ids);
            continue;
        }
        word.clear();
        merge(spm, w, word, syms, heap);
        cache.insert(w, word);
        out.extend_from_slice(word);
    }
}

/// The merges over one piece of escaped text.
fn merge(
    spm: &Spm<'_>,
    text: &[u8],
    out: &mut Vec<u32>,
    syms: &mut Vec<Sym>,
    heap: &mut BinaryHeap<Bigram>,
) {
    let vocab = spm.vocab;
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
                    if let Some(id) = spm.byte_tokens[usize::from(byte)].or(spm.unk) {
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
