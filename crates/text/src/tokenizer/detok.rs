//! Ids back to text: one token's bytes ([`Tokenizer::token_to_piece`]), a whole sequence as
//! llama.cpp's `detokenize` renders it ([`Tokenizer::decode`]), and a [`Detokenizer`] for
//! streaming that only ever hands out complete UTF-8.
//!
//! A token's piece can be part of a character: byte-fallback tokens (`<0xE2>`) and byte-level
//! BPE tokens split multi-byte characters. Streaming holds such bytes back until the
//! character is complete; bytes that can never become valid UTF-8 come out as U+FFFD.

use std::borrow::Cow;

use super::spm::SPACE_MARK;
use super::unicode::char_to_byte;
use super::vocab::attr;
use super::{Kind, Tokenizer, TokenizerError};

/// The byte of a `<0xNN>` token, read like llama.cpp's `strtol` of its two hex digits.
fn byte_of_token(text: &[u8]) -> u8 {
    let mut v: u32 = 0;
    for &c in text.get(3..5).unwrap_or(&[]) {
        match (c as char).to_digit(16) {
            Some(d) => v = v * 16 + d,
            None => break,
        }
    }
    v as u8
}

/// Undoes GPT-2's byte-to-character map; characters outside it are kept visibly, as
/// llama.cpp's `llama_decode_text` does.
fn decode_byte_chars(text: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(text);
    let mut out = Vec::with_capacity(text.len());
    for c in s.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text);
                out.push(b']');
            }
        }
    }
    out
}

impl Tokenizer {
    /// The piece of a valid id.
    pub(super) fn piece(&self, id: u32, special: bool) -> Cow<'_, [u8]> {
        let a = self.vocab.attr(id);
        let text = self.vocab.text(id);
        if a & (attr::UNKNOWN | attr::CONTROL) != 0 && !special {
            return Cow::Borrowed(&[]);
        }
        if a & (attr::UNKNOWN | attr::CONTROL | attr::USER_DEFINED) != 0 {
            return Cow::Borrowed(text);
        }
        if a & attr::NORMAL != 0 {
            return match &self.kind {
                Kind::Bpe(b) if !b.spm_style => Cow::Owned(decode_byte_chars(text)),
                Kind::Bpe(_) | Kind::Spm { .. } | Kind::Wpm(_) => {
                    let mark = SPACE_MARK.as_bytes();
                    if text.windows(mark.len()).any(|w| w == mark) {
                        Cow::Owned(
                            String::from_utf8_lossy(text)
                                .replace(SPACE_MARK, " ")
                                .into_bytes(),
                        )
                    } else {
                        Cow::Borrowed(text)
                    }
                }
            };
        }
        if a & attr::BYTE != 0 {
            return Cow::Owned(vec![byte_of_token(text)]);
        }
        Cow::Borrowed(&[])
    }

    /// Renders `ids` as llama.cpp's `detokenize(ids, remove_special = false, special)`: the
    /// leading space the tokenizer added is dropped (`add_space_prefix`) and, for vocabularies
    /// that ask for it, spaces before punctuation are tidied. Invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32], special: bool) -> Result<String, TokenizerError> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        let mut remove_space = self.add_space_prefix;
        for &id in ids {
            self.check_id(id)?;
            let piece = self.piece(id, special);
            let mut p = &piece[..];
            if remove_space && p.first() == Some(&b' ') {
                p = &p[1..];
            }
            remove_space = false;
            bytes.extend_from_slice(p);
        }
        if self.clean_spaces {
            clean_spaces(&mut bytes);
        }
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A streaming detokenizer: feed it generated ids, get text as it completes.
    /// `special` renders control tokens' text (`<|im_end|>`) instead of nothing.
    pub fn detokenizer(&self, special: bool) -> Detokenizer<'_> {
        Detokenizer {
            tokenizer: self,
            special,
            pending: Vec::new(),
        }
    }
}

/// llama.cpp's `clean_up_tokenization_spaces`, three passes in place.
fn clean_spaces(text: &mut Vec<u8>) {
    // " ?", " !", " .", " ," lose the space
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
    // " ' " loses both spaces
    let n = text.len();
    let mut total = usize::from(n > 0);
    let mut i = 1;
    while i < n {
        let x = text[i];
        if x == b'\'' && i + 1 < n && text[i - 1] == b' ' && text[i + 1] == b' ' {
            total -= 1;
            i += 1;
            text[i] = 0;
        }
        text[total] = x;
        total += 1;
        i += 1;
    }
    text.truncate(total);
    // " 's", " 'm", " 're", " 've" lose the space
    let n = text.len();
    let mut total = usize::from(n > 0);
    for i in 1..n {
        let x = text[i];
        if text[i - 1] == b' ' && x == b'\'' && i + 1 < n {
            let x1 = text[i + 1];
            if x1 == b's' || x1 == b'm' {
                total -= 1;
            } else if x1 != b't' && x1 != b'd' && i + 2 < n {
                let x2 = text[i + 2];
                if (x1 == b'r' || x1 == b'v') && x2 == b'e' {
                    total -= 1;
                }
            }
        }
        text[total] = x;
        total += 1;
    }
    text.truncate(total);
}

/// Turns a stream of ids into text, holding back the bytes of an unfinished UTF-8 character.
/// Every string it returns is valid UTF-8 and their concatenation is the whole text.
#[derive(Debug)]
pub struct Detokenizer<'t> {
    tokenizer: &'t Tokenizer,
    special: bool,
    pending: Vec<u8>,
}

impl Detokenizer<'_> {
    /// Adds one token; returns the text completed by it (possibly empty). An id out of range
    /// is an error and changes nothing.
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        self.tokenizer.check_id(id)?;
        self.pending
            .extend_from_slice(&self.tokenizer.piece(id, self.special));
        Ok(self.take(false))
    }

    /// Ends the stream: bytes still held (a character that never completed) come out as
    /// U+FFFD.
    pub fn finish(&mut self) -> String {
        self.take(true)
    }

    /// Whether bytes of an unfinished character are held.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn take(&mut self, end: bool) -> String {
        let mut out = String::new();
        let mut rest = &self.pending[..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &bad[n..];
                        }
                        None if end => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &[];
                            break;
                        }
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let len = self.pending.len();
        self.pending.drain(..len - keep);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        let mut b = s.as_bytes().to_vec();
        clean_spaces(&mut b);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn clean_spaces_like_llama_cpp() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("a ' b"), "a'b");
        assert_eq!(clean("it 's he 'll we 're I 'm"), "it's he 'll we're I'm");
        assert_eq!(clean(""), "");
        assert_eq!(clean(" ."), ".");
    }

    #[test]
    fn byte_tokens_parse_like_strtol() {
        assert_eq!(byte_of_token(b"<0x0A>"), 10);
        assert_eq!(byte_of_token(b"<0xFF>"), 255);
        assert_eq!(byte_of_token(b"<0xZ>"), 0);
        assert_eq!(byte_of_token(b"<"), 0);
    }
}
