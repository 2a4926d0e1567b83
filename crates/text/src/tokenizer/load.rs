//! Building a [`Tokenizer`] from GGUF metadata, following llama.cpp's `llama_vocab::load`:
//! per-model defaults, then the file's keys, then llama.cpp's fix-ups by token text (EOT and
//! FIM tokens found by name and marked control, the end-of-generation set, Phi-3's RSTRIP).
//!
//! Anything the file controls is checked: counts against the token list, ids against the
//! vocabulary size; problems llama.cpp only logs become [`Tokenizer::warnings`].

use std::borrow::Cow;

use gguf::{Array, Gguf, Value, ValueType};

use super::bpe::Bpe;
use super::pretok::{PreConfig, PreTokenizer};
use super::special::Specials;
use super::vocab::{Vocab, attr, attr_of_type};
use super::wpm::Normalizer;
use super::{Fim, Kind, Tokenizer, TokenizerError};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_SEP: &str = "tokenizer.ggml.seperator_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
const KEY_ADD_SEP: &str = "tokenizer.ggml.add_sep_token";

/// Tokens whose text marks the end of a turn (llama.cpp's EOT detection, in its order).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Tokens whose text ends generation (llama.cpp's EOG list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
const FIM_OTHER_TEXTS: &[&[&str]] = &[
    &[
        "<|fim_prefix|>",
        "<fim-prefix>",
        "<fim_prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
        "<|code_prefix|>",
        "<|prefix|>",
    ],
    &[
        "<|fim_suffix|>",
        "<fim-suffix>",
        "<fim_suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
        "<|code_suffix|>",
        "<|suffix|>",
    ],
    &[
        "<|fim_middle|>",
        "<fim-middle>",
        "<fim_middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
        "<|code_middle|>",
        "<|middle|>",
    ],
];

/// A metadata array of numbers as f32 / integers, read fast for the common element types.
fn numbers_f32(a: &Array<'_>, n: usize) -> Option<Vec<f32>> {
    match a {
        Array::Numbers {
            ty: ValueType::F32,
            bytes,
        } => Some(
            bytes
                .chunks_exact(4)
                .take(n)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        Array::Numbers { .. } => (0..n).map(|i| a.f64_at(i).map(|v| v as f32)).collect(),
        _ => None,
    }
}

fn numbers_i32(a: &Array<'_>, n: usize) -> Option<Vec<i128>> {
    match a {
        Array::Numbers {
            ty: ValueType::I32,
            bytes,
        } => Some(
            bytes
                .chunks_exact(4)
                .take(n)
                .map(|c| i128::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        Array::Numbers { .. } => (0..n).map(|i| a.i128_at(i)).collect(),
        _ => None,
    }
}

fn bad(key: &'static str, problem: impl Into<String>) -> TokenizerError {
    TokenizerError::BadKey {
        key,
        problem: problem.into(),
    }
}

/// Reads an optional key of type T, turning a wrong type into an error.
fn opt<'s, T: gguf::FromValue<'s>>(
    g: &'s Gguf<'_>,
    key: &'static str,
) -> Result<Option<T>, TokenizerError> {
    g.get_opt::<T>(key).map_err(|_| {
        let found = g
            .get(key)
            .map_or("absent", |v: &Value<'_>| v.value_type().name());
        bad(key, format!("has type {found}, expected {}", T::EXPECTED))
    })
}

impl Tokenizer {
    /// Builds the tokenizer a GGUF file describes.
    pub fn from_gguf(g: &Gguf<'_>) -> Result<Tokenizer, TokenizerError> {
        let model: &str = opt(g, KEY_MODEL)?.ok_or(TokenizerError::MissingKey(KEY_MODEL))?;
        let mut pre: String = opt::<&str>(g, KEY_PRE)?.unwrap_or_default().to_owned();
        let mut warnings = Vec::new();

        // Per-model defaults (llama.cpp's, ids checked against the vocabulary below).
        enum Algo {
            Spm,
            Bpe(PreConfig),
            Wpm,
        }
        let (algo, defaults) = match model {
            "llama" => (Algo::Spm, [Some(1), Some(2), Some(0), None, None]),
            "bert" => (Algo::Wpm, [Some(101), None, Some(100), Some(102), Some(0)]),
            // SentencePiece-style BPE; llama.cpp sets the pre-tokenizer itself
            "gemma4" => {
                pre = "gemma4".to_owned();
                let cfg = PreConfig::of(&pre).ok_or(TokenizerError::UnknownPre(pre.clone()))?;
                (Algo::Bpe(cfg), [None; 5])
            }
            "gpt2" => {
                let cfg = if pre.is_empty() {
                    warnings.push(
                        "missing pre-tokenizer type (tokenizer.ggml.pre), using 'default': \
                         generation quality will be degraded, consider reconverting the model"
                            .to_owned(),
                    );
                    PreConfig::of("default")
                } else {
                    PreConfig::of(&pre)
                };
                let cfg = match cfg {
                    Some(c) => c,
                    None if UNSUPPORTED_PRES.contains(&pre.as_str()) => {
                        return Err(TokenizerError::UnsupportedPre(pre));
                    }
                    None => return Err(TokenizerError::UnknownPre(pre)),
                };
                let bos = if cfg.no_bos { None } else { Some(11) };
                (Algo::Bpe(cfg), [bos, Some(11), None, None, None])
            }
            other => return Err(TokenizerError::UnsupportedModel(other.to_owned())),
        };
        let [mut bos, mut eos, mut unk, mut sep, mut pad] = defaults;
        let (mut add_space_prefix, clean_spaces, mut add_bos, mut add_eos, mut add_sep) =
            match &algo {
                Algo::Spm => (true, false, true, false, false),
                Algo::Wpm => (false, true, true, false, true),
                Algo::Bpe(cfg) => (
                    false,
                    cfg.clean_spaces,
                    cfg.add_bos.unwrap_or(false),
                    false,
                    cfg.add_sep,
                ),
            };
        if let Some(v) = opt::<bool>(g, "tokenizer.ggml.add_space_prefix")? {
            add_space_prefix = v;
        }

        // The token list, scores and types.
        let tokens = match g.get(KEY_TOKENS) {
            None => return Err(TokenizerError::MissingKey(KEY_TOKENS)),
            Some(Value::Array(a @ Array::Strings(_))) => a,
            Some(v) => {
                return Err(bad(
                    KEY_TOKENS,
                    format!(
                        "has type {}, expected an array of strings",
                        v.value_type().name()
                    ),
                ));
            }
        };
        let n = tokens.len();
        if n == 0 {
            return Err(bad(KEY_TOKENS, "is empty"));
        }
        if n > u32::MAX as usize / 2 {
            return Err(bad(KEY_TOKENS, format!("has {n} tokens, too many")));
        }
        let scores = match g.get(KEY_SCORES) {
            None => vec![0.0; n],
            Some(Value::Array(a)) if a.len() >= n => {
                numbers_f32(a, n).ok_or_else(|| bad(KEY_SCORES, "is not an array of numbers"))?
            }
            Some(Value::Array(a)) => {
                return Err(bad(
                    KEY_SCORES,
                    format!("has {} values for {n} tokens", a.len()),
                ));
            }
            Some(_) => return Err(bad(KEY_SCORES, "is not an array")),
        };
        let attrs: Vec<u16> = match g.get(KEY_TYPES) {
            None => vec![attr::NORMAL; n],
            Some(Value::Array(a)) if a.len() >= n => numbers_i32(a, n)
                .ok_or_else(|| bad(KEY_TYPES, "is not an array of integers"))?
                .into_iter()
                .map(attr_of_type)
                .collect(),
            Some(Value::Array(a)) => {
                return Err(bad(
                    KEY_TYPES,
                    format!("has {} values for {n} tokens", a.len()),
                ));
            }
            Some(_) => return Err(bad(KEY_TYPES, "is not an array")),
        };
        let text_of = |i: usize| -> Cow<'_, [u8]> {
            match tokens.str_bytes_at(i) {
                Some(t) if !t.is_empty() => Cow::Borrowed(t),
                _ => Cow::Owned(format!("[EMPTY_{i}]").into_bytes()),
            }
        };
        let total: usize = (0..n)
            .map(|i| tokens.str_bytes_at(i).map_or(0, <[u8]>::len))
            .sum();
        let mut vocab = Vocab::new((0..n).map(text_of), n, total, scores, attrs).map_err(
            |(first, second)| TokenizerError::DuplicateToken {
                text: String::from_utf8_lossy(&text_of(second as usize)).into_owned(),
                first,
                second,
            },
        )?;

        // Special token ids: defaults out of range are dropped, the file's override them.
        let read_id = |key: &'static str,
                       default: Option<u32>,
                       warnings: &mut Vec<String>|
         -> Result<Option<u32>, TokenizerError> {
            let mut id = default.filter(|&d| (d as usize) < n);
            match g.get(key) {
                None => {}
                Some(v) => match v.as_i128() {
                    Some(v) if (0..n as i128).contains(&v) => id = Some(v as u32),
                    Some(v) => warnings.push(format!(
                        "bad special token: {key} = {v} (vocabulary of {n}), using {id:?}"
                    )),
                    None => {
                        return Err(bad(
                            key,
                            format!("has type {}, expected an integer", v.value_type().name()),
                        ));
                    }
                },
            }
            Ok(id)
        };
        bos = read_id(KEY_BOS, bos, &mut warnings)?;
        eos = read_id(KEY_EOS, eos, &mut warnings)?;
        let mut eot = read_id("tokenizer.ggml.eot_token_id", None, &mut warnings)?;
        let mut eom = read_id("tokenizer.ggml.eom_token_id", None, &mut warnings)?;
        unk = read_id("tokenizer.ggml.unknown_token_id", unk, &mut warnings)?;
        sep = read_id(KEY_SEP, sep, &mut warnings)?;
        pad = read_id("tokenizer.ggml.padding_token_id", pad, &mut warnings)?;
        let mut fim = [None; 6]; // pre, suf, mid, pad, rep, sep
        for (slot, keys) in fim.iter_mut().zip([
            &[
                "tokenizer.ggml.fim_pre_token_id",
                "tokenizer.ggml.prefix_token_id",
            ][..],
            &[
                "tokenizer.ggml.fim_suf_token_id",
                "tokenizer.ggml.suffix_token_id",
            ],
            &[
                "tokenizer.ggml.fim_mid_token_id",
                "tokenizer.ggml.middle_token_id",
            ],
            &["tokenizer.ggml.fim_pad_token_id"],
            &["tokenizer.ggml.fim_rep_token_id"],
            &["tokenizer.ggml.fim_sep_token_id"],
        ]) {
            for key in keys {
                *slot = read_id(key, *slot, &mut warnings)?;
            }
        }

        if let Some(v) = opt::<bool>(g, KEY_ADD_BOS)? {
            add_bos = v;
        }
        if let Some(v) = opt::<bool>(g, KEY_ADD_EOS)? {
            add_eos = v;
        }
        if let Some(v) = opt::<bool>(g, KEY_ADD_SEP)? {
            add_sep = v;
        }
        if matches!(&algo, Algo::Bpe(cfg) if cfg.spm_style) && !add_bos {
            // llama.cpp's workaround for Gemma 4 files that say otherwise (its #21500)
            add_bos = true;
            warnings.push(format!("{KEY_ADD_BOS} overridden to true for Gemma 4"));
        }
        for (on, id, flag, id_key) in [
            (add_bos, bos, KEY_ADD_BOS, KEY_BOS),
            (add_eos, eos, KEY_ADD_EOS, KEY_EOS),
            (add_sep, sep, KEY_ADD_SEP, KEY_SEP),
        ] {
            if on && id.is_none() {
                return Err(TokenizerError::MissingSpecial { flag, id_key });
            }
        }
        let lowercase = opt::<bool>(g, "tokenizer.ggml.normalizer.lowercase")?.unwrap_or(true);
        let strip_accents =
            opt::<bool>(g, "tokenizer.ggml.normalizer.strip_accents")?.unwrap_or(lowercase);

        // Tokens found by text (llama.cpp: "convert scripts should provide these").
        let mark_control = |id: u32, vocab: &mut Vocab| {
            if let Some(a) = vocab.attrs.get_mut(id as usize) {
                *a |= attr::CONTROL;
            }
        };
        let find_first =
            |texts: &[&str], vocab: &Vocab| texts.iter().find_map(|t| vocab.get(t.as_bytes()));
        if eot.is_none() {
            eot = find_first(EOT_TEXTS, &vocab);
            if let Some(id) = eot {
                mark_control(id, &mut vocab);
            }
        }
        if eom.is_none() {
            eom = vocab.get(b"<|eom_id|>");
            if let Some(id) = eom {
                mark_control(id, &mut vocab);
            }
        }
        for (slot, texts) in fim.iter_mut().zip(FIM_OTHER_TEXTS.iter().copied().chain([
            FIM_PAD_TEXTS,
            FIM_REP_TEXTS,
            FIM_SEP_TEXTS,
        ])) {
            if slot.is_none() {
                *slot = find_first(texts, &vocab);
                if let Some(id) = *slot {
                    mark_control(id, &mut vocab);
                }
            }
        }

        // The end-of-generation set.
        let mut eog: Vec<u32> = fim[3..].iter().flatten().copied().collect();
        for t in EOG_TEXTS {
            if let Some(id) = vocab.get(t.as_bytes()) {
                eog.push(id);
                mark_control(id, &mut vocab);
            }
        }
        for t in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = vocab.get(t.as_bytes()) {
                vocab.attrs[id as usize] = attr::USER_DEFINED;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();
        let has = |t: &str, eog: &[u32], vocab: &Vocab| {
            vocab
                .get(t.as_bytes())
                .filter(|id| eog.binary_search(id).is_ok())
        };
        let end = has("<|end|>", &eog, &vocab);
        let ret = has("<|return|>", &eog, &vocab).is_some();
        let call =
            has("<|call|>", &eog, &vocab).is_some() || has("<|calls|>", &eog, &vocab).is_some();
        let flush = has("<|flush|>", &eog, &vocab).is_some();
        if let Some(end) = end.filter(|_| call && (ret || flush)) {
            eog.retain(|&id| id != end);
            vocab.attrs[end as usize] = attr::USER_DEFINED;
        }
        if let Some(s) =
            has("</s>", &eog, &vocab).filter(|_| has("<|tool_response>", &eog, &vocab).is_some())
        {
            eog.retain(|&id| id != s);
            vocab.attrs[s as usize] = attr::NORMAL;
        }

        let specials = Specials::new(&vocab);

        // Per-model attributes (llama.cpp sets these by model name).
        let name = opt::<&str>(g, "general.name")?.unwrap_or("").to_lowercase();
        let arch = opt::<&str>(g, "general.architecture")?.unwrap_or("");
        let set_attr = |text: &str, bit: u16, on: bool, vocab: &mut Vocab| {
            if let Some(id) = vocab.get(text.as_bytes()) {
                let a = &mut vocab.attrs[id as usize];
                *a = if on { *a | bit } else { *a & !bit };
            }
        };
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
            .iter()
            .any(|p| pre.contains(p))
            || ["nomic-bert-moe", "jina-bert-v3"]
                .iter()
                .any(|a| arch.contains(a))
        {
            set_attr("<mask>", attr::LSTRIP, true, &mut vocab);
        } else if name.contains("phi-3") || name.contains("phi3") {
            for &id in specials.ids() {
                vocab.attrs[id as usize] |= attr::RSTRIP;
            }
            set_attr("</s>", attr::RSTRIP, true, &mut vocab);
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                set_attr(t, attr::RSTRIP, false, &mut vocab);
            }
        } else if name.contains("modern-bert") {
            set_attr("[MASK]", attr::LSTRIP, true, &mut vocab);
        }

        let kind = match algo {
            Algo::Spm => {
                let mut byte_tokens = Box::new([None; 256]);
                for (b, slot) in byte_tokens.iter_mut().enumerate() {
                    *slot = vocab
                        .get(format!("<0x{b:02X}>").as_bytes())
                        .or_else(|| vocab.get(&[b as u8]));
                }
                let cuts = super::spm::Cuts::new(&vocab);
                Kind::Spm { byte_tokens, cuts }
            }
            Algo::Wpm => Kind::Wpm(Normalizer {
                lowercase,
                strip_accents,
            }),
            Algo::Bpe(cfg) => {
                let merges = match g.get(KEY_MERGES) {
                    None => return Err(TokenizerError::MissingKey(KEY_MERGES)),
                    Some(Value::Array(a @ Array::Strings(_))) => a,
                    Some(_) => return Err(bad(KEY_MERGES, "is not an array of strings")),
                };
                let pre_tok = PreTokenizer::new(cfg.kind).map_err(|e| bad(KEY_PRE, e))?;
                let merges = (0..merges.len()).map(|i| merges.str_bytes_at(i).unwrap_or(&[]));
                Kind::Bpe(Box::new(Bpe::new(
                    &vocab,
                    merges,
                    pre_tok,
                    cfg.ignore_merges,
                    cfg.spm_style,
                )))
            }
        };
        Ok(Tokenizer {
            kind,
            vocab,
            specials,
            model: model.to_owned(),
            pre,
            bos,
            eos,
            eot,
            eom,
            unk,
            sep,
            pad,
            eog,
            fim: Fim {
                pre: fim[0],
                suf: fim[1],
                mid: fim[2],
                pad: fim[3],
                rep: fim[4],
                sep: fim[5],
            },
            add_bos,
            add_eos,
            add_sep,
            add_space_prefix,
            clean_spaces,
            warnings,
        })
    }
}

/// `pre` names llama.cpp knows that need tokenizer paths hearth does not have yet.
const UNSUPPORTED_PRES: &[&str] = &["kimi-k2", "afmoe", "sarvam-moe", "whitespace"];
