//! Bad input gives clear errors, as llama-quantize's.

use gguf::Gguf;
use quantize::{Error, Ftype, Options};

use crate::util::smollm2;

#[test]
fn types_parse_as_llama_quantize_parses_them() {
    assert_eq!(Ftype::parse("q4_k_m").ok(), Some(Ftype::Q4_K_M));
    assert_eq!(Ftype::parse("Q4_K").ok(), Some(Ftype::Q4_K_M));
    assert_eq!(Ftype::parse("15").ok(), Some(Ftype::Q4_K_M));
    assert_eq!(Ftype::parse("0").ok(), Some(Ftype::F32));
    assert_eq!(Ftype::parse("bf16").ok(), Some(Ftype::BF16));
    let e = Ftype::parse("Q4_9").expect_err("unknown");
    assert!(matches!(e, Error::UnknownFtype(..)));
    assert!(e.to_string().contains("Q4_K_M"), "lists the types: {e}");
    assert_eq!(Ftype::parse("iq2_xxs").ok(), Some(Ftype::IQ2_XXS));
    assert_eq!(Ftype::parse("19").ok(), Some(Ftype::IQ2_XXS));
    assert_eq!(Ftype::parse("IQ3_M").ok(), Some(Ftype::IQ3_M));
    let e = Ftype::parse("TQ1_0").expect_err("not yet");
    assert!(e.to_string().contains("not supported yet"), "{e}");
    assert!(Ftype::parse("36").is_err());
}

#[test]
fn quantized_input_needs_allow_requantize() {
    let file = Gguf::parse(smollm2()).expect("parses");
    let opts = Options {
        ftype: Ftype::Q4_0,
        allow_requantize: false,
        output_tensor_type: None,
        token_embedding_type: None,
        leave_output_tensor: false,
        pure: false,
        n_threads: 1,
    };
    let mut out = Vec::new();
    let e = quantize::quantize(&file, &opts, None, &mut out, |_| {})
        .err()
        .expect("refused");
    assert!(matches!(e, Error::Requantize { .. }), "{e}");
    assert!(out.is_empty(), "refused before writing anything");
    assert!(e.to_string().contains("--allow-requantize"), "{e}");
}

#[test]
fn q2_k_s_without_imatrix_is_refused() {
    let file = Gguf::parse(smollm2()).expect("parses");
    let opts = Options {
        ftype: Ftype::Q2_K_S,
        allow_requantize: true,
        output_tensor_type: None,
        token_embedding_type: None,
        leave_output_tensor: false,
        pure: false,
        n_threads: 1,
    };
    let mut out = Vec::new();
    let e = quantize::quantize(&file, &opts, None, &mut out, |_| {})
        .err()
        .expect("refused");
    assert!(matches!(e, Error::NeedsImatrix { .. }), "{e}");
    assert!(out.is_empty(), "refused before writing anything");
}

#[test]
fn missing_imatrix_file_is_an_error() {
    let e = quantize::ImatrixInput::load(std::path::Path::new("/nonexistent/x.imatrix"))
        .expect_err("missing");
    assert!(e.to_string().contains("/nonexistent/x.imatrix"), "{e}");
}

#[test]
fn quantize_tensor_checks_its_inputs() {
    let t = quantize::TensorPlan {
        name: "w".into(),
        shape: vec![256, 2],
        from: gguf::GgmlType::F32,
        to: gguf::GgmlType::Q4_K,
        fallback: false,
        requires_imatrix: false,
    };
    let src = vec![0u8; 256 * 2 * 4];
    assert!(quantize::quantize_tensor(&t, &src, None, 2).is_ok());
    let e = quantize::quantize_tensor(&t, &src, Some(&[1.0; 100]), 2).expect_err("bad imatrix");
    assert!(e.to_string().contains("importance weights"), "{e}");
    let e = quantize::quantize_tensor(&t, &src[..100], None, 2).expect_err("short data");
    assert!(e.to_string().contains("bytes of data"), "{e}");
    let odd = quantize::TensorPlan {
        shape: vec![100, 2],
        ..t
    };
    let e = quantize::quantize_tensor(&odd, &src[..800], None, 2).expect_err("partial block");
    assert!(e.to_string().contains("w"), "{e}");
}
