//! Throughput of the elementwise and attention kernels at every ISA level this CPU has: µs per
//! call (median of repeated timings) for the shapes of the two reference models (SmolLM2-135M:
//! n_embd 576, 9 heads / 3 kv heads of 64; Gemma 3 270M: n_embd 640, 4 heads / 1 kv head of 256).
//! Plain `Instant` timing.
//!
//! `cargo bench -p kernels --bench ops`

use std::hint::black_box;
use std::ops::Range;
use std::time::Instant;

use half::f16;
use kernels::isa::Isa;
use kernels::ops::Ops;
use kernels::ops::attention::{AttentionParams, AttentionScratch, KvCache};
use kernels::ops::rope::{Rope, RopeMode, RopeParams};
use kernels::pool::ThreadPool;

/// µs per call of `f`: the fastest of many short samples (~0.5 ms each). Other processes share
/// this machine's two cores; a short sample often runs undisturbed, so the minimum estimates the
/// uncontended time where a median would measure the neighbours.
fn time_us(mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    f();
    let once = t.elapsed().as_secs_f64().max(1e-7);
    let reps = ((0.0005 / once) as usize).clamp(1, 100_000);
    let samples = ((0.3 / (once * reps as f64)) as usize).clamp(5, 300);
    (0..samples)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() * 1e6 / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                / (1 << 24) as f32
                - 0.5
        })
        .collect()
}

fn row(name: &str, cells: &[f64]) {
    let cells: Vec<String> = cells.iter().map(|c| format!("{c:>9.2}")).collect();
    println!("| {name:<46} | {} |", cells.join(" | "));
}

fn main() {
    let levels = Isa::all_supported();
    let ops: Vec<Ops> = levels.iter().map(|&i| Ops::new(i)).collect();
    let header: Vec<String> = levels.iter().map(|i| format!("{:>9}", i.name())).collect();
    println!("µs per call (fastest of many ~0.5 ms samples)\n");
    println!(
        "| kernel                                         | {} |",
        header.join(" | ")
    );
    println!(
        "|------------------------------------------------|{}",
        "-----------|".repeat(levels.len())
    );

    for n in [576usize, 640, 4096] {
        let x = data(n, 1);
        let w = data(n, 2);
        let mut out = vec![0.0; n];
        row(
            &format!("rms_norm n={n}"),
            &ops.iter()
                .map(|o| time_us(|| o.rms_norm(&mut out, black_box(&x), &w, 1e-5)))
                .collect::<Vec<_>>(),
        );
    }
    for n in [1536usize, 2048] {
        let g = data(n, 3);
        let u = data(n, 4);
        let mut out = vec![0.0; n];
        row(
            &format!("swiglu_to n={n}"),
            &ops.iter()
                .map(|o| time_us(|| o.swiglu_to(&mut out, black_box(&g), &u)))
                .collect::<Vec<_>>(),
        );
        row(
            &format!("geglu_to n={n}"),
            &ops.iter()
                .map(|o| time_us(|| o.geglu_to(&mut out, black_box(&g), &u)))
                .collect::<Vec<_>>(),
        );
        row(
            &format!("swiglu_ggml_to n={n}"),
            &ops.iter()
                .map(|o| time_us(|| o.swiglu_ggml_to(&mut out, black_box(&g), &u)))
                .collect::<Vec<_>>(),
        );
        row(
            &format!("geglu_ggml_to n={n}"),
            &ops.iter()
                .map(|o| time_us(|| o.geglu_ggml_to(&mut out, black_box(&g), &u)))
                .collect::<Vec<_>>(),
        );
    }
    for n in [512usize, 49_152, 262_144] {
        let x = data(n, 5);
        let mut y = x.clone();
        row(
            &format!("softmax n={n}"),
            &ops.iter()
                .map(|o| {
                    time_us(|| {
                        y.copy_from_slice(&x);
                        o.softmax(black_box(&mut y));
                    })
                })
                .collect::<Vec<_>>(),
        );
    }
    {
        let n = 4096;
        let x = data(n, 6);
        let mut h = vec![f16::ZERO; n];
        let mut back = vec![0.0f32; n];
        row(
            "f32_to_f16 n=4096",
            &ops.iter()
                .map(|o| time_us(|| o.f32_to_f16(&mut h, black_box(&x))))
                .collect::<Vec<_>>(),
        );
        row(
            "f16_to_f32 n=4096",
            &ops.iter()
                .map(|o| time_us(|| o.f16_to_f32(&mut back, black_box(&h))))
                .collect::<Vec<_>>(),
        );
    }
    for (name, mode, n_head, hd) in [
        ("smollm2 q (9×64)", RopeMode::Normal, 9, 64),
        ("gemma3 q (4×256)", RopeMode::Neox, 4, 256),
    ] {
        let rope = Rope::new(RopeParams::new(mode, hd, 10_000.0), None).expect("valid rope");
        let mut x = data(n_head * hd, 7);
        row(
            &format!("rope 1 token, {name}"),
            &ops.iter()
                .map(|o| time_us(|| o.rope(&rope, black_box(&mut x), n_head, hd, &[1234])))
                .collect::<Vec<_>>(),
        );
    }

    let pools = [ThreadPool::new(1), ThreadPool::new(2)];
    for (name, n_head, n_head_kv, hd) in
        [("smollm2", 9usize, 3usize, 64usize), ("gemma3", 4, 1, 256)]
    {
        let p = AttentionParams {
            n_head,
            n_head_kv,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            softcap: 0.0,
        };
        let n_ctx = 4096;
        let kd: Vec<f16> = data(n_ctx * n_head_kv * hd, 8)
            .iter()
            .map(|&v| f16::from_f32(v))
            .collect();
        let vd: Vec<f16> = data(n_ctx * n_head_kv * hd, 9)
            .iter()
            .map(|&v| f16::from_f32(v))
            .collect();
        let cache = KvCache {
            k: &kd,
            v: &vd,
            pos_stride: n_head_kv * hd,
            head_stride: hd,
        };
        for ctx in [512usize, 4096] {
            let q = data(n_head * hd, 10);
            let mut out = vec![0.0; q.len()];
            let rows = vec![Range { start: 0, end: ctx }];
            for pool in &pools {
                row(
                    &format!(
                        "attention decode {name} ctx={ctx} threads={}",
                        pool.n_threads()
                    ),
                    &ops.iter()
                        .map(|o| {
                            time_us(|| {
                                o.attention(pool, &p, black_box(&q), &cache, &rows, &mut out)
                            })
                        })
                        .collect::<Vec<_>>(),
                );
                let mut scratch = AttentionScratch::new(&p, pool.n_threads(), n_ctx);
                row(
                    &format!(
                        "attention_ggml decode {name} ctx={ctx} thr={}",
                        pool.n_threads()
                    ),
                    &ops.iter()
                        .map(|o| {
                            time_us(|| {
                                o.attention_ggml(
                                    pool,
                                    &p,
                                    black_box(&q),
                                    &cache,
                                    &rows,
                                    &mut out,
                                    &mut scratch,
                                )
                            })
                        })
                        .collect::<Vec<_>>(),
                );
            }
        }
        // Batched decode: 8 sequences, one token each, 128 prompt cells each in a block and
        // 128 generated ones in runs of 32 (as `KvStore` hands them out), llama-batched-bench's
        // layout at its last step; the caches cached (one layer visited again and again) or
        // cold (30 layers' caches, ~47 MB, visited in turn, as a decode step reads them), with
        // llama.cpp's layout (a cell's heads side by side) or head-major (hearth's store).
        {
            let (b, np, ng) = (8usize, 128usize, 128usize);
            let q = data(b * n_head * hd, 12);
            let mut out = vec![0.0; q.len()];
            let mut cells = Vec::new();
            let mut bases = Vec::new();
            for t in 0..b {
                bases.push(cells.len());
                cells.extend((t * np..(t + 1) * np).map(|c| c as u32));
                cells.extend((0..ng).map(|i| (b * np + (i / 32 * b + t) * 32 + i % 32) as u32));
            }
            let rows = vec![0..np + ng; b];
            let layers: Vec<(Vec<f16>, Vec<f16>)> = (0..30)
                .map(|l| {
                    let mk = |s| {
                        data(b * (np + ng) * n_head_kv * hd, s)
                            .iter()
                            .map(|&v| f16::from_f32(v))
                            .collect::<Vec<_>>()
                    };
                    (mk(100 + l), mk(200 + l))
                })
                .collect();
            let cell_major = (n_head_kv * hd, hd);
            let head_major = (hd, b * (np + ng) * hd);
            for (label, (pos_stride, head_stride), n_layers) in [
                ("cached cell-major", cell_major, 1),
                ("cold cell-major", cell_major, layers.len()),
                ("cold head-major", head_major, layers.len()),
            ] {
                for pool in &pools {
                    let mut scratch = AttentionScratch::new(&p, pool.n_threads(), n_ctx);
                    let mut il = 0;
                    row(
                        &format!(
                            "attention_ggml 8x256 {label} {name} thr={}",
                            pool.n_threads()
                        ),
                        &ops.iter()
                            .map(|o| {
                                time_us(|| {
                                    il = (il + 1) % n_layers;
                                    let cache = KvCache {
                                        k: &layers[il].0,
                                        v: &layers[il].1,
                                        pos_stride,
                                        head_stride,
                                    };
                                    o.attention_ggml_mapped(
                                        pool,
                                        &p,
                                        black_box(&q),
                                        &cache,
                                        &rows,
                                        &cells,
                                        &bases,
                                        &mut out,
                                        &mut scratch,
                                    )
                                })
                            })
                            .collect::<Vec<_>>(),
                    );
                }
            }
        }
        let n_tokens = 256;
        let q = data(n_tokens * n_head * hd, 11);
        let mut out = vec![0.0; q.len()];
        let rows: Vec<Range<usize>> = (0..n_tokens).map(|t| 0..t + 1).collect();
        for pool in &pools {
            row(
                &format!(
                    "attention prefill {name} 256 tok causal thr={}",
                    pool.n_threads()
                ),
                &ops.iter()
                    .map(|o| {
                        time_us(|| o.attention(pool, &p, black_box(&q), &cache, &rows, &mut out))
                    })
                    .collect::<Vec<_>>(),
            );
            let mut scratch = AttentionScratch::new(&p, pool.n_threads(), n_ctx);
            row(
                &format!(
                    "attention_ggml prefill {name} 256 tok thr={}",
                    pool.n_threads()
                ),
                &ops.iter()
                    .map(|o| {
                        time_us(|| {
                            o.attention_ggml(
                                pool,
                                &p,
                                black_box(&q),
                                &cache,
                                &rows,
                                &mut out,
                                &mut scratch,
                            )
                        })
                    })
                    .collect::<Vec<_>>(),
            );
        }
    }
}
