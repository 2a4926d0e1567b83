//! WordPiece (`tokenizer.ggml.model = bert`), as llama.cpp's `llm_tokenizer_wpm_session`:
//! BERT's normalizer (accents stripped through NFD, lowercase, control characters dropped,
//! punctuation and CJK characters split off as words), then each word, prefixed with `▁`
//! (llama.cpp's converter marks word starts that way instead of `##` on continuations), is cut
//! greedily into the longest tokens; a word that cannot be cut completely becomes `[UNK]`.

use super::spm::SPACE_MARK;
use super::unicode::{flags, nfd_first, to_lower};
use super::vocab::Vocab;

/// BERT normalizer switches (`tokenizer.ggml.normalizer.*`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Normalizer {
    pub lowercase: bool,
    pub strip_accents: bool,
}

fn is_chinese_char(cp: u32) -> bool {
    matches!(cp,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B920..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// The normalized words of `text`.
fn words(text: &str, norm: Normalizer) -> Vec<String> {
    let mut words = vec![String::new()];
    for c in text.chars() {
        let mut cp = c as u32;
        if norm.strip_accents {
            cp = nfd_first(cp);
        }
        let f = flags(cp);
        if f.is_whitespace() {
            if !words.last().is_some_and(String::is_empty) {
                words.push(String::new());
            }
            continue;
        }
        if cp == 0 || cp == 0xFFFD || f.is_control() || (norm.strip_accents && f.is_mark()) {
            continue;
        }
        let out = if norm.lowercase { to_lower(cp) } else { cp };
        let Some(ch) = char::from_u32(out) else {
            continue;
        };
        if f.is_punctuation() || (cp < 0x7F && f.is_symbol()) || is_chinese_char(cp) {
            if !words.last().is_some_and(String::is_empty) {
                words.push(String::new());
            }
            words.push(ch.to_string());
            words.push(String::new());
        } else if let Some(w) = words.last_mut() {
            w.push(ch);
        }
    }
    words.retain(|w| !w.is_empty());
    words
}

/// Tokenizes one fragment, appending ids to `out`.
pub(crate) fn encode(
    vocab: &Vocab,
    unk: Option<u32>,
    norm: Normalizer,
    text: &str,
    out: &mut Vec<u32>,
) {
    let mut word = Vec::new();
    for w in words(text, norm) {
        word.clear();
        word.extend_from_slice(SPACE_MARK.as_bytes());
        word.extend_from_slice(w.as_bytes());
        let n = word.len();
        let before = out.len();
        let mut i = 0;
        while i < n {
            let longest = (i + 1..=n.min(i + vocab.max_token_len + 1))
                .rev()
                .find_map(|j| vocab.get(&word[i..j]).map(|id| (j, id)));
            match longest {
                Some((j, id)) => {
                    out.push(id);
                    i = j;
                }
                None => {
                    out.truncate(before);
                    break;
                }
            }
        }
        if out.len() == before {
            out.extend(unk);
        }
    }
}
