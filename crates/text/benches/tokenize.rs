//! Tokenizer speed on one core: build time from a parsed GGUF, and encode / decode throughput
//! on ~1 MB of English (the GPL-3 text, repeated), for both test models.
//!
//! Encoding memoizes repeated words within a call, which a repeated text flatters, so three
//! encode figures are printed: the 1 MB text in one call; the 35 KB text alone (one copy per
//! call, the memo starting empty each time); and the 1 MB text without shortcuts (llama.cpp's
//! algorithm step by step).
//!
//! `cargo bench -p text --bench tokenize` (figures go in docs/bench/tokenizer.md).

use std::hint::black_box;
use std::time::{Duration, Instant};

use text::tokenizer::Tokenizer;

/// The best of `runs` timings of `f`.
fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..runs {
        let t = Instant::now();
        let r = black_box(f());
        best = best.min(t.elapsed());
        out = Some(r);
    }
    (best, out.expect("runs > 0"))
}

fn main() {
    let gpl = include_str!("data/gpl-3.txt");
    let text = gpl.repeat((1 << 20) / gpl.len() + 1);
    println!(
        "text: {} bytes (gpl-3.txt x {})",
        text.len(),
        text.len() / gpl.len()
    );
    for name in [test_models::SMOLLM2, test_models::GEMMA3] {
        let bytes = test_models::read(name);
        let (parse, g) = best(5, || gguf::Gguf::parse(&bytes).expect("parse"));
        let (build, tok) = best(10, || Tokenizer::from_gguf(&g).expect("tokenizer"));
        let (enc, ids) = best(10, || tok.encode(&text, true, false));
        let (cold, cold_ids) = best(100, || tok.encode(gpl, true, false));
        let (plain, plain_ids) = best(2, || tok.encode_without_shortcuts(&text, true, false));
        assert_eq!(plain_ids, ids);
        let (dec, out) = best(5, || tok.decode(&ids, false).expect("decode"));
        assert!(out.len() + 8 >= text.len());
        let (stream, n) = best(3, || {
            let mut d = tok.detokenizer(false);
            ids.iter()
                .map(|&id| d.push(id).map_or(0, |s| s.len()))
                .sum::<usize>()
        });
        assert!(n + 8 >= text.len());
        let secs = |d: Duration| d.as_secs_f64();
        println!(
            "{name}: {} tokens ({} vocab) | gguf parse {:.1} ms, tokenizer build {:.1} ms, \
             {:.1} MB held | \
             encode 1 MB {:.1} ms = {:.2} M tokens/s ({:.1} MB/s), one 35 KB copy {:.2} M tokens/s, \
             without shortcuts {:.2} M tokens/s | decode {:.1} ms = {:.1} M tokens/s | \
             streaming {:.1} M tokens/s",
            ids.len(),
            tok.n_vocab(),
            secs(parse) * 1e3,
            secs(build) * 1e3,
            tok.heap_bytes() as f64 / 1e6,
            secs(enc) * 1e3,
            ids.len() as f64 / secs(enc) / 1e6,
            text.len() as f64 / secs(enc) / 1e6,
            cold_ids.len() as f64 / secs(cold) / 1e6,
            plain_ids.len() as f64 / secs(plain) / 1e6,
            secs(dec) * 1e3,
            ids.len() as f64 / secs(dec) / 1e6,
            ids.len() as f64 / secs(stream) / 1e6,
        );
    }
}
