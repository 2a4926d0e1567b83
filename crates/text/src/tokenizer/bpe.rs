//! Byte-level BPE (`tokenizer.ggml.model = gpt2`): each pre-tokenized word becomes one
//! symbol per byte (GPT-2's byte characters), then the adjacent pair of lowest merge rank is
//! merged (leftmost first on ties) until no pair has a rank, as llama.cpp's
//! `llm_tokenizer_bpe_session` does.
//!
//! llama.cpp merges strings; here symbols are ids, so a merge is one table look-up. Strings
//! that merges name but the vocabulary lacks get ids past the vocabulary ("virtual" symbols)
//! so that the rare vocabulary whose merges produce non-tokens still tokenizes as llama.cpp
//! does: a final symbol that is not a token falls back to the tokens of its single bytes.
//!
//! Gemma 4's vocabulary (`tokenizer.ggml.model = gemma4`) is SentencePiece-style BPE on the
//! same machinery ([`Bpe::spm_style`]): spaces become `▁`, the text is split only into
//! newline and non-newline runs, each UTF-8 character starts as one symbol, and a final
//! symbol that is not a token falls back to `<0xXX>` byte tokens.

use std::collections::{BinaryHeap, HashMap};
use std::ops::Range;

use super::cache::WordCache;
use super::pretok::PreTokenizer;
use super::spm::SPACE_MARK;
use super::unicode::byte_to_char;
use super::vocab::{Vocab, hash_bytes};

/// Merge rules and per-byte symbols of one vocabulary.
#[derive(Debug, Clone)]
pub(crate) struct Bpe {
    pub pre: PreTokenizer,
    /// A whole word that is a token is emitted without merges (`ignore_merges`).
    pub ignore_merges: bool,
    /// SentencePiece-style (Gemma 4) rather than byte-level; see the module header.
    pub spm_style: bool,
    /// Symbol of each byte's GPT-2 character (byte-level only).
    byte_sym: [u32; 256],
    /// The `<0xXX>` token of each byte (SentencePiece-style only).
    byte_tokens: [Option<u32>; 256],
    /// Symbols of strings that merges name but the vocabulary lacks (SentencePiece-style
    /// only: a character's symbol is looked up while encoding).
    virtual_ids: HashMap<Vec<u8>, u32>,
    merges: PairMap,
    /// Texts of symbols past the vocabulary (id `n_vocab + i`).
    virtual_text: Vec<Vec<u8>>,
    n_vocab: u32,
}

/// Interns strings that are not tokens while the merge table is built.
struct Interner<'a> {
    vocab: &'a Vocab,
    extra: HashMap<Vec<u8>, u32>,
    texts: Vec<Vec<u8>>,
}

impl Interner<'_> {
    fn id(&mut self, s: &[u8]) -> u32 {
        if let Some(id) = self.vocab.get(s) {
            return id;
        }
        if let Some(&id) = self.extra.get(s) {
            return id;
        }
        let id = self.vocab.len() as u32 + self.texts.len() as u32;
        self.texts.push(s.to_vec());
        self.extra.insert(s.to_vec(), id);
        id
    }
}

impl Bpe {
    /// Builds the merge table from `tokenizer.ggml.merges` strings ("left right"; rank =
    /// position; the first of duplicate pairs wins).
    pub fn new<'m>(
        vocab: &Vocab,
        merges: impl ExactSizeIterator<Item = &'m [u8]>,
        pre: PreTokenizer,
        ignore_merges: bool,
        spm_style: bool,
    ) -> Bpe {
        let mut interner = Interner {
            vocab,
            extra: HashMap::new(),
            texts: Vec::new(),
        };
        let mut byte_sym = [NO_MERGE; 256];
        let mut byte_tokens = [None; 256];
        let mut buf = [0u8; 4];
        for (b, (sym, tok)) in byte_sym.iter_mut().zip(&mut byte_tokens).enumerate() {
            if spm_style {
                *tok = vocab.get(format!("<0x{b:02X}>").as_bytes());
            } else {
                *sym = interner.id(byte_to_char(b as u8).encode_utf8(&mut buf).as_bytes());
            }
        }
        let mut table = PairMap::with_capacity(merges.len());
        let mut joined = Vec::new();
        for (rank, m) in merges.enumerate() {
            // llama.cpp splits at the first space after the first byte; no space: ("", "")
            let Some(pos) = m.iter().skip(1).position(|&c| c == b' ').map(|p| p + 1) else {
                continue;
            };
            let (left, right) = (&m[..pos], &m[pos + 1..]);
            if left.is_empty() || right.is_empty() {
                continue;
            }
            let l = interner.id(left);
            let r = interner.id(right);
            joined.clear();
            joined.extend_from_slice(left);
            joined.extend_from_slice(right);
            let result = interner.id(&joined);
            table.insert_first(l, r, rank as u32, result);
        }
        Bpe {
            pre,
            ignore_merges,
            spm_style,
            byte_sym,
            byte_tokens,
            virtual_ids: if spm_style {
                interner.extra
            } else {
                HashMap::new()
            },
            merges: table,
            virtual_text: interner.texts,
            n_vocab: vocab.len() as u32,
        }
    }

    /// Approximate bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.merges.keys.capacity() * 16
            + self
                .virtual_text
                .iter()
                .map(|t| t.capacity() + 24)
                .sum::<usize>()
    }

    /// Tokenizes one text fragment, appending ids to `out`.
    pub fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>, s: &mut Scratch) {
        let escaped;
        let text = if self.spm_style && text.contains(' ') {
            escaped = text.replace(' ', SPACE_MARK);
            &escaped[..]
        } else {
            text
        };
        s.words.clear();
        self.pre.split(text, &mut s.words);
        let words = std::mem::take(&mut s.words);
        let mut ids = std::mem::take(&mut s.word);
        for w in &words {
            let w = &text.as_bytes()[w.clone()];
            if s.no_shortcuts {
                self.encode_word(vocab, w, out, s);
                continue;
            }
            if let Some(cached) = s.cache.get(w) {
                out.extend_from_slice(cached);
                continue;
            }
            ids.clear();
            self.encode_word(vocab, w, &mut ids, s);
            s.cache.insert(w, &ids);
            out.extend_from_slice(&ids);
        }
        s.words = words;
        s.word = ids;
    }

    fn encode_word(&self, vocab: &Vocab, word: &[u8], out: &mut Vec<u32>, s: &mut Scratch) {
        if word.is_empty() {
            return;
        }
        if self.spm_style {
            return self.encode_word_spm_style(vocab, word, out, s);
        }
        if word.len() == 1 {
            self.emit(vocab, self.byte_sym[usize::from(word[0])], out);
            return;
        }
        if self.ignore_merges {
            s.encoded.clear();
            let mut buf = [0u8; 4];
            for &b in word {
                s.encoded
                    .extend_from_slice(byte_to_char(b).encode_utf8(&mut buf).as_bytes());
            }
            if let Some(id) = vocab.get(&s.encoded) {
                out.push(id);
                return;
            }
        }
        let syms = &mut s.syms;
        syms.clear();
        syms.extend(word.iter().enumerate().map(|(i, &b)| Sym {
            id: self.byte_sym[usize::from(b)],
            pos: i as u32,
            prev: i as i32 - 1,
            next: if i + 1 == word.len() {
                -1
            } else {
                i as i32 + 1
            },
        }));
        self.merge(syms, &mut s.heap);
        let mut i = 0i32;
        while i >= 0 {
            let sym = syms[i as usize];
            self.emit(vocab, sym.id, out);
            i = sym.next;
        }
    }

    /// A SentencePiece-style word (raw UTF-8): llama.cpp's session with `byte_encode` off.
    fn encode_word_spm_style(
        &self,
        vocab: &Vocab,
        word: &[u8],
        out: &mut Vec<u32>,
        s: &mut Scratch,
    ) {
        // A run of newlines that is a token is taken whole (llama.cpp's Gemma 4 fix, #21343).
        let whole = (self.ignore_merges || word.iter().all(|&b| b == b'\n'))
            .then(|| vocab.get(word))
            .flatten();
        if let Some(id) = whole {
            out.push(id);
            return;
        }
        let syms = &mut s.syms;
        syms.clear();
        // llama.cpp steps by the length its first byte announces (clamped to the end).
        let mut pos = 0usize;
        while pos < word.len() {
            let len = utf8_len(word[pos]).min(word.len() - pos);
            let ch = &word[pos..pos + len];
            let id = vocab
                .get(ch)
                .or_else(|| self.virtual_ids.get(ch).copied())
                .unwrap_or(NO_MERGE);
            let i = syms.len() as i32;
            syms.push(Sym {
                id,
                pos: pos as u32,
                prev: i - 1,
                next: i + 1,
            });
            pos += len;
        }
        if let Some(last) = syms.last_mut() {
            last.next = -1;
        }
        self.merge(syms, &mut s.heap);
        let mut i = 0i32;
        while i >= 0 {
            let sym = syms[i as usize];
            if sym.id < self.n_vocab {
                out.push(sym.id);
            } else {
                // not a token: the `<0xXX>` tokens of its bytes (those that exist)
                let end = if sym.next >= 0 {
                    syms[sym.next as usize].pos as usize
                } else {
                    word.len()
                };
                out.extend(
                    word[sym.pos as usize..end]
                        .iter()
                        .filter_map(|&b| self.byte_tokens[usize::from(b)]),
                );
            }
            i = sym.next;
        }
    }

    /// Merges the pair of lowest rank (leftmost on ties) until none is left.
    fn merge(&self, syms: &mut [Sym], heap: &mut BinaryHeap<Pair>) {
        heap.clear();
        for i in 1..syms.len() {
            self.push_pair(syms, heap, i - 1, i);
        }
        while let Some(Pair {
            rank: _,
            left,
            left_id,
            right_id,
            result,
        }) = heap.pop()
        {
            let l = left as usize;
            let r = syms[l].next;
            // stale: a side was merged since the pair was queued
            if syms[l].id != left_id || r < 0 || syms[r as usize].id != right_id {
                continue;
            }
            let r = r as usize;
            syms[l].id = result;
            let after = syms[r].next;
            syms[l].next = after;
            syms[r].id = DEAD;
            if after >= 0 {
                syms[after as usize].prev = l as i32;
            }
            let before = syms[l].prev;
            if before >= 0 {
                self.push_pair(syms, heap, before as usize, l);
            }
            if after >= 0 {
                self.push_pair(syms, heap, l, after as usize);
            }
        }
    }

    fn push_pair(&self, syms: &[Sym], heap: &mut BinaryHeap<Pair>, l: usize, r: usize) {
        let (left_id, right_id) = (syms[l].id, syms[r].id);
        if let Some((rank, result)) = self.merges.get(left_id, right_id) {
            heap.push(Pair {
                rank,
                left: l as u32,
                left_id,
                right_id,
                result,
            });
        }
    }

    /// Emits a final symbol: its token, or for a string the vocabulary lacks, the tokens of
    /// its single bytes that exist (llama.cpp's fallback).
    fn emit(&self, vocab: &Vocab, id: u32, out: &mut Vec<u32>) {
        if id < self.n_vocab {
            out.push(id);
            return;
        }
        let text = self
            .virtual_text
            .get((id - self.n_vocab) as usize)
            .map_or(&[][..], |t| &t[..]);
        for &b in text {
            if let Some(t) = vocab.get(&[b]) {
                out.push(t);
            }
        }
    }
}

const DEAD: u32 = u32::MAX;
/// A symbol no merge names and the vocabulary lacks (a character of a SentencePiece-style
/// word, or a byte-level byte with no GPT-2 character symbol, which cannot happen).
const NO_MERGE: u32 = u32::MAX - 1;

/// The length of the UTF-8 sequence a lead byte announces (llama.cpp's `unicode_len_utf8`).
fn utf8_len(b: u8) -> usize {
    const LOOKUP: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LOOKUP[usize::from(b >> 4)]
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Sym {
    id: u32,
    /// Byte offset of the symbol's first character in its word.
    pos: u32,
    prev: i32,
    next: i32,
}

/// A queued merge; the heap pops the lowest rank, then the leftmost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pair {
    rank: u32,
    left: u32,
    left_id: u32,
    right_id: u32,
    result: u32,
}

impl Ord for Pair {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.rank, other.left).cmp(&(self.rank, self.left))
    }
}

impl PartialOrd for Pair {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Buffers reused across the words of one `encode` call.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    words: Vec<Range<usize>>,
    syms: Vec<Sym>,
    heap: BinaryHeap<Pair>,
    encoded: Vec<u8>,
    word: Vec<u32>,
    cache: WordCache,
    /// Memoize nothing (a test oracle).
    pub no_shortcuts: bool,
}

/// (left, right) symbol ids → (rank, merged symbol), open addressing.
#[derive(Debug, Clone)]
struct PairMap {
    /// key (left << 32 | right) + 1, 0 = empty
    keys: Vec<u64>,
    values: Vec<(u32, u32)>,
    mask: usize,
}

impl PairMap {
    fn with_capacity(n: usize) -> PairMap {
        let size = (n.max(4) * 2).next_power_of_two();
        PairMap {
            keys: vec![0; size],
            values: vec![(0, 0); size],
            mask: size - 1,
        }
    }

    fn slot(&self, key: u64) -> usize {
        hash_bytes(&key.to_le_bytes()) as usize & self.mask
    }

    fn insert_first(&mut self, l: u32, r: u32, rank: u32, result: u32) {
        let key = ((u64::from(l) << 32) | u64::from(r)).wrapping_add(1);
        let mut i = self.slot(key);
        loop {
            if self.keys[i] == 0 {
                self.keys[i] = key;
                self.values[i] = (rank, result);
                return;
            }
            if self.keys[i] == key {
                return;
            }
            i = (i + 1) & self.mask;
        }
    }

    fn get(&self, l: u32, r: u32) -> Option<(u32, u32)> {
        let key = ((u64::from(l) << 32) | u64::from(r)).wrapping_add(1);
        let mut i = self.slot(key);
        loop {
            match self.keys[i] {
                0 => return None,
                k if k == key => return Some(self.values[i]),
                _ => i = (i + 1) & self.mask,
            }
        }
    }
}
