//! The thread pool for per-token work: [`ThreadPool::run`] runs one closure as `f(i, n)` for
//! every index `i` in `0..n` and returns when all have finished.
//!
//! A decode step issues hundreds of small parallel operations, so the cost of one dispatch and
//! join is what matters: entering rayon from outside its pool costs 12–28 µs, and a fresh set of
//! scoped threads far more. Here the workers are persistent and spin on an epoch counter, so a
//! dispatch is one atomic increment and a join one atomic counter; measured figures are in
//! `docs/bench/kernels-ops.md`.
//!
//! Waiting (a worker for the next job, the caller for the workers) goes through three tiers:
//! spin with `pause` for about a microsecond, then spin with `yield_now` so a thread sharing our
//! core (another process, a busy server thread) gets to run, then sleep (`park`, or a condition
//! variable for the caller). A pure spin collapses to hundreds of microseconds per operation
//! when the other core is busy; the yield tier is what keeps that case usable.
//!
//! In [`ThreadPool::run`] an index that no worker has claimed by the time the caller has
//! finished its own share is run by the caller itself ("stealing"), so a worker that the
//! scheduler has not woken yet does not hold up the operation. Each index still runs exactly
//! once, but two indices may run one after the other on the same OS thread, so `f` must not wait
//! for other indices. Multi-phase operations whose threads must meet in the middle use
//! [`ThreadPool::run_phased`], which gives every index its own thread and allows
//! [`ThreadPool::barrier`].
//!
//! Rules of use:
//! - `run`/`run_phased` may be called from several threads at once: calls are serialized by a
//!   mutex (they would compete for the same workers anyway).
//! - A call from inside a running operation of the same pool (nested) runs `f(0, 1)` inline on
//!   the calling thread instead of deadlocking; every `f` must accept any `n ≥ 1`.
//! - Pools must not call each other in a cycle (pool A's job calling B's `run` whose job calls A's
//!   `run` from B's worker deadlocks, as with any pair of locks taken in opposite orders).
//! - A panic in `f`, on any thread, is caught, the other indices are allowed to finish (or, at a
//!   barrier, are unwound), and the first panic is resumed on the calling thread once no thread
//!   uses `f` any more. The pool stays usable afterwards.
//! - Dropping the pool wakes, stops and joins its workers.

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::hint::spin_loop;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long a waiting thread spins with `pause` before it starts yielding its core.
const SPIN_TIME: Duration = Duration::from_micros(1);
/// How long a waiting thread keeps polling (spinning, then yielding) before it sleeps. Longer
/// than the gap between two operations of one token, shorter than a human would notice as a
/// busy idle process.
const POLL_TIME: Duration = Duration::from_millis(2);

/// A fixed set of threads that run parallel operations together.
pub struct ThreadPool {
    shared: Arc<Shared>,
    /// Handles of the workers (thread indices 1..n), joined on drop.
    workers: Vec<JoinHandle<()>>,
    /// The same threads, for `unpark`.
    threads: Vec<Thread>,
    /// Serializes `run` calls from different threads.
    run_lock: Mutex<()>,
}

/// Keeps a value alone on its cache line, so that threads polling one counter do not slow down
/// threads writing another.
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A type-erased `&F`: the closure's address and the monomorphized function that calls it.
#[derive(Clone, Copy)]
struct Job {
    data: *const (),
    call: unsafe fn(*const (), usize, usize),
    n: usize,
    /// `run_phased`: every index on its own thread, barriers allowed.
    phased: bool,
}

/// Calls the `F` behind `data`.
///
/// # Safety
/// `data` must point to a live `F` (it is a `&F` cast to a raw pointer by `dispatch`).
unsafe fn call_job<F: Fn(usize, usize) + Sync>(data: *const (), i: usize, n: usize) {
    // SAFETY: `data` came from `&F` in `dispatch`, which does not return (so `F` stays alive and
    // borrowed) until every index has finished.
    let f = unsafe { &*data.cast::<F>() };
    f(i, n);
}

fn noop_job(_: *const (), _: usize, _: usize) {}

struct Shared {
    n_threads: usize,
    /// Incremented once per operation (and once at shutdown); a change tells workers to look.
    epoch: Padded<AtomicU64>,
    /// Indices of the current operation not yet finished (the caller's own index excluded).
    remaining: Padded<AtomicUsize>,
    /// The current operation. Written only by the thread holding `run_lock` while
    /// `remaining == 0` (no worker is between claiming an index and finishing it), read only by a
    /// thread that has just claimed an index of the current epoch.
    job: UnsafeCell<Job>,
    /// Per worker (index `i - 1`): the last epoch whose index `i` has been claimed, by the worker
    /// or by the caller stealing it. Only ever raised (`fetch_max`), so a late worker can never
    /// claim an index twice.
    claimed: Box<[Padded<AtomicU64>]>,
    /// Per worker: set while the worker is (about to be) parked, so the caller knows to unpark it.
    sleeping: Box<[Padded<AtomicBool>]>,
    shutdown: AtomicBool,
    /// Set by the first panic of an operation; barriers unwind when they see it.
    panicked: AtomicBool,
    payload: Mutex<Option<Box<dyn Any + Send>>>,
    /// The caller sleeps here when the workers take long; the last worker to finish notifies.
    caller_sleeping: AtomicBool,
    caller_lock: Mutex<()>,
    caller_wake: Condvar,
    /// Barrier state for `run_phased`: arrivals in the current round, and the round number.
    barrier_count: Padded<AtomicUsize>,
    barrier_round: Padded<AtomicUsize>,
}

// SAFETY: every field but `job` is Sync on its own. `job` is an `UnsafeCell` whose accesses are
// ordered by the protocol documented on the field: the writer publishes it with the `epoch`
// increment (SeqCst, a release) and readers read it only after observing that epoch (acquire) and
// winning a claim; the writer only rewrites it after observing `remaining == 0` (acquire), which
// every reader decrements (release) after its last use. The raw pointer inside points to a value
// that is `Sync` (`F: Sync`), so sharing it between threads is sound.
unsafe impl Sync for Shared {}
// SAFETY: as above; nothing in `Shared` is tied to the thread that created it.
unsafe impl Send for Shared {}

/// What the current thread is doing for which pool, to detect nested calls and check barriers.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Active {
    /// Address of the pool's `Shared`, 0 for none.
    pool: usize,
    /// Threads of the operation being run on this thread (1 when inline).
    n: usize,
    phased: bool,
}

const IDLE: Active = Active {
    pool: 0,
    n: 0,
    phased: false,
};

thread_local! {
    static ACTIVE: Cell<Active> = const { Cell::new(IDLE) };
}

/// Sets [`ACTIVE`] for a scope and restores the previous value, also when unwinding.
struct ActiveGuard(Active);

impl ActiveGuard {
    fn enter(a: Active) -> ActiveGuard {
        ActiveGuard(ACTIVE.with(|c| c.replace(a)))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        ACTIVE.with(|c| c.set(self.0));
    }
}

/// The payload a barrier unwinds with when another thread of the operation has panicked; the
/// caller resumes the original panic, never this one.
struct OtherThreadPanicked;

impl ThreadPool {
    /// A pool of `n_threads` threads, the calling thread included (at least 1); `n_threads - 1`
    /// workers are spawned. If the system refuses to spawn that many, the pool has fewer.
    pub fn new(n_threads: usize) -> ThreadPool {
        let mut n = n_threads.max(1);
        loop {
            match ThreadPool::try_new(n) {
                Ok(pool) => return pool,
                // `try_new(1)` spawns nothing and cannot fail, so this ends.
                Err(_) => n -= 1,
            }
        }
    }

    /// A pool of `n_threads` threads (at least 1), or the error from spawning a worker.
    pub fn try_new(n_threads: usize) -> io::Result<ThreadPool> {
        let n = n_threads.max(1);
        let shared = Arc::new(Shared {
            n_threads: n,
            epoch: Padded(AtomicU64::new(0)),
            remaining: Padded(AtomicUsize::new(0)),
            job: UnsafeCell::new(Job {
                data: std::ptr::null(),
                call: noop_job,
                n,
                phased: false,
            }),
            claimed: (1..n).map(|_| Padded(AtomicU64::new(0))).collect(),
            sleeping: (1..n).map(|_| Padded(AtomicBool::new(false))).collect(),
            shutdown: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            payload: Mutex::new(None),
            caller_sleeping: AtomicBool::new(false),
            caller_lock: Mutex::new(()),
            caller_wake: Condvar::new(),
            barrier_count: Padded(AtomicUsize::new(0)),
            barrier_round: Padded(AtomicUsize::new(0)),
        });
        let mut pool = ThreadPool {
            shared: shared.clone(),
            workers: Vec::with_capacity(n - 1),
            threads: Vec::with_capacity(n - 1),
            run_lock: Mutex::new(()),
        };
        for i in 1..n {
            let shared = shared.clone();
            // On error `pool` is dropped here, which stops the workers spawned so far.
            let handle = thread::Builder::new()
                .name(format!("hearth-pool-{i}"))
                .spawn(move || worker_main(&shared, i))?;
            pool.threads.push(handle.thread().clone());
            pool.workers.push(handle);
        }
        Ok(pool)
    }

    /// Number of threads, the caller included.
    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
    }

    /// Runs `f(i, n)` once for every `i` in `0..n` (`n` = [`n_threads`](Self::n_threads)) and
    /// returns when all calls have returned. The caller runs index 0; an index whose worker has
    /// not picked it up by the time the caller is done is run by the caller too, so `f` must not
    /// wait for other indices (use [`run_phased`](Self::run_phased) for that). Nested in an
    /// operation of this pool it runs `f(0, 1)` inline. A panic in any call is resumed here.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, f: F) {
        self.dispatch(&f, false);
    }

    /// Like [`run`](Self::run), but every index runs on its own thread, so the calls may meet at
    /// [`barrier`](Self::barrier) between phases of one operation (cheaper than returning and
    /// dispatching again). No stealing: a descheduled worker delays the whole operation.
    pub fn run_phased<F: Fn(usize, usize) + Sync>(&self, f: F) {
        self.dispatch(&f, true);
    }

    /// Inside [`run_phased`](Self::run_phased): waits until every index of the operation has
    /// called `barrier` as many times as this one, making their writes before it visible after
    /// it. All indices must call it the same number of times. A no-op where the operation runs on
    /// one thread (a pool of 1, a nested call). If another index panics, this unwinds so the
    /// operation can end.
    ///
    /// # Panics
    /// Outside an operation of this pool, or inside [`run`](Self::run) with more than one
    /// thread (where two indices may share a thread, so waiting could deadlock).
    pub fn barrier(&self) {
        let active = ACTIVE.with(Cell::get);
        assert!(
            active.pool == self.id(),
            "ThreadPool::barrier called outside an operation of this pool"
        );
        if active.n == 1 {
            return;
        }
        assert!(
            active.phased,
            "ThreadPool::barrier needs run_phased, not run (indices may share a thread)"
        );
        let s = &*self.shared;
        let round = s.barrier_round.load(Ordering::Acquire);
        if s.barrier_count.fetch_add(1, Ordering::AcqRel) == active.n - 1 {
            // Last to arrive: no one else touches the count until the round changes.
            s.barrier_count.store(0, Ordering::Relaxed);
            s.barrier_round.fetch_add(1, Ordering::AcqRel);
            return;
        }
        let done = || {
            s.barrier_round.load(Ordering::Acquire) != round || s.panicked.load(Ordering::Acquire)
        };
        // Phases are short, so no sleeping here: keep yielding until everyone has arrived.
        while !poll(done) {}
        if s.barrier_round.load(Ordering::Acquire) == round {
            // Another index panicked and will never arrive; leave the operation.
            panic::resume_unwind(Box::new(OtherThreadPanicked));
        }
    }

    fn id(&self) -> usize {
        Arc::as_ptr(&self.shared) as usize
    }

    fn dispatch<F: Fn(usize, usize) + Sync>(&self, f: &F, phased: bool) {
        let id = self.id();
        let n = self.shared.n_threads;
        if n == 1 || ACTIVE.with(Cell::get).pool == id {
            let _active = ActiveGuard::enter(Active {
                pool: id,
                n: 1,
                phased,
            });
            f(0, 1);
            return;
        }

        let _serial = self.run_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let s = &*self.shared;
        let job = Job {
            data: std::ptr::from_ref(f).cast::<()>(),
            call: call_job::<F>,
            n,
            phased,
        };
        // SAFETY: we hold `run_lock`, and the previous operation (if any) returned only after
        // `remaining` reached 0, so no worker is reading `job` (see `Shared::job`).
        unsafe { *s.job.get() = job };
        s.panicked.store(false, Ordering::Relaxed);
        s.barrier_count.store(0, Ordering::Relaxed);
        s.remaining.store(n - 1, Ordering::Relaxed);
        // Publishes the job (release); SeqCst pairs with the workers' `sleeping` store + epoch
        // load, so either we see a worker asleep or it sees the new epoch.
        let epoch = s.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        for (flag, thread) in s.sleeping.iter().zip(&self.threads) {
            if flag.load(Ordering::SeqCst) {
                thread.unpark();
            }
        }

        let active = Active {
            pool: id,
            n,
            phased,
        };
        {
            let _active = ActiveGuard::enter(active);
            execute(s, job, 0);
            if !phased {
                for (i, claim) in s.claimed.iter().enumerate() {
                    if claim.load(Ordering::Relaxed) < epoch
                        && claim.fetch_max(epoch, Ordering::AcqRel) < epoch
                    {
                        execute(s, job, i + 1);
                        s.remaining.fetch_sub(1, Ordering::Release);
                    }
                }
            }
        }
        self.wait_for_workers();

        // Every index has finished: no thread uses `f` any more, so unwinding past it is fine.
        if s.panicked.load(Ordering::Acquire) {
            let payload = s
                .payload
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            match payload {
                Some(payload) => panic::resume_unwind(payload),
                // Unreachable by construction (only a recorded panic sets the flag before a
                // barrier unwinds), but never return as if the work had been done.
                None => panic!("a thread pool job panicked"),
            }
        }
    }

    fn wait_for_workers(&self) {
        let s = &*self.shared;
        if poll(|| s.remaining.load(Ordering::Acquire) == 0) {
            return;
        }
        s.caller_sleeping.store(true, Ordering::SeqCst);
        let mut guard = s.caller_lock.lock().unwrap_or_else(PoisonError::into_inner);
        while s.remaining.load(Ordering::SeqCst) != 0 {
            guard = s
                .caller_wake
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(guard);
        s.caller_sleeping.store(false, Ordering::Relaxed);
    }
}

/// Runs index `i` of `job`, recording a panic instead of unwinding.
fn execute(s: &Shared, job: Job, i: usize) {
    // SAFETY: `job` is the current operation, read after its epoch was published; `dispatch`
    // keeps its closure alive until `remaining` reaches 0, which needs this call to finish.
    let result = panic::catch_unwind(AssertUnwindSafe(|| unsafe {
        (job.call)(job.data, i, job.n)
    }));
    if let Err(payload) = result {
        let first = !s.panicked.swap(true, Ordering::AcqRel);
        if first && !payload.is::<OtherThreadPanicked>() {
            *s.payload.lock().unwrap_or_else(PoisonError::into_inner) = Some(payload);
        }
    }
}

/// Polls `done` for up to [`POLL_TIME`]: spinning first, then yielding the core. Returns whether
/// it became true.
fn poll(done: impl Fn() -> bool) -> bool {
    let mut start = None;
    let mut tries = 0u32;
    loop {
        if done() {
            return true;
        }
        tries = tries.wrapping_add(1);
        // Reading the clock costs ~20 ns; a `pause` about as much on recent cores.
        if !tries.is_multiple_of(32) {
            spin_loop();
            continue;
        }
        let elapsed = start.get_or_insert_with(Instant::now).elapsed();
        if elapsed >= POLL_TIME {
            return false;
        }
        if elapsed >= SPIN_TIME {
            thread::yield_now();
        }
    }
}

fn worker_main(s: &Shared, i: usize) {
    let id = std::ptr::from_ref(s) as usize;
    let claim = &s.claimed[i - 1];
    let sleeping = &s.sleeping[i - 1];
    let mut seen = 0u64;
    loop {
        let mut epoch = s.epoch.load(Ordering::Acquire);
        if epoch == seen && !poll(|| s.epoch.load(Ordering::Acquire) != seen) {
            // Sleep until the epoch moves. SeqCst store then load, paired with the caller's
            // SeqCst increment then load of `sleeping`: one of us sees the other.
            loop {
                sleeping.store(true, Ordering::SeqCst);
                if s.epoch.load(Ordering::SeqCst) != seen {
                    break;
                }
                thread::park();
            }
            sleeping.store(false, Ordering::Relaxed);
        }
        epoch = epoch.max(s.epoch.load(Ordering::Acquire));
        seen = epoch;
        if s.shutdown.load(Ordering::Acquire) {
            return;
        }
        if claim.fetch_max(epoch, Ordering::AcqRel) >= epoch {
            // The caller stole our index for this epoch (or we are late and it already moved
            // on); the job may be rewritten at any time, so do not look at it.
            continue;
        }
        // SAFETY: we claimed index `i` of epoch `epoch`, which is current: the caller cannot
        // publish another until `remaining` (which counts our index) reaches 0.
        let job = unsafe { *s.job.get() };
        {
            let _active = ActiveGuard::enter(Active {
                pool: id,
                n: job.n,
                phased: job.phased,
            });
            execute(s, job, i);
        }
        if s.remaining.fetch_sub(1, Ordering::SeqCst) == 1
            && s.caller_sleeping.load(Ordering::SeqCst)
        {
            let _guard = s.caller_lock.lock().unwrap_or_else(PoisonError::into_inner);
            s.caller_wake.notify_one();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        // `&mut self`: no operation is running.
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        for t in &self.threads {
            t.unpark();
        }
        for w in self.workers.drain(..) {
            // A worker cannot panic outside `execute`, which catches; nothing to report.
            let _ = w.join();
        }
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.n_threads())
            .finish_non_exhaustive()
    }
}
