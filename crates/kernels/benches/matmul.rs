//! Mat-vec and mat-mat throughput against the machine's own limits, measured in one run:
//! `cargo bench -p kernels --bench matmul` (plain `Instant` timing, no harness).
//!
//! - **mat-vec** (decode): GB/s of weights streamed, and that as a fraction of a plain streaming
//!   read of a buffer of the same size with the same thread count (the floor for decode).
//! - **mat-mat** (prompt, 512 activation rows): GFLOP/s, against a loop of 512 mat-vecs over
//!   the same rows, and against the f32 FMA peak measured here.
//!
//! Synthetic matrices are ≥ 64 MB in their type (16384 × 8192 values; the mat-mat uses the
//! first 2048 rows); the real models' largest matrices come from the cached test models.
//! `HEARTH_BENCH_QUICK=1` shrinks everything for a smoke run; `HEARTH_BENCH_TYPES=Q4_1,Q8_0`
//! measures only matrices of those types; `HEARTH_BENCH_GGML_ORDER=1` prepares them with
//! `MatrixOptions::ggml_order`.
//!
//! `HEARTH_BENCH_DECODE_STREAM=1` measures only what bounds decode's weight stream, on the real
//! models at 2 threads: every layer's products for one token as the engine hands them to the
//! pool (Q/K/V together, the attention output, gate/up together, down; then the LM head, all
//! in llama.cpp's order), against plain reads of buffers of the same sizes with the same
//! hand-offs, against one read of a buffer of their total size. Attention and the elementwise
//! ops are left out; each figure is the median of alternating runs.
//!
//! `HEARTH_BENCH_SMALL_BATCH=1` measures only the batched-decode case instead: µs per token of
//! the ggml-order products of Gemma 3 270M's and SmolLM2's shapes (the Q8_0 LM head, a Q5_0
//! FFN matrix, a Q4_1 FFN matrix) at 1, 2, 4 and 8 tokens, one thread, the fastest of 60 runs
//! (the least disturbed by other processes on a shared machine); then µs per call of the Q4_1
//! matrix streamed from memory (200 copies visited in turn) with two threads, as a decode step
//! meets it.

#![allow(clippy::unwrap_used)]

use kernels::isa::Isa;
use kernels::matmul::{Matrix, MatrixOptions, Scratch, matmul, matmul_many};
use kernels::pool::ThreadPool;
use kernels::quant::{GgmlType, quantize_row, row_bytes};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Median wall time of `f` over enough runs to fill `min_total` (at least 3 runs).
fn time(min_total: Duration, mut f: impl FnMut()) -> f64 {
    f(); // warm up: page in, fill caches as a steady state would
    let mut runs = Vec::new();
    let start = Instant::now();
    while runs.len() < 3 || (start.elapsed() < min_total && runs.len() < 1000) {
        let t = Instant::now();
        f();
        runs.push(t.elapsed().as_secs_f64());
    }
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// Median wall times of `a` and `b`, run alternately (so both see the same machine state:
/// the host is shared and its memory bandwidth drifts).
fn time_pair(min_total: Duration, mut a: impl FnMut(), mut b: impl FnMut()) -> (f64, f64) {
    a();
    b();
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while ta.len() < 5 || (start.elapsed() < min_total && ta.len() < 1000) {
        let t = Instant::now();
        a();
        ta.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        b();
        tb.push(t.elapsed().as_secs_f64());
    }
    ta.sort_by(f64::total_cmp);
    tb.sort_by(f64::total_cmp);
    (ta[ta.len() / 2], tb[tb.len() / 2])
}

/// f32 FMA peak of this machine (GFLOP/s) with the pool's threads: independent 512-bit (or
/// 256-bit) FMA chains, no memory traffic.
fn fma_peak(pool: &ThreadPool) -> f64 {
    const ITERS: usize = 20_000_000;
    let secs = time(Duration::from_millis(300), || {
        pool.run(|_, _| {
            black_box(fma_loop(ITERS));
        });
    });
    let lanes = if Isa::best_supported() >= Isa::Avx512 {
        16.0
    } else {
        8.0
    };
    pool.n_threads() as f64 * ITERS as f64 * 12.0 * lanes * 2.0 / secs / 1e9
}

fn fma_loop(iters: usize) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if Isa::best_supported() >= Isa::Avx512 {
        // SAFETY: AVX-512F is supported.
        return unsafe { fma_loop_avx512(iters) };
    }
    let mut acc = [1.0f32; 12];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_loop_avx512(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(1.0); 12];
    let m = _mm512_set1_ps(0.999_999);
    let c = _mm512_set1_ps(1e-7);
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, m, c);
        }
    }
    let mut s = _mm512_setzero_ps();
    for a in acc {
        s = _mm512_add_ps(s, a);
    }
    _mm512_reduce_add_ps(s)
}

/// Splitmix64-driven normal-ish values.
fn normals(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            let mut u = 0.0;
            for _ in 0..4 {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                u += ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            }
            u * 1.7
        })
        .collect()
}

/// `rows × cols` of type `ty`: 64 distinct random rows, repeated (quantizing 16k rows with the
/// reference k-quant search would dominate the run). The IQ lattice types, which have no
/// quantizer here, get random bytes with a small f16 super-block scale (every such block is
/// valid, and the kernels' work does not depend on the values).
fn synthetic_matrix(ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let rb = row_bytes(ty, cols).unwrap();
    let distinct = 64.min(rows);
    let mut base = vec![0u8; distinct * rb];
    for (r, out) in base.chunks_mut(rb).enumerate() {
        let x = normals(r as u64 + 1, cols);
        if quantize_row(ty, &x, out).is_err() {
            let size = ty.type_size() as usize;
            for (i, b) in out.iter_mut().enumerate() {
                *b = (x[i % cols].to_bits() >> 7) as u8;
            }
            let d = half::f16::from_f32(0.01).to_bits().to_le_bytes();
            for block in out.chunks_mut(size) {
                if ty == GgmlType::IQ1_M {
                    // The scale's nibbles sit at the top of the four scale words.
                    for k in 0..4 {
                        let nibble = (u16::from_le_bytes(d) >> (4 * k)) as u8 & 0xf;
                        block[49 + 2 * k] = (block[49 + 2 * k] & 0xf) | (nibble << 4);
                    }
                } else {
                    block[..2].copy_from_slice(&d);
                }
            }
        }
    }
    let mut data = Vec::with_capacity(rows * rb);
    while data.len() < rows * rb {
        let take = (rows * rb - data.len()).min(base.len());
        data.extend_from_slice(&base[..take]);
    }
    data
}

struct Row {
    name: String,
    threads: usize,
    mb: f64,
    matvec_gbs: f64,
    stream_gbs: f64,
    matmat: Option<(f64, f64, f64)>, // (GFLOP/s, mat-vec-loop GFLOP/s, peak GFLOP/s)
}

/// One matrix to measure: `rows × cols` of `ty`; the mat-mat uses its first `mm_rows` rows.
struct Case<'a> {
    name: String,
    ty: GgmlType,
    rows: usize,
    cols: usize,
    data: &'a [u8],
    mm_rows: usize,
}

fn bench_matrix(rows_out: &mut Vec<Row>, case: &Case, quick: bool, peaks: &[f64; 2]) {
    let Case {
        ref name,
        ty,
        rows,
        cols,
        data,
        mm_rows,
    } = *case;
    let built = Instant::now();
    let m = Matrix::with_options(ty, rows, cols, data, options()).unwrap();
    println!(
        "  ({name}: Matrix::new {:.1} ms, {})",
        built.elapsed().as_secs_f64() * 1e3,
        if m.is_packed() {
            "repacked"
        } else {
            "in place"
        }
    );
    let stream_buf = kernels::membw::stream_buffer(data.len());
    let mm_rb = row_bytes(ty, cols).unwrap();
    let mm = Matrix::with_options(ty, mm_rows, cols, &data[..mm_rows * mm_rb], options()).unwrap();
    let n_tokens = if quick { 64 } else { 512 };
    let x = normals(99, n_tokens * cols);
    let min_time = Duration::from_millis(if quick { 100 } else { 1000 });
    for (pi, threads) in [1usize, 2].into_iter().enumerate() {
        let pool = ThreadPool::new(threads);
        let mut scratch = Scratch::with_capacity(n_tokens, cols);
        let mut y = vec![0.0f32; n_tokens * rows.max(mm_rows)];
        let (t_stream, t_mv) = time_pair(
            min_time,
            || {
                black_box(kernels::membw::stream_read(&pool, &stream_buf));
            },
            || {
                matmul(&pool, &m, &x[..cols], 1, &mut y[..rows], &mut scratch).unwrap();
            },
        );
        let flops = 2.0 * (n_tokens * mm_rows * cols) as f64;
        let t_mm = time(min_time, || {
            matmul(
                &pool,
                &mm,
                &x,
                n_tokens,
                &mut y[..n_tokens * mm_rows],
                &mut scratch,
            )
            .unwrap();
        });
        let t_loop = time(min_time, || {
            for t in 0..n_tokens {
                let yt = &mut y[t * mm_rows..(t + 1) * mm_rows];
                matmul(
                    &pool,
                    &mm,
                    &x[t * cols..(t + 1) * cols],
                    1,
                    yt,
                    &mut scratch,
                )
                .unwrap();
            }
        });
        let row = Row {
            name: name.to_string(),
            threads,
            mb: data.len() as f64 / 1e6,
            matvec_gbs: data.len() as f64 / t_mv / 1e9,
            stream_gbs: data.len() as f64 / t_stream / 1e9,
            matmat: Some((flops / t_mm / 1e9, flops / t_loop / 1e9, peaks[pi])),
        };
        print_row(&row);
        rows_out.push(row);
    }
}

fn print_row(r: &Row) {
    let mm = match r.matmat {
        Some((mm, lp, peak)) => format!(
            "{mm:8.1} GFLOP/s  {:5.2}x mat-vec loop ({lp:6.1})  {:5.1}% of f32 peak ({peak:.0})",
            mm / lp,
            100.0 * mm / peak
        ),
        None => String::new(),
    };
    println!(
        "| {:<28} | {} | {:7.1} MB | {:6.1} GB/s | {:5.1}% of {:5.1} GB/s | {mm}",
        r.name,
        r.threads,
        r.mb,
        r.matvec_gbs,
        100.0 * r.matvec_gbs / r.stream_gbs,
        r.stream_gbs
    );
}

/// Per-call time of one layer's matrices of a real model (the decode mat-vec as the engine will
/// run it, overheads included), and of Q/K/V through `matmul_many`.
fn layer_latency(model: &str, quick: bool) {
    let bytes = std::fs::read(test_models::path(model)).unwrap();
    let g = gguf::Gguf::parse(&bytes).unwrap();
    let names = [
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ];
    let mats: Vec<(String, Matrix)> = names
        .iter()
        .map(|n| {
            let t = g.tensor(&format!("blk.0.{n}.weight")).unwrap();
            let (cols, rows) = (t.shape[0] as usize, t.shape[1] as usize);
            (
                format!("{n} {} {rows}x{cols}", t.ty),
                Matrix::with_options(t.ty, rows, cols, g.tensor_data(t), options()).unwrap(),
            )
        })
        .collect();
    let min_time = Duration::from_millis(if quick { 50 } else { 300 });
    for threads in [1usize, 2] {
        let pool = ThreadPool::new(threads);
        let mut scratch = Scratch::with_capacity(1, 4096);
        let mut y = vec![0.0f32; 1 << 16];
        let mut line = format!("{} layer 0, {threads} thread(s), µs per call:", &model[..6]);
        for (label, m) in &mats {
            let x = normals(7, m.cols());
            let t = time(min_time, || {
                matmul(&pool, m, &x, 1, &mut y[..m.rows()], &mut scratch).unwrap();
            });
            line += &format!(" {label}: {:.1};", t * 1e6);
        }
        let qkv: Vec<&Matrix> = mats[..3].iter().map(|(_, m)| m).collect();
        let x = normals(7, qkv[0].cols());
        let mut outs: Vec<Vec<f32>> = qkv.iter().map(|m| vec![0.0; m.rows()]).collect();
        let t = time(min_time, || {
            let mut ys: Vec<&mut [f32]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
            matmul_many(&pool, &qkv, &x, 1, &mut ys, &mut scratch).unwrap();
        });
        line += &format!(" q+k+v via matmul_many: {:.1}", t * 1e6);
        println!("{line}");
    }
}

/// See the module documentation (`HEARTH_BENCH_DECODE_STREAM`).
fn decode_stream(model: &str) {
    let bytes = std::fs::read(test_models::path(model)).unwrap();
    let g = gguf::Gguf::parse(&bytes).unwrap();
    let opts = MatrixOptions {
        ggml_order: true,
        ..MatrixOptions::default()
    };
    let matrix = |name: &str| {
        let t = g.tensor(name)?;
        let (cols, rows) = (t.shape[0] as usize, t.shape[1] as usize);
        Some(Matrix::with_options(t.ty, rows, cols, g.tensor_data(t), opts).unwrap())
    };
    // The engine's hand-offs for one token: groups of products that share an input.
    let mut groups: Vec<Vec<Matrix>> = Vec::new();
    for il in 0.. {
        let Some(q) = matrix(&format!("blk.{il}.attn_q.weight")) else {
            break;
        };
        let m = |n: &str| matrix(&format!("blk.{il}.{n}.weight")).unwrap();
        groups.push(vec![q, m("attn_k"), m("attn_v")]);
        groups.push(vec![m("attn_output")]);
        groups.push(vec![m("ffn_gate"), m("ffn_up")]);
        groups.push(vec![m("ffn_down")]);
    }
    let n_layer = groups.len() / 4;
    let head = matrix("output.weight").unwrap_or_else(|| matrix("token_embd.weight").unwrap());
    groups.push(vec![head]);
    let sizes: Vec<Vec<usize>> = groups
        .iter()
        .map(|gr| {
            gr.iter()
                .map(|m| row_bytes(m.ty(), m.cols()).unwrap() * m.rows())
                .collect()
        })
        .collect();
    let total: usize = sizes.iter().flatten().sum();
    let bufs: Vec<Vec<kernels::membw::StreamBuffer>> = sizes
        .iter()
        .map(|gr| {
            gr.iter()
                .map(|&b| kernels::membw::stream_buffer(b))
                .collect()
        })
        .collect();
    let whole = kernels::membw::stream_buffer(total);
    let pool = ThreadPool::new(2);
    let mut scratch = Scratch::with_capacity(1, 1 << 14);
    let widest = groups.iter().flatten().map(|m| m.cols()).max().unwrap();
    let x = normals(5, widest);
    let mut outs: Vec<Vec<Vec<f32>>> = groups
        .iter()
        .map(|gr| gr.iter().map(|m| vec![0.0; m.rows()]).collect())
        .collect();
    let mut products = || {
        for (gr, out) in groups.iter().zip(outs.iter_mut()) {
            let mats: Vec<&Matrix> = gr.iter().collect();
            let mut ys: Vec<&mut [f32]> = out.iter_mut().map(|v| v.as_mut_slice()).collect();
            let x = &x[..mats[0].cols()];
            matmul_many(&pool, &mats, x, 1, &mut ys, &mut scratch).unwrap();
        }
    };
    let reads = || {
        for gr in &bufs {
            let parts: Vec<&[u8]> = gr.iter().map(|b| &b[..]).collect();
            black_box(kernels::membw::stream_read_many(&pool, &parts));
        }
    };
    let one_read = || {
        black_box(kernels::membw::stream_read(&pool, &whole));
    };
    let min_time = Duration::from_secs(2);
    let (t_products, t_reads) = time_pair(min_time, &mut products, reads);
    let (t_reads2, t_one) = time_pair(min_time, reads, one_read);
    let (t_products2, t_one2) = time_pair(min_time, &mut products, one_read);
    let gbs = |t: f64| total as f64 / t / 1e9;
    let (tp, tr, to) = (
        t_products.min(t_products2),
        t_reads.min(t_reads2),
        t_one.min(t_one2),
    );
    println!(
        "{}: {n_layer} layers + LM head, {:.1} MB per token in {} hand-offs, 2 threads: \
         products {:.2} ms ({:.1} GB/s) | plain reads, same hand-offs {:.2} ms ({:.1} GB/s) | \
         one plain read {:.2} ms ({:.1} GB/s) — products at {:.0} % of the same reads, those at \
         {:.0} % of one read",
        &model[..model.find('.').unwrap_or(model.len())],
        total as f64 / 1e6,
        groups.len(),
        tp * 1e3,
        gbs(tp),
        tr * 1e3,
        gbs(tr),
        to * 1e3,
        gbs(to),
        100.0 * tr / tp,
        100.0 * to / tr,
    );
    // The layers alone (without the LM head), the part made of small matrices.
    let layer_bytes: usize = sizes[..4 * n_layer].iter().flatten().sum();
    let layers_only = || {
        for gr in &bufs[..4 * n_layer] {
            let parts: Vec<&[u8]> = gr.iter().map(|b| &b[..]).collect();
            black_box(kernels::membw::stream_read_many(&pool, &parts));
        }
    };
    let mut layer_products = || {
        for (gr, out) in groups[..4 * n_layer].iter().zip(outs.iter_mut()) {
            let mats: Vec<&Matrix> = gr.iter().collect();
            let mut ys: Vec<&mut [f32]> = out.iter_mut().map(|v| v.as_mut_slice()).collect();
            let x = &x[..mats[0].cols()];
            matmul_many(&pool, &mats, x, 1, &mut ys, &mut scratch).unwrap();
        }
    };
    let (tlp, tlr) = time_pair(min_time, &mut layer_products, layers_only);
    println!(
        "  layers alone: {:.1} MB in {} hand-offs: products {:.2} ms ({:.1} GB/s), plain reads \
         {:.2} ms ({:.1} GB/s)",
        layer_bytes as f64 / 1e6,
        4 * n_layer,
        tlp * 1e3,
        layer_bytes as f64 / tlp / 1e9,
        tlr * 1e3,
        layer_bytes as f64 / tlr / 1e9,
    );
}

/// How matrices are prepared: the defaults, or with `HEARTH_BENCH_GGML_ORDER=1` llama.cpp's
/// summation order.
fn options() -> MatrixOptions {
    MatrixOptions {
        ggml_order: std::env::var_os("HEARTH_BENCH_GGML_ORDER").is_some(),
        ..MatrixOptions::default()
    }
}

/// Whether `HEARTH_BENCH_TYPES` (a comma-separated list of type names) admits `ty`.
fn wanted(ty: GgmlType) -> bool {
    std::env::var("HEARTH_BENCH_TYPES")
        .map(|v| v.split(',').any(|t| t.trim() == ty.to_string()))
        .unwrap_or(true)
}

/// See the module documentation (`HEARTH_BENCH_SMALL_BATCH`).
fn small_batch() {
    let pool = ThreadPool::new(1);
    for (ty, rows, cols) in [
        (GgmlType::Q8_0, 16384, 640),
        (GgmlType::Q5_0, 2048, 640),
        (GgmlType::Q4_1, 1536, 576),
    ] {
        let w = synthetic_matrix(ty, rows, cols);
        let options = MatrixOptions {
            ggml_order: true,
            ..MatrixOptions::default()
        };
        let m = Matrix::with_options(ty, rows, cols, &w, options).unwrap();
        let mut line = format!("{ty} {rows}×{cols} (ggml order), µs per token:");
        for n in [1usize, 2, 4, 8] {
            let x = normals(7, n * cols);
            let mut y = vec![0.0; n * rows];
            let mut scratch = Scratch::new();
            let mut best = f64::MAX;
            for _ in 0..60 {
                let t = Instant::now();
                matmul(&pool, &m, &x, n, &mut y, &mut scratch).unwrap();
                best = best.min(t.elapsed().as_secs_f64());
            }
            line += &format!(" {n}: {:.1}", best * 1e6 / n as f64);
        }
        println!("{line}");
    }
    // The same Q4_1 shape streamed from memory, as a decode step meets it: 200 matrices
    // (110 MB, past L3) visited in turn, two threads.
    let pool = ThreadPool::new(2);
    let (ty, rows, cols) = (GgmlType::Q4_1, 1536, 576);
    let w = synthetic_matrix(ty, rows, cols);
    let options = MatrixOptions {
        ggml_order: true,
        ..MatrixOptions::default()
    };
    let ms: Vec<Matrix> = (0..200)
        .map(|_| Matrix::with_options(ty, rows, cols, &w, options).unwrap())
        .collect();
    let mut line = format!("{ty} {rows}×{cols} from memory, 2 threads, µs per call:");
    for n in [1usize, 2, 4, 8] {
        let x = normals(7, n * cols);
        let mut y = vec![0.0; n * rows];
        let mut scratch = Scratch::new();
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for m in &ms {
                matmul(&pool, m, &x, n, &mut y, &mut scratch).unwrap();
            }
            best = best.min(t.elapsed().as_secs_f64() / ms.len() as f64);
        }
        line += &format!(" {n}: {:.1}", best * 1e6);
    }
    println!("{line}");
}

fn main() {
    if std::env::var_os("HEARTH_BENCH_SMALL_BATCH").is_some() {
        small_batch();
        return;
    }
    if std::env::var_os("HEARTH_BENCH_DECODE_STREAM").is_some() {
        for model in [test_models::SMOLLM2, test_models::GEMMA3] {
            decode_stream(model);
        }
        return;
    }
    let quick = std::env::var_os("HEARTH_BENCH_QUICK").is_some();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!(
        "cpu: {cpu}; isa: {} (vnni: {})",
        Isa::detected().name(),
        Isa::has_vnni()
    );
    let peaks = [fma_peak(&ThreadPool::new(1)), fma_peak(&ThreadPool::new(2))];
    println!(
        "f32 FMA peak: {:.0} GFLOP/s (1 thread), {:.0} GFLOP/s (2 threads)",
        peaks[0], peaks[1]
    );
    println!(
        "| matrix | threads | size | mat-vec | vs stream read | mat-mat ({} rows) |",
        if quick { 64 } else { 512 }
    );

    for ty in [GgmlType::Q4_0, GgmlType::Q4_K] {
        if !wanted(ty) {
            continue;
        }
        let x = normals(3, 64 * 1536);
        for isa in Isa::all_supported() {
            let t = time(Duration::from_millis(200), || {
                black_box(kernels::matmul::quantize_activations(isa, ty, &x).unwrap());
            });
            println!(
                "activation quantization for {ty} ({}): {:.2} ns/value",
                isa.name(),
                t * 1e9 / x.len() as f64
            );
        }
    }
    for model in [test_models::SMOLLM2, test_models::GEMMA3] {
        layer_latency(model, quick);
    }

    let mut results = Vec::new();
    let (rows, cols, mm_rows) = if quick {
        (2048, 4096, 256)
    } else {
        (16384, 8192, 2048)
    };
    for ty in [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q4_K,
        GgmlType::Q5_0,
        GgmlType::Q6_K,
        GgmlType::Q8_0,
        GgmlType::F16,
        GgmlType::MXFP4,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ2_S,
        GgmlType::IQ3_XXS,
        GgmlType::IQ3_S,
        GgmlType::IQ1_S,
        GgmlType::IQ1_M,
    ] {
        if !wanted(ty) {
            continue;
        }
        let data = synthetic_matrix(ty, rows, cols);
        let case = Case {
            name: format!("{ty} {rows}x{cols}"),
            ty,
            rows,
            cols,
            data: &data,
            mm_rows,
        };
        bench_matrix(&mut results, &case, quick, &peaks);
    }

    for (model, tensors) in [
        (
            test_models::SMOLLM2,
            ["token_embd.weight", "blk.0.ffn_down.weight"],
        ),
        (
            test_models::GEMMA3,
            ["token_embd.weight", "blk.0.ffn_down.weight"],
        ),
    ] {
        let bytes = std::fs::read(test_models::path(model)).unwrap();
        let g = gguf::Gguf::parse(&bytes).unwrap();
        for name in tensors {
            let t = g.tensor(name).unwrap();
            if !wanted(t.ty) {
                continue;
            }
            let (cols, rows) = (t.shape[0] as usize, t.shape[1] as usize);
            let label = format!(
                "{} {} {}",
                &model[..6],
                name.trim_end_matches(".weight"),
                t.ty
            );
            let mm_rows = rows.min(if quick { 256 } else { 2048 });
            let case = Case {
                name: label,
                ty: t.ty,
                rows,
                cols,
                data: g.tensor_data(t),
                mm_rows,
            };
            bench_matrix(&mut results, &case, quick, &peaks);
        }
    }
}
