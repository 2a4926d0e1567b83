//! Constrained output: a [`Grammar`] lets through only the tokens that keep the text inside a
//! formal language — a GBNF grammar (llama.cpp's format), a Lark grammar (llguidance's), or a
//! JSON schema — and lets generation end only where the language allows it.
//!
//! The matching is llguidance's (an Earley parser over lexemes, computing a token mask from a
//! trie of the vocabulary's bytes). [`GrammarVocab`] builds that trie once per model from the
//! [`Tokenizer`]: every token's piece, with control tokens (and the end-of-generation ones) under
//! llguidance's special-token marker, so text in a grammar never matches them.
//! [`GrammarVocab::compile`] turns a [`GrammarSource`] into a [`Grammar`] (or a
//! [`GrammarError`] naming the problem); GBNF is first rewritten as Lark by [`gbnf`].
//!
//! In the sampler chain ([`crate::sampler::Chain`]) a grammar works as llama.cpp's
//! `common_sampler_sample`: the chain picks from the raw candidates; if the grammar rejects the
//! pick, the candidates are refilled, every disallowed token set to `-inf`, and the chain picks
//! again. End-of-generation tokens are allowed exactly when the grammar could end here; once
//! it cannot go on, only they are — so a grammar that reaches its end stops generation.

mod gbnf;

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde_json::Value;

use crate::sampler::Candidates;
use crate::tokenizer::Tokenizer;

pub use gbnf::{GbnfError, to_lark as gbnf_to_lark};

/// What a grammar is written in.
#[derive(Clone, Debug, PartialEq)]
pub enum GrammarSource {
    /// llama.cpp's GBNF (text starting with `%llguidance` is taken as Lark, as llama.cpp does).
    Gbnf(String),
    /// llguidance's Lark dialect.
    Lark(String),
    /// A JSON schema; the output is JSON that validates against it.
    JsonSchema(Value),
}

/// Why a grammar could not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrammarError {
    #[error("invalid GBNF grammar: {0}")]
    Gbnf(String),
    #[error("invalid grammar: {0}")]
    Lark(String),
    #[error("invalid JSON schema: {0}")]
    JsonSchema(String),
    #[error("the vocabulary cannot be used for grammars: {0}")]
    Vocab(String),
}

/// Whitespace allowed between JSON tokens: llama.cpp's `space` rule of `json-schema-to-grammar`
/// (`| " " | "\n"{1,2} [ \t]{0,20}`), bounded so a model cannot emit whitespace forever.
const JSON_WHITESPACE: &str = r"(?: |\n{1,2}[ \t]{0,20})";

/// A model's vocabulary prepared for grammars: the token trie and llguidance's parser
/// factory (slices of the vocabulary precomputed for fast masks). Build once per model.
#[derive(Clone)]
pub struct GrammarVocab {
    factory: Arc<ParserFactory>,
    eog: Arc<[u32]>,
}

impl std::fmt::Debug for GrammarVocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarVocab")
            .field("n_vocab", &self.factory.tok_env().tok_trie().vocab_size())
            .field("eog", &self.eog)
            .finish()
    }
}

impl GrammarVocab {
    pub fn new(tok: &Tokenizer) -> Result<GrammarVocab, GrammarError> {
        let n = tok.n_vocab();
        let n_u32 = u32::try_from(n).map_err(|_| GrammarError::Vocab("too many tokens".into()))?;
        let eog: Vec<u32> = tok.eog_tokens().to_vec();
        // llama.cpp's llguidance glue takes EOT, else EOS, as the trie's end token.
        let Some(first) = tok.eot().or(tok.eos()).or(eog.first().copied()) else {
            return Err(GrammarError::Vocab(
                "the model has no end-of-generation token".into(),
            ));
        };
        let mut words = Vec::with_capacity(n);
        for id in 0..n_u32 {
            let special = tok.is_control(id) || eog.contains(&id);
            let piece = if special {
                Vec::new()
            } else {
                tok.token_to_piece(id, false)
                    .map(|p| p.into_owned())
                    .unwrap_or_default()
            };
            let word = if piece.is_empty() {
                let text = tok
                    .token_to_piece(id, true)
                    .map(|p| p.into_owned())
                    .unwrap_or_default();
                if text.is_empty() {
                    Vec::new()
                } else {
                    let mut w = Vec::with_capacity(text.len() + 1);
                    w.push(TokTrie::SPECIAL_TOKEN_MARKER);
                    w.extend_from_slice(&text);
                    w
                }
            } else {
                piece
            };
            words.push(word);
        }
        let info = TokRxInfo {
            vocab_size: n_u32,
            tok_eos: first,
            tok_bos: tok.bos(),
            tok_pad: tok.pad(),
            tok_unk: tok.unk(),
            tok_end_of_turn: tok.eot(),
        };
        let mut eos = vec![first];
        eos.extend(eog.iter().copied().filter(|&e| e != first && e < n_u32));
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&eos);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| GrammarError::Vocab(e.to_string()))?;
        factory.quiet();
        Ok(GrammarVocab {
            factory: Arc::new(factory),
            eog: eos.into(),
        })
    }

    /// Compiles a grammar for this vocabulary. `tok` resolves GBNF's `<token>` references.
    pub fn compile(&self, src: &GrammarSource, tok: &Tokenizer) -> Result<Grammar, GrammarError> {
        let (top, err): (TopLevelGrammar, fn(String) -> GrammarError) = match src {
            GrammarSource::Gbnf(text) if text.trim_start().starts_with("%llguidance") => {
                (TopLevelGrammar::from_lark(text.clone()), GrammarError::Lark)
            }
            GrammarSource::Gbnf(text) => {
                let token_id = |t: &str| match tok.encode(t, false, true).as_slice() {
                    [id] => Some(*id),
                    _ => None,
                };
                let lark = gbnf::to_lark(text, &token_id).map_err(|e| GrammarError::Gbnf(e.0))?;
                (TopLevelGrammar::from_lark(lark), GrammarError::Gbnf)
            }
            GrammarSource::Lark(text) => {
                (TopLevelGrammar::from_lark(text.clone()), GrammarError::Lark)
            }
            GrammarSource::JsonSchema(schema) => {
                let mut schema = schema.clone();
                match &mut schema {
                    Value::Object(m) => {
                        if !m.contains_key("x-guidance") {
                            m.insert(
                                "x-guidance".into(),
                                serde_json::json!({ "whitespace_pattern": JSON_WHITESPACE }),
                            );
                        }
                    }
                    Value::Bool(_) => {}
                    other => {
                        return Err(GrammarError::JsonSchema(format!(
                            "a schema is a JSON object or a boolean, not {other}"
                        )));
                    }
                }
                (
                    TopLevelGrammar::from_json_schema(schema),
                    GrammarError::JsonSchema,
                )
            }
        };
        let parser = self
            .factory
            .create_parser(top)
            .map_err(|e| err(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(err(e));
        }
        Ok(Grammar {
            matcher,
            eog: self.eog.clone(),
            n_vocab: self.factory.tok_env().tok_trie().vocab_size() as u32,
            source: Arc::new(src.clone()),
            mask: None,
        })
    }
}

/// What the grammar allows at the current position.
#[derive(Clone)]
enum Mask {
    /// These tokens (end-of-generation ones excepted), and end-of-generation when `eog`.
    Tokens { allowed: SimpleVob, eog: bool },
    /// Only end-of-generation: the grammar is complete and cannot go on (or failed).
    EogOnly,
}

/// A compiled grammar and where its match stands; cloning gives an independent matcher at the
/// same position (each choice of a request gets its own).
#[derive(Clone)]
pub struct Grammar {
    matcher: Matcher,
    eog: Arc<[u32]>,
    /// Tokens the trie knows (ids from here on are never allowed).
    n_vocab: u32,
    source: Arc<GrammarSource>,
    /// The mask at the current position, once computed.
    mask: Option<Mask>,
}

impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammar")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Two grammars are equal when compiled from the same source.
impl PartialEq for Grammar {
    fn eq(&self, other: &Grammar) -> bool {
        self.source == other.source
    }
}

impl Grammar {
    /// What the grammar was compiled from.
    pub fn source(&self) -> &GrammarSource {
        &self.source
    }

    fn mask(&mut self) -> &Mask {
        if self.mask.is_none() {
            let m = if self.matcher.is_stopped() {
                Mask::EogOnly
            } else {
                match self.matcher.compute_mask() {
                    Ok(allowed) => {
                        let eog = self.matcher.is_accepting().unwrap_or(false);
                        Mask::Tokens { allowed, eog }
                    }
                    Err(_) => Mask::EogOnly,
                }
            };
            self.mask = Some(m);
        }
        self.mask.as_ref().unwrap_or(&Mask::EogOnly)
    }

    fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// Whether the grammar allows `id` next. Before any mask is computed at this position, one
    /// token is checked alone (far cheaper than a mask, and usually all a pick needs).
    pub fn allows(&mut self, id: u32) -> bool {
        let is_eog = self.is_eog(id);
        if self.mask.is_none() && !is_eog && !self.matcher.is_stopped() {
            return id < self.n_vocab && self.matcher.validate_tokens(&[id]).is_ok_and(|n| n == 1);
        }
        match self.mask() {
            Mask::EogOnly => is_eog,
            Mask::Tokens { eog, .. } if is_eog => *eog,
            Mask::Tokens { allowed, .. } => {
                (id as usize) < allowed.len() && allowed.get(id as usize)
            }
        }
    }

    /// Sets the logit of every token the grammar does not allow to `-inf`.
    pub fn apply(&mut self, cands: &mut Candidates) {
        let eog = self.eog.clone();
        match self.mask() {
            Mask::EogOnly => {
                for c in &mut cands.items {
                    if !eog.contains(&c.id) {
                        c.logit = f32::NEG_INFINITY;
                    }
                }
            }
            Mask::Tokens {
                allowed,
                eog: eog_ok,
            } => {
                let words = allowed.as_slice();
                for c in &mut cands.items {
                    let i = c.id as usize;
                    let ok = if eog.contains(&c.id) {
                        *eog_ok
                    } else {
                        words.get(i / 32).is_some_and(|w| w >> (i % 32) & 1 != 0)
                    };
                    if !ok {
                        c.logit = f32::NEG_INFINITY;
                    }
                }
            }
        }
    }

    /// Advances past the chosen token (an end-of-generation token ends the match).
    pub fn accept(&mut self, id: u32) {
        self.mask = None;
        if !self.is_eog(id) {
            // A rejected token puts the matcher in its error state: from then on only
            // end-of-generation is allowed.
            let _ = self.matcher.consume_token(id);
        }
    }

    /// Back to the start of the grammar.
    pub fn reset(&mut self) {
        self.mask = None;
        let _ = self.matcher.reset();
    }

    /// Whether the grammar can take no more text (only end-of-generation remains).
    pub fn is_done(&self) -> bool {
        self.matcher.is_stopped()
    }
}
