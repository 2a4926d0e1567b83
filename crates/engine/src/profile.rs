//! Optional time accounting of the forward pass by kind of operation, for finding where a
//! token's time goes (`hearth run --profile`). Off by default: each guard then costs one
//! relaxed atomic load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// Kinds of operation the forward pass spends time on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Matmul,
    Attention,
    Norm,
    Rope,
    Activation,
    Embedding,
    /// Output norm and LM head (its matmul counted here, not under `Matmul`).
    Head,
    Other,
}

impl Op {
    pub const ALL: [Op; 8] = [
        Op::Matmul,
        Op::Attention,
        Op::Norm,
        Op::Rope,
        Op::Activation,
        Op::Embedding,
        Op::Head,
        Op::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Op::Matmul => "matmul",
            Op::Attention => "attention",
            Op::Norm => "norm",
            Op::Rope => "rope",
            Op::Activation => "activation",
            Op::Embedding => "embedding",
            Op::Head => "output head",
            Op::Other => "other",
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
static CALLS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];
thread_local! {
    /// Set while an enclosing scope is timing, so nested scopes do not count twice.
    static NESTED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Turns accounting on or off.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Time and call count per kind since the last reset.
pub fn totals() -> Vec<(Op, std::time::Duration, u64)> {
    Op::ALL
        .iter()
        .map(|&op| {
            let i = op as usize;
            let ns = NANOS[i].load(Ordering::Relaxed);
            (
                op,
                std::time::Duration::from_nanos(ns),
                CALLS[i].load(Ordering::Relaxed),
            )
        })
        .collect()
}

/// Starts timing an operation of kind `op`; the time is added when the guard drops.
pub fn scope(op: Op) -> Scope {
    let on = ENABLED.load(Ordering::Relaxed) && !NESTED.with(|n| n.replace(true));
    Scope {
        op,
        start: on.then(Instant::now),
    }
}

/// See [`scope`].
pub struct Scope {
    op: Op,
    start: Option<Instant>,
}

impl Drop for Scope {
    fn drop(&mut self) {
        if let Some(s) = self.start {
            NESTED.with(|n| n.set(false));
            let i = self.op as usize;
            NANOS[i].fetch_add(s.elapsed().as_nanos() as u64, Ordering::Relaxed);
            CALLS[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}
