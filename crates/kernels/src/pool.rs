//! The thread pool for per-token work: [`ThreadPool::run`] runs one closure on every thread
//! and returns when all have finished.
//!
//! This first version spawns scoped threads per call — correct, but far too slow for the
//! per-token path (tens of microseconds per call); it is replaced by persistent workers that
//! spin briefly, then park.

/// A fixed set of threads that run parallel operations together.
#[derive(Debug)]
pub struct ThreadPool {
    n_threads: usize,
}

impl ThreadPool {
    /// A pool of `n_threads` threads, the calling thread included (at least 1).
    pub fn new(n_threads: usize) -> ThreadPool {
        ThreadPool {
            n_threads: n_threads.max(1),
        }
    }

    /// Number of threads, the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f(thread_index, n_threads)` once on each thread; the caller is thread 0.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        let n = self.n_threads;
        if n == 1 {
            f(0, 1);
            return;
        }
        std::thread::scope(|s| {
            for i in 1..n {
                let f = &f;
                s.spawn(move || f(i, n));
            }
            f(0, n);
        });
    }
}
