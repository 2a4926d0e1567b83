//! The two real models: their tensors and metadata as llama.cpp lists them, and a byte-identical
//! re-write through the writer.

use std::io::{self, Write};

use gguf::{Builder, GgmlType, Gguf};

/// A sink that compares everything written to it with an expected byte string.
struct Compare<'a> {
    expected: &'a [u8],
    pos: usize,
}

impl Write for Compare<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let end = self.pos + buf.len();
        let want = self.expected.get(self.pos..end).ok_or_else(|| {
            io::Error::other(format!(
                "writer wrote past the original's {} bytes",
                self.expected.len()
            ))
        })?;
        if want != buf {
            let i = want.iter().zip(buf).position(|(a, b)| a != b).unwrap_or(0);
            return Err(io::Error::other(format!(
                "first difference at byte {}",
                self.pos + i
            )));
        }
        self.pos = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn rewrite_is_identical(bytes: &[u8]) {
    let file = Gguf::parse(bytes).unwrap();
    let mut sink = Compare {
        expected: bytes,
        pos: 0,
    };
    let n = Builder::from_gguf(&file).write_to(&mut sink).unwrap();
    assert_eq!(
        n,
        bytes.len() as u64,
        "re-written file is shorter than the original"
    );
}

#[test]
fn smollm2_lists_its_tensors_and_metadata() {
    let bytes = test_models::read(test_models::SMOLLM2);
    let f = Gguf::parse(&bytes).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.tensors().len(), 272);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(f.get_u32("llama.context_length").unwrap(), 8192);
    assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(f.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert!(
        f.get_str("tokenizer.chat_template")
            .unwrap()
            .contains("<|im_start|>")
    );
    assert_eq!(
        f.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        49152
    );
    let embd = f.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (embd.ty, embd.shape.as_slice()),
        (GgmlType::Q8_0, &[576, 49152][..])
    );
    let q = f.tensor("blk.0.attn_q.weight").unwrap();
    assert_eq!(
        (q.ty, q.shape.as_slice()),
        (GgmlType::Q4_1, &[576, 576][..])
    );
    let k = f.tensor("blk.0.attn_k.weight").unwrap();
    assert_eq!(k.shape, [576, 192]);
    let norm = f.tensor("output_norm.weight").unwrap();
    assert_eq!(
        (norm.ty, norm.shape.as_slice()),
        (GgmlType::F32, &[576][..])
    );
    let params: u64 = f.tensors().iter().map(|t| t.n_elements()).sum();
    assert_eq!(params, 134_515_008);
}

#[test]
fn gemma3_lists_its_tensors_and_metadata() {
    let bytes = test_models::read(test_models::GEMMA3);
    let f = Gguf::parse(&bytes).unwrap();
    assert_eq!(f.tensors().len(), 236);
    assert_eq!(f.architecture().unwrap(), "gemma3");
    assert_eq!(f.get_u32("gemma3.block_count").unwrap(), 18);
    assert_eq!(f.get_u32("gemma3.context_length").unwrap(), 32768);
    assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), "llama");
    assert!(f.get("tokenizer.chat_template").is_none());
    assert_eq!(f.get_array("tokenizer.ggml.scores").unwrap().len(), 262_144);
    let embd = f.tensor("token_embd.weight").unwrap();
    assert_eq!(embd.shape, [640, 262_144]);
    let types: std::collections::BTreeSet<_> = f.tensors().iter().map(|t| t.ty).collect();
    let expected = [
        GgmlType::F32,
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ];
    assert_eq!(types, expected.into_iter().collect());
}

#[test]
fn smollm2_rewrites_byte_identically() {
    rewrite_is_identical(&test_models::read(test_models::SMOLLM2));
}

#[test]
fn gemma3_rewrites_byte_identically() {
    rewrite_is_identical(&test_models::read(test_models::GEMMA3));
}
