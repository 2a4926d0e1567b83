//! The importance matrix against llama.cpp's `llama-imatrix` (`tests/fixtures/imatrix/`, made by
//! `scripts/gen_imatrix_fixtures.sh`): on SmolLM2 hearth's file is llama.cpp's byte for byte
//! (same sums, counts, keys, tensor names, shapes and order), llama.cpp's files read and
//! re-write unchanged, and `--show-statistics` prints the same table. On a tiny synthetic model
//! every sum is checked against inputs computed by hand in f64 (`synth::reference`), including
//! llama.cpp's rule that products of fewer than 16 rows are not collected.

use std::collections::BTreeMap;
use std::sync::Arc;

use engine::exec::MatmulObserver;
use engine::imatrix::{self, CollectParams, Collector, Entry, IMatrix, ImatrixError};
use engine::model::Binder;
use engine::{Context, ContextParams, Model};
use gguf::{Builder, GgmlType, Gguf};

use crate::synth::reference::{self, Options};
use crate::synth::{self, Arch, Config, Rng, Weights};

const TEXT: &str = include_str!("../fixtures/perplexity/gpl-3.txt");
const C160_B640: &[u8] = include_bytes!("../fixtures/imatrix/smollm2-c160-b640.gguf");
const C70_B32: &[u8] = include_bytes!("../fixtures/imatrix/smollm2-c70-b32.gguf");
const STATS: &str = include_str!("../fixtures/imatrix/smollm2-c160-b640.stats.txt");
/// The text's path as the fixtures recorded it.
const DATASET: &str = "perplexity/gpl-3.txt";

/// Collects as `hearth imatrix` does: `n_batch / c` chunks per call, passes of at most 512.
fn collect(model: &Arc<Model>, tokens: &[u32], p: &CollectParams) -> (IMatrix, f64) {
    let n_chunk = imatrix::n_chunks(tokens.len(), p).unwrap();
    let n_seq = imatrix::n_seq(p).min(n_chunk);
    let c = p.n_chunk_tokens;
    let mut ctx = Context::new(
        model.clone(),
        ContextParams {
            n_ctx: c * n_seq,
            n_batch: p.n_batch.min(c * n_seq).min(512),
            n_threads: 2,
            n_seq_max: n_seq,
            ..ContextParams::default()
        },
    )
    .unwrap();
    let mut collector = Collector::new(IMatrix::new(c as u32));
    let ppl = imatrix::collect(&mut ctx, tokens, p, &mut collector, |_, _| {}).unwrap();
    (collector.imatrix, ppl.ppl())
}

fn params(c: usize, b: usize, chunks: usize, bos: Option<u32>) -> CollectParams {
    CollectParams {
        n_chunk_tokens: c,
        n_batch: b,
        max_chunks: Some(chunks),
        skip_chunks: 0,
        bos,
        compute_ppl: true,
    }
}

/// Largest `|a − b| / max |b|` of one entry's sums.
fn rel_diff(a: &[f32], b: &[f32]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, &v| m.max(f64::from(v).abs()));
    let diff = a.iter().zip(b).fold(0.0f64, |m, (&x, &y)| {
        m.max((f64::from(x) - f64::from(y)).abs())
    });
    diff / scale
}

fn read(bytes: &[u8]) -> IMatrix {
    IMatrix::from_gguf(&Gguf::parse(bytes).unwrap()).unwrap()
}

#[test]
fn smollm2_imatrix_is_llama_imatrixs_file() {
    let model = Arc::new(Model::load(&test_models::path(test_models::SMOLLM2)).unwrap());
    let tokens = model.tokenizer.encode(TEXT, true, false);
    let bos = model.tokenizer.bos().filter(|_| model.tokenizer.add_bos());
    // Chunks of 160, four as sequences of one call (cut into micro-batches of 4 × 128 and
    // 4 × 32 tokens, as llama.cpp cuts it), the fifth alone; chunks of 70 in calls of 32, whose
    // third call (6 tokens) llama.cpp does not collect.
    for (fixture, p) in [
        (C160_B640, params(160, 640, 5, bos)),
        (C70_B32, params(70, 32, 2, bos)),
    ] {
        let (mut ours, _) = collect(&model, &tokens, &p);
        ours.datasets.push(DATASET.to_owned());
        let theirs = read(fixture);
        assert_eq!(
            ours.entries.keys().collect::<Vec<_>>(),
            theirs.entries.keys().collect::<Vec<_>>()
        );
        assert_eq!(ours.entries.len(), 30 * 7);
        for (name, e) in &theirs.entries {
            let o = &ours.entries[name];
            assert_eq!(o.counts, e.counts, "{name}");
            let rel = rel_diff(&o.sums, &e.sums);
            assert!(rel < 1e-3, "{name}: {rel:e} relative");
        }
        assert_eq!(ours.chunk_count(), theirs.file_chunk_count);
        // The same arithmetic in the same order: the same bytes.
        assert!(
            ours.to_gguf().unwrap().to_bytes() == fixture,
            "files differ (c = {})",
            p.n_chunk_tokens
        );
    }
    assert_eq!(read(C70_B32).entries["blk.0.attn_q.weight"].counts, [128]);
    assert_eq!(read(C70_B32).file_chunk_count, 1);
}

#[test]
fn llama_cpp_files_read_and_rewrite_byte_for_byte() {
    for fixture in [C160_B640, C70_B32] {
        let m = read(fixture);
        assert_eq!(m.datasets, [DATASET]);
        assert_eq!(m.entries.len(), 210);
        assert!(m.to_gguf().unwrap().to_bytes() == fixture);
    }
    let m = read(C160_B640);
    assert_eq!(
        (m.chunk_size, m.file_chunk_count, m.chunk_count()),
        (160, 5, 5)
    );
    let e = &m.entries["blk.0.ffn_down.weight"];
    assert_eq!((e.cols(), e.counts.as_slice()), (1536, &[800][..]));
    // The layout llama-imatrix writes: keys, then NAME.in_sum2 [cols] and NAME.counts [1],
    // both F32, in name order.
    let file = Gguf::parse(C160_B640).unwrap();
    let keys: Vec<&str> = file.metadata().iter().map(|(k, _)| k.as_ref()).collect();
    assert_eq!(
        keys,
        [
            "general.type",
            "imatrix.datasets",
            "imatrix.chunk_count",
            "imatrix.chunk_size"
        ]
    );
    let t = &file.tensors()[..4];
    assert_eq!(t[0].name, "blk.0.attn_k.weight.in_sum2");
    assert_eq!(
        (t[0].ty, t[0].shape.as_slice()),
        (GgmlType::F32, &[576][..])
    );
    assert_eq!(t[1].name, "blk.0.attn_k.weight.counts");
    assert_eq!((t[1].ty, t[1].shape.as_slice()), (GgmlType::F32, &[1][..]));
    assert_eq!(t[2].name, "blk.0.attn_output.weight.in_sum2");
}

#[test]
fn statistics_table_is_llama_imatrixs() {
    let m = read(C160_B640);
    assert_eq!(
        imatrix::statistics_table("imatrix/smollm2-c160-b640.gguf", &m),
        STATS
    );
}

#[test]
fn combining_files_adds_sums_and_counts() {
    let a = read(C160_B640);
    let mut sum = IMatrix::new(160);
    sum.add(&a).unwrap();
    sum.add(&a).unwrap();
    assert_eq!(sum.datasets, [DATASET, DATASET]);
    assert_eq!(sum.chunk_count(), 10);
    for (name, e) in &a.entries {
        let s = &sum.entries[name];
        assert_eq!(s.counts, [2 * e.counts[0]]);
        assert!(
            s.sums.iter().zip(&e.sums).all(|(x, y)| *x == 2.0 * y),
            "{name}"
        );
    }
    // Another model's matrix of another width cannot be added.
    let mut other = IMatrix::new(64);
    other.entries.insert(
        "blk.0.attn_q.weight".into(),
        Entry {
            sums: vec![1.0; 8],
            counts: vec![4],
        },
    );
    match sum.add(&other) {
        Err(ImatrixError::Inconsistent { name, .. }) => assert_eq!(name, "blk.0.attn_q.weight"),
        r => panic!("expected an inconsistency, got {r:?}"),
    }
}

/// A small imatrix-shaped file with one entry changed by `edit`.
fn file_with(edit: impl FnOnce(&mut Builder<'static>)) -> Vec<u8> {
    let mut m = IMatrix::new(8);
    m.entries.insert(
        "blk.0.ffn_up.weight".into(),
        Entry {
            sums: vec![1.0, 2.0, 3.0, 4.0],
            counts: vec![8],
        },
    );
    let mut b = m.to_gguf().unwrap();
    edit(&mut b);
    b.to_bytes()
}

#[test]
fn malformed_imatrix_files_are_clear_errors() {
    let parse = |bytes: &[u8]| IMatrix::from_gguf(&Gguf::parse(bytes).unwrap());
    assert!(parse(&file_with(|_| {})).is_ok());
    let f32s = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            file_with(|b| {
                b.add_tensor(
                    "blk.1.x.weight.in_sum2",
                    GgmlType::F32,
                    &[2],
                    f32s(&[1.0, 2.0]),
                )
                .unwrap()
            }),
            "lacks its in_sum2 or its counts",
        ),
        (
            file_with(|b| {
                b.add_tensor("a.in_sum2", GgmlType::I32, &[1], vec![0; 4])
                    .unwrap();
                b.add_tensor("a.counts", GgmlType::F32, &[1], f32s(&[1.0]))
                    .unwrap();
            }),
            "must be F32",
        ),
        (
            file_with(|b| {
                b.add_tensor("a.in_sum2", GgmlType::F32, &[3], f32s(&[1.0; 3]))
                    .unwrap();
                b.add_tensor("a.counts", GgmlType::F32, &[2], f32s(&[1.0; 2]))
                    .unwrap();
            }),
            "3 sums for 2 counts",
        ),
        (
            file_with(|b| {
                b.add_tensor("a.in_sum2", GgmlType::F32, &[1], f32s(&[1.0]))
                    .unwrap();
                b.add_tensor("a.counts", GgmlType::F32, &[1], f32s(&[f32::NAN]))
                    .unwrap();
            }),
            "count of NaN",
        ),
        (Builder::new().to_bytes(), "no tensors"),
        (
            {
                let mut b = Builder::new();
                b.add_tensor("token_embd.weight", GgmlType::F32, &[1], f32s(&[1.0]))
                    .unwrap();
                b.to_bytes()
            },
            "no in_sum2/counts tensors",
        ),
    ];
    for (bytes, want) in cases {
        match parse(&bytes) {
            Err(e @ ImatrixError::Format(_)) => assert!(e.to_string().contains(want), "{e}"),
            r => panic!("expected a format error with '{want}', got {r:?}"),
        }
    }
}

#[test]
fn a_text_shorter_than_two_chunks_is_a_clear_error() {
    // llama-imatrix wants at least two chunks' worth of tokens.
    let p = params(64, 64, 4, None);
    let err = imatrix::n_chunks(127, &p).unwrap_err();
    assert!(matches!(err, ImatrixError::TooShort { .. }));
    assert!(err.to_string().contains("needs at least 128"), "{err}");
    assert_eq!(imatrix::n_chunks(128, &p).unwrap(), 2);
    let skip = CollectParams {
        skip_chunks: 1,
        ..p.clone()
    };
    assert!(matches!(
        imatrix::n_chunks(192, &skip),
        Err(ImatrixError::SkipTooFar { .. })
    ));
    assert_eq!(imatrix::n_chunks(193, &skip).unwrap(), 2);
}

/// Per tensor name, the f64 sums of squares of the reference's inputs at positions `keep` of
/// each chunk (each chunk from position 0).
fn reference_sums(
    cfg: &Config,
    w: &Weights,
    chunks: &[&[u32]],
    keep: impl Fn(usize) -> bool,
) -> BTreeMap<String, (Vec<f64>, u64)> {
    let mut sums: BTreeMap<String, (Vec<f64>, u64)> = BTreeMap::new();
    let opt = Options {
        f16_kv: true,
        ..Options::default()
    };
    for chunk in chunks {
        // The tap sees every position of one matrix in turn; count positions per name.
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        reference::forward_tapped(cfg, w, chunk, opt, &mut |name, x| {
            let pos = seen.entry(name.to_owned()).or_default();
            if keep(*pos) {
                let e = sums
                    .entry(name.to_owned())
                    .or_insert_with(|| (vec![0.0; x.len()], 0));
                e.0.iter_mut().zip(x).for_each(|(a, v)| *a += v * v);
                e.1 += 1;
            }
            *pos += 1;
        });
    }
    sums
}

#[test]
fn synthetic_sums_are_the_squared_inputs_computed_by_hand() {
    let cfg = Config::small(Arch::Llama);
    let w = Weights::random(&cfg);
    let model = Arc::new(synth::load(&synth::build(&cfg, &w)).unwrap());
    let tokens = Rng::new(9).tokens(96, cfg.n_vocab());
    // (c, b): two chunks as two sequences of one call; then chunks of 24 in calls of 18 and 6,
    // of which only the first is collected (fewer than 16 rows).
    for (c, b, keep) in [(32, 64, 32), (24, 18, 18)] {
        let p = params(c, b, 2, None);
        let (m, _) = collect(&model, &tokens, &p);
        let chunks: Vec<&[u32]> = tokens.chunks(c).take(2).collect();
        let want = reference_sums(&cfg, &w, &chunks, |pos| pos < keep);
        assert_eq!(
            m.entries.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        assert_eq!(m.entries.len(), cfg.n_layer * 7);
        for (name, (sums, count)) in &want {
            let e = &m.entries[name];
            assert_eq!(e.counts, [*count], "{name}");
            assert_eq!(*count, 2 * keep as u64);
            let scale = sums.iter().fold(0.0f64, |a, v| a.max(*v));
            let diff = e
                .sums
                .iter()
                .zip(sums)
                .fold(0.0f64, |a, (x, y)| a.max((f64::from(*x) - y).abs()));
            assert!(diff / scale < 1e-3, "{name} (c {c}): {:e}", diff / scale);
        }
        assert_eq!(m.chunk_count(), (2 * keep / c) as u32);
    }
}

#[test]
fn expert_products_count_per_expert() {
    let (n_expert, rows, cols) = (3usize, 4usize, 8usize);
    let data: Vec<u8> = (0..n_expert * rows * cols)
        .flat_map(|i| (i as f32).to_le_bytes())
        .collect();
    let mut b = Builder::new();
    b.add_tensor(
        "blk.0.ffn_down_exps.weight",
        GgmlType::F32,
        &[cols as u64, rows as u64, n_expert as u64],
        data,
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("hearth-imatrix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("experts.gguf");
    std::fs::write(&path, b.to_bytes()).unwrap();
    let map = Arc::new(kernels::mmap::Mmap::open(&path).unwrap());
    let file = Gguf::parse(&map).unwrap();
    let release = |_| {};
    let binder = Binder::new(&file, &map, &release, true);
    let exps = binder
        .experts("blk.0.ffn_down_exps.weight", n_expert, rows, cols)
        .unwrap();

    let row = |v: f32| vec![v; cols];
    let mut c = Collector::new(IMatrix::new(4));
    // Expert 0: two rows, then one; expert 2: one row of a single token (no 16-row rule for
    // expert products); expert 1 never chosen.
    c.expert_matmul(&exps, 0, &[row(1.0), row(2.0)].concat());
    c.expert_matmul(&exps, 2, &row(3.0));
    c.expert_matmul(&exps, 0, &row(0.5));
    assert!(c.take_error().is_none());
    let e = &c.imatrix.entries["blk.0.ffn_down_exps.weight"];
    assert_eq!(e.counts, [3, 0, 1]);
    assert_eq!(e.cols(), cols);
    assert_eq!(&e.sums[..cols], &row(1.0 + 4.0 + 0.25)[..]);
    assert_eq!(&e.sums[cols..2 * cols], &row(0.0)[..]);
    assert_eq!(&e.sums[2 * cols..], &row(9.0)[..]);
    assert_eq!(
        c.imatrix.partial_entries(),
        [("blk.0.ffn_down_exps.weight", 2.0 / 3.0)]
    );
    // Written as llama.cpp writes a 3-D tensor's entry: [cols, n_expert] and [1, n_expert].
    let bytes = c.imatrix.to_gguf().unwrap().to_bytes();
    let f = Gguf::parse(&bytes).unwrap();
    assert_eq!(f.tensors()[0].shape, [cols as u64, n_expert as u64]);
    assert_eq!(f.tensors()[1].shape, [1, n_expert as u64]);
    assert_eq!(IMatrix::from_gguf(&f).unwrap(), c.imatrix);
    // An expert the tensor does not have is an error, not a panic.
    c.expert_matmul(&exps, 3, &row(1.0));
    assert!(matches!(
        c.take_error(),
        Some(ImatrixError::BadExpert { expert: 3, .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A mixture-of-experts model: per-expert sums and counts (llama.cpp's `MUL_MAT_ID` collection)
/// against `llama-imatrix` on the tiny qwen3moe (`tests/fixtures/qwen3moe`, q8_0; fixture
/// `imatrix/qwen3moe-c64.gguf`); see [`moe_imatrix_matches_llama_imatrix`].
#[test]
fn qwen3moe_imatrix_matches_llama_imatrix_per_expert() {
    let theirs = moe_imatrix_matches_llama_imatrix(
        "qwen3moe",
        include_bytes!("../fixtures/qwen3moe/model-q8_0.gguf.gz"),
        include_bytes!("../fixtures/imatrix/qwen3moe-c64.gguf"),
    );
    assert!(theirs.entries.contains_key("blk.0.ffn_gate_exps.weight"));
}

/// Qwen2-MoE's shared experts: their three dense products and the 1-row `ffn_gate_inp_shexp`
/// are collected as llama-imatrix collects them (`imatrix/qwen2moe-c64.gguf`).
#[test]
fn qwen2moe_imatrix_matches_llama_imatrix_shared_experts_included() {
    let theirs = moe_imatrix_matches_llama_imatrix(
        "qwen2moe",
        include_bytes!("../fixtures/qwen2moe/model-q8_0.gguf.gz"),
        include_bytes!("../fixtures/imatrix/qwen2moe-c64.gguf"),
    );
    for t in ["gate", "up", "down", "gate_inp"] {
        let name = format!("blk.1.ffn_{t}_shexp.weight");
        assert_eq!(theirs.entries[&name].counts.len(), 1, "{name}");
    }
}

/// Gemma 4's 26B-A4B layer: a fused `ffn_gate_up_exps` is one product per expert, its router
/// reads another input than the experts (`imatrix/gemma4-moe-c64.gguf`).
#[test]
fn gemma4_moe_imatrix_matches_llama_imatrix_fused_gate_up_once() {
    let theirs = moe_imatrix_matches_llama_imatrix(
        "gemma4-moe",
        include_bytes!("../fixtures/gemma4-moe/gemma4-q8_0.gguf.gz"),
        include_bytes!("../fixtures/imatrix/gemma4-moe-c64.gguf"),
    );
    let e = &theirs.entries["blk.0.ffn_gate_up_exps.weight"];
    assert_eq!(e.counts.len(), 8);
    // 4 chunks of 64 tokens, 3 experts each
    assert_eq!(e.counts.iter().sum::<u64>(), 4 * 64 * 3);
}

/// hearth's importance matrix of a tiny MoE checkpoint (q8_0, gzipped) against llama-imatrix's
/// on the same text (6000 bytes of the GPL, chunks of 64, 4 chunks): the same entries, the
/// same counts (per expert for expert tensors), sums equal to float rounding (2e-7 measured on
/// qwen3moe: the rows routed to an expert are summed in another order than llama.cpp's).
/// Returns llama.cpp's matrix.
fn moe_imatrix_matches_llama_imatrix(tag: &str, model_gz: &[u8], fixture: &[u8]) -> IMatrix {
    use std::io::Read;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(model_gz)
        .read_to_end(&mut bytes)
        .unwrap();
    let path =
        std::env::temp_dir().join(format!("hearth-imatrix-{tag}-{}.gguf", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let model = Arc::new(Model::load(&path).unwrap());
    let _ = std::fs::remove_file(&path);
    let tokens = model.tokenizer.encode(&TEXT[..6000], true, false);
    let bos = model.tokenizer.bos().filter(|_| model.tokenizer.add_bos());
    let (ours, _) = collect(&model, &tokens, &params(64, 64, 4, bos));
    let theirs = read(fixture);
    assert_eq!(
        ours.entries.keys().collect::<Vec<_>>(),
        theirs.entries.keys().collect::<Vec<_>>(),
        "{tag}"
    );
    let mut n_expert_entries = 0;
    for (name, e) in &theirs.entries {
        let o = &ours.entries[name];
        assert_eq!(o.counts, e.counts, "{tag} {name}");
        n_expert_entries += usize::from(e.counts.len() > 1);
        let rel = rel_diff(&o.sums, &e.sums);
        assert!(rel < 1e-5, "{tag} {name}: {rel:e} relative");
    }
    assert!(
        n_expert_entries >= 4,
        "{tag}: expert tensors collected per expert"
    );
    theirs
}

/// A fused tensor (Phi-3's `attn_qkv`, its gate-in-`ffn_up`) runs as one kernel matrix per part
/// but is one tensor to llama.cpp: collected once per product under its own name, so its
/// counts are the rows of its input like every other matrix's, not once per part.
#[test]
fn fused_tensors_are_collected_once() {
    let model = crate::tiny_reference::load("phi3", "q8_0");
    let tokens = model.tokenizer.encode(TEXT, false, false);
    let (m, ppl) = collect(&model, &tokens, &params(64, 64, 2, None));
    assert!(ppl.is_finite());
    for il in 0..2 {
        let e = |t: &str| &m.entries[&format!("blk.{il}.{t}.weight")];
        let (qkv, out, up, down) = (e("attn_qkv"), e("attn_output"), e("ffn_up"), e("ffn_down"));
        assert_eq!(qkv.counts, vec![128], "layer {il}");
        assert_eq!((qkv.counts.clone(), qkv.cols()), (out.counts.clone(), 64));
        assert_eq!((up.counts.clone(), up.cols()), (down.counts.clone(), 64));
        assert!(qkv.sums.iter().all(|&s| s > 0.0));
    }
    assert!(
        !m.entries
            .keys()
            .any(|k| k.contains("attn_q.") || k.contains("ffn_gate"))
    );
}
