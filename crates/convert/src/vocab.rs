//! The tokenizer metadata (`tokenizer.ggml.*`, `tokenizer.chat_template`) from `tokenizer.json`,
//! `tokenizer_config.json` and `config.json`, as llama.cpp's `_set_vocab_gpt2` and gguf-py's
//! `SpecialVocab` write it.
//!
//! `tokenizer.ggml.pre` names the pre-tokenizer, which llama.cpp's converter identifies by a
//! fingerprint: the sha256 of `str(tokenizer.encode(PROBE))` looked up in a table of known
//! tokenizers (`pre_hashes.tsv`, copied from its `get_vocab_base_pre`). hearth has no
//! transformers tokenizer, but it has llama.cpp's own BPE tokenizer (`text`), which splits text
//! as transformers does for every pre-tokenizer llama.cpp supports: for each candidate name it
//! builds that tokenizer over this vocabulary, encodes the probe, and accepts the name when the
//! fingerprint is the table's entry for the same name. An unknown fingerprint is an error, as
//! in llama.cpp.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use gguf::{Array, Builder, Gguf, Value};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::arch::Arch;
use crate::checkpoint::read_json;
use crate::error::Error;

const PROBE: &str = include_str!("pre_probe.txt");
const PRE_HASHES: &str = include_str!("pre_hashes.tsv");

/// llama.cpp's token types.
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// Pre-tokenizer names to try first, by the shape of `tokenizer.json`'s pre-tokenizer.
const COMMON_PRES: &[&str] = &[
    "llama-bpe",
    "qwen2",
    "smollm",
    "gpt-2",
    "qwen35",
    "gpt-4o",
    "deepseek-v3",
    "starcoder",
    "tekken",
];

pub struct Vocab {
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece).
    model: &'static str,
    tokens: Vec<String>,
    /// SentencePiece scores (`llama` only).
    scores: Option<Vec<f32>>,
    types: Vec<i32>,
    pre: String,
    merges: Vec<String>,
    /// `(type, id)` in gguf-py's order of discovery.
    special_ids: Vec<(&'static str, u32)>,
    add_special: Vec<(&'static str, bool)>,
    chat_template: Option<ChatTemplate>,
    normalizer_lowercase: Option<bool>,
    normalizer_strip_accents: Option<bool>,
    add_space_prefix: Option<bool>,
    /// `len(model.vocab) + len(added_tokens)`: Gemma 3 drops embedding rows past it.
    pub n_vocab_real: usize,
    /// gguf-py's `SpecialVocab(n_vocab=…)`: special ids at or past it are skipped.
    id_limit: Option<usize>,
    /// config.json's vocab_size (llama.cpp's granite rule looks at it).
    config_vocab_size: Option<usize>,
}

enum ChatTemplate {
    One(String),
    Named(Vec<(String, String)>),
}

const SPECIAL_TYPES: [&str; 7] = ["bos", "eos", "unk", "sep", "pad", "cls", "mask"];

fn special_key(typ: &str) -> Option<&'static str> {
    Some(match typ {
        "bos" => "tokenizer.ggml.bos_token_id",
        "eos" => "tokenizer.ggml.eos_token_id",
        "unk" => "tokenizer.ggml.unknown_token_id",
        // llama.cpp's spelling.
        "sep" => "tokenizer.ggml.seperator_token_id",
        "pad" => "tokenizer.ggml.padding_token_id",
        "cls" => "tokenizer.ggml.cls_token_id",
        "mask" => "tokenizer.ggml.mask_token_id",
        _ => return None,
    })
}

fn add_key(typ: &str) -> Option<&'static str> {
    Some(match typ {
        "bos" => "tokenizer.ggml.add_bos_token",
        "eos" => "tokenizer.ggml.add_eos_token",
        "sep" => "tokenizer.ggml.add_sep_token",
        _ => return None,
    })
}

fn static_type(typ: &str) -> &'static str {
    SPECIAL_TYPES
        .iter()
        .find(|t| **t == typ)
        .copied()
        .unwrap_or("bos")
}

/// gguf-py's `does_token_look_special`.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<｜") && t.ends_with("｜>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
}

/// Far above any real vocabulary (Gemma 3's is 262,144), and small enough to allocate.
const MAX_VOCAB: usize = 1 << 24;

impl Vocab {
    /// Reads the tokenizer of the checkpoint in `dir`; `n_vocab` is config.json's vocab_size.
    /// The architecture decides which of llama.cpp's vocabulary readers apply (`set_vocab`):
    /// SentencePiece's `tokenizer.model` first, except for qwen3moe and gpt-oss.
    pub fn load(
        dir: &Path,
        config: &Json,
        n_vocab: Option<usize>,
        arch: Arch,
    ) -> Result<Vocab, Error> {
        let terr = |m: String| Error::Tokenizer(m);
        if arch == Arch::Phi3 && !phi3_uses_gpt2(dir)? {
            return Vocab::load_spm(dir, config, n_vocab, true);
        }
        let spm_first = !matches!(
            arch,
            Arch::Qwen3Moe | Arch::GptOss | Arch::Gemma4 | Arch::Phi3
        );
        if spm_first && dir.join("tokenizer.model").is_file() {
            return Vocab::load_spm(dir, config, n_vocab, false);
        }
        let tj = read_json(&dir.join("tokenizer.json"))?;
        let model = tj
            .get("model")
            .ok_or_else(|| terr("tokenizer.json has no model".into()))?;
        if model.get("type").and_then(Json::as_str) != Some("BPE") {
            return Err(terr(format!(
                "tokenizer.json's model is {}, hearth converts only byte-level BPE",
                model.get("type").unwrap_or(&Json::Null)
            )));
        }
        let byte_fallback = model.get("byte_fallback").and_then(Json::as_bool);
        let ignore_merges = model.get("ignore_merges").and_then(Json::as_bool) == Some(true);
        let llama3 = ignore_merges && !byte_fallback.unwrap_or(true);
        let sequence_decoder = tj
            .get("decoder")
            .and_then(|d| d.get("type"))
            .and_then(Json::as_str)
            == Some("Sequence");
        // llama.cpp's LlamaHfVocab: a SentencePiece-style BPE (byte fallback, a decoder
        // sequence) for LlamaModel, Gemma 4's vocabulary.
        if !llama3 && byte_fallback == Some(true) && sequence_decoder {
            if arch.is_llama() || arch == Arch::Gemma4 {
                return Vocab::load_llama_hf(dir, config, &tj, arch);
            }
            return Err(terr(format!(
                "tokenizer.json is a SentencePiece-style BPE (byte_fallback), which llama.cpp \
                 converts only for llama-type models, not {}",
                arch.name()
            )));
        }
        if byte_fallback == Some(true) || arch == Arch::Gemma4 {
            return Err(terr(
                "tokenizer.json is not a SentencePiece-style BPE with byte fallback and a \
                 decoder sequence (as Gemma 4's and Llama 2's are): not supported"
                    .into(),
            ));
        }
        let vocab = model
            .get("vocab")
            .and_then(Json::as_object)
            .ok_or_else(|| terr("tokenizer.json's model has no vocab".into()))?;
        let added = match tj.get("added_tokens") {
            Some(Json::Array(a)) => a.as_slice(),
            _ => &[],
        };

        // transformers' tokenizer.vocab: the model's tokens, then the added ones.
        let mut by_id: HashMap<usize, String> = HashMap::new();
        let id_of = |v: &Json, what: &str| -> Result<usize, Error> {
            v.as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i < 1 << 31)
                .ok_or_else(|| terr(format!("{what} has a bad id {v}")))
        };
        for (tok, id) in vocab {
            by_id.insert(id_of(id, tok)?, tok.clone());
        }
        // content -> (id, special, normalized)
        let mut added_by_content: HashMap<&str, usize> = HashMap::new();
        let mut added_by_id: HashMap<usize, (bool, bool)> = HashMap::new();
        for a in added {
            let content = a
                .get("content")
                .and_then(Json::as_str)
                .ok_or_else(|| terr("an added token has no content".into()))?;
            let id = id_of(a.get("id").unwrap_or(&Json::Null), content)?;
            let special = a.get("special").and_then(Json::as_bool).unwrap_or(false);
            let normalized = a.get("normalized").and_then(Json::as_bool).unwrap_or(true);
            by_id.insert(id, content.to_owned());
            added_by_content.insert(content, id);
            added_by_id.insert(id, (special, normalized));
        }
        let distinct: BTreeSet<&String> = vocab.keys().collect();
        let n_hf = distinct.len()
            + added_by_content
                .keys()
                .filter(|c| !vocab.contains_key(**c))
                .count();
        let config_vocab_size = n_vocab;
        let n_vocab = n_vocab.unwrap_or(n_hf);
        if n_vocab > MAX_VOCAB {
            return Err(terr(format!(
                "vocab_size {n_vocab} is over hearth's limit of {MAX_VOCAB} tokens"
            )));
        }
        if let Some(max) = by_id.keys().max()
            && *max >= n_vocab
        {
            return Err(terr(format!(
                "token id {max} is not below config.json's vocab_size {n_vocab}"
            )));
        }
        let mut tokens = Vec::with_capacity(n_vocab);
        let mut types = Vec::with_capacity(n_vocab);
        for i in 0..n_vocab {
            match by_id.get(&i) {
                None => {
                    tokens.push(format!("[PAD{i}]"));
                    types.push(UNUSED);
                }
                Some(tok) if added_by_content.contains_key(tok.as_str()) => {
                    let special = added_by_id.get(&i).is_some_and(|a| a.0);
                    if special || looks_special(tok) {
                        tokens.push(tok.clone());
                        types.push(CONTROL);
                    } else {
                        tokens.push(tok.replace('\u{2581}', " "));
                        types.push(USER_DEFINED);
                    }
                }
                Some(tok) => {
                    tokens.push(tok.clone());
                    types.push(NORMAL);
                }
            }
        }

        let merges = parse_merges(model)?;

        let tc = match read_json(&dir.join("tokenizer_config.json")) {
            Ok(v) => Some(v),
            Err(Error::Missing(_)) => None,
            Err(e) => return Err(e),
        };
        let mut v = Vocab {
            model: "gpt2",
            tokens,
            scores: None,
            types,
            pre: String::new(),
            merges,
            special_ids: Vec::new(),
            add_special: Vec::new(),
            chat_template: None,
            normalizer_lowercase: None,
            normalizer_strip_accents: None,
            add_space_prefix: tc
                .as_ref()
                .and_then(|t| t.get("add_prefix_space"))
                .and_then(Json::as_bool),
            n_vocab_real: vocab.len() + added.len(),
            id_limit: None,
            config_vocab_size,
        };
        if let Some(n) = tj.get("normalizer") {
            v.parse_normalizer(n);
        }
        v.special_vocab(dir, &tj, tc, added, config)?;
        v.pre = v.detect_pre(&tj, &by_id, &added_by_content)?;
        Ok(v)
    }

    /// llama.cpp's `_set_vocab_sentencepiece`: the pieces of `tokenizer.model` padded to
    /// config.json's vocab_size, then `added_tokens.json` and tokenizer_config.json's
    /// `added_tokens_decoder` over them; gguf-py's `SpecialVocab` without merges.
    ///
    /// `phi3`: `Phi3MiniModel.set_vocab`'s own reading instead: the added tokens of
    /// tokenizer_config.json and then of tokenizer.json are control tokens when marked special,
    /// else user-defined, their text kept as written; an id past the vocabulary is an error.
    fn load_spm(
        dir: &Path,
        config: &Json,
        n_vocab: Option<usize>,
        phi3: bool,
    ) -> Result<Vocab, Error> {
        let terr = |m: String| Error::Tokenizer(m);
        let path = dir.join("tokenizer.model");
        if phi3 && !path.is_file() {
            return Err(terr(
                "a phi3 checkpoint whose tokenizer_config.json does not name GPT2Tokenizer \
                 needs tokenizer.model"
                    .into(),
            ));
        }
        let bytes = std::fs::read(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let pieces = crate::spm::pieces(&bytes)?;
        let vocab_size = n_vocab.unwrap_or(pieces.len());
        if phi3 && pieces.len() > vocab_size {
            return Err(terr(format!(
                "tokenizer.model has {} pieces, more than config.json's vocab_size {vocab_size}",
                pieces.len()
            )));
        }
        if vocab_size > MAX_VOCAB {
            return Err(terr(format!(
                "vocab_size {vocab_size} is over hearth's limit of {MAX_VOCAB} tokens"
            )));
        }
        let mut tokens: Vec<String> = (0..vocab_size).map(|i| format!("[PAD{i}]")).collect();
        let mut scores = vec![-10000.0f32; vocab_size];
        let mut types = vec![UNUSED; vocab_size];
        for (id, p) in pieces.into_iter().take(vocab_size).enumerate() {
            types[id] = match p.kind {
                crate::spm::UNKNOWN => 2,
                crate::spm::CONTROL => CONTROL,
                crate::spm::UNUSED => UNUSED,
                crate::spm::BYTE => 6,
                _ => NORMAL,
            };
            tokens[id] = p.text;
            scores[id] = p.score;
        }
        let added_json = dir.join("added_tokens.json");
        if added_json.is_file() {
            let added = read_json(&added_json)?;
            let added = added
                .as_object()
                .ok_or_else(|| terr("added_tokens.json is not an object".into()))?;
            for (text, id) in added {
                let id = id
                    .as_u64()
                    .ok_or_else(|| terr(format!("added_tokens.json: {text} has no id")))?;
                if let Some(i) = usize::try_from(id).ok().filter(|&i| i < vocab_size) {
                    tokens[i] = text.clone();
                    scores[i] = -1000.0;
                    types[i] = USER_DEFINED;
                }
            }
        }
        let tc = match read_json(&dir.join("tokenizer_config.json")) {
            Ok(v) => Some(v),
            Err(Error::Missing(_)) => None,
            Err(e) => return Err(e),
        };
        if let Some(Json::Object(decoder)) = tc.as_ref().and_then(|t| t.get("added_tokens_decoder"))
        {
            for (id, data) in decoder {
                let id: usize = id
                    .parse()
                    .map_err(|_| terr(format!("added_tokens_decoder has a bad id {id}")))?;
                let content = data
                    .get("content")
                    .and_then(Json::as_str)
                    .ok_or_else(|| terr(format!("added_tokens_decoder {id} has no content")))?;
                if id >= vocab_size {
                    if phi3 {
                        return Err(terr(format!(
                            "added_tokens_decoder has id {id}, past vocab_size {vocab_size}"
                        )));
                    }
                    continue;
                }
                let special = data
                    .get("special")
                    .is_some_and(|v| v.as_bool() == Some(true));
                if phi3 {
                    tokens[id] = content.to_owned();
                    types[id] = if special { CONTROL } else { USER_DEFINED };
                } else if special || looks_special(content) {
                    types[id] = CONTROL;
                    tokens[id] = content.to_owned();
                } else {
                    types[id] = USER_DEFINED;
                    tokens[id] = content.replace('\u{2581}', " ");
                }
                scores[id] = -1000.0;
            }
        }
        let tj = match read_json(&dir.join("tokenizer.json")) {
            Ok(v) => v,
            Err(Error::Missing(_)) => Json::Null,
            Err(e) => return Err(e),
        };
        let added: Vec<Json> = match tj.get("added_tokens") {
            Some(Json::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        if phi3 {
            for a in &added {
                let content = a
                    .get("content")
                    .and_then(Json::as_str)
                    .ok_or_else(|| terr("an added token has no content".into()))?;
                let id = a
                    .get("id")
                    .and_then(Json::as_u64)
                    .and_then(|i| usize::try_from(i).ok())
                    .filter(|&i| i < vocab_size)
                    .ok_or_else(|| {
                        terr(format!(
                            "tokenizer.json's added token {content:?} has no id below \
                             vocab_size {vocab_size}"
                        ))
                    })?;
                let special = a.get("special").and_then(Json::as_bool) == Some(true);
                tokens[id] = content.to_owned();
                scores[id] = -1000.0;
                types[id] = if special { CONTROL } else { USER_DEFINED };
            }
        }
        let n = tokens.len();
        let mut v = Vocab {
            model: "llama",
            tokens,
            scores: Some(scores),
            types,
            pre: "default".to_owned(),
            merges: Vec::new(),
            special_ids: Vec::new(),
            add_special: Vec::new(),
            chat_template: None,
            normalizer_lowercase: None,
            normalizer_strip_accents: None,
            add_space_prefix: tc
                .as_ref()
                .and_then(|t| t.get("add_prefix_space"))
                .and_then(Json::as_bool),
            n_vocab_real: n,
            id_limit: Some(n),
            config_vocab_size: n_vocab,
        };
        if let Some(n) = tj.get("normalizer") {
            v.parse_normalizer(n);
        }
        v.special_vocab(dir, &tj, tc, &added, config)?;
        Ok(v)
    }

    /// llama.cpp's `_set_vocab_llama_hf` (gguf-py's `LlamaHfVocab`, which reads the
    /// tokenizer through transformers): the model's tokens in id order, then the added tokens
    /// past them; every score -1000; `<0xNN>` tokens are bytes, transformers' special tokens
    /// (tokenizer_config.json's named ones, its tokenizer class's defaults, its extra special
    /// tokens) control tokens. Gemma 4 (`Gemma4Model.set_vocab`) names the model `gemma4`,
    /// shows its channel and tool tokens (user-defined) and keeps the merges.
    fn load_llama_hf(dir: &Path, config: &Json, tj: &Json, arch: Arch) -> Result<Vocab, Error> {
        let terr = |m: String| Error::Tokenizer(m);
        let model = &tj["model"];
        let vocab = model
            .get("vocab")
            .and_then(Json::as_object)
            .ok_or_else(|| terr("tokenizer.json's model has no vocab".into()))?;
        let n_base = vocab.len();
        if n_base > MAX_VOCAB {
            return Err(terr(format!("{n_base} tokens is over hearth's limit")));
        }
        let mut base: Vec<Option<&str>> = vec![None; n_base];
        let mut id_of: HashMap<&str, usize> = HashMap::new();
        for (t, id) in vocab {
            let id = id
                .as_u64()
                .and_then(|i| usize::try_from(i).ok())
                .filter(|&i| i < n_base)
                .ok_or_else(|| {
                    terr(format!(
                        "tokenizer.json: token {t:?} has id {id}, not below the vocabulary's \
                         {n_base} tokens"
                    ))
                })?;
            base[id] = Some(t);
            id_of.insert(t, id);
        }
        let added: Vec<Json> = match tj.get("added_tokens") {
            Some(Json::Array(a)) => a.clone(),
            _ => Vec::new(),
        };
        let mut extra: Vec<(usize, String)> = Vec::new();
        for a in &added {
            let (Some(content), Some(id)) = (
                a.get("content").and_then(Json::as_str),
                a.get("id").and_then(Json::as_u64),
            ) else {
                return Err(terr("an added token has no content or id".into()));
            };
            let id = usize::try_from(id).unwrap_or(usize::MAX);
            if id >= n_base {
                extra.push((id, content.to_owned()));
            }
        }
        extra.sort();
        let tc = match read_json(&dir.join("tokenizer_config.json")) {
            Ok(v) => Some(v),
            Err(Error::Missing(_)) => None,
            Err(e) => return Err(e),
        };
        // transformers' all_special_tokens: the named ones (the class's defaults where the
        // config names none), then the extra ones.
        let class = tc
            .as_ref()
            .and_then(|t| t.get("tokenizer_class"))
            .and_then(Json::as_str)
            .unwrap_or("");
        let defaults: &[(&str, &str)] = match class.trim_end_matches("Fast") {
            "GemmaTokenizer" => &[
                ("unk_token", "<unk>"),
                ("bos_token", "<bos>"),
                ("eos_token", "<eos>"),
                ("pad_token", "<pad>"),
                ("mask_token", "<mask>"),
            ],
            "LlamaTokenizer" => &[
                ("unk_token", "<unk>"),
                ("bos_token", "<s>"),
                ("eos_token", "</s>"),
            ],
            _ => &[],
        };
        let text_of = |v: &Json| -> Option<String> {
            match v {
                Json::String(s) => Some(s.clone()),
                Json::Object(o) => o.get("content")?.as_str().map(str::to_owned),
                _ => None,
            }
        };
        let mut specials: Vec<String> = Vec::new();
        for typ in SPECIAL_TYPES {
            let key = format!("{typ}_token");
            let named = match tc.as_ref().and_then(|t| t.get(&key)) {
                Some(Json::Null) => None,
                Some(v) => text_of(v),
                None => defaults
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (*v).to_owned()),
            };
            if let Some(t) = named
                && !specials.contains(&t)
            {
                specials.push(t);
            }
        }
        for key in ["extra_special_tokens", "additional_special_tokens"] {
            if let Some(Json::Array(list)) = tc.as_ref().and_then(|t| t.get(key)) {
                for t in list.iter().filter_map(text_of) {
                    if !specials.contains(&t) {
                        specials.push(t);
                    }
                }
            }
        }
        let lookup = |t: &str| -> Option<usize> {
            extra
                .iter()
                .rev()
                .find(|(_, c)| c == t)
                .map(|(i, _)| *i)
                .or_else(|| {
                    added
                        .iter()
                        .rev()
                        .find(|a| a.get("content").and_then(Json::as_str) == Some(t))
                        .and_then(|a| a.get("id")?.as_u64())
                        .map(|i| i as usize)
                })
                .or_else(|| id_of.get(t).copied())
        };
        // An unknown special token is the unknown token's id, as convert_tokens_to_ids.
        let unk_id = tc
            .as_ref()
            .and_then(|t| t.get("unk_token"))
            .and_then(text_of)
            .or_else(|| {
                defaults
                    .iter()
                    .find(|(k, _)| *k == "unk_token")
                    .map(|(_, v)| (*v).to_owned())
            })
            .and_then(|u| lookup(&u));
        let special_ids: BTreeSet<usize> = specials
            .iter()
            .filter_map(|t| lookup(t).or(unk_id))
            .collect();
        let is_byte = |t: &str| {
            let b = t.as_bytes();
            b.len() == 6
                && t.starts_with("<0x")
                && t.ends_with('>')
                && b[3].is_ascii_hexdigit()
                && b[4].is_ascii_hexdigit()
        };
        let mut tokens = Vec::with_capacity(n_base + extra.len());
        let mut types = Vec::with_capacity(n_base + extra.len());
        for (id, t) in base.iter().enumerate() {
            let t = t.ok_or_else(|| terr(format!("tokenizer.json has no token with id {id}")))?;
            tokens.push(t.to_owned());
            types.push(if is_byte(t) {
                6
            } else if special_ids.contains(&id) {
                CONTROL
            } else {
                NORMAL
            });
        }
        for (_, t) in &extra {
            tokens.push(t.clone());
            types.push(if specials.contains(t) {
                CONTROL
            } else {
                USER_DEFINED
            });
        }
        let gemma4 = arch == Arch::Gemma4;
        if gemma4 {
            const VISIBLE: [&str; 7] = [
                "<|channel>",
                "<channel|>",
                "<|tool_call>",
                "<tool_call|>",
                "<|tool_response>",
                "<tool_response|>",
                "<|\"|>",
            ];
            for (t, ty) in tokens.iter().zip(types.iter_mut()) {
                if VISIBLE.contains(&t.as_str()) {
                    *ty = USER_DEFINED;
                }
            }
        }
        let merges = if gemma4 {
            parse_merges(model)?
        } else {
            Vec::new()
        };
        let n = tokens.len();
        let mut v = Vocab {
            model: if gemma4 { "gemma4" } else { "llama" },
            scores: Some(vec![-1000.0; n]),
            tokens,
            types,
            pre: if gemma4 {
                String::new()
            } else {
                "default".to_owned()
            },
            merges,
            special_ids: Vec::new(),
            add_special: Vec::new(),
            chat_template: None,
            normalizer_lowercase: None,
            normalizer_strip_accents: None,
            add_space_prefix: tc
                .as_ref()
                .and_then(|t| t.get("add_prefix_space"))
                .and_then(Json::as_bool),
            n_vocab_real: n_base + added.len(),
            id_limit: (!gemma4).then_some(n),
            config_vocab_size: config
                .get("vocab_size")
                .and_then(Json::as_u64)
                .map(|v| v as usize),
        };
        if let Some(n) = tj.get("normalizer") {
            v.parse_normalizer(n);
        }
        v.special_vocab(dir, tj, tc, &added, config)?;
        Ok(v)
    }

    fn parse_normalizer(&mut self, n: &Json) {
        match n.get("type").and_then(Json::as_str) {
            Some("Lowercase") => self.normalizer_lowercase = Some(true),
            Some("StripAccents") => self.normalizer_strip_accents = Some(true),
            Some("BertNormalizer") => {
                if let Some(b) = n.get("lowercase") {
                    self.normalizer_lowercase = b.as_bool();
                }
                if let Some(b) = n.get("strip_accents") {
                    self.normalizer_strip_accents = b.as_bool();
                }
            }
            Some("Sequence") => {
                if let Some(Json::Array(list)) = n.get("normalizers") {
                    for n in list {
                        self.parse_normalizer(n);
                    }
                }
            }
            _ => {}
        }
    }

    fn set_add(&mut self, typ: &'static str, value: bool, overwrite: bool) {
        match self.add_special.iter_mut().find(|(t, _)| *t == typ) {
            Some((_, v)) if overwrite => *v = value,
            Some(_) => {}
            None => self.add_special.push((typ, value)),
        }
    }

    fn set_special(&mut self, typ: &'static str, id: Option<&Json>) {
        let Some(id) = id
            .and_then(Json::as_u64)
            .and_then(|i| u32::try_from(i).ok())
        else {
            return;
        };
        if self.id_limit.is_some_and(|n| id as usize >= n) {
            return;
        }
        if !self.special_ids.iter().any(|(t, _)| *t == typ) {
            self.special_ids.push((typ, id));
        }
    }

    /// gguf-py's `SpecialVocab` (`_try_load_from_tokenizer_json`, then `config.json`).
    fn special_vocab(
        &mut self,
        dir: &Path,
        tj: &Json,
        mut tc: Option<Json>,
        added: &[Json],
        config: &Json,
    ) -> Result<(), Error> {
        let tc_str = |tc: &Option<Json>, key: &str| -> Option<String> {
            match tc.as_ref()?.get(key)? {
                Json::String(s) => Some(s.clone()),
                Json::Object(o) => o.get("content")?.as_str().map(str::to_owned),
                _ => None,
            }
        };
        let mut special_bos = tc_str(&tc, "bos_token");
        let special_cls = tc_str(&tc, "cls_token");
        let mut special_eos = tc_str(&tc, "eos_token");
        let special_sep = tc_str(&tc, "sep_token");
        if let Some(t) = tc.as_mut().and_then(Json::as_object_mut) {
            if special_bos.is_none()
                && let Some(cls) = &special_cls
            {
                t.insert("bos_token".into(), Json::String(cls.clone()));
                special_bos = Some(cls.clone());
            }
            if special_eos.is_none()
                && let Some(sep) = &special_sep
            {
                t.insert("eos_token".into(), Json::String(sep.clone()));
                special_eos = Some(sep.clone());
            }
        }
        if let Some(pp) = tj.get("post_processor").filter(|p| p.is_object()) {
            let list = match pp.get("processors") {
                Some(Json::Array(list)) => list.clone(),
                _ => vec![pp.clone()],
            };
            for p in &list {
                match p.get("type").and_then(Json::as_str) {
                    Some("ByteLevel") => {
                        self.set_add("bos", false, false);
                        self.set_add("eos", false, false);
                    }
                    Some("RobertaProcessing") => {
                        self.set_add("bos", true, true);
                        self.set_add("eos", true, true);
                        self.set_add("sep", true, true);
                    }
                    Some("TemplateProcessing") => {
                        let single = p.get("single").and_then(Json::as_array);
                        if let Some(single) = single.filter(|s| s.len() > 1) {
                            let special_id = |e: &Json| {
                                e.get("SpecialToken")
                                    .and_then(|s| s.get("id"))
                                    .and_then(Json::as_str)
                                    .map(str::to_owned)
                            };
                            if let Some(first) = special_id(&single[0]) {
                                if tc.is_none() {
                                    special_bos = Some(first.clone());
                                }
                                let is_bos = special_bos.as_deref() == Some(first.as_str())
                                    || special_cls.as_deref() == Some(first.as_str());
                                self.set_add("bos", is_bos, true);
                            }
                            if let Some(last) = single.last().and_then(special_id) {
                                if tc.is_none() {
                                    special_eos = Some(last.clone());
                                }
                                let is_eos = special_eos.as_deref() == Some(last.as_str());
                                self.set_add("eos", is_eos, true);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let Some(tc) = tc else {
            return self.special_from_config(config);
        };
        // The chat template: tokenizer_config.json's, else chat_template.jinja (with any
        // additional_chat_templates/*.jinja), else chat_template.json's.
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| Error::Io {
                path: p.to_owned(),
                source,
            })
        };
        let jinja = dir.join("chat_template.jinja");
        let alt = if jinja.is_file() {
            let default = read(&jinja)?;
            let extra_dir = dir.join("additional_chat_templates");
            let mut extra = Vec::new();
            if let Ok(entries) = std::fs::read_dir(&extra_dir) {
                for e in entries.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "jinja") {
                        let stem = p
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        extra.push((stem, read(&p)?));
                    }
                }
            }
            if extra.is_empty() {
                Some(ChatTemplate::One(default))
            } else {
                extra.insert(0, ("default".to_owned(), default));
                Some(ChatTemplate::Named(extra))
            }
        } else if dir.join("chat_template.json").is_file() {
            read_json(&dir.join("chat_template.json"))?
                .get("chat_template")
                .and_then(template_from_json)
        } else {
            None
        };
        self.chat_template = match tc.get("chat_template") {
            Some(t) => template_from_json(t),
            None => alt,
        };
        for typ in SPECIAL_TYPES {
            if let Some(b) = tc.get(format!("add_{typ}_token")).and_then(Json::as_bool) {
                self.set_add(typ, b, false);
            }
            let Some(content) = tc_str(&Some(tc.clone()), &format!("{typ}_token")) else {
                continue;
            };
            let id = added
                .iter()
                .find(|a| a.get("content").and_then(Json::as_str) == Some(content.as_str()))
                .and_then(|a| a.get("id"));
            self.set_special(static_type(typ), id);
        }
        self.special_from_config(config)
    }

    fn special_from_config(&mut self, config: &Json) -> Result<(), Error> {
        for typ in SPECIAL_TYPES {
            let key = format!("{typ}_token_id");
            let id = config
                .get(&key)
                .filter(|v| !v.is_null())
                .or_else(|| config.get("text_config").and_then(|t| t.get(&key)));
            self.set_special(typ, id);
        }
        Ok(())
    }

    /// llama.cpp's `get_vocab_base_pre`, with hearth's tokenizer in place of transformers'.
    fn detect_pre(
        &self,
        tj: &Json,
        by_id: &HashMap<usize, String>,
        added: &HashMap<&str, usize>,
    ) -> Result<String, Error> {
        let table: Vec<(&str, &str)> = PRE_HASHES
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.split_once('\t'))
            .collect();
        // Most tokenizers are one of a few families: try the one the pre-tokenizer's split
        // pattern suggests first (each try builds a tokenizer).
        let shape = tj
            .get("pre_tokenizer")
            .map(Json::to_string)
            .unwrap_or_default();
        let first: &[&str] = if shape.contains(r"\\p{N}{1,3}") {
            &["llama-bpe", "gpt-4o", "qwen35", "deepseek-v3"]
        } else if shape.contains(r"\\p{L}+|\\p{N}|") {
            &["qwen2"]
        } else {
            &["smollm", "gpt-2", "starcoder"]
        };
        let mut names: Vec<&str> = first.to_vec();
        for n in COMMON_PRES {
            if !names.contains(n) {
                names.push(n);
            }
        }
        for (_, n) in &table {
            if !names.contains(n) {
                names.push(n);
            }
        }
        let (prefix, suffix) = post_processor_specials(tj, by_id, added);
        // One vocabulary-only GGUF, its pre-tokenizer name replaced for each candidate.
        let mut b = Builder::new();
        b.set("tokenizer.ggml.model", Value::string("gpt2"))?;
        b.set("tokenizer.ggml.pre", Value::string(""))?;
        b.set(
            "tokenizer.ggml.tokens",
            Value::Array(Array::from_strs(&self.tokens)),
        )?;
        b.set(
            "tokenizer.ggml.token_type",
            Value::Array(Array::from_i32s(&self.types)),
        )?;
        b.set(
            "tokenizer.ggml.merges",
            Value::Array(Array::from_strs(&self.merges)),
        )?;
        for name in names {
            b.set("tokenizer.ggml.pre", Value::string(name))?;
            let bytes = b.to_bytes();
            let Ok(file) = Gguf::parse(&bytes) else {
                continue;
            };
            let Ok(tok) = text::tokenizer::Tokenizer::from_gguf(&file) else {
                continue;
            };
            let mut ids: Vec<u32> = prefix.clone();
            ids.extend(tok.encode(PROBE, false, false));
            ids.extend(&suffix);
            let listed = format!(
                "[{}]",
                ids.iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let hash = hex(&Sha256::digest(listed.as_bytes()));
            if table.iter().any(|(h, n)| *h == hash && *n == name) {
                return Ok(name.to_owned());
            }
        }
        Err(Error::Tokenizer(format!(
            "the BPE pre-tokenizer was not recognized: its fingerprint matches none of \
             llama.cpp's known tokenizers ({} entries) that hearth's tokenizer implements",
            table.len()
        )))
    }

    /// Writes the `tokenizer.*` keys in llama.cpp's order.
    pub fn write(&self, b: &mut Builder<'static>, arch: Arch) -> Result<(), Error> {
        if arch.is_llama()
            && let Some(p) = self.add_space_prefix
        {
            b.set("tokenizer.ggml.add_space_prefix", Value::Bool(p))?;
        }
        b.set("tokenizer.ggml.model", Value::string(self.model))?;
        if self.model != "gemma4" {
            b.set("tokenizer.ggml.pre", Value::string(self.pre.clone()))?;
        }
        b.set(
            "tokenizer.ggml.tokens",
            Value::Array(Array::from_strs(&self.tokens)),
        )?;
        if let Some(scores) = &self.scores {
            b.set(
                "tokenizer.ggml.scores",
                Value::Array(Array::from_f32s(scores)),
            )?;
        }
        b.set(
            "tokenizer.ggml.token_type",
            Value::Array(Array::from_i32s(&self.types)),
        )?;
        if !self.merges.is_empty() {
            b.set(
                "tokenizer.ggml.merges",
                Value::Array(Array::from_strs(&self.merges)),
            )?;
        }
        for (typ, id) in &self.special_ids {
            if let Some(k) = special_key(typ) {
                b.set(k, Value::U32(*id))?;
            }
        }
        for (typ, v) in &self.add_special {
            if let Some(k) = add_key(typ) {
                b.set(k, Value::Bool(*v))?;
            }
        }
        match &self.chat_template {
            Some(ChatTemplate::One(t)) => {
                b.set("tokenizer.chat_template", Value::string(t.clone()))?;
            }
            Some(ChatTemplate::Named(list)) => {
                let mut names = Vec::new();
                let mut default = None;
                for (name, t) in list {
                    let name: String = name
                        .chars()
                        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                        .collect();
                    if name.is_empty() {
                        continue;
                    }
                    if name == "default" {
                        default = Some(t.clone());
                    } else {
                        b.set(
                            format!("tokenizer.chat_template.{name}"),
                            Value::string(t.clone()),
                        )?;
                        if !names.contains(&name) {
                            names.push(name);
                        }
                    }
                }
                if !names.is_empty() {
                    b.set(
                        "tokenizer.chat_templates",
                        Value::Array(Array::from_strs(&names)),
                    )?;
                }
                if let Some(t) = default {
                    b.set("tokenizer.chat_template", Value::string(t))?;
                }
            }
            None => {}
        }
        if let Some(v) = self.normalizer_lowercase {
            b.set("tokenizer.ggml.normalizer.lowercase", Value::Bool(v))?;
        }
        if let Some(v) = self.normalizer_strip_accents {
            b.set("tokenizer.ggml.normalizer.strip_accents", Value::Bool(v))?;
        }
        if self.model == "gemma4" {
            b.set("tokenizer.ggml.add_space_prefix", Value::Bool(false))?;
            b.set("tokenizer.ggml.add_bos_token", Value::Bool(true))?;
        }
        // Gemma3Model: a SentencePiece vocabulary adds no space prefix.
        if arch == Arch::Gemma3 && self.model == "llama" {
            b.set("tokenizer.ggml.add_space_prefix", Value::Bool(false))?;
        }
        // llama.cpp's LlamaModel: "Apply to granite small models only" (config.json's
        // vocab_size, 32000 when absent).
        if arch.is_llama() && self.config_vocab_size.unwrap_or(32000) == 49152 {
            b.set("tokenizer.ggml.add_bos_token", Value::Bool(false))?;
        }
        Ok(())
    }
}

/// tokenizer.json's merges as gguf-py writes them (pairs joined by a space, a space inside a
/// part as U+0120).
/// `Phi3MiniModel.set_vocab`: GPT-2 byte-level BPE when tokenizer_config.json's
/// `tokenizer_class` is `GPT2Tokenizer` (Phi-4, Phi-4-mini), else SentencePiece (Phi-3).
fn phi3_uses_gpt2(dir: &Path) -> Result<bool, Error> {
    let tc = match read_json(&dir.join("tokenizer_config.json")) {
        Ok(v) => v,
        Err(Error::Missing(_)) => return Ok(false),
        Err(e) => return Err(e),
    };
    match tc.get("tokenizer_class") {
        Some(Json::String(c)) => Ok(c == "GPT2Tokenizer"),
        // llama.cpp's converter stops here too (a KeyError).
        None | Some(Json::Null) => Err(Error::Tokenizer(
            "tokenizer_config.json has no tokenizer_class (a phi3 checkpoint's names \
             GPT2Tokenizer or a SentencePiece tokenizer)"
                .into(),
        )),
        Some(v) => Err(Error::Tokenizer(format!(
            "tokenizer_config.json's tokenizer_class is {v}, not a name"
        ))),
    }
}

fn parse_merges(model: &Json) -> Result<Vec<String>, Error> {
    let terr = |m: String| Error::Tokenizer(m);
    Ok(match model.get("merges") {
        Some(Json::Array(m)) => m
            .iter()
            .map(|m| match m {
                Json::String(s) => Ok(s.clone()),
                Json::Array(pair) if pair.len() == 2 => {
                    let part = |p: &Json| -> Result<String, Error> {
                        let s = p
                            .as_str()
                            .ok_or_else(|| terr("a merge is not text".into()))?;
                        // Spaces inside a part become U+0120, as gguf-py encodes them.
                        Ok(s.chars()
                            .map(|c| if c == ' ' { '\u{120}' } else { c })
                            .collect())
                    };
                    Ok(format!("{} {}", part(&pair[0])?, part(&pair[1])?))
                }
                _ => Err(terr("unknown tokenizer merges format".into())),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => Vec::new(),
    })
}

fn template_from_json(t: &Json) -> Option<ChatTemplate> {
    match t {
        Json::String(s) => Some(ChatTemplate::One(s.clone())),
        Json::Array(list) => Some(ChatTemplate::Named(
            list.iter()
                .filter_map(|c| {
                    Some((
                        c.get("name")?.as_str()?.to_owned(),
                        c.get("template")?.as_str()?.to_owned(),
                    ))
                })
                .collect(),
        )),
        _ => None,
    }
}

/// The special tokens transformers' post-processor puts around a single sequence (a BOS for
/// Llama 3), which llama.cpp's fingerprint includes.
fn post_processor_specials(
    tj: &Json,
    by_id: &HashMap<usize, String>,
    added: &HashMap<&str, usize>,
) -> (Vec<u32>, Vec<u32>) {
    let mut prefix = Vec::new();
    let mut suffix = Vec::new();
    let Some(pp) = tj.get("post_processor").filter(|p| p.is_object()) else {
        return (prefix, suffix);
    };
    let list = match pp.get("processors") {
        Some(Json::Array(list)) => list.clone(),
        _ => vec![pp.clone()],
    };
    let lookup = |content: &str| -> Option<u32> {
        added
            .get(content)
            .copied()
            .or_else(|| by_id.iter().find(|(_, t)| *t == content).map(|(i, _)| *i))
            .map(|i| i as u32)
    };
    for p in &list {
        match p.get("type").and_then(Json::as_str) {
            Some("TemplateProcessing") => {
                let specials = p.get("special_tokens");
                let mut before = true;
                for item in p
                    .get("single")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                {
                    if item.get("Sequence").is_some() {
                        before = false;
                        continue;
                    }
                    let Some(id) = item
                        .get("SpecialToken")
                        .and_then(|s| s.get("id"))
                        .and_then(Json::as_str)
                    else {
                        continue;
                    };
                    let ids: Vec<u32> = specials
                        .and_then(|s| s.get(id))
                        .and_then(|s| s.get("ids"))
                        .and_then(Json::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|v| v.as_u64())
                                .map(|v| v as u32)
                                .collect()
                        })
                        .or_else(|| lookup(id).map(|i| vec![i]))
                        .unwrap_or_default();
                    if before {
                        prefix.extend(ids);
                    } else {
                        suffix.extend(ids);
                    }
                }
            }
            Some("RobertaProcessing" | "BertProcessing") => {
                let id = |k: &str| {
                    p.get(k)
                        .and_then(Json::as_array)
                        .and_then(|a| a.get(1))
                        .and_then(Json::as_u64)
                        .map(|v| v as u32)
                };
                prefix.extend(id("cls"));
                suffix.extend(id("sep"));
            }
            _ => {}
        }
    }
    (prefix, suffix)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
