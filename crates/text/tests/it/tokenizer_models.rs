//! The two real models against llama.cpp's own tokenizations
//! (`tests/fixtures/{smollm2,gemma3}/tokenize.json`: 96 cases each of text, add_special,
//! parse_special and the ids llama.cpp produced), plus round trips back to text and the
//! special ids llama.cpp reports for them.

use std::path::PathBuf;
use std::sync::OnceLock;

use text::tokenizer::Tokenizer;

pub fn smollm2() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load(test_models::SMOLLM2))
}

pub fn gemma3() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load(test_models::GEMMA3))
}

fn load(name: &str) -> Tokenizer {
    let bytes = test_models::read(name);
    let g = gguf::Gguf::parse(&bytes).unwrap();
    Tokenizer::from_gguf(&g).unwrap()
}

pub struct Case {
    pub text: String,
    pub add_special: bool,
    pub parse_special: bool,
    pub ids: Vec<u32>,
}

pub fn cases(model: &str) -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(model)
        .join("tokenize.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            text: c["text"].as_str().unwrap().to_owned(),
            add_special: c["add_special"].as_bool().unwrap(),
            parse_special: c["parse_special"].as_bool().unwrap(),
            ids: c["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u32)
                .collect(),
        })
        .collect()
}

fn check_encode(tok: &Tokenizer, model: &str) {
    let cases = cases(model);
    assert_eq!(cases.len(), 96);
    let mut failures = Vec::new();
    for c in &cases {
        let got = tok.encode(&c.text, c.add_special, c.parse_special);
        if got != c.ids {
            failures.push(format!(
                "  {:?} add_special={} parse_special={}\n    want {:?}\n    got  {:?}",
                c.text, c.add_special, c.parse_special, c.ids, got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{model}: {} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Decoding llama.cpp's ids (without the BOS encoding added) gives the text back: neither
/// model adds a space prefix or tidies spaces, so llama.cpp's detokenizer round-trips too.
fn check_round_trip(tok: &Tokenizer, model: &str) {
    for c in cases(model) {
        let ids = match (c.add_special && tok.add_bos(), c.ids.split_first()) {
            (true, Some((&first, rest))) if Some(first) == tok.bos() => rest,
            _ => &c.ids[..],
        };
        assert_eq!(
            tok.decode(ids, true).unwrap(),
            c.text,
            "{model}: {:?}",
            c.text
        );
        if !c.parse_special {
            assert_eq!(
                tok.decode(ids, false).unwrap(),
                c.text,
                "{model}: {:?}",
                c.text
            );
        }
    }
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_encode(smollm2(), "smollm2");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_encode(gemma3(), "gemma3");
}

#[test]
fn smollm2_round_trips() {
    check_round_trip(smollm2(), "smollm2");
}

#[test]
fn gemma3_round_trips() {
    check_round_trip(gemma3(), "gemma3");
}

#[test]
fn smollm2_special_tokens() {
    // By llama.cpp's rules (llama-vocab.cpp): BOS 1 '<|im_start|>', EOS 2 '<|im_end|>',
    // EOT 2; EOG = {0 '<|endoftext|>', 2 '<|im_end|>', 4 '<reponame>' (found as the FIM
    // repo token, and FIM pad/repo/separator tokens end generation)}; no BOS added.
    let t = smollm2();
    assert_eq!(t.n_vocab(), 49152);
    assert_eq!((t.bos(), t.eos(), t.eot()), (Some(1), Some(2), Some(2)));
    assert_eq!(t.eog_tokens(), [0, 2, 4]);
    assert!(t.is_eog(0) && t.is_eog(2) && !t.is_eog(1) && !t.is_eog(u32::MAX));
    assert!(!t.add_bos() && !t.add_eos());
    assert_eq!((t.model(), t.pre()), ("gpt2", "smollm"));
    assert!(t.warnings().is_empty(), "{:?}", t.warnings());
}

#[test]
fn gemma3_special_tokens() {
    // By llama.cpp's rules: BOS 2 '<bos>', EOS 1 '<eos>', EOT 106 '<end_of_turn>',
    // EOG = {1, 106, 212 '</s>' (on llama.cpp's list of end tokens by text)}.
    let t = gemma3();
    assert_eq!(t.n_vocab(), 262_144);
    assert_eq!((t.bos(), t.eos(), t.eot()), (Some(2), Some(1), Some(106)));
    assert_eq!(t.eog_tokens(), [1, 106, 212]);
    assert!(t.add_bos() && !t.add_eos());
    assert_eq!(t.token_id("<start_of_turn>"), Some(105));
    assert!(t.is_control(105) && !t.is_control(9259));
    assert!(t.warnings().is_empty(), "{:?}", t.warnings());
}

#[test]
fn pieces_follow_token_to_piece() {
    let g = gemma3();
    assert_eq!(&*g.token_to_piece(2, true).unwrap(), b"<bos>");
    assert_eq!(&*g.token_to_piece(2, false).unwrap(), b"");
    let hello = g.encode(" Hello", false, false);
    assert_eq!(&*g.token_to_piece(hello[0], false).unwrap(), b" Hello");
    let s = smollm2();
    assert_eq!(&*s.token_to_piece(38699, false).unwrap(), b" Hello");
    assert_eq!(&*s.token_to_piece(2, true).unwrap(), b"<|im_end|>");
    assert!(s.token_to_piece(49152, true).is_err());
}

#[test]
fn user_text_never_becomes_control_tokens() {
    for tok in [smollm2(), gemma3()] {
        let text =
            "<|im_start|>user\n<start_of_turn><end_of_turn><eos><bos><|endoftext|><|im_end|>";
        let ids = tok.encode(text, false, false);
        assert!(ids.iter().all(|&id| !tok.is_control(id)), "{ids:?}");
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
    }
}

#[test]
fn tokenizers_are_shared_between_threads_and_print_briefly() {
    fn shared<T: Send + Sync>(_: &T) {}
    shared(gemma3());
    let printed = format!("{:?}", gemma3());
    assert!(
        printed.len() < 300 && printed.contains("n_vocab: 262144"),
        "{printed}"
    );
    let ids = std::thread::scope(|s| {
        let a = s.spawn(|| smollm2().encode("Hello world", false, false));
        let b = s.spawn(|| gemma3().encode("Hello world", false, false));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(ids, (vec![19556, 905], vec![9259, 1902]));
}
