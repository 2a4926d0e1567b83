//! A per-call memo of word → ids. Text repeats words, and a word's tokens never depend on
//! what surrounds it once the pre-tokenizer (BPE) or a safe cut (SPM) has isolated it, so the
//! merges run once per distinct word. Bounded, so hostile text cannot make it grow without
//! limit beyond the text itself.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::vocab::hash_bytes;

/// Words longer than this are not memoized (rarely repeated, and costly to hash).
const MAX_WORD: usize = 48;
/// Distinct words memoized per call.
const MAX_WORDS: usize = 1 << 16;

#[derive(Default)]
struct ByteHasher(u64);

impl Hasher for ByteHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0 = self.0.rotate_left(7) ^ hash_bytes(bytes);
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = self.0.rotate_left(7) ^ n as u64;
    }
}

#[derive(Debug, Default)]
pub(crate) struct WordCache {
    map: HashMap<Box<[u8]>, (u32, u32), BuildHasherDefault<ByteHasher>>,
    ids: Vec<u32>,
}

impl std::fmt::Debug for ByteHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ByteHasher")
    }
}

impl WordCache {
    /// The ids memoized for `word`.
    pub fn get(&self, word: &[u8]) -> Option<&[u32]> {
        if word.len() > MAX_WORD {
            return None;
        }
        let &(start, end) = self.map.get(word)?;
        self.ids.get(start as usize..end as usize)
    }

    /// Memoizes `ids` for `word` (ignored when the word is long or the memo is full).
    pub fn insert(&mut self, word: &[u8], ids: &[u32]) {
        if word.len() > MAX_WORD || self.map.len() >= MAX_WORDS {
            return;
        }
        let start = self.ids.len() as u32;
        self.ids.extend_from_slice(ids);
        self.map.insert(word.into(), (start, self.ids.len() as u32));
    }
}
