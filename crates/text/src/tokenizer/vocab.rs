//! The token table: every token's text in one buffer, its score and attributes, and an
//! open-addressing index from text to id.
//!
//! Built once per model load (Gemma 3 has 262,144 tokens), so it avoids one allocation per
//! token: texts are slices of a single `Vec<u8>`, the index is a flat `Vec<u64>` of
//! (hash tag, id) slots.

/// Token attributes, llama.cpp's `llama_token_attr` bits.
pub(crate) mod attr {
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;
}

/// The attribute a GGUF `tokenizer.ggml.token_type` value stands for.
pub(crate) fn attr_of_type(token_type: i128) -> u16 {
    match token_type {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => 0, // undefined
    }
}

/// Tokens: texts, scores, attributes and the text → id index.
#[derive(Debug, Clone)]
pub(crate) struct Vocab {
    text: Vec<u8>,
    /// `ends[i]` is the end of token `i` in `text`; token `i` starts at `ends[i - 1]` (or 0).
    ends: Vec<u32>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u16>,
    index: TextIndex,
    /// Longest token text, in bytes.
    pub max_token_len: usize,
}

impl Vocab {
    /// Builds the table; `Err((first, second))` names two ids with the same text.
    /// `n` is the number of texts and `text_bytes` their total length (capacity hints).
    pub fn new<T: AsRef<[u8]>>(
        texts: impl IntoIterator<Item = T>,
        n: usize,
        text_bytes: usize,
        scores: Vec<f32>,
        attrs: Vec<u16>,
    ) -> Result<Vocab, (u32, u32)> {
        let mut v = Vocab {
            text: Vec::with_capacity(text_bytes),
            ends: Vec::with_capacity(n),
            scores,
            attrs,
            index: TextIndex::with_capacity(n),
            max_token_len: 0,
        };
        for (id, t) in texts.into_iter().enumerate() {
            let id = id as u32;
            let t = t.as_ref();
            v.text.extend_from_slice(t);
            v.ends.push(v.text.len() as u32);
            v.max_token_len = v.max_token_len.max(t.len());
            if let Some(first) = v.index.insert(&v.text, &v.ends, id) {
                return Err((first, id));
            }
        }
        Ok(v)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Text of token `id` (empty for an id out of range).
    pub fn text(&self, id: u32) -> &[u8] {
        token_text(&self.text, &self.ends, id)
    }

    pub fn attr(&self, id: u32) -> u16 {
        self.attrs.get(id as usize).copied().unwrap_or(0)
    }

    pub fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    /// The id of the token whose text is `text`.
    pub fn get(&self, text: &[u8]) -> Option<u32> {
        self.index.get(&self.text, &self.ends, text)
    }

    /// The total bytes held, for sizing reports.
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + self.ends.capacity() * 4
            + self.scores.capacity() * 4
            + self.attrs.capacity() * 2
            + self.index.slots.capacity() * 8
    }
}

fn token_text<'a>(text: &'a [u8], ends: &[u32], id: u32) -> &'a [u8] {
    let i = id as usize;
    let end = ends.get(i).copied().unwrap_or(0) as usize;
    let start = if i == 0 {
        0
    } else {
        ends.get(i - 1).copied().unwrap_or(0) as usize
    };
    text.get(start..end).unwrap_or(&[])
}

/// Byte-string equality without a `memcmp` call for the short strings tokens are.
#[inline]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[i..i + 8]);
        u64::from_le_bytes(w)
    };
    match n {
        0..=7 => a.iter().zip(b).all(|(x, y)| x == y),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

/// A fast 64-bit hash of a short byte string (token texts are a few bytes long).
pub(crate) fn hash_bytes(b: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (b.len() as u64).wrapping_mul(K);
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(23) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    h ^ (h >> 29)
}

/// Open addressing with linear probing; a slot holds the upper 32 bits of the hash and the
/// id + 1 (0 = empty), so most misses never touch the texts.
#[derive(Debug, Clone)]
struct TextIndex {
    slots: Vec<u64>,
    mask: usize,
}

impl TextIndex {
    fn with_capacity(n: usize) -> TextIndex {
        let size = (n.max(4) * 2).next_power_of_two();
        TextIndex {
            slots: vec![0; size],
            mask: size - 1,
        }
    }

    /// Inserts `id` (whose text is already in `text`/`ends`); returns the id holding the same
    /// text, if any.
    fn insert(&mut self, text: &[u8], ends: &[u32], id: u32) -> Option<u32> {
        let t = token_text(text, ends, id);
        let h = hash_bytes(t);
        let tag = h >> 32;
        let mut i = h as usize & self.mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                self.slots[i] = (tag << 32) | (u64::from(id) + 1);
                return None;
            }
            let other = (s & 0xFFFF_FFFF) as u32 - 1;
            if s >> 32 == tag && same(token_text(text, ends, other), t) {
                return Some(other);
            }
            i = (i + 1) & self.mask;
        }
    }

    fn get(&self, text: &[u8], ends: &[u32], key: &[u8]) -> Option<u32> {
        let h = hash_bytes(key);
        let tag = h >> 32;
        let mut i = h as usize & self.mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return None;
            }
            if s >> 32 == tag {
                let id = (s & 0xFFFF_FFFF) as u32 - 1;
                if same(token_text(text, ends, id), key) {
                    return Some(id);
                }
            }
            i = (i + 1) & self.mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_finds_every_token_and_rejects_duplicates() {
        let words: Vec<Vec<u8>> = (0..5000).map(|i| format!("w{i}").into_bytes()).collect();
        let n = words.len();
        let v = Vocab::new(&words, n, 0, vec![0.0; n], vec![0; n]).unwrap();
        for (i, w) in words.iter().enumerate() {
            assert_eq!(v.get(w), Some(i as u32));
            assert_eq!(v.text(i as u32), &w[..]);
        }
        assert_eq!(v.get(b"nope"), None);
        assert_eq!(v.get(b""), None);
        assert_eq!(v.text(99_999), b"");
        let dup = vec![b"a".to_vec(), b"b".to_vec(), b"a".to_vec()];
        assert_eq!(
            Vocab::new(&dup, 3, 3, vec![0.0; 3], vec![0; 3]).err(),
            Some((0, 2))
        );
    }
}
