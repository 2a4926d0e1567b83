//! A real-shaped synthetic `qwen3moe` for speed measurements, written by our GGUF writer:
//! random weights in llama-quantize's Q4_K_M mix (Q4_K, with Q6_K for the LM head and for
//! `attn_v` / `ffn_down_exps` in the layers `use_more_bits` picks; router and norms F32), and
//! the tokenizer copied from another GGUF file.
//!
//! ```text
//! cargo run --release -p engine --example synth_moe -- TOKENIZER.gguf OUT.gguf \
//!     [n_layer n_embd n_expert n_used n_ff_exp [EXPERT_TYPE]]   # default 48 768 64 8 256 q4_k_m
//! ```
//!
//! `EXPERT_TYPE` `iq2_xxs` writes the three expert tensors in IQ2_XXS, as the low-bit "UD"
//! files of MoE models do, the rest in the Q4_K_M mix. Those blocks are random bytes with a
//! small scale (every byte pattern is a valid IQ2_XXS block: grid indices, sign indices and
//! scales all cover their ranges), since ggml's IQ2_XXS search is far too slow for 2 B weights
//! and the values do not matter for speed.
//!
//! The default is Qwen3-30B-A3B scaled down: 48 layers, 64 experts (8 per token) of width 256
//! over a residual of 768, 12 query / 4 key-value heads of 64: about 2.0 B parameters, 0.38 B
//! of them active per token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufWriter;

use gguf::{Builder, GgmlType, Gguf, Value};

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// `rows × cols` uniform values of unit-variance products, quantized to `ty` on two threads.
fn matrix(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let rb = kernels::quant::row_bytes(ty, cols).unwrap();
    let mut out = vec![0u8; rows * rb];
    let s = (3.0 / cols as f32).sqrt();
    let half = rows.div_ceil(2);
    std::thread::scope(|sc| {
        for (part, chunk) in out.chunks_mut(half * rb).enumerate() {
            sc.spawn(move || {
                let mut row = vec![0.0f32; cols];
                for (i, dst) in chunk.chunks_exact_mut(rb).enumerate() {
                    let r = part * half + i;
                    let mut rng = Rng(seed ^ (r as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
                    row.iter_mut().for_each(|v| *v = rng.next() * s);
                    if ty == GgmlType::F32 {
                        dst.copy_from_slice(bytemuck::cast_slice(&row));
                    } else {
                        kernels::quant::quantize_row(ty, &row, dst).unwrap();
                    }
                }
            });
        }
    });
    out
}

/// `rows × cols` random IQ2_XXS blocks (66 bytes per 256 values: an f16 scale, then 64 bytes
/// of grid indices, sign indices and 4-bit scales, all of which any byte pattern fills validly).
fn random_iq2_xxs(rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    assert!(
        cols.is_multiple_of(256),
        "IQ2_XXS rows are whole blocks of 256"
    );
    let n_blocks = rows * cols / 256;
    let mut out = vec![0u8; n_blocks * 66];
    let mut state = seed;
    let d = half::f16::from_f32(0.3 / (cols as f32).sqrt()).to_le_bytes();
    for block in out.chunks_exact_mut(66) {
        block[..2].copy_from_slice(&d);
        for b in &mut block[2..] {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            *b = (state >> 56) as u8;
        }
    }
    out
}

fn f32s(v: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

/// llama-quantize's `use_more_bits`: the first and last eighth of the layers and every third
/// in between get more bits in the `_M` mixes.
fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        eprintln!(
            "usage: synth_moe TOKENIZER.gguf OUT.gguf [n_layer n_embd n_expert n_used n_ff_exp]"
        );
        std::process::exit(2);
    }
    let num = |i: usize, d: usize| args.get(i).map_or(d, |a| a.parse().unwrap());
    let (n_layer, d, n_expert, n_used, f) =
        (num(2, 48), num(3, 768), num(4, 64), num(5, 8), num(6, 256));
    let iq2_experts = match args.get(7).map(String::as_str) {
        None | Some("q4_k_m") => false,
        Some("iq2_xxs") => true,
        Some(other) => panic!("expert type {other}: q4_k_m or iq2_xxs"),
    };
    // The experts' type and bytes.
    let experts = |ty: GgmlType, rows: usize, cols: usize, seed: u64| {
        if iq2_experts {
            (GgmlType::IQ2_XXS, random_iq2_xxs(rows, cols, seed))
        } else {
            (ty, matrix(ty, rows, cols, seed))
        }
    };
    let (hd, n_head, n_kv) = (64usize, d / 64, 4usize);
    let tok_bytes = std::fs::read(&args[0]).unwrap();
    let tok = Gguf::parse(&tok_bytes).unwrap();
    let n_vocab = match tok.get("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => a.len(),
        _ => panic!("no tokenizer.ggml.tokens in {}", args[0]),
    };

    let mut b = Builder::new();
    let key = |k: &str| format!("qwen3moe.{k}");
    let u = |v: usize| Value::U32(v as u32);
    b.set("general.architecture", Value::string("qwen3moe"))
        .unwrap();
    b.set("general.name", Value::string("synthetic qwen3moe"))
        .unwrap();
    b.set("general.file_type", Value::U32(15)).unwrap();
    b.set("general.quantization_version", Value::U32(2))
        .unwrap();
    b.set(key("context_length"), u(4096)).unwrap();
    b.set(key("embedding_length"), u(d)).unwrap();
    b.set(key("block_count"), u(n_layer)).unwrap();
    b.set(key("feed_forward_length"), u(f * n_used)).unwrap();
    b.set(key("attention.head_count"), u(n_head)).unwrap();
    b.set(key("attention.head_count_kv"), u(n_kv)).unwrap();
    b.set(key("attention.key_length"), u(hd)).unwrap();
    b.set(key("attention.value_length"), u(hd)).unwrap();
    b.set(key("rope.freq_base"), Value::F32(1_000_000.0))
        .unwrap();
    b.set(key("attention.layer_norm_rms_epsilon"), Value::F32(1e-6))
        .unwrap();
    b.set(key("expert_count"), u(n_expert)).unwrap();
    b.set(key("expert_used_count"), u(n_used)).unwrap();
    b.set(key("expert_feed_forward_length"), u(f)).unwrap();
    for (k, v) in tok.metadata() {
        if k.starts_with("tokenizer.") {
            b.set(k.to_string(), v.clone()).unwrap();
        }
    }

    let (q4, q6) = (GgmlType::Q4_K, GgmlType::Q6_K);
    let norm = |n: usize, seed: u64| {
        let mut r = Rng(seed);
        f32s(&(0..n).map(|_| 1.0 + 0.2 * r.next()).collect::<Vec<_>>())
    };
    let mut seed = 1u64;
    let mut next_seed = || {
        seed += 1;
        seed * 0x9E37_79B9
    };
    let (d64, v64) = (d as u64, n_vocab as u64);
    b.add_tensor(
        "token_embd.weight",
        q4,
        &[d64, v64],
        matrix(q4, n_vocab, d, next_seed()),
    )
    .unwrap();
    b.add_tensor(
        "output_norm.weight",
        GgmlType::F32,
        &[d64],
        norm(d, next_seed()),
    )
    .unwrap();
    b.add_tensor(
        "output.weight",
        q6,
        &[d64, v64],
        matrix(q6, n_vocab, d, next_seed()),
    )
    .unwrap();
    let (qw, kvw) = ((n_head * hd) as u64, (n_kv * hd) as u64);
    for il in 0..n_layer {
        eprint!("\rlayer {}/{n_layer}", il + 1);
        let n = |t: &str| format!("blk.{il}.{t}");
        let more = if use_more_bits(il, n_layer) { q6 } else { q4 };
        let mut add = |name: String, ty: GgmlType, shape: &[u64], data: Vec<u8>| {
            b.add_tensor(name, ty, shape, data).unwrap();
        };
        add(
            n("attn_norm.weight"),
            GgmlType::F32,
            &[d64],
            norm(d, next_seed()),
        );
        add(
            n("attn_q.weight"),
            q4,
            &[d64, qw],
            matrix(q4, qw as usize, d, next_seed()),
        );
        add(
            n("attn_k.weight"),
            q4,
            &[d64, kvw],
            matrix(q4, kvw as usize, d, next_seed()),
        );
        add(
            n("attn_v.weight"),
            more,
            &[d64, kvw],
            matrix(more, kvw as usize, d, next_seed()),
        );
        add(
            n("attn_output.weight"),
            q4,
            &[qw, d64],
            matrix(q4, d, qw as usize, next_seed()),
        );
        add(
            n("attn_q_norm.weight"),
            GgmlType::F32,
            &[hd as u64],
            norm(hd, next_seed()),
        );
        add(
            n("attn_k_norm.weight"),
            GgmlType::F32,
            &[hd as u64],
            norm(hd, next_seed()),
        );
        add(
            n("ffn_norm.weight"),
            GgmlType::F32,
            &[d64],
            norm(d, next_seed()),
        );
        let (ne, f64_) = (n_expert as u64, f as u64);
        add(
            n("ffn_gate_inp.weight"),
            GgmlType::F32,
            &[d64, ne],
            matrix(GgmlType::F32, n_expert, d, next_seed()),
        );
        let (ty, data) = experts(q4, n_expert * f, d, next_seed());
        add(n("ffn_gate_exps.weight"), ty, &[d64, f64_, ne], data);
        let (ty, data) = experts(q4, n_expert * f, d, next_seed());
        add(n("ffn_up_exps.weight"), ty, &[d64, f64_, ne], data);
        let (ty, data) = experts(more, n_expert * d, f, next_seed());
        add(n("ffn_down_exps.weight"), ty, &[f64_, d64, ne], data);
    }
    eprintln!();
    let out = std::fs::File::create(&args[1]).unwrap();
    let bytes = b.write_to(BufWriter::new(out)).unwrap();
    eprintln!("wrote {} ({:.2} GB)", args[1], bytes as f64 / 1e9);
}
