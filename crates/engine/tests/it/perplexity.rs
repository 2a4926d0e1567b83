//! Perplexity against llama.cpp's own `llama-perplexity` on the same text and settings
//! (`tests/fixtures/perplexity/README.md`: `-c 256 -b 256`, exact attention path): hearth's
//! logits are llama.cpp's, so the estimate and its error print the same digits. Several chunks
//! evaluated together as sequences of one context give exactly what one at a time gives.

use std::sync::Arc;

use engine::perplexity::{self, Perplexity, PerplexityError};
use engine::{Context, ContextParams, Model};

const TEXT: &str = include_str!("../fixtures/perplexity/gpl-3.txt");

fn measure(model: &Arc<Model>, n_seq: usize, chunks: Option<usize>) -> (Perplexity, Vec<f64>) {
    let c = 256;
    let tokens = model.tokenizer.encode(TEXT, true, false);
    let mut ctx = Context::new(
        model.clone(),
        ContextParams {
            n_ctx: c * n_seq,
            n_batch: 512,
            n_threads: 2,
            n_seq_max: n_seq,
            ..ContextParams::default()
        },
    )
    .unwrap();
    let bos = model.tokenizer.bos().filter(|_| model.tokenizer.add_bos());
    let mut ppl = Perplexity::default();
    let mut nlls = Vec::new();
    perplexity::score_chunks(&mut ctx, &tokens, c, n_seq, chunks, bos, |s| {
        let nll = -perplexity::log_softmax(s.logits, s.next).0;
        ppl.add(nll);
        nlls.push(nll);
    })
    .unwrap();
    (ppl, nlls)
}

#[test]
fn smollm2_perplexity_is_llama_cpps() {
    let model = Arc::new(Model::load(&test_models::path(test_models::SMOLLM2)).unwrap());
    let (ppl, _) = measure(&model, 4, None);
    assert_eq!(ppl.count(), 29 * 127);
    // llama-perplexity -c 256 -b 256 -fa off: 20.8747 +/- 0.99393.
    assert_eq!(
        format!("{:.4} +/- {:.5}", ppl.ppl(), ppl.error()),
        "20.8747 +/- 0.99393"
    );
}

#[test]
fn chunks_together_equal_chunks_one_at_a_time() {
    // Gemma 3 (llama.cpp: 16.4022 +/- 0.77965 over all 29 chunks) on its first five chunks.
    let model = Arc::new(Model::load(&test_models::path(test_models::GEMMA3)).unwrap());
    let (one, a) = measure(&model, 1, Some(5));
    let (four, b) = measure(&model, 4, Some(5));
    assert_eq!(a.len(), 5 * 127);
    assert_eq!(a, b, "per-token log-likelihoods");
    assert_eq!(one.ppl(), four.ppl());
}

#[test]
fn a_text_shorter_than_a_chunk_is_a_clear_error() {
    let model = Arc::new(Model::load(&test_models::path(test_models::SMOLLM2)).unwrap());
    let mut ctx = Context::new(model.clone(), ContextParams::default()).unwrap();
    let tokens = model.tokenizer.encode("Too short.", true, false);
    let err = perplexity::score_chunks(&mut ctx, &tokens, 256, 1, None, None, |_| {}).unwrap_err();
    assert!(matches!(err, PerplexityError::TooShort { .. }));
    assert!(
        err.to_string().contains("too few for one chunk of 256"),
        "{err}"
    );
}
