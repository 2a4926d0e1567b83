//! The thread pool: every index runs exactly once per operation, repeatedly, at 1..4 threads,
//! from several threads at once, nested, with barriers, with panics, and dropped while idle.

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kernels::pool::ThreadPool;

/// Each index writes its own slot; after the run every slot must hold the run number.
#[test]
fn every_index_runs_once_per_run_many_times() {
    for n in 1..=4 {
        let pool = ThreadPool::new(n);
        assert_eq!(pool.n_threads(), n);
        let slots: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        for round in 1..=20_000usize {
            pool.run(|i, nt| {
                assert_eq!(nt, n);
                // fetch_add, not store: a second call for the same index would be caught.
                slots[i].fetch_add(1, Ordering::Relaxed);
            });
            for s in &slots {
                assert_eq!(s.load(Ordering::Relaxed), round, "n={n}");
            }
        }
    }
}

/// Work split by index sums to the serial answer, with the closure borrowing local data.
#[test]
fn borrowed_data_partitioned_sum() {
    let data: Vec<u64> = (0..100_003).collect();
    let expect: u64 = data.iter().sum();
    for n in 1..=4 {
        let pool = ThreadPool::new(n);
        for _ in 0..200 {
            let partial: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            pool.run(|i, nt| {
                let chunk = data.len().div_ceil(nt);
                let lo = (i * chunk).min(data.len());
                let hi = ((i + 1) * chunk).min(data.len());
                let s: u64 = data[lo..hi].iter().sum();
                partial[i].store(s as usize, Ordering::Relaxed);
            });
            let got: u64 = partial
                .iter()
                .map(|p| p.load(Ordering::Relaxed) as u64)
                .sum();
            assert_eq!(got, expect);
        }
    }
}

/// Workers that have gone to sleep (past the polling window) wake up for the next operation.
#[test]
fn wakes_parked_workers() {
    let pool = ThreadPool::new(3);
    let count = AtomicUsize::new(0);
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(15));
        pool.run(|_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
    }
    assert_eq!(count.load(Ordering::Relaxed), 9);
}

/// `run` from several threads at once is serialized, and every call still sees every index.
#[test]
fn concurrent_runs_from_two_threads() {
    let pool = Arc::new(ThreadPool::new(2));
    let total = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            let total = total.clone();
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    let mine = AtomicUsize::new(0);
                    pool.run(|_, n| {
                        mine.fetch_add(1, Ordering::Relaxed);
                        assert_eq!(n, 2);
                    });
                    assert_eq!(mine.load(Ordering::Relaxed), 2);
                    total.fetch_add(2, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(total.load(Ordering::Relaxed), 3 * 2_000 * 2);
}

/// A `run` inside a `run` of the same pool runs `f(0, 1)` inline instead of deadlocking.
#[test]
fn nested_run_runs_inline() {
    for n in 1..=3 {
        let pool = ThreadPool::new(n);
        let inner_calls = AtomicUsize::new(0);
        pool.run(|_, _| {
            pool.run(|i, nt| {
                assert_eq!((i, nt), (0, 1));
                inner_calls.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(inner_calls.load(Ordering::Relaxed), n);
    }
}

/// Two phases separated by a barrier: phase 2 reads what every index wrote in phase 1.
#[test]
fn run_phased_barrier_orders_phases() {
    for n in 1..=4 {
        let pool = ThreadPool::new(n);
        let a: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        let b: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
        for round in 1..=2_000usize {
            pool.run_phased(|i, nt| {
                a[i].store(round * (i + 1), Ordering::Relaxed);
                pool.barrier();
                let sum: usize = a.iter().map(|x| x.load(Ordering::Relaxed)).sum();
                b[i].store(sum, Ordering::Relaxed);
                pool.barrier();
                // A second round of the same barrier in one operation.
                a[(i + 1) % nt].store(0, Ordering::Relaxed);
            });
            let expect = round * n * (n + 1) / 2;
            for x in &b {
                assert_eq!(x.load(Ordering::Relaxed), expect);
            }
        }
    }
}

#[test]
fn barrier_in_run_with_threads_panics_instead_of_deadlocking() {
    let pool = ThreadPool::new(2);
    let r = panic::catch_unwind(AssertUnwindSafe(|| pool.run(|_, _| pool.barrier())));
    assert!(r.is_err());
    // Still usable.
    let c = AtomicUsize::new(0);
    pool.run(|_, _| {
        c.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(c.load(Ordering::Relaxed), 2);
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string>".into()
    }
}

/// A panic on a worker (or on the caller) reaches the caller with its own message, and the pool
/// keeps working.
#[test]
fn panic_propagates_and_pool_survives() {
    for n in 1..=3 {
        let pool = ThreadPool::new(n);
        for bad in 0..n {
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                pool.run(|i, _| {
                    if i == bad {
                        panic!("boom at {i}");
                    }
                })
            }));
            let p = r.expect_err("panic must propagate");
            assert_eq!(panic_message(&*p), format!("boom at {bad}"));
            let c = AtomicUsize::new(0);
            pool.run(|_, _| {
                c.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(c.load(Ordering::Relaxed), n);
        }
    }
}

/// A panic before a barrier unwinds the other indices waiting at it; the original message wins.
#[test]
fn panic_before_barrier_does_not_deadlock() {
    for n in 2..=4 {
        let pool = ThreadPool::new(n);
        for bad in 0..n {
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                pool.run_phased(|i, _| {
                    if i == bad {
                        panic!("phase one failed on {i}");
                    }
                    pool.barrier();
                })
            }));
            let p = r.expect_err("panic must propagate");
            assert_eq!(panic_message(&*p), format!("phase one failed on {bad}"));
            let c = AtomicUsize::new(0);
            pool.run_phased(|_, _| {
                pool.barrier();
                c.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(c.load(Ordering::Relaxed), n);
        }
    }
}

/// Dropping pools with idle (spinning or parked) workers returns: the workers stop.
#[test]
fn drop_with_idle_workers() {
    for n in 1..=4 {
        let pool = ThreadPool::new(n);
        drop(pool);
        let pool = ThreadPool::new(n);
        pool.run(|_, _| {});
        drop(pool);
        let pool = ThreadPool::new(n);
        pool.run(|_, _| {});
        std::thread::sleep(Duration::from_millis(10));
        drop(pool);
    }
}

#[test]
fn zero_threads_means_one() {
    let pool = ThreadPool::new(0);
    assert_eq!(pool.n_threads(), 1);
    let c = AtomicUsize::new(0);
    pool.run(|i, n| {
        assert_eq!((i, n), (0, 1));
        c.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(c.load(Ordering::Relaxed), 1);
}

#[test]
fn barrier_outside_an_operation_panics() {
    let pool = ThreadPool::new(2);
    assert!(panic::catch_unwind(AssertUnwindSafe(|| pool.barrier())).is_err());
}

/// Callers on three threads alternate stealing `run`s and `run_phased`s with barriers on one
/// pool: every operation still sees each index exactly once and its barrier holds.
#[test]
fn mixed_concurrent_run_and_run_phased() {
    let pool = Arc::new(ThreadPool::new(3));
    let handles: Vec<_> = (0..3)
        .map(|caller| {
            let pool = pool.clone();
            std::thread::spawn(move || {
                for round in 0..1_000usize {
                    let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
                    if (round + caller) % 2 == 0 {
                        pool.run(|i, _| {
                            hits[i].fetch_add(1, Ordering::Relaxed);
                        });
                    } else {
                        let before: Vec<AtomicUsize> =
                            (0..3).map(|_| AtomicUsize::new(0)).collect();
                        pool.run_phased(|i, n| {
                            before[i].store(1, Ordering::Relaxed);
                            pool.barrier();
                            let seen: usize =
                                before.iter().map(|b| b.load(Ordering::Relaxed)).sum();
                            assert_eq!(seen, n, "a barrier let an index through early");
                            hits[i].fetch_add(1, Ordering::Relaxed);
                        });
                    }
                    for h in &hits {
                        assert_eq!(h.load(Ordering::Relaxed), 1);
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}
