//! The file types (`llama_ftype`) `hearth quantize` accepts: llama-quantize's names and numeric
//! ids, each with its default tensor type.

use gguf::GgmlType;

use crate::Error;

/// A whole-file quantization type, llama.cpp's `llama_ftype` (the number stored in
/// `general.file_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum Ftype {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q8_0 = 7,
    Q5_0 = 8,
    Q5_1 = 9,
    Q2_K = 10,
    Q3_K_S = 11,
    Q3_K_M = 12,
    Q3_K_L = 13,
    Q4_K_S = 14,
    Q4_K_M = 15,
    Q5_K_S = 16,
    Q5_K_M = 17,
    Q6_K = 18,
    IQ2_XXS = 19,
    IQ2_XS = 20,
    Q2_K_S = 21,
    IQ3_XS = 22,
    IQ3_XXS = 23,
    IQ1_S = 24,
    IQ4_NL = 25,
    IQ3_S = 26,
    IQ3_M = 27,
    IQ2_S = 28,
    IQ2_M = 29,
    IQ4_XS = 30,
    IQ1_M = 31,
    BF16 = 32,
    MXFP4_MOE = 38,
}

/// Every supported file type with its llama-quantize name, in llama-quantize's listing order.
pub const FTYPES: [(&str, Ftype); 31] = [
    ("Q4_0", Ftype::Q4_0),
    ("Q4_1", Ftype::Q4_1),
    ("MXFP4_MOE", Ftype::MXFP4_MOE),
    ("Q5_0", Ftype::Q5_0),
    ("Q5_1", Ftype::Q5_1),
    ("IQ2_XXS", Ftype::IQ2_XXS),
    ("IQ2_XS", Ftype::IQ2_XS),
    ("IQ2_S", Ftype::IQ2_S),
    ("IQ2_M", Ftype::IQ2_M),
    ("IQ1_S", Ftype::IQ1_S),
    ("IQ1_M", Ftype::IQ1_M),
    ("Q2_K", Ftype::Q2_K),
    ("Q2_K_S", Ftype::Q2_K_S),
    ("IQ3_XXS", Ftype::IQ3_XXS),
    ("IQ3_S", Ftype::IQ3_S),
    ("IQ3_M", Ftype::IQ3_M),
    ("IQ3_XS", Ftype::IQ3_XS),
    ("Q3_K_S", Ftype::Q3_K_S),
    ("Q3_K_M", Ftype::Q3_K_M),
    ("Q3_K_L", Ftype::Q3_K_L),
    ("IQ4_NL", Ftype::IQ4_NL),
    ("IQ4_XS", Ftype::IQ4_XS),
    ("Q4_K_S", Ftype::Q4_K_S),
    ("Q4_K_M", Ftype::Q4_K_M),
    ("Q5_K_S", Ftype::Q5_K_S),
    ("Q5_K_M", Ftype::Q5_K_M),
    ("Q6_K", Ftype::Q6_K),
    ("Q8_0", Ftype::Q8_0),
    ("F16", Ftype::F16),
    ("BF16", Ftype::BF16),
    ("F32", Ftype::F32),
];

/// llama-quantize's aliases.
const ALIASES: [(&str, Ftype); 3] = [
    ("Q3_K", Ftype::Q3_K_M),
    ("Q4_K", Ftype::Q4_K_M),
    ("Q5_K", Ftype::Q5_K_M),
];

/// Types llama-quantize knows that hearth cannot write yet (no quantizer for their formats).
const NOT_YET: [(&str, u32); 3] = [("TQ1_0", 36), ("TQ2_0", 37), ("Q1_0", 40)];

impl Ftype {
    /// Parses a type as llama-quantize does: a name in any case (`q4_k_m`, `Q4_K`), or the
    /// numeric `llama_ftype` id (`15`).
    pub fn parse(s: &str) -> Result<Ftype, Error> {
        let by_name = FTYPES
            .iter()
            .chain(&ALIASES)
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|&(_, f)| f);
        if let Some(f) = by_name {
            return Ok(f);
        }
        if let Ok(id) = s.trim().parse::<u32>()
            && let Some(&(_, f)) = FTYPES.iter().find(|(_, f)| *f as u32 == id)
        {
            return Ok(f);
        }
        let unsupported = NOT_YET
            .iter()
            .find(|(n, id)| n.eq_ignore_ascii_case(s) || s.trim().parse::<u32>() == Ok(*id));
        if let Some((name, _)) = unsupported {
            return Err(Error::UnsupportedFtype(format!(
                "{name} is not supported yet: hearth has no quantizer for its tensor formats"
            )));
        }
        let names: Vec<&str> = FTYPES.iter().map(|(n, _)| *n).collect();
        Err(Error::UnknownFtype(s.to_string(), names.join(", ")))
    }

    /// llama-quantize's name for the type.
    pub fn name(self) -> &'static str {
        FTYPES
            .iter()
            .find(|(_, f)| *f == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }

    /// The `general.file_type` value.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// The tensor type most weights get (`llama_ftype_get_default_type`).
    pub fn default_type(self) -> GgmlType {
        use GgmlType as T;
        match self {
            Ftype::F32 => T::F32,
            Ftype::F16 => T::F16,
            Ftype::BF16 => T::BF16,
            Ftype::Q4_0 => T::Q4_0,
            Ftype::Q4_1 => T::Q4_1,
            Ftype::Q5_0 => T::Q5_0,
            Ftype::Q5_1 => T::Q5_1,
            Ftype::Q8_0 => T::Q8_0,
            Ftype::Q2_K | Ftype::Q2_K_S => T::Q2_K,
            Ftype::IQ3_XS | Ftype::IQ3_S | Ftype::IQ3_M => T::IQ3_S,
            Ftype::IQ2_XXS => T::IQ2_XXS,
            Ftype::IQ2_XS | Ftype::IQ2_S => T::IQ2_XS,
            Ftype::IQ2_M => T::IQ2_S,
            Ftype::IQ3_XXS => T::IQ3_XXS,
            Ftype::IQ1_S => T::IQ1_S,
            Ftype::IQ1_M => T::IQ1_M,
            Ftype::Q3_K_S | Ftype::Q3_K_M | Ftype::Q3_K_L => T::Q3_K,
            Ftype::Q4_K_S | Ftype::Q4_K_M => T::Q4_K,
            Ftype::Q5_K_S | Ftype::Q5_K_M => T::Q5_K,
            Ftype::Q6_K => T::Q6_K,
            Ftype::IQ4_NL => T::IQ4_NL,
            Ftype::IQ4_XS => T::IQ4_XS,
            Ftype::MXFP4_MOE => T::MXFP4,
        }
    }
}

impl std::fmt::Display for Ftype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
