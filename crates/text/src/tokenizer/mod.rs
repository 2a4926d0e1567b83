//! Text ↔ token ids, built from a GGUF file's `tokenizer.ggml.*` metadata, reproducing
//! llama.cpp's tokenizers id for id.
//!
//! [`Tokenizer`] is the entry point: [`Tokenizer::from_gguf`] reads the vocabulary
//! (`load.rs`), [`Tokenizer::encode`] cuts special tokens out of the text (`special.rs`) and
//! runs the model's algorithm on the rest — SentencePiece-style merges by score (`spm.rs`,
//! `llama`), byte-level BPE after a pre-tokenizer split (`bpe.rs` with `pretok.rs` and
//! `regex.rs`, `gpt2`), or WordPiece (`wpm.rs`, `bert`) — and [`Tokenizer::decode`] /
//! [`Detokenizer`] turn ids back into text (`detok.rs`). Code-point classes come from
//! llama.cpp's own Unicode tables (`unicode.rs`), and the token table is one buffer plus an
//! index (`vocab.rs`), so building Gemma 3's 262,144-token vocabulary is cheap.

mod bpe;
mod cache;
mod detok;
mod error;
mod load;
mod pretok;
mod regex;
mod special;
mod spm;
mod unicode;
mod unicode_data;
mod vocab;
mod wpm;

use std::borrow::Cow;

pub use detok::Detokenizer;
pub use error::TokenizerError;

use special::{Fragment, Specials};
use vocab::{Vocab, attr};

/// Which algorithm a vocabulary uses (`tokenizer.ggml.model`).
#[derive(Debug, Clone)]
enum Kind {
    /// `llama`: SentencePiece-style merges by score with byte fallback.
    Spm {
        byte_tokens: Box<[Option<u32>; 256]>,
        cuts: spm::Cuts,
    },
    /// `gpt2`: byte-level BPE.
    Bpe(Box<bpe::Bpe>),
    /// `bert`: WordPiece.
    Wpm(wpm::Normalizer),
}

/// A vocabulary's fill-in-the-middle tokens (llama.cpp's `llama_vocab_fim_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fim {
    /// Before the code ahead of the cursor.
    pub pre: Option<u32>,
    /// Before the code after the cursor.
    pub suf: Option<u32>,
    /// Where the model writes the middle.
    pub mid: Option<u32>,
    pub pad: Option<u32>,
    /// Before the repository name (repo-level context).
    pub rep: Option<u32>,
    /// Before each file name of the context.
    pub sep: Option<u32>,
}

impl Fim {
    /// The prefix, suffix and middle tokens, when the vocabulary has all three (what filling
    /// in the middle needs).
    pub fn insert(&self) -> Option<(u32, u32, u32)> {
        Some((self.pre?, self.suf?, self.mid?))
    }
}

/// A model's tokenizer. Cheap to share between threads (`&Tokenizer` is all encoding needs).
#[derive(Clone)]
pub struct Tokenizer {
    kind: Kind,
    vocab: Vocab,
    specials: Specials,
    model: String,
    pre: String,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    sep: Option<u32>,
    pad: Option<u32>,
    /// End-of-generation tokens, sorted.
    eog: Vec<u32>,
    fim: Fim,
    add_bos: bool,
    add_eos: bool,
    add_sep: bool,
    add_space_prefix: bool,
    clean_spaces: bool,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Tokenizer {
    /// A summary: the vocabulary itself is too large to print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("model", &self.model)
            .field("pre", &self.pre)
            .field("n_vocab", &self.vocab.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("eot", &self.eot)
            .field("eog", &self.eog)
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Tokenizes `text`. `add_special` adds BOS / EOS where the model asks for them;
    /// `parse_special` lets the text of control tokens (`<|im_start|>`) become those tokens —
    /// leave it off for text a user typed. Never fails: text the vocabulary cannot express
    /// falls back to byte or unknown tokens.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        self.encode_with(text, add_special, parse_special, false)
    }

    /// [`Tokenizer::encode`] without its shortcuts (cutting SentencePiece text into words,
    /// memoizing repeated words): llama.cpp's algorithms step by step, slower, same ids. For
    /// tests that check the shortcuts change nothing.
    #[doc(hidden)]
    pub fn encode_without_shortcuts(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Vec<u32> {
        self.encode_with(text, add_special, parse_special, true)
    }

    fn encode_with(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        no_shortcuts: bool,
    ) -> Vec<u32> {
        let frags = self.specials.partition(&self.vocab, text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        let frag_text = |r: &std::ops::Range<usize>| text.get(r.clone()).unwrap_or("");
        match &self.kind {
            Kind::Spm { byte_tokens, cuts } => {
                let spm = spm::Spm {
                    vocab: &self.vocab,
                    byte_tokens,
                    unk: self.unk,
                    cuts,
                };
                if add_special && self.add_bos {
                    out.extend(self.bos);
                }
                let mut scratch = spm::Scratch::default();
                scratch.no_shortcuts = no_shortcuts;
                let mut prev_special = true;
                for f in &frags {
                    match f {
                        Fragment::Text(r) => {
                            spm::encode(
                                &spm,
                                frag_text(r),
                                self.add_space_prefix && prev_special,
                                &mut out,
                                &mut scratch,
                            );
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(*id);
                            prev_special = true;
                        }
                    }
                }
                if add_special && self.add_eos {
                    out.extend(self.eos);
                }
            }
            Kind::Bpe(bpe) => {
                if add_special && self.add_bos {
                    out.extend(self.bos);
                }
                let mut scratch = bpe::Scratch::default();
                scratch.no_shortcuts = no_shortcuts;
                for f in &frags {
                    match f {
                        Fragment::Text(r) => {
                            bpe.encode(&self.vocab, frag_text(r), &mut out, &mut scratch)
                        }
                        Fragment::Token(id) => out.push(*id),
                    }
                }
                if add_special && self.add_eos {
                    out.extend(self.eos);
                }
            }
            Kind::Wpm(norm) => {
                if add_special {
                    out.extend(self.bos);
                }
                for f in &frags {
                    match f {
                        Fragment::Text(r) => {
                            wpm::encode(&self.vocab, self.unk, *norm, frag_text(r), &mut out)
                        }
                        Fragment::Token(id) => out.push(*id),
                    }
                }
                if add_special {
                    out.extend(self.sep);
                }
            }
        }
        out
    }

    /// Number of tokens in the vocabulary.
    pub fn n_vocab(&self) -> usize {
        self.vocab.len()
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// End-of-turn token (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, …).
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }

    /// End-of-message token (`<|eom_id|>`).
    pub fn eom(&self) -> Option<u32> {
        self.eom
    }

    /// Unknown token.
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }

    /// Separator token (BERT's `[SEP]`).
    pub fn sep(&self) -> Option<u32> {
        self.sep
    }

    /// Padding token.
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }

    /// The fill-in-the-middle tokens (`/infill`), from the file's keys or found by their text
    /// as llama.cpp finds them.
    pub fn fim(&self) -> Fim {
        self.fim
    }

    /// Whether generating `id` ends generation: EOS, EOT, EOM and the tokens llama.cpp
    /// recognises by text (`<|im_end|>`, `<end_of_turn>`, `<|endoftext|>`, …).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The end-of-generation tokens, sorted.
    pub fn eog_tokens(&self) -> &[u32] {
        &self.eog
    }

    /// Whether `encode(.., add_special = true, ..)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Whether the model wants a separator after the text (embedding models).
    pub fn add_sep(&self) -> bool {
        self.add_sep
    }

    /// Whether `id` is a control token (never produced from plain text).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab.attr(id) & attr::CONTROL != 0
    }

    /// The raw vocabulary text of `id` (`▁Hello`, `ĠHello`, `<0x0A>`), if it exists.
    pub fn token_text(&self, id: u32) -> Option<&[u8]> {
        ((id as usize) < self.vocab.len()).then(|| self.vocab.text(id))
    }

    /// The id whose vocabulary text is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.get(text.as_bytes())
    }

    /// `tokenizer.ggml.model`.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// `tokenizer.ggml.pre` (empty when absent).
    pub fn pre(&self) -> &str {
        &self.pre
    }

    /// Approximate bytes of memory the tokenizer holds (its token table, index, merge table
    /// and special-token trie).
    pub fn heap_bytes(&self) -> usize {
        let kind = match &self.kind {
            Kind::Bpe(b) => b.heap_bytes(),
            Kind::Spm { .. } | Kind::Wpm(_) => 0,
        };
        self.vocab.heap_bytes() + self.specials.heap_bytes() + kind
    }

    /// Things worth telling the user that did not stop loading (a missing pre-tokenizer, a
    /// special token id out of range, …).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The bytes `id` stands for, as llama.cpp's `token_to_piece` (without `lstrip`): control
    /// and unknown tokens give nothing unless `special`. A piece may be part of a UTF-8
    /// character; [`Detokenizer`] reassembles those.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Result<Cow<'_, [u8]>, TokenizerError> {
        self.check_id(id)?;
        Ok(self.piece(id, special))
    }

    fn check_id(&self, id: u32) -> Result<(), TokenizerError> {
        if (id as usize) < self.vocab.len() {
            Ok(())
        } else {
            Err(TokenizerError::BadId {
                id,
                n_vocab: self.vocab.len(),
            })
        }
    }
}
