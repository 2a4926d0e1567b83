//! Many sequences in one context: `decode_batch` over entries of several sequences, the KV
//! store's sequence operations, K-shift, and a full store. The reference for every sequence is
//! the same sequence decoded alone in a fresh context.

use std::sync::Arc;

use engine::{Batch, Context, ContextError, ContextParams, Model};

fn load(name: &str) -> Arc<Model> {
    Arc::new(Model::load(&test_models::path(name)).unwrap())
}

fn params(n_ctx: usize, n_seq_max: usize) -> ContextParams {
    ContextParams {
        n_ctx,
        n_batch: 64,
        n_threads: 2,
        batch_invariant: true,
        n_seq_max,
        n_ctx_seq: None,
    }
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if v > l[best] {
            best = i;
        }
    }
    best as u32
}

/// One sequence's life in the shared context: its prompt, when it joins and leaves, and what
/// it saw (the tokens it decoded and the logits after each decode).
struct Seq {
    prompt: Vec<u32>,
    join: usize,
    leave: Option<usize>,
    tokens: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

/// Runs `seqs` together through one context: at each step every live sequence decodes its next
/// token (its whole prompt on the step it joins), all in one batch; greedy continuation.
fn run_together(model: &Arc<Model>, seqs: &mut [Seq], steps: usize, scatter: bool) {
    let mut ctx = Context::new(model.clone(), params(1024, 8)).unwrap();
    if scatter {
        // Fill the store with a sequence, then free every other cell, so the sequences below
        // land in scattered cells.
        let filler: Vec<u32> = (0..200).map(|i| 100 + i).collect();
        ctx.decode_batch(&Batch::of_sequence(&filler, 0, 7))
            .unwrap();
        for p in (0..200).step_by(2) {
            ctx.seq_rm(7, p, Some(p + 1));
        }
    }
    let mut batch = Batch::with_capacity(256);
    for step in 0..steps {
        batch.clear();
        let mut outputs = Vec::new();
        for (s, seq) in seqs.iter_mut().enumerate() {
            if seq.leave == Some(step) {
                ctx.seq_rm(s, 0, None);
            }
            let live = step >= seq.join && seq.leave.is_none_or(|l| step < l);
            if !live {
                continue;
            }
            let new: Vec<u32> = if step == seq.join {
                seq.prompt.clone()
            } else {
                vec![argmax(seq.logits.last().unwrap())]
            };
            let pos0 = seq.tokens.len();
            for (i, &t) in new.iter().enumerate() {
                batch.push(t, pos0 + i, &[s], i + 1 == new.len());
            }
            seq.tokens.extend_from_slice(&new);
            outputs.push((s, batch.len() - 1));
        }
        ctx.decode_batch(&batch).unwrap();
        for (s, i) in outputs {
            seqs[s].logits.push(ctx.batch_logits(i).to_vec());
        }
    }
    if scatter {
        assert!(ctx.kv_cells_used() > 100);
    }
}

/// The same sequence alone: prompt, then one token at a time.
fn run_alone(model: &Arc<Model>, seq: &Seq) -> Vec<Vec<f32>> {
    let mut ctx = Context::new(model.clone(), params(1024, 1)).unwrap();
    let n_prompt = seq.prompt.len();
    ctx.decode(&seq.tokens[..n_prompt]).unwrap();
    let mut out = vec![ctx.logits().to_vec()];
    for &t in &seq.tokens[n_prompt..] {
        ctx.decode(&[t]).unwrap();
        out.push(ctx.logits().to_vec());
    }
    out
}

fn check_together_equals_alone(name: &str, scatter: bool) {
    check_model_together_equals_alone(name, &load(name), scatter);
}

/// Five sequences joining and leaving one context decode, bit for bit, as each alone.
pub fn check_model_together_equals_alone(name: &str, model: &Arc<Model>, scatter: bool) {
    let model = model.clone();
    let enc = |t: &str| model.tokenizer.encode(t, true, false);
    let mut seqs: Vec<Seq> = [
        ("The capital of France is", 0, None),
        (
            "Once upon a time, in a small village by the sea, there lived",
            0,
            Some(6),
        ),
        ("def fibonacci(n):", 0, None),
        ("Water boils at", 3, None),
        ("The three primary colours are red,", 6, None),
    ]
    .into_iter()
    .map(|(text, join, leave)| Seq {
        prompt: enc(text),
        join,
        leave,
        tokens: Vec::new(),
        logits: Vec::new(),
    })
    .collect();
    run_together(&model, &mut seqs, 10, scatter);
    for (s, seq) in seqs.iter().enumerate() {
        let alone = run_alone(&model, seq);
        assert_eq!(alone.len(), seq.logits.len(), "{name} sequence {s}");
        for (k, (a, b)) in alone.iter().zip(&seq.logits).enumerate() {
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{name} sequence {s} step {k}: logits differ from the sequence decoded alone"
            );
        }
    }
}

#[test]
fn sequences_decoded_together_equal_each_alone_smollm2() {
    check_together_equals_alone(test_models::SMOLLM2, false);
}

#[test]
fn sequences_in_scattered_cells_equal_each_alone_smollm2() {
    check_together_equals_alone(test_models::SMOLLM2, true);
}

#[test]
fn sequences_decoded_together_equal_each_alone_gemma3() {
    check_together_equals_alone(test_models::GEMMA3, true);
}

/// A copied prompt (`seq_cp`, shared cells) continued in two sequences gives each what the
/// prompt followed by its own tokens gives alone.
#[test]
fn copied_prompt_continues_in_two_sequences() {
    let model = load(test_models::SMOLLM2);
    let prompt = model.tokenizer.encode("My favourite fruit is", true, false);
    let mut ctx = Context::new(model.clone(), params(256, 4)).unwrap();
    ctx.decode_batch(&Batch::of_sequence(&prompt, 0, 0))
        .unwrap();
    ctx.seq_cp(0, 1, 0, None);
    assert_eq!(
        ctx.kv_cells_used(),
        prompt.len(),
        "copying shares the cells"
    );
    let n = prompt.len();
    let (a, b) = (11_u32, 2_000_u32);
    let mut batch = Batch::with_capacity(2);
    batch.push(a, n, &[0], true);
    batch.push(b, n, &[1], true);
    ctx.decode_batch(&batch).unwrap();
    for (i, t) in [a, b].into_iter().enumerate() {
        let mut alone = Context::new(model.clone(), params(256, 1)).unwrap();
        alone.decode(&prompt).unwrap();
        alone.decode(&[t]).unwrap();
        assert_eq!(ctx.batch_logits(i), alone.logits(), "sequence {i}");
    }
    // Keeping sequence 1 frees sequence 0's own cell and leaves the shared ones.
    ctx.seq_keep(1);
    assert_eq!(ctx.kv_cells_used(), n + 1);
    assert_eq!(ctx.seq_pos_max(0), None);
    assert_eq!(ctx.seq_pos_max(1), Some(n));
}

/// Decodes `tokens` but the last at positions `start..`, moves them all by `delta` with
/// `seq_add` (cached keys re-rotated in place: the K-shift; skipped with `skip_shift`), then
/// decodes the last token right after them. Returns its logits, and those of a fresh
/// evaluation of all of `tokens` at `start + delta..`.
pub(crate) fn shifted_and_fresh(
    model: &Arc<Model>,
    tokens: &[u32],
    start: usize,
    delta: isize,
    skip_shift: bool,
) -> (Vec<f32>, Vec<f32>) {
    shifted_and_fresh_in(model, 256, tokens, start, delta, skip_shift)
}

/// [`shifted_and_fresh`] in contexts of `n_ctx` cells.
pub(crate) fn shifted_and_fresh_in(
    model: &Arc<Model>,
    n_ctx: usize,
    tokens: &[u32],
    start: usize,
    delta: isize,
    skip_shift: bool,
) -> (Vec<f32>, Vec<f32>) {
    let m = tokens.len() - 1;
    let moved = start.checked_add_signed(delta).unwrap();
    let mut ctx = Context::new(model.clone(), params(n_ctx, 1)).unwrap();
    ctx.decode_batch(&Batch::of_sequence(&tokens[..m], start, 0))
        .unwrap();
    if !skip_shift {
        ctx.seq_add(0, 0, None, delta);
        assert_eq!(ctx.seq_pos_max(0), Some(moved + m - 1));
    }
    ctx.decode_batch(&Batch::of_sequence(&tokens[m..], moved + m, 0))
        .unwrap();
    let mut fresh = Context::new(model.clone(), params(n_ctx, 1)).unwrap();
    fresh
        .decode_batch(&Batch::of_sequence(tokens, moved, 0))
        .unwrap();
    (ctx.batch_logits(0).to_vec(), fresh.batch_logits(m).to_vec())
}

pub(crate) fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let max_diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    max_diff / b.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Shifting a sequence's positions (the K-shift: cached keys re-rotated in place) and decoding
/// equals evaluating it afresh at the shifted positions within 1e-3 of the logits, on a
/// synthetic model of each architecture with f32 weights (so nothing but the f16 cache rounds):
/// both RoPE layouts, Gemma 3's two RoPE bases and its sliding window, frequency factors,
/// linear scaling, a RoPE magnitude (`attn_factor`) and layers without RoPE; forward and back. (Only a whole sequence can be compared so: moving part
/// of it changes the distances its later tokens saw the earlier ones at, which their cached
/// values of the upper layers still reflect — context shift drops that information, in
/// llama.cpp as here.)
#[test]
fn shift_then_decode_matches_reevaluation() {
    use crate::synth::{self, Arch, Config, Rng, Weights};
    let mut cases = Vec::new();
    for arch in [
        Arch::Llama,
        Arch::Qwen2,
        Arch::Qwen3,
        Arch::Qwen3Moe,
        Arch::Gemma3,
    ] {
        cases.push((arch.name().to_string(), Config::small(arch)));
    }
    cases.push((
        "llama rope_freqs + linear".into(),
        Config {
            rope_freqs: true,
            rope_linear: Some(2.0),
            ..Config::small(Arch::Llama)
        },
    ));
    // The magnitude LongRoPE and YaRN give cos and sin is in the cached keys already: a shift
    // only rotates (llama.cpp's K-shift applies it again; 1.25 here was 1.4e-1 off so).
    cases.push((
        "llama rope attn_factor 1.25".into(),
        Config {
            rope_attn_factor: Some(1.25),
            rope_freqs: true,
            ..Config::small(Arch::Llama)
        },
    ));
    // SmolLM3's every fourth layer has no RoPE: its keys stay as they are (rotating them
    // too was 1.1e-1 off).
    cases.push((
        "smollm3 no-RoPE layers".into(),
        Config {
            n_layer: 8,
            ..Config::small(Arch::Smollm3)
        },
    ));
    cases.push((
        "gemma3 window 12".into(),
        Config {
            n_layer: 6,
            sliding_window: Some(12),
            rope_base_swa: Some(500.0),
            ..Config::small(Arch::Gemma3)
        },
    ));
    for (name, cfg) in cases {
        let w = Weights::random(&cfg);
        let model = Arc::new(synth::load(&synth::build(&cfg, &w)).unwrap());
        let tokens = Rng::new(cfg.seed ^ 0x5417).tokens(40, cfg.n_vocab());
        for (start, delta) in [(0, 9), (20, -13), (5, -5)] {
            let (shifted, fresh) = shifted_and_fresh(&model, &tokens, start, delta, false);
            let d = rel_diff(&shifted, &fresh);
            assert!(
                d <= 1e-3,
                "{name} (from {start} by {delta}): shifted vs re-evaluated logits differ by {d:.2e}"
            );
            // The comparison sees positions: leaving the cached positions unshifted is far off.
            let (unshifted, _) = shifted_and_fresh(&model, &tokens, start, delta, true);
            let d_wrong = rel_diff(&unshifted, &fresh);
            assert!(
                d_wrong > 1e-2,
                "{name}: skipping a shift of {delta} is only {d_wrong:.2e} off"
            );
        }
    }
}

/// A batch that needs more cells than are free fails with a clear error and changes nothing:
/// the other sequence goes on exactly as if it had not been tried.
#[test]
fn full_store_is_a_clear_error_and_leaves_other_sequences_alone() {
    let model = load(test_models::SMOLLM2);
    let a = model
        .tokenizer
        .encode("One two three four five six", true, false);
    let b: Vec<u32> = (0..40).map(|i| 1000 + i).collect();
    let n_ctx = a.len() + 30;
    let mut ctx = Context::new(model.clone(), params(n_ctx, 2)).unwrap();
    ctx.decode_batch(&Batch::of_sequence(&a, 0, 0)).unwrap();
    let used = ctx.kv_cells_used();
    let err = ctx.decode_batch(&Batch::of_sequence(&b, 0, 1)).unwrap_err();
    assert_eq!(
        err,
        ContextError::NoFreeCells {
            needed: 40,
            free: 30,
            n_ctx
        }
    );
    assert!(err.to_string().contains("30 free cells"), "{err}");
    assert_eq!(ctx.kv_cells_used(), used);
    assert_eq!(ctx.seq_pos_max(1), None);
    // Sequence 0 continues as it would alone.
    let t = 42;
    ctx.decode_batch(&Batch::of_sequence(&[t], a.len(), 0))
        .unwrap();
    let mut alone = Context::new(model, params(n_ctx, 1)).unwrap();
    alone.decode(&a).unwrap();
    alone.decode(&[t]).unwrap();
    assert_eq!(ctx.batch_logits(0), alone.logits());
}

/// Bad batches are refused with errors naming the problem.
#[test]
fn bad_batches_are_refused() {
    let model = load(test_models::SMOLLM2);
    let mut ctx = Context::new(model.clone(), params(64, 2)).unwrap();
    let mut b = Batch::with_capacity(2);
    b.push(1, 0, &[2], true);
    assert_eq!(
        ctx.decode_batch(&b).unwrap_err(),
        ContextError::InvalidSequence {
            seq: 2,
            n_seq_max: 2
        }
    );
    b.clear();
    b.push(1, 0, &[], true);
    assert!(matches!(
        ctx.decode_batch(&b).unwrap_err(),
        ContextError::InvalidSequence { .. }
    ));
    b.clear();
    b.push(u32::MAX, 0, &[0], true);
    assert!(matches!(
        ctx.decode_batch(&b).unwrap_err(),
        ContextError::InvalidToken { .. }
    ));
    assert_eq!(
        ctx.decode_batch(&Batch::default()).unwrap_err(),
        ContextError::Empty
    );
    assert_eq!(ctx.kv_cells_used(), 0);
}
