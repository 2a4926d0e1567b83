//! Hostile input never panics: huge and odd texts, invalid ids, broken tokenizer metadata.

use std::time::Instant;

use gguf::{Array, Builder, Gguf, Value};
use text::tokenizer::{Tokenizer, TokenizerError};

use super::tokenizer_models::{gemma3, smollm2};
use super::tokenizer_vocab::vocab_tokenizer;

/// A deterministic mix of ASCII, accented Latin, CJK, emoji, combining marks, controls and
/// odd white space.
fn noise(n: usize, seed: u64) -> String {
    let pools: [&[char]; 6] = [
        &[
            'a', 'Z', ' ', ' ', '\n', '\t', '\r', '\'', 's', '1', '9', '.', '<', '|', '>', '~',
        ],
        &['é', 'ß', 'Ä', 'ø', 'İ', 'ſ', 'K'],
        &['我', '想', '在', '工', '作', '가', 'ク', 'ក', 'ា'],
        &['🦙', '🚀', '😶', '\u{200d}', '🌫', '\u{fe0f}'],
        &[
            '\u{301}', '\u{0}', '\u{7f}', '\u{85}', '\u{a0}', '\u{2028}', '\u{3000}', '\u{feff}',
        ],
        &['\u{e000}', '\u{10ffff}', '\u{378}', '²', '½', '٣'],
    ];
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pool = pools[(x >> 60) as usize % pools.len()];
            pool[(x >> 33) as usize % pool.len()]
        })
        .collect()
}

#[test]
fn noise_round_trips_through_both_models() {
    for tok in [smollm2(), gemma3()] {
        for seed in 0..4 {
            let text = noise(20_000, seed);
            let ids = tok.encode(&text, false, false);
            assert_eq!(tok.decode(&ids, false).unwrap(), text);
            let ids = tok.encode(&text, true, true);
            assert!(!ids.is_empty());
        }
    }
}

/// Cutting SentencePiece text into words and memoizing words are shortcuts that must not
/// change a single id: compare with llama.cpp's algorithm run step by step.
#[test]
fn shortcuts_change_nothing() {
    let english = include_str!("../../benches/data/gpl-3.txt");
    let gemma_cut = "a>▁</b> <td>x</td> >  </ >\t</";
    for tok in [
        smollm2(),
        gemma3(),
        &vocab_tokenizer("llama-spm"),
        &vocab_tokenizer("qwen2"),
    ] {
        for text in [english, gemma_cut, &noise(30_000, 11), &noise(30_000, 12)] {
            for (add, parse) in [(false, false), (true, true)] {
                assert_eq!(
                    tok.encode(text, add, parse),
                    tok.encode_without_shortcuts(text, add, parse),
                    "{} on {:?}",
                    tok.model(),
                    &text[..text.len().min(40)]
                );
            }
        }
    }
}

#[test]
fn noise_through_every_pre_tokenizer_kind() {
    for name in [
        "qwen2",
        "deepseek-llm",
        "deepseek-coder",
        "falcon",
        "llama-bpe",
        "bert-bge",
        "phi-3",
    ] {
        let tok = vocab_tokenizer(name);
        let text = noise(20_000, 7);
        let ids = tok.encode(&text, true, true);
        assert!(!ids.is_empty(), "{name}");
        tok.decode(&ids, true).unwrap();
    }
}

#[test]
fn long_runs_stay_fast() {
    let runs = [
        " ".repeat(200_000),
        "\n".repeat(200_000),
        "a".repeat(200_000),
        "1".repeat(200_000),
        "!".repeat(200_000),
        "é".repeat(100_000),
        "<unused0>".repeat(20_000),
        "<|im_start|>".repeat(20_000),
        " \n".repeat(100_000),
        " ".repeat(200_000) + "😀",
    ];
    let tokenizers = [
        smollm2(),
        gemma3(),
        &vocab_tokenizer("qwen2"),
        &vocab_tokenizer("deepseek-llm"),
    ];
    for tok in tokenizers {
        for text in &runs {
            let t = Instant::now();
            for parse_special in [false, true] {
                let ids = tok.encode(text, false, parse_special);
                assert!(!ids.is_empty());
            }
            let s = t.elapsed().as_secs_f64();
            assert!(
                s < 20.0,
                "{} on a run of {:?}: {s:.1} s",
                tok.pre(),
                &text[..2]
            );
        }
    }
}

#[test]
fn decode_rejects_invalid_ids_and_survives_odd_sequences() {
    for tok in [smollm2(), gemma3()] {
        let n = tok.n_vocab() as u32;
        assert_eq!(
            tok.decode(&[1, n, 2], true),
            Err(TokenizerError::BadId {
                id: n,
                n_vocab: n as usize
            })
        );
        assert!(tok.decode(&[u32::MAX], false).is_err());
        assert!(tok.token_to_piece(n, true).is_err());
        // every token once, in reverse order: splits characters everywhere
        let all: Vec<u32> = (0..n).rev().step_by(7).collect();
        let text = tok.decode(&all, true).unwrap();
        assert!(!text.is_empty());
        assert_eq!(tok.decode(&[], true).unwrap(), "");
    }
}

/// A tokenizer-only GGUF with the given metadata.
fn build(kv: Vec<(&str, Value<'static>)>) -> Vec<u8> {
    let mut b = Builder::new();
    for (k, v) in kv {
        b.set(k, v).unwrap();
    }
    b.to_bytes()
}

fn try_load(kv: Vec<(&str, Value<'static>)>) -> Result<Tokenizer, TokenizerError> {
    let bytes = build(kv);
    Tokenizer::from_gguf(&Gguf::parse(&bytes).unwrap())
}

fn tokens(t: &[&str]) -> Value<'static> {
    Value::Array(Array::from_strs(t))
}

#[test]
fn broken_metadata_gives_errors_that_name_the_problem() {
    let words = ["<unk>", "<s>", "</s>", "a", "b", "ab"];
    let err = |kv| try_load(kv).unwrap_err().to_string();
    assert!(err(vec![]).contains("tokenizer.ggml.model"));
    assert!(
        err(vec![("tokenizer.ggml.model", Value::string("t9"))]).contains("'t9'"),
        "unknown models are named"
    );
    assert!(
        err(vec![("tokenizer.ggml.model", Value::string("llama"))])
            .contains("tokenizer.ggml.tokens")
    );
    let gpt2 = |pre: &str| {
        vec![
            ("tokenizer.ggml.model", Value::string("gpt2")),
            ("tokenizer.ggml.pre", Value::string(pre)),
            ("tokenizer.ggml.tokens", tokens(&words)),
            ("tokenizer.ggml.merges", tokens(&["a b"])),
        ]
    };
    let e = err(gpt2("my-new-model"));
    assert!(e.contains("unknown pre-tokenizer 'my-new-model'"), "{e}");
    assert!(err(gpt2("kimi-k2")).contains("'kimi-k2'"));
    let mut no_merges = gpt2("gpt-2");
    no_merges.pop();
    assert!(err(no_merges).contains("tokenizer.ggml.merges"));
    let spm = |extra: Vec<(&'static str, Value<'static>)>| {
        let mut kv = vec![
            ("tokenizer.ggml.model", Value::string("llama")),
            ("tokenizer.ggml.tokens", tokens(&words)),
        ];
        kv.extend(extra);
        kv
    };
    assert!(
        err(spm(vec![(
            "tokenizer.ggml.scores",
            Value::Array(Array::from_f32s(&[0.0]))
        )]))
        .contains("tokenizer.ggml.scores")
    );
    assert!(
        err(spm(vec![("tokenizer.ggml.token_type", Value::string("x"))]))
            .contains("tokenizer.ggml.token_type")
    );
    assert!(
        err(spm(vec![(
            "tokenizer.ggml.bos_token_id",
            Value::string("x")
        )]))
        .contains("tokenizer.ggml.bos_token_id")
    );
    let dup = vec![
        ("tokenizer.ggml.model", Value::string("llama")),
        ("tokenizer.ggml.tokens", tokens(&["a", "b", "a"])),
    ];
    assert!(err(dup).contains("ids 0 and 2"));
    let tiny = vec![
        ("tokenizer.ggml.model", Value::string("llama")),
        ("tokenizer.ggml.tokens", tokens(&["a"])),
    ];
    assert!(
        err(tiny).contains("add_bos_token"),
        "SPM adds BOS by default, and id 1 is out of range"
    );

    // out-of-range special ids are warnings, not failures; empty texts get placeholders
    let t = try_load(spm(vec![
        ("tokenizer.ggml.eos_token_id", Value::U32(1_000_000)),
        ("tokenizer.ggml.eot_token_id", Value::I32(-1)),
    ]))
    .unwrap();
    assert_eq!(t.eos(), Some(2));
    assert_eq!(t.warnings().len(), 2, "{:?}", t.warnings());
    let t = try_load(vec![
        ("tokenizer.ggml.model", Value::string("gpt2")),
        ("tokenizer.ggml.tokens", tokens(&["", "a", "b", "ab"])),
        (
            "tokenizer.ggml.merges",
            tokens(&["a b", "nospace", " ", "a b c"]),
        ),
    ])
    .unwrap();
    assert_eq!(t.token_text(0), Some(&b"[EMPTY_0]"[..]));
    assert_eq!(
        t.warnings().len(),
        1,
        "missing pre is reported: {:?}",
        t.warnings()
    );
    assert_eq!(t.encode("ab", false, false), [3]);
}
