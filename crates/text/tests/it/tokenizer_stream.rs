//! Streaming detokenization only ever hands out complete UTF-8: characters split across
//! tokens (byte-level BPE pieces, SentencePiece byte-fallback tokens) are held until whole.

use super::tokenizer_models::{cases, gemma3, smollm2};

#[test]
fn streams_concatenate_to_the_decoded_text() {
    for (tok, model) in [(smollm2(), "smollm2"), (gemma3(), "gemma3")] {
        let mut held_back = 0;
        for c in cases(model) {
            let mut d = tok.detokenizer(true);
            let mut text = String::new();
            for &id in &c.ids {
                let piece = d.push(id).unwrap();
                if piece.is_empty() && d.has_pending() {
                    held_back += 1;
                }
                text.push_str(&piece);
            }
            assert!(!d.has_pending(), "{model}: {:?} left bytes pending", c.text);
            text.push_str(&d.finish());
            assert_eq!(
                text,
                tok.decode(&c.ids, true).unwrap(),
                "{model}: {:?}",
                c.text
            );
        }
        assert!(
            held_back > 0,
            "{model}: no case split a character across tokens"
        );
    }
}

#[test]
fn byte_fallback_tokens_are_reassembled() {
    let g = gemma3();
    let byte = |b: u8| g.token_id(&format!("<0x{b:02X}>")).unwrap();
    let mut d = g.detokenizer(false);
    let llama = "🦙".as_bytes();
    for &b in &llama[..3] {
        assert_eq!(d.push(byte(b)).unwrap(), "");
        assert!(d.has_pending());
    }
    assert_eq!(d.push(byte(llama[3])).unwrap(), "🦙");
    assert!(!d.has_pending());

    // a byte that can never start a character comes out as U+FFFD at once
    let a = g.encode("a", false, false)[0];
    assert_eq!(d.push(byte(0xFF)).unwrap(), "\u{FFFD}");
    assert_eq!(d.push(a).unwrap(), "a");
    // a character cut short by the next token: the stub is replaced, the token kept
    assert_eq!(d.push(byte(0xE2)).unwrap(), "");
    assert_eq!(d.push(a).unwrap(), "\u{FFFD}a");
    // a stub left at the end is flushed by finish
    assert_eq!(d.push(byte(0xF0)).unwrap(), "");
    assert_eq!(d.finish(), "\u{FFFD}");
    assert_eq!(d.finish(), "");
}

#[test]
fn byte_level_bpe_pieces_are_reassembled() {
    let s = smollm2();
    let ids = s.encode(" this is 🦙.cpp", false, false);
    let mut d = s.detokenizer(false);
    let pieces: Vec<String> = ids.iter().map(|&id| d.push(id).unwrap()).collect();
    assert_eq!(pieces.concat(), " this is 🦙.cpp");
    assert!(pieces.iter().any(String::is_empty), "{pieces:?}");
}

#[test]
fn invalid_ids_are_errors_that_change_nothing() {
    let s = smollm2();
    let mut d = s.detokenizer(true);
    let ids = s.encode("🦙", false, false);
    assert_eq!(d.push(ids[0]).unwrap(), "");
    assert!(d.push(u32::MAX).is_err());
    assert!(d.push(49_152).is_err());
    let rest: String = ids[1..].iter().map(|&id| d.push(id).unwrap()).collect();
    assert_eq!(rest, "🦙");
}
