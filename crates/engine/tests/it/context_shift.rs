//! Context shift (llama.cpp's `--context-shift`): when the context fills, half of the tokens
//! after the kept prefix are dropped and generation goes on.

use std::ops::ControlFlow;
use std::sync::Arc;

use engine::{
    Context, ContextParams, ContextShift, GenerateParams, Model, SamplerParams, StopReason,
};

fn smollm2() -> Arc<Model> {
    Arc::new(Model::load(&test_models::path(test_models::SMOLLM2)).unwrap())
}

#[test]
fn full_context_stops_without_shift_and_continues_with_it() {
    let model = smollm2();
    let prompt = model
        .tokenizer
        .encode("Once upon a time, in a small village,", true, true);
    let n_ctx = 32;
    let params = |shift| GenerateParams {
        max_tokens: Some(60),
        sampler: SamplerParams::greedy(),
        ignore_eog: true,
        context_shift: shift,
        ..GenerateParams::default()
    };
    let ctx_params = ContextParams {
        n_ctx,
        n_batch: 512,
        n_threads: 2,
        ..ContextParams::default()
    };

    let mut ctx = Context::new(model.clone(), ctx_params.clone()).unwrap();
    let g = engine::generate(&mut ctx, &prompt, &params(None), |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(g.stop_reason, StopReason::ContextFull);
    // Every position is used; the last token sampled is emitted though never decoded.
    assert_eq!(g.tokens.len() + prompt.len(), n_ctx + 1);

    let keep = 4;
    let mut ctx = Context::new(model, ctx_params).unwrap();
    let g = engine::generate(
        &mut ctx,
        &prompt,
        &params(Some(ContextShift { keep })),
        |_| ControlFlow::Continue(()),
    )
    .unwrap();
    assert_eq!(g.stop_reason, StopReason::MaxTokens);
    assert_eq!(g.tokens.len(), 60);
    assert!(ctx.n_past() <= n_ctx);
    assert_eq!(
        ctx.tokens()[..keep],
        prompt[..keep],
        "the kept prefix survives every shift"
    );
    // The context ends with the latest generated tokens (all but the last, not yet decoded).
    let tail = &g.tokens[g.tokens.len() - 5..g.tokens.len() - 1];
    assert_eq!(&ctx.tokens()[ctx.n_past() - 4..], tail);
}
