//! Element conversions, as gguf-py and ggml do them bit for bit, and llama.cpp's rule for each
//! tensor's output type.

use gguf::GgmlType;
use half::{bf16, f16};
use safetensors::Dtype;

use crate::error::Error;

/// The values of a stored tensor as f32 (llama.cpp widens everything that is not f16 or f32 to
/// f32 before any transformation; f16 → f32 and bf16 → f32 are exact).
pub fn to_f32(name: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>, Error> {
    Ok(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                f64::from_le_bytes(a) as f32
            })
            .collect(),
        other => {
            return Err(Error::tensor(
                name,
                format!("is stored as {other:?}; hearth converts F32, F16, BF16 and F64 weights"),
            ));
        }
    })
}

/// llama.cpp's `prepare_tensors` rule: vectors, norms and anything not named `.weight` stay
/// f32 (as do MoE router weights); the rest take the file's type, and a Q8_0 tensor whose rows
/// are not whole blocks of 32 falls back to F16. `ne0` is the row length.
pub fn output_type(name: &str, n_dims: usize, ne0: usize, base: GgmlType) -> GgmlType {
    if n_dims <= 1
        || name.ends_with("_norm.weight")
        || !name.ends_with(".weight")
        || name.contains(".ffn_gate_inp")
    {
        return GgmlType::F32;
    }
    if base == GgmlType::Q8_0 && !ne0.is_multiple_of(32) {
        return GgmlType::F16;
    }
    base
}

/// gguf-py's `quantize_bf16`: round to nearest even, NaNs made quiet.
fn to_bf16_bits(x: f32) -> u16 {
    let mut n = x.to_bits();
    if n & 0x7fff_ffff > 0x7f80_0000 {
        n = (n & 0xffff_0000) | (64 << 16);
    }
    (n.wrapping_add(0x7fff + ((n >> 16) & 1)) >> 16) as u16
}

/// `values` in type `ty`, little-endian.
pub fn encode(name: &str, values: &[f32], ty: GgmlType) -> Result<Vec<u8>, Error> {
    Ok(match ty {
        GgmlType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        // numpy's astype(float16): round to nearest even, overflow to infinity, as `half`.
        GgmlType::F16 => values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        GgmlType::BF16 => values
            .iter()
            .flat_map(|v| to_bf16_bits(*v).to_le_bytes())
            .collect(),
        GgmlType::Q8_0 => {
            let n = kernels::quant::row_bytes(ty, values.len())
                .map_err(|e| Error::tensor(name, e.to_string()))?;
            let mut out = vec![0u8; n];
            kernels::quant::quantize_row(ty, values, &mut out)
                .map_err(|e| Error::tensor(name, e.to_string()))?;
            out
        }
        other => {
            return Err(Error::tensor(
                name,
                format!("cannot be written as {}", other.name()),
            ));
        }
    })
}

/// gpt-oss's MXFP4 experts as released (`blocks`: `[n_expert, rows, n_block, 16]` bytes, two
/// 4-bit codes each, element 2j in byte j's low nibble; `scales`: `[n_expert, rows, n_block]`
/// E8M0 exponents) into ggml's MXFP4 blocks (the scale byte, then 16 bytes holding element j in
/// the low nibble and j + 16 in the high one), as llama.cpp's `GptOssModel.repack_mxfp4`. With
/// `rows = Some(k)` only rows k, k + 2, … are kept. `shape` is the blocks' (checked by the
/// caller against config.json).
pub fn repack_mxfp4(blocks: &[u8], scales: &[u8], shape: &[usize], rows: Option<usize>) -> Vec<u8> {
    let (n_expert, n_rows, n_block) = (shape[0], shape[1], shape[2]);
    let (start, step) = match rows {
        Some(k) => (k, 2),
        None => (0, 1),
    };
    let mut out = Vec::with_capacity(n_expert * n_rows.div_ceil(step) * n_block * 17);
    for e in 0..n_expert {
        for r in (start..n_rows).step_by(step) {
            for b in 0..n_block {
                let i = (e * n_rows + r) * n_block + b;
                let src = &blocks[i * 16..i * 16 + 16];
                let code = |k: usize| (src[k / 2] >> (4 * (k % 2))) & 0x0f;
                out.push(scales[i]);
                for k in 0..16 {
                    out.push(code(k) | (code(k + 16) << 4));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_is_gguf_pys() {
        // Ties go to even, NaNs stay NaN (quiet), infinities stay.
        assert_eq!(to_bf16_bits(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(to_bf16_bits(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(to_bf16_bits(f32::from_bits(0x3f80_8001)), 0x3f81);
        assert_eq!(to_bf16_bits(f32::INFINITY), 0x7f80);
        assert_eq!(to_bf16_bits(f32::from_bits(0x7f80_0001)), 0x7fc0);
    }

    #[test]
    fn output_types_follow_llama_cpp() {
        use GgmlType::*;
        assert_eq!(output_type("blk.0.attn_norm.weight", 1, 32, BF16), F32);
        assert_eq!(output_type("blk.0.attn_q.bias", 1, 32, Q8_0), F32);
        assert_eq!(output_type("blk.0.attn_q.weight", 2, 32, Q8_0), Q8_0);
        assert_eq!(output_type("blk.0.ffn_gate.weight", 2, 16, Q8_0), F16);
        assert_eq!(output_type("token_embd.weight", 2, 16, BF16), BF16);
    }
}
