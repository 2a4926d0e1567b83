//! Dispatch + join latency of `ThreadPool::run` with an empty job: at 1 and 2 threads, with the
//! machine otherwise idle and with a busy thread competing for a core, after an idle gap (parked
//! workers), for `run_phased` with barriers, and for spawning scoped threads per call (the
//! previous design) as a baseline. Plain `Instant` timing; prints a table of percentiles.
//!
//! `cargo bench -p kernels --bench pool`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kernels::pool::ThreadPool;

fn stats(name: &str, mut ns: Vec<f64>) {
    ns.sort_by(f64::total_cmp);
    let q = |p: f64| ns[((ns.len() - 1) as f64 * p) as usize] / 1e3;
    let mean = ns.iter().sum::<f64>() / ns.len() as f64 / 1e3;
    println!(
        "| {name:<44} | {:>7.2} | {:>7.2} | {:>7.2} | {:>8.2} | {:>8.2} |",
        q(0.5),
        mean,
        q(0.9),
        q(0.99),
        q(0.999)
    );
}

fn time_calls(iters: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..iters / 10 {
        f();
    }
    (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as f64
        })
        .collect()
}

/// Spins on one thread until dropped: the "other core is busy" case.
struct Busy(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Busy {
    fn start() -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let h = std::thread::spawn(move || {
            let mut x = 0u64;
            while !s.load(Ordering::Relaxed) {
                x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        Busy(stop, Some(h))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(h) = self.1.take() {
            h.join().expect("the busy thread does not panic");
        }
    }
}

fn main() {
    let iters = 100_000;
    println!("dispatch + join of an empty job, microseconds ({iters} calls each)\n");
    println!(
        "| case                                         |     p50 |    mean |     p90 |      p99 |    p99.9 |"
    );
    println!(
        "|----------------------------------------------|---------|---------|---------|----------|----------|"
    );

    let p1 = ThreadPool::new(1);
    stats(
        "run, 1 thread",
        time_calls(iters, || {
            p1.run(|i, n| {
                black_box((i, n));
            })
        }),
    );
    let p2 = ThreadPool::new(2);
    stats(
        "run, 2 threads",
        time_calls(iters, || {
            p2.run(|i, n| {
                black_box((i, n));
            })
        }),
    );
    // No stealing in run_phased: the worker must take part, so this is the true round trip.
    stats(
        "run_phased (worker must run), 2 threads",
        time_calls(iters, || {
            p2.run_phased(|i, n| {
                black_box((i, n));
            })
        }),
    );
    stats(
        "run_phased + 1 barrier, 2 threads",
        time_calls(iters, || {
            p2.run_phased(|i, n| {
                black_box((i, n));
                p2.barrier();
            })
        }),
    );
    // A barrier alone: many per operation, divided out.
    let per_op = 100;
    let barriers: Vec<f64> = time_calls(iters / per_op, || {
        p2.run_phased(|_, _| {
            for _ in 0..per_op {
                p2.barrier();
            }
        })
    })
    .into_iter()
    .map(|t| t / per_op as f64)
    .collect();
    stats("barrier inside run_phased, 2 threads (each)", barriers);
    // Some real work per index (about 1 µs), so the worker is not simply idle-polling.
    let data = vec![1.0f32; 2048];
    stats(
        "run, 2 threads, ~1 µs of work per index",
        time_calls(iters, || {
            p2.run(|i, n| {
                let chunk = data.len() / n;
                let s: f32 = data[i * chunk..(i + 1) * chunk].iter().map(|x| x * x).sum();
                black_box(s);
            })
        }),
    );
    {
        let on_worker = std::sync::atomic::AtomicUsize::new(0);
        let caller = std::thread::current().id();
        for _ in 0..iters {
            p2.run(|i, n| {
                let chunk = data.len() / n;
                let s: f32 = data[i * chunk..(i + 1) * chunk].iter().map(|x| x * x).sum();
                black_box(s);
                if std::thread::current().id() != caller {
                    on_worker.fetch_add(1, Ordering::Relaxed);
                }
            })
        }
        let share = on_worker.load(Ordering::Relaxed) as f64 / iters as f64 * 100.0;
        println!(
            "(with ~1 µs of work per index, the worker ran index 1 in {share:.1} % of runs; the caller stole the rest)"
        );
    }
    {
        let mut v = Vec::new();
        for _ in 0..200 {
            std::thread::sleep(Duration::from_millis(5));
            let t = Instant::now();
            p2.run(|i, n| {
                black_box((i, n));
            });
            v.push(t.elapsed().as_nanos() as f64);
        }
        stats("run, 2 threads, after 5 ms idle (parked)", v);
    }
    {
        let _busy = Busy::start();
        stats(
            "run, 1 thread, other core busy",
            time_calls(iters, || {
                p1.run(|i, n| {
                    black_box((i, n));
                })
            }),
        );
        stats(
            "run, 2 threads, other core busy",
            time_calls(iters, || {
                p2.run(|i, n| {
                    black_box((i, n));
                })
            }),
        );
        stats(
            "run, 2 threads, ~1 µs work, other core busy",
            time_calls(iters, || {
                p2.run(|i, n| {
                    let chunk = data.len() / n;
                    let s: f32 = data[i * chunk..(i + 1) * chunk].iter().map(|x| x * x).sum();
                    black_box(s);
                })
            }),
        );
        stats(
            "run_phased (worker must run), other busy",
            time_calls(iters / 10, || {
                p2.run_phased(|i, n| {
                    black_box((i, n));
                })
            }),
        );
        stats(
            "run_phased + 1 barrier, 2 thr, other busy",
            time_calls(iters / 10, || {
                p2.run_phased(|i, n| {
                    black_box((i, n));
                    p2.barrier();
                })
            }),
        );
    }
    stats(
        "scoped thread spawn per call, 2 threads",
        time_calls(2_000, || {
            std::thread::scope(|s| {
                s.spawn(|| black_box(1));
                black_box(0);
            })
        }),
    );
}
