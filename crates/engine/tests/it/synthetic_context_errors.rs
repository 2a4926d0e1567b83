//! `Context` refuses what it cannot do with a [`ContextError`], never a panic, and stays usable
//! afterwards: a full context, token ids outside the vocabulary, an empty decode, unusable
//! settings. Runs on a tiny synthetic model.

use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use engine::{
    Context, ContextError, ContextParams, GenerateParams, Model, SamplerParams, StopReason,
};

use crate::synth::{self, Arch, Config, Weights};

fn model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| {
        let cfg = Config::small(Arch::Llama);
        Arc::new(synth::load(&synth::build(&cfg, &Weights::random(&cfg))).unwrap())
    })
    .clone()
}

fn context(n_ctx: usize, n_batch: usize) -> Context {
    Context::new(
        model(),
        ContextParams {
            n_ctx,
            n_batch,
            n_threads: 1,
            ..ContextParams::default()
        },
    )
    .unwrap()
}

#[test]
fn decoding_past_n_ctx_is_context_full() {
    let mut ctx = context(8, 4);
    ctx.decode(&[3, 4, 5, 6, 7]).unwrap();
    let e = ctx.decode(&[8, 9, 10, 11]).unwrap_err();
    assert_eq!(
        e,
        ContextError::ContextFull {
            n_past: 5,
            n_new: 4,
            n_ctx: 8
        }
    );
    // Nothing was appended; what still fits decodes, and the logits are those of a run that
    // never failed (split the same way: other splits may round differently).
    assert_eq!(ctx.n_past(), 5);
    ctx.decode(&[8, 9, 10]).unwrap();
    assert_eq!(ctx.n_past(), 8);
    let full = ctx.logits().to_vec();
    assert_eq!(
        ctx.decode(&[1]).unwrap_err(),
        ContextError::ContextFull {
            n_past: 8,
            n_new: 1,
            n_ctx: 8
        }
    );
    let mut fresh = context(8, 4);
    fresh.decode(&[3, 4, 5, 6, 7]).unwrap();
    fresh.decode(&[8, 9, 10]).unwrap();
    assert_eq!(fresh.logits(), &full[..]);

    // A prompt longer than the whole context fails up front.
    let mut ctx = context(8, 4);
    let e = ctx.decode(&[3; 9]).unwrap_err();
    assert_eq!(
        e,
        ContextError::ContextFull {
            n_past: 0,
            n_new: 9,
            n_ctx: 8
        }
    );
    assert_eq!(ctx.n_past(), 0);
}

#[test]
fn invalid_token_is_refused_before_anything_runs() {
    let n_vocab = model().hparams.n_vocab;
    let mut ctx = context(16, 4);
    ctx.decode(&[3, 4]).unwrap();
    let before = ctx.logits().to_vec();
    for bad in [n_vocab as u32, n_vocab as u32 + 1, u32::MAX] {
        let e = ctx.decode(&[5, bad, 6]).unwrap_err();
        assert_eq!(e, ContextError::InvalidToken { id: bad, n_vocab });
        assert_eq!(ctx.n_past(), 2);
        assert_eq!(ctx.logits(), &before[..]);
    }
    ctx.decode(&[n_vocab as u32 - 1]).unwrap();
    assert_eq!(ctx.n_past(), 3);
}

#[test]
fn empty_decode_is_empty() {
    let mut ctx = context(16, 4);
    assert_eq!(ctx.decode(&[]).unwrap_err(), ContextError::Empty);
    ctx.decode(&[3]).unwrap();
    assert_eq!(ctx.decode(&[]).unwrap_err(), ContextError::Empty);
    assert_eq!(ctx.n_past(), 1);
    let params = GenerateParams::default();
    let e = engine::generate(&mut ctx, &[], &params, |_| ControlFlow::Continue(())).unwrap_err();
    assert_eq!(e, ContextError::Empty);
}

#[test]
fn unusable_settings_are_bad_params() {
    let bad = |n_ctx, n_batch, n_threads| {
        let params = ContextParams {
            n_ctx,
            n_batch,
            n_threads,
            ..ContextParams::default()
        };
        match Context::new(model(), params.clone()) {
            Err(ContextError::BadParams(msg)) => assert!(!msg.is_empty()),
            Err(e) => panic!("{params:?}: {e:?}"),
            Ok(_) => panic!("{params:?} was accepted"),
        }
    };
    bad(0, 512, 1);
    bad(16, 0, 1);
    bad(16, 4, 0);
    bad(usize::MAX, 512, 1);
    // n_batch above n_ctx is clamped, not refused.
    assert_eq!(
        Context::new(
            model(),
            ContextParams {
                n_ctx: 4,
                n_batch: 512,
                n_threads: 1,
                ..ContextParams::default()
            }
        )
        .unwrap()
        .params()
        .n_batch,
        4
    );
}

#[test]
fn generation_stops_when_the_context_is_full() {
    let mut ctx = context(10, 4);
    let params = GenerateParams {
        max_tokens: None,
        sampler: SamplerParams::greedy(),
        ignore_eog: true,
        ..GenerateParams::default()
    };
    let g = engine::generate(&mut ctx, &[3, 4, 5, 6], &params, |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(g.stop_reason, StopReason::ContextFull);
    // Every position was used: 4 prompt tokens + 6 generated, the last one sampled but not fed.
    assert_eq!(g.tokens.len(), 7);
    assert_eq!(ctx.n_past(), 10);
}
