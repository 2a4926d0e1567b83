//! Gemma 4's mixture-of-experts layer (the 26B-A4B's) on a tiny random checkpoint
//! (`tests/fixtures/gemma4-moe/`, made by `scripts/tiny-models/gemma4.sh moe`: 4 layers, each a
//! dense GeGLU MLP beside 8 GeGLU experts of which 3 are chosen, router scale and per-expert
//! scales randomised, sliding and full layers, V = K on full layers, untied LM head), converted
//! by llama.cpp's own converter to f32 and q8_0 (fused `ffn_gate_up_exps`), a copy of the q8_0
//! file with separate `ffn_gate_exps`/`ffn_up_exps`, and llama-quantize's Q4_K_M of the f32 file
//! (its 64-wide rows fall back to Q5_0/Q5_1/Q8_0):
//!
//! - the logits at every position equal llama.cpp's bit for bit, at 1 and 2 threads;
//! - greedy generation prints llama-completion's text (24 tokens, temperature 0);
//! - transformers' logits (f32 weights) agree within 1e-2 of the largest logit;
//! - batch-invariant contexts give one batch's logits when the prompt comes in pieces, and
//!   sequences decoded together what each gives alone.

use engine::{Context, ContextParams, GenerateParams, Outputs, SamplerParams};

use super::gemma4_reference::{check_llama_cpp, check_transformers, ids, load_from, reference};

const MOE: &str = "gemma4-moe";

/// F32 experts sum as `ggml_vec_dot_f32` (llama.cpp's `mul_mat_id` path for F32, never
/// llamafile's sgemm), the 32-wide down products through its plain leftover loop.
#[test]
fn f32_logits_equal_llama_cpp() {
    check_llama_cpp(MOE, "f32", 0.0);
}

#[test]
fn q8_0_logits_equal_llama_cpp() {
    check_llama_cpp(MOE, "q8_0", 0.0);
}

/// The same weights with gate and up as two tensors, the other layout llama.cpp loads.
#[test]
fn q8_0_separate_gate_up_logits_equal_llama_cpp() {
    check_llama_cpp(MOE, "q8_0-split", 0.0);
}

#[test]
fn q4_k_m_logits_equal_llama_cpp() {
    check_llama_cpp(MOE, "q4_k_m", 0.0);
}

#[test]
fn f32_logits_match_transformers() {
    check_transformers(MOE);
}

/// `hearth run --temp 0`'s text: greedy tokens decoded one at a time after the prompt, each
/// token's piece as llama-completion prints it.
#[test]
fn greedy_text_equals_llama_completion() {
    let r = reference(MOE);
    let prompt = ids(&r["ids"]);
    for (ty, want) in r["completion_hex"].as_object().unwrap() {
        let model = load_from(MOE, ty);
        let mut ctx = Context::new(
            model.clone(),
            ContextParams {
                n_ctx: 256,
                n_threads: 1,
                ..ContextParams::default()
            },
        )
        .unwrap();
        let params = GenerateParams {
            max_tokens: Some(24),
            sampler: SamplerParams::greedy(),
            ignore_eog: true,
            ..GenerateParams::default()
        };
        let got = engine::generate(&mut ctx, &prompt, &params, |_| {
            std::ops::ControlFlow::Continue(())
        })
        .unwrap()
        .tokens;
        let mut text = Vec::new();
        for &t in &got {
            text.extend_from_slice(&model.tokenizer.token_to_piece(t, false).unwrap());
        }
        let hex: String = text.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            want.as_str().unwrap(),
            "{ty}: {:?}",
            String::from_utf8_lossy(&text)
        );
    }
}

/// Each token routes to its experts alone in a batch-invariant context, so the prompt in
/// pieces gives exactly what one batch gives.
#[test]
fn small_batches_equal_one_batch() {
    let r = reference(MOE);
    let tokens = ids(&r["ids"]);
    let model = load_from(MOE, "q8_0");
    let run = |n_batch: usize| {
        let params = ContextParams {
            n_ctx: 64,
            n_batch,
            n_threads: 2,
            batch_invariant: true,
            ..ContextParams::default()
        };
        let mut ctx = Context::new(model.clone(), params).unwrap();
        let mut out = Vec::new();
        ctx.decode_with(&tokens, Outputs::All, |_, l| out.extend_from_slice(l))
            .unwrap();
        out
    };
    let whole = run(512);
    for n_batch in [1, 7] {
        assert!(run(n_batch) == whole, "n_batch {n_batch}");
    }
}

/// Sequences joining and leaving one batch-invariant context decode as each alone: the
/// router's own input and the experts beside the dense MLP depend on nothing but the token.
#[test]
fn sequences_decoded_together_equal_each_alone() {
    let model = load_from(MOE, "q8_0");
    crate::many_sequences::check_model_together_equals_alone("gemma4-moe q8_0", &model, true);
}
