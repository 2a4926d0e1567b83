//! Pre-tokenizers of byte-level BPE vocabularies: how `tokenizer.ggml.pre` splits text into
//! words before merges run.
//!
//! Each `pre` name maps to a list of split steps applied in turn, each step splitting every
//! piece the previous one left ([`PreTokenizer::split`]). Two steps are hand-written, as in
//! llama.cpp, whose results they reproduce exactly rather than what the regex they stand for
//! would give: [`Step::Gpt2`] (GPT-2's pattern) and [`Step::Llama3`] (Llama 3's); every other
//! step is a pattern run by [`super::regex`] with llama.cpp's `std::regex` semantics. The
//! table also carries the load-time flags llama.cpp ties to each `pre` (see [`PreConfig`]).

use std::ops::Range;

use super::regex::{Regex, units};
use super::unicode::{Flags, flags, to_lower};

/// One split step.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`, hand-written.
    Gpt2,
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
    /// hand-written.
    Llama3,
    /// `\p{N}`: every number character alone (a fast path for the regex; same result).
    EachNumber,
    Regex(Regex),
}

/// The pre-tokenizer of one vocabulary.
#[derive(Debug, Clone)]
pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
}

/// What a `pre` name sets besides its split steps (llama.cpp's `llama_vocab::impl::load`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PreConfig {
    pub kind: PreKind,
    /// Detokenization tidies spaces before punctuation (`clean_up_tokenization_spaces`).
    pub clean_spaces: bool,
    /// A whole word that is a token is taken as is, without merges.
    pub ignore_merges: bool,
    /// Overrides the default of adding BOS (the GGUF key still wins).
    pub add_bos: Option<bool>,
    pub add_sep: bool,
    /// The vocabulary has no BOS token by default.
    pub no_bos: bool,
    /// SentencePiece-style BPE (Gemma 4): spaces become `▁` before splitting, words are raw
    /// UTF-8 (one symbol per character, not GPT-2's byte characters), a symbol that is no
    /// token falls back to `<0xXX>` byte tokens, a run of newlines that is a token is taken
    /// whole, and BOS is always added.
    pub spm_style: bool,
}

/// The split recipes; several `pre` names share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PreKind {
    Default,
    Llama3,
    Jais2,
    DeepseekLlm,
    Deepseek3,
    Spark25,
    Youtu,
    DeepseekCoder,
    Falcon,
    Starcoder,
    Gpt2,
    Qwen2,
    Qwen35,
    Poro,
    Chatglm4,
    Viking,
    Tekken,
    Chameleon,
    Gpt4o,
    GraniteEmbMulti,
    TinyAya,
    Superbpe,
    Bailingmoe,
    SeedCoder,
    Ufakzeka,
    Laguna,
    ExaoneMoe,
    Minicpm5,
    Gemma4,
}

impl PreConfig {
    /// The configuration of `pre`; `None` for a name this tokenizer does not know.
    pub fn of(pre: &str) -> Option<PreConfig> {
        use PreKind::*;
        let (kind, clean_spaces) = match pre {
            "default" => (Default, true),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => (Llama3, true),
            "dbrx" | "smaug-bpe" => (Llama3, true),
            "deepseek-llm" => (DeepseekLlm, false),
            "deepseek-coder" => (DeepseekCoder, false),
            "deepseek-v3" | "hunyuan-dense" | "hy_v4" | "joyai-llm" => (Deepseek3, false),
            "spark2_5" => (Spark25, false),
            "youtu" => (Youtu, false),
            "falcon" => (Falcon, true),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                (Starcoder, true)
            }
            "command-r" | "smollm" => (Starcoder, false),
            "mpt" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "jina-v1-en"
            | "jina-v2-code" | "roberta-bpe" | "exaone4" | "olmo" | "jais" => (Gpt2, true),
            "trillion" | "granite-docling" => (Gpt2, false),
            "jais-2" => (Jais2, true),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open" => {
                (Qwen2, false)
            }
            "stablelm2" | "megrez" => (Qwen2, true),
            "qwen35" => (Qwen35, false),
            "poro-chat" => (Poro, false),
            "bloom" | "gpt3-finnish" => (Poro, true),
            "glm4" | "chatglm-bpe" => (Chatglm4, true),
            "viking" => (Viking, false),
            "tekken" => (Tekken, false),
            "chameleon" => (Chameleon, false),
            "gpt-4o" | "llama4" | "kanana2" | "talkie" | "minimax-m2" => (Gpt4o, false),
            "granite-embed-multi-97m" => (GraniteEmbMulti, false),
            "tiny_aya" | "cohere2moe" => (TinyAya, false),
            "superbpe" => (Superbpe, false),
            "bailingmoe" | "bailingmoe2" | "llada-moe" => (Bailingmoe, false),
            "seed-coder" => (SeedCoder, false),
            "ufakzeka" | "grok-2" => (if pre == "grok-2" { Qwen2 } else { Ufakzeka }, false),
            "laguna" => (Laguna, false),
            "exaone-moe" => (ExaoneMoe, true),
            "minicpm5" => (Minicpm5, true),
            "gemma4" | "granite-embed-multi-311m" => (Gemma4, true),
            _ => return None,
        };
        let llama3_names = [
            "llama3",
            "llama-v3",
            "llama-bpe",
            "falcon3",
            "falcon-h1",
            "pixtral",
            "midm-2.0",
            "lfm2",
            "jina-v5-nano",
        ];
        let is_llama3 = llama3_names.contains(&pre);
        Some(PreConfig {
            kind,
            clean_spaces,
            ignore_merges: is_llama3
                || matches!(
                    pre,
                    "tekken" | "youtu" | "granite-embed-multi-97m" | "minicpm5"
                ),
            add_bos: (is_llama3 || matches!(pre, "tekken" | "chameleon")).then_some(true),
            add_sep: matches!(pre, "jina-v1-en" | "jina-v2-code" | "roberta-bpe"),
            no_bos: kind == Chatglm4,
            spm_style: kind == Gemma4,
        })
    }
}

const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const CONTRACTIONS: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";

/// The split patterns of each recipe, as llama.cpp lists them (GPT-2's and Llama 3's pattern
/// stand for the hand-written steps).
fn patterns(kind: PreKind) -> Vec<String> {
    use PreKind::*;
    let llama3 = format!(
        r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    );
    let gpt4o_tail = r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    let upper_lower = format!(
        r"[^\r\n\p{{L}}\p{{N}}]?((?=[\p{{L}}])([^a-z]))*((?=[\p{{L}}])([^A-Z]))+{CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?((?=[\p{{L}}])([^a-z]))+((?=[\p{{L}}])([^A-Z]))*{CONTRACTIONS}?|"
    );
    let v: Vec<String> = match kind {
        Default => vec![
            r"[\p{P}\$\+<=>\^~\|]+".into(),
            GPT2.into(),
            r"\p{N}+".into(),
            "[0-9][0-9][0-9]".into(),
        ],
        Llama3 | Chatglm4 => vec![llama3],
        Jais2 => vec![format!(
            r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{{1,3}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s{{512}}(?!\S)|\s{{256}}(?!\S)|\s{{128}}(?!\S)|\s{{64}}(?!\S)|\s{{32}}(?!\S)|\s{{16}}(?!\S)|\s{{8}}(?!\S)|\s{{4}}(?!\S)|\s{{1,2}}(?!\S)|\s{{1}}"
        )],
        DeepseekLlm => vec![
            r"[\r\n]".into(),
            // Code points that NFC would change are escaped so no editor or tool normalizes them.
            "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\u{1F7D}ᾀ-ᾴᾶ-ᾼ\u{1FBE}ῂ-ῄῆ-ῌῐ-\u{1FD3}ῖ-\u{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\u{2126}ℨ\u{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+".into(),
            r"\s?[!-/:-~！-／：-～‘-‟　-。]+".into(),
            r"\s+$".into(),
            "[一-龥ࠀ-一가-퟿]+".into(),
            r"\p{N}+".into(),
        ],
        Deepseek3 => vec![
            r"\p{N}{1,3}".into(),
            "[一-龥぀-ゟ゠-ヿ]+".into(),
            r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"##.into(),
        ],
        Spark25 => vec![
            r"\p{N}{1,3}".into(),
            "[一-龥぀-ゟ゠-ヿ]+".into(),
            r##"[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+"##.into(),
            r"\p{N}".into(),
        ],
        Youtu => vec![
            "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+".into(),
            format!(
                r"[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]*[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]+{CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]+[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]*{CONTRACTIONS}?|\p{{N}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
            ),
        ],
        DeepseekCoder => vec![
            r"[\r\n]".into(),
            r"\s?\p{L}+".into(),
            r"\s?\p{P}+".into(),
            "[一-龥ࠀ-一가-퟿]+".into(),
            r"\p{N}".into(),
        ],
        Falcon => vec![
            r"[\p{P}\$\+<=>\^~\|`]+".into(),
            GPT2.into(),
            "[0-9][0-9][0-9]".into(),
        ],
        Starcoder => vec![r"\p{N}".into(), GPT2.into()],
        Gpt2 => vec![GPT2.into()],
        Qwen2 => vec![format!(
            r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
        )],
        Qwen35 => vec![format!(
            r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?[\p{{L}}\p{{M}}]+|\p{{N}}| ?[^\s\p{{L}}\p{{M}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
        )],
        Poro => vec![r" ?[^(\s|.,!?…。，、।۔،)]+".into()],
        Viking => vec![r" ?[^(\s|.,!?…。，、।۔،)]+".into(), r"\p{N}".into()],
        Tekken => vec![format!(
            r"[^\r\n\p{{L}}\p{{N}}]?((?=[\p{{L}}])([^a-z]))*((?=[\p{{L}}])([^A-Z]))+|[^\r\n\p{{L}}\p{{N}}]?((?=[\p{{L}}])([^a-z]))+((?=[\p{{L}}])([^A-Z]))*|\p{{N}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
        )],
        Chameleon => vec![
            "<sentinel:[0-9]+>".into(),
            "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z".into(),
            r"([\t\n]|    |  )".into(),
            r"\p{N}".into(),
            r"[\p{P}!-/:-@\[-`{-~]".into(),
            GPT2.into(),
        ],
        Gpt4o => vec![format!("{upper_lower}{gpt4o_tail}")],
        GraniteEmbMulti => vec![format!(
            r"[^\r\n\p{{L}}\p{{N}}]?((?=[\p{{L}}\p{{M}}])([^a-z]))*((?=[\p{{L}}\p{{M}}])([^A-Z]))+{CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?((?=[\p{{L}}\p{{M}}])([^a-z]))+((?=[\p{{L}}\p{{M}}])([^A-Z]))*{CONTRACTIONS}?|{gpt4o_tail}"
        )],
        TinyAya => vec![
            r"\d{1,3}(?=(?:\d{3})*\b)".into(),
            format!(
                r"[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]*[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]+{CONTRACTIONS}?|[^\r\n\p{{L}}\p{{N}}]?[\p{{Lu}}\p{{Lt}}\p{{Lm}}\p{{Lo}}\p{{M}}]+[\p{{Ll}}\p{{Lm}}\p{{Lo}}\p{{M}}]*{CONTRACTIONS}?|{gpt4o_tail}"
            ),
        ],
        Superbpe => vec![r"\p{N}+".into(), r"(?=(\d{3})+(?!\d))".into()],
        Bailingmoe => vec![
            r"'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+".into(),
        ],
        SeedCoder => vec![format!(
            r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}{{1}}| ?[^\s\p{{L}}\p{{N}}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+"
        )],
        Ufakzeka => vec![
            r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
                .into(),
        ],
        Gemma4 => vec![r"[^\n]+|[\n]+".into()],
        Laguna => vec![
            r"[^\n]+|[\n]+".into(),
            format!(
                r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
            ),
        ],
        ExaoneMoe => vec![format!(
            r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?(?:\p{{L}}\p{{M}}*(?: \p{{L}}\p{{M}}*)*)+|\p{{N}}| ?[^\s\p{{L}}\p{{N}}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+"
        )],
        Minicpm5 => vec![
            r"\p{N}{1,3}".into(),
            format!(
                r"{CONTRACTIONS}|[^\r\n\p{{L}}\p{{N}}]?\p{{L}}+|\p{{N}}+| ?[^\s\p{{L}}\p{{N}}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
            ),
        ],
    };
    v
}

impl PreTokenizer {
    /// The pre-tokenizer of a recipe (`Err` names a pattern that does not compile, a bug).
    pub fn new(kind: PreKind) -> Result<PreTokenizer, String> {
        let llama3 = patterns(PreKind::Llama3).pop().unwrap_or_default();
        let steps = patterns(kind)
            .into_iter()
            .map(|p| {
                Ok(if p == GPT2 {
                    Step::Gpt2
                } else if p == llama3 {
                    Step::Llama3
                } else if p == r"\p{N}" {
                    Step::EachNumber
                } else {
                    Step::Regex(Regex::new(&p)?)
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(PreTokenizer { steps })
    }

    /// Splits `text` into words, pushing their byte ranges to `words`.
    pub fn split(&self, text: &str, words: &mut Vec<Range<usize>>) {
        let mut cps: Vec<u32> = Vec::with_capacity(text.len());
        let mut offs: Vec<usize> = Vec::with_capacity(text.len() + 1);
        for (i, c) in text.char_indices() {
            cps.push(c as u32);
            offs.push(i);
        }
        offs.push(text.len());
        let mut fl: Vec<Flags> = Vec::new();
        let mut scratch = Vec::new();
        let mut chunks = vec![cps.len() as u32];
        let mut next = Vec::with_capacity(cps.len() / 2 + 1);
        for step in &self.steps {
            next.clear();
            match step {
                Step::Gpt2 | Step::Llama3 | Step::EachNumber => {
                    if fl.is_empty() {
                        fl.extend(cps.iter().map(|&c| flags(c)));
                    }
                    let mut start = 0usize;
                    for &n in &chunks {
                        let end = start + n as usize;
                        match step {
                            Step::Gpt2 => split_gpt2(&cps, &fl, start, end, &mut next),
                            Step::Llama3 => split_llama3(&cps, &fl, start, end, &mut next),
                            _ => split_numbers(&fl, start, end, &mut next),
                        }
                        start = end;
                    }
                }
                Step::Regex(re) => {
                    units(&cps, re.collapsed(), &mut scratch);
                    let mut start = 0usize;
                    for &n in &chunks {
                        let end = start + n as usize;
                        re.split(&scratch[start..end], &mut next);
                        start = end;
                    }
                }
            }
            std::mem::swap(&mut chunks, &mut next);
        }
        let mut start = 0usize;
        for &n in &chunks {
            let end = start + n as usize;
            words.push(offs[start]..offs[end]);
            start = end;
        }
    }
}

/// Pushes piece lengths for the chunk `[ini, end)`; positions past `end` read as nothing.
struct Cursor<'a> {
    cps: &'a [u32],
    fl: &'a [Flags],
    end: usize,
    prev: usize,
    out: &'a mut Vec<u32>,
}

const OUT_OF_RANGE: u32 = u32::MAX;

impl Cursor<'_> {
    fn cp(&self, p: usize) -> u32 {
        if p < self.end {
            self.cps[p]
        } else {
            OUT_OF_RANGE
        }
    }

    fn fl(&self, p: usize) -> Flags {
        if p < self.end { self.fl[p] } else { Flags(0) }
    }

    /// Ends a piece at `end`; returns its length.
    fn add(&mut self, end: usize) -> usize {
        let len = end - self.prev;
        if len > 0 {
            self.out.push(len as u32);
        }
        self.prev = end;
        len
    }
}

fn not_word(f: Flags) -> bool {
    !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.0 != 0
}

/// GPT-2's pattern as llama.cpp's `unicode_regex_split_custom_gpt2` matches it.
fn split_gpt2(cps: &[u32], fl: &[Flags], ini: usize, end: usize, out: &mut Vec<u32>) {
    let mut c = Cursor {
        cps,
        fl,
        end,
        prev: ini,
        out,
    };
    let mut pos = ini;
    while pos < end {
        let cp = c.cp(pos);
        let f = c.fl(pos);
        if cp == u32::from('\'') && pos + 1 < end {
            let n = c.cp(pos + 1);
            if [b's', b't', b'm', b'd'].iter().any(|&x| n == u32::from(x)) {
                pos += c.add(pos + 2);
                continue;
            }
            if pos + 2 < end {
                let nn = c.cp(pos + 2);
                let pair = |a: u8, b: u8| n == u32::from(a) && nn == u32::from(b);
                if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
                    pos += c.add(pos + 3);
                    continue;
                }
            }
        }
        let space = cp == u32::from(' ');
        let mut f2 = if space { c.fl(pos + 1) } else { f };
        if f2.is_letter() || f2.is_number() {
            let letter = f2.is_letter();
            pos += usize::from(space);
            while if letter {
                f2.is_letter()
            } else {
                f2.is_number()
            } {
                pos += 1;
                f2 = c.fl(pos);
            }
            c.add(pos);
            continue;
        }
        if not_word(f2) {
            pos += usize::from(space);
            while not_word(f2) {
                pos += 1;
                f2 = c.fl(pos);
            }
            c.add(pos);
            continue;
        }
        let mut n_ws = 0;
        while c.fl(pos + n_ws).is_whitespace() {
            n_ws += 1;
        }
        if n_ws > 1 && c.cp(pos + n_ws) != OUT_OF_RANGE {
            pos += n_ws - 1;
            c.add(pos);
            continue;
        }
        if n_ws > 0 {
            pos += n_ws;
            c.add(pos);
            continue;
        }
        pos += 1;
        c.add(pos);
    }
}

/// Llama 3's pattern as llama.cpp's `unicode_regex_split_custom_llama3` matches it.
fn split_llama3(cps: &[u32], fl: &[Flags], ini: usize, end: usize, out: &mut Vec<u32>) {
    let mut c = Cursor {
        cps,
        fl,
        end,
        prev: ini,
        out,
    };
    let is_nl = |cp: u32| cp == u32::from('\r') || cp == u32::from('\n');
    let mut pos = ini;
    while pos < end {
        let cp = c.cp(pos);
        let f = c.fl(pos);
        if cp == u32::from('\'') && pos + 1 < end {
            let n = to_lower(c.cp(pos + 1));
            if [b's', b't', b'm', b'd'].iter().any(|&x| n == u32::from(x)) {
                pos += c.add(pos + 2);
                continue;
            }
            if pos + 2 < end {
                let nn = to_lower(c.cp(pos + 2));
                let pair = |a: u8, b: u8| n == u32::from(a) && nn == u32::from(b);
                if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
                    pos += c.add(pos + 3);
                    continue;
                }
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(is_nl(cp) || f.is_number()) && (f.is_letter() || c.fl(pos + 1).is_letter()) {
            pos += 1;
            while c.fl(pos).is_letter() {
                pos += 1;
            }
            c.add(pos);
            continue;
        }
        // \p{N}{1,3}
        if f.is_number() {
            let mut ini = pos;
            while c.fl(pos).is_number() {
                pos += 1;
                if pos - ini >= 3 {
                    c.add(pos);
                    ini = pos;
                }
            }
            c.add(pos);
            continue;
        }
        // <space>?[^\s\p{L}\p{N}]+[\r\n]* (llama.cpp tests the unshifted flags here)
        let space = cp == u32::from(' ');
        let mut f2 = if space { c.fl(pos + 1) } else { f };
        if !(f2.is_whitespace() || f2.is_letter() || f2.is_number()) && f.0 != 0 {
            pos += usize::from(space);
            while not_word(f2) {
                pos += 1;
                f2 = c.fl(pos);
            }
            while is_nl(c.cp(pos)) {
                pos += 1;
            }
            c.add(pos);
            continue;
        }
        let mut n_ws = 0;
        let mut last_nl_end = 0;
        while c.fl(pos + n_ws).is_whitespace() {
            if is_nl(c.cp(pos + n_ws)) {
                last_nl_end = pos + n_ws + 1;
            }
            n_ws += 1;
        }
        // \s*[\r\n]+
        if last_nl_end > 0 {
            pos = last_nl_end;
            c.add(pos);
            continue;
        }
        if n_ws > 1 && c.cp(pos + n_ws) != OUT_OF_RANGE {
            pos += n_ws - 1;
            c.add(pos);
            continue;
        }
        if n_ws > 0 {
            pos += n_ws;
            c.add(pos);
            continue;
        }
        pos += 1;
        c.add(pos);
    }
}

/// `\p{N}` as a split: each number character alone, the stretches between kept whole.
fn split_numbers(fl: &[Flags], ini: usize, end: usize, out: &mut Vec<u32>) {
    let mut prev = ini;
    for (p, f) in fl.iter().enumerate().take(end).skip(ini) {
        if f.is_number() {
            if p > prev {
                out.push((p - prev) as u32);
            }
            out.push(1);
            prev = p + 1;
        }
    }
    if end > prev {
        out.push((end - prev) as u32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(kind: PreKind, text: &str) -> Vec<&str> {
        let mut w = Vec::new();
        PreTokenizer::new(kind).unwrap().split(text, &mut w);
        w.into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn every_recipe_compiles() {
        use PreKind::*;
        for kind in [
            Default,
            Llama3,
            Jais2,
            DeepseekLlm,
            Deepseek3,
            Spark25,
            Youtu,
            DeepseekCoder,
            Falcon,
            Starcoder,
            Gpt2,
            Qwen2,
            Qwen35,
            Poro,
            Chatglm4,
            Viking,
            Tekken,
            Chameleon,
            Gpt4o,
            GraniteEmbMulti,
            TinyAya,
            Superbpe,
            Bailingmoe,
            SeedCoder,
            Ufakzeka,
            Laguna,
            ExaoneMoe,
            Minicpm5,
        ] {
            let p = PreTokenizer::new(kind).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            let text = "Hello, y'all! 1234567 Ça va?\n\n  tabs\there 我想在apple";
            let mut w = Vec::new();
            p.split(text, &mut w);
            let joined: String = w.iter().map(|r| &text[r.clone()]).collect();
            assert_eq!(joined, text, "{kind:?}");
        }
    }

    #[test]
    fn gpt2_and_llama3_splits() {
        assert_eq!(
            words(PreKind::Gpt2, "Hello world's  end 123\n\n"),
            ["Hello", " world", "'s", " ", " end", " 123", "\n\n"]
        );
        assert_eq!(
            words(PreKind::Llama3, "Hello WORLD'S 1234567\n \nx"),
            [
                "Hello", " WORLD", "'S", " ", "123", "456", "7", "\n \n", "x"
            ]
        );
        assert_eq!(words(PreKind::Starcoder, "a 42"), ["a", " ", "4", "2"]);
    }

    #[test]
    fn each_number_matches_the_regex() {
        let re = PreTokenizer {
            steps: vec![Step::Regex(Regex::new(r"\p{N}").unwrap())],
        };
        let fast = PreTokenizer::new(PreKind::Starcoder).unwrap();
        let text = "x1²٣ 4五x½";
        let mut a = Vec::new();
        re.split(text, &mut a);
        let mut b = Vec::new();
        PreTokenizer {
            steps: vec![fast.steps[0].clone()],
        }
        .split(text, &mut b);
        assert_eq!(a, b);
    }
}
