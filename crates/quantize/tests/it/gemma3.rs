//! Gemma 3 270M Q4_K_M requantized: grouped-query attention with n_gqa = 4 and hidden size 640
//! take other branches of llama.cpp's mixes (`attn_v` to Q4_K/Q5_K) than SmolLM2 does.

use gguf::Gguf;

use crate::smollm2::{check_against, reference_in};
use crate::util::{gemma3, references_gemma3};

fn check(name: &str) {
    let file = Gguf::parse(gemma3()).expect("Gemma 3 parses");
    let reference = reference_in(references_gemma3(), name);
    check_against(
        &file,
        &reference,
        &format!("gemma3/{name}"),
        name,
        None,
        true,
    );
}

#[test]
fn q2_k() {
    check("Q2_K");
}

#[test]
fn q3_k_m() {
    check("Q3_K_M");
}

#[test]
fn iq4_xs() {
    check("IQ4_XS");
}

#[test]
fn q4_k_s() {
    check("Q4_K_S");
}

#[test]
fn q5_k_m() {
    check("Q5_K_M");
}
