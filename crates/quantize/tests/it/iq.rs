//! The IQ1/IQ2/IQ3 file types on SmolLM2-135M-Instruct Q4_1 (`--allow-requantize`, with the
//! importance matrix fixture, and without it for the types that do not need one): every
//! tensor's type must equal llama-quantize's, and the bytes of the smallest tensor of each
//! (from, to) pair must equal llama-quantize's (sha256 in tests/fixtures/smollm2-iq.json, made by
//! tests/fixtures/make-iq-fixtures.sh). SmolLM2's rows of 576 values are not whole super-blocks
//! of 256, so most tensors fall back to IQ4_NL; the lattice types land on `ffn_down` (rows of
//! 1536) and, for some mixes, on `token_embd`/`output`-sized or other 1536-wide tensors.

use std::sync::OnceLock;

use gguf::Gguf;
use quantize::{Error, Ftype, ImatrixInput, Options};

use crate::smollm2::{check_against, reference_in};
use crate::util::{fixture, smollm2};

fn references() -> &'static serde_json::Value {
    static JSON: OnceLock<serde_json::Value> = OnceLock::new();
    JSON.get_or_init(|| {
        let text = std::fs::read_to_string(fixture("smollm2-iq.json")).expect("smollm2-iq.json");
        serde_json::from_str(&text).expect("smollm2-iq.json parses")
    })
}

fn check(name: &str, with_imatrix: bool) {
    let key = if with_imatrix {
        format!("imatrix/{name}")
    } else {
        name.to_string()
    };
    let file = Gguf::parse(smollm2()).expect("SmolLM2 parses");
    let im = with_imatrix.then(|| {
        ImatrixInput::load(&fixture("smollm2.imatrix.gguf")).expect("imatrix fixture loads")
    });
    let reference = reference_in(references(), &key);
    check_against(&file, &reference, &key, name, im, true);
}

macro_rules! types {
    ($($test:ident: $name:literal, $imatrix:literal;)*) => {
        $(#[test] fn $test() { check($name, $imatrix) })*
    };
}

types! {
    imatrix_iq2_xxs: "IQ2_XXS", true;
    imatrix_iq3_xxs: "IQ3_XXS", true;
    imatrix_iq2_xs: "IQ2_XS", true;
    imatrix_iq3_s: "IQ3_S", true;
    imatrix_iq2_s: "IQ2_S", true;
    imatrix_iq1_s: "IQ1_S", true;
    imatrix_iq1_m: "IQ1_M", true;
    imatrix_iq2_m: "IQ2_M", true;
    imatrix_iq3_xs: "IQ3_XS", true;
    imatrix_iq3_m: "IQ3_M", true;
    iq3_s: "IQ3_S", false;
    iq3_m: "IQ3_M", false;
}

/// llama-quantize's rule: the 1- and 2-bit lattice types (and IQ3_XXS) need an importance matrix
/// for every tensor they would be written as. (The IQ3_XXS and IQ3_XS mixes put those types
/// only on SmolLM2 tensors that fall back to IQ4_NL, so they work without one here, as in
/// llama-quantize.)
#[test]
fn iq1_iq2_need_an_imatrix() {
    let file = Gguf::parse(smollm2()).expect("parses");
    for ftype in [
        Ftype::IQ2_XXS,
        Ftype::IQ2_XS,
        Ftype::IQ2_S,
        Ftype::IQ2_M,
        Ftype::IQ1_S,
        Ftype::IQ1_M,
    ] {
        let opts = Options {
            ftype,
            allow_requantize: true,
            output_tensor_type: None,
            token_embedding_type: None,
            leave_output_tensor: false,
            pure: false,
            n_threads: 2,
        };
        let mut out = Vec::new();
        let e = match quantize::quantize(&file, &opts, None, &mut out, |_| {}) {
            Err(e) => e,
            Ok(_) => panic!("{ftype}: quantized without an imatrix"),
        };
        assert!(matches!(e, Error::NeedsImatrix { .. }), "{ftype}: {e}");
        assert!(out.is_empty(), "{ftype}: refused before writing anything");
        assert!(
            e.to_string().contains("requires an importance matrix"),
            "{e}"
        );
    }
}
