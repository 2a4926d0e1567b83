//! [`KvStore`]: the memory of every sequence in a context — llama.cpp's unified KV cache.
//!
//! `n_ctx` cells, each holding a position and the set of sequences that use it; per layer, the
//! keys and values of every cell as f16 rows, head-major: all cells' rows of kv head 0, then
//! of head 1, … — so what one attention task reads (one kv head of a sequence's cells, which
//! lie in runs) is contiguous. With the heads interleaved per cell, as llama.cpp lays them
//! out, a decode step of many sequences read its keys and values at 19 GB/s instead of 25–58
//! (the hardware prefetcher does not follow 128 bytes out of every 384); the layout changes no
//! arithmetic. Any sequence can grow into whatever cells the
//! others leave free, and one cell can serve several sequences (a shared prompt prefix, `n > 1`
//! completions): [`KvStore::seq_cp`] adds a sequence to cells without copying data.
//!
//! A token attends to the cells of its (first) sequence whose positions are at most its own.
//! [`KvStore::seq_cells`] lists a sequence's cells in position order; the attention kernel
//! reads them through that list and does its arithmetic in the list's order, so a sequence's
//! results do not depend on where its cells lie or what else the store holds.
//!
//! Allocation keeps each sequence's cells in long runs: a new cell goes right after the
//! sequence's last one when that is free, else at the start of an entirely free block of
//! [`RUN`] cells, else in the first free cell.
//!
//! The store also has a seam for fixed-size per-sequence recurrent state (the conv and SSM /
//! delta-rule state of hybrid models), [`RecurrentState`]; attention-only models have none.

use half::f16;
use kernels::ops::attention::KvCache;

use crate::batch::{MAX_SEQ, SeqId, SeqSet};

/// Cells handed to a sequence that cannot continue its run start on a multiple of this.
pub const RUN: usize = 32;

/// One cell: a position and the sequences that use it (none: the cell is free).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    pub pos: usize,
    pub seqs: SeqSet,
}

/// Not enough free cells for a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NoSpace {
    pub needed: usize,
    pub free: usize,
}

/// What one layer caches: `n_head` kv heads of `head_dim` keys and as many values per cell
/// (both 0 for a layer that reads another layer's cache).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KvShape {
    pub n_head: usize,
    pub head_dim: usize,
}

impl KvShape {
    pub fn new(n_head: usize, head_dim: usize) -> KvShape {
        KvShape { n_head, head_dim }
    }

    /// Elements of one cell's keys (or values), all heads.
    pub fn width(&self) -> usize {
        self.n_head * self.head_dim
    }
}

/// The cells and the per-layer key and value rows of a context.
pub struct KvStore {
    cells: Vec<Cell>,
    used: usize,
    /// The cell each sequence last received (where its run continues).
    last: [Option<u32>; MAX_SEQ],
    /// Per layer: what one cell holds.
    shapes: Vec<KvShape>,
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
    /// Per-cell position change not yet applied to the keys (see [`KvStore::take_shifts`]).
    shift: Vec<i64>,
    has_shift: bool,
    pub recurrent: RecurrentState,
}

impl KvStore {
    pub fn new(n_layer: usize, n_ctx: usize, shape: KvShape) -> KvStore {
        KvStore::with_shapes(n_ctx, &vec![shape; n_layer])
    }

    /// A store whose layers have their own shapes (`shapes[il]`; all 0 for a layer without a
    /// cache of its own).
    pub fn with_shapes(n_ctx: usize, shapes: &[KvShape]) -> KvStore {
        KvStore {
            cells: vec![Cell::default(); n_ctx],
            used: 0,
            last: [None; MAX_SEQ],
            shapes: shapes.to_vec(),
            k: shapes
                .iter()
                .map(|s| vec![f16::ZERO; n_ctx * s.width()])
                .collect(),
            v: shapes
                .iter()
                .map(|s| vec![f16::ZERO; n_ctx * s.width()])
                .collect(),
            shift: vec![0; n_ctx],
            has_shift: false,
            recurrent: RecurrentState::new(0, 0),
        }
    }

    pub fn n_ctx(&self) -> usize {
        self.cells.len()
    }

    /// Cells in use by at least one sequence.
    pub fn used(&self) -> usize {
        self.used
    }

    pub fn cells(&self) -> &[Cell] {
        &self.cells
    }

    /// Bytes held by the keys and values.
    pub fn n_bytes(&self) -> usize {
        self.shapes.iter().map(|s| 2 * s.width()).sum::<usize>() * self.n_ctx() * 2
    }

    /// Frees every cell.
    pub fn clear(&mut self) {
        self.cells.fill(Cell::default());
        self.used = 0;
        self.last = [None; MAX_SEQ];
        self.shift.fill(0);
        self.has_shift = false;
        self.recurrent.clear();
    }

    /// Gives each of `n` new entries a free cell, writing the chosen cells to `out`; entry `i`
    /// gets position `pos(i)` and sequences `seqs(i)`. Nothing changes when there is no room.
    pub(crate) fn allocate(
        &mut self,
        n: usize,
        pos: impl Fn(usize) -> usize,
        seqs: impl Fn(usize) -> SeqSet,
        out: &mut Vec<u32>,
    ) -> Result<(), NoSpace> {
        let free = self.n_ctx() - self.used;
        if n > free {
            return Err(NoSpace { needed: n, free });
        }
        out.clear();
        for i in 0..n {
            let set = seqs(i);
            let cell = self.pick(set.first());
            self.cells[cell] = Cell {
                pos: pos(i),
                seqs: set,
            };
            self.used += 1;
            for s in set.iter() {
                self.last[s] = Some(cell as u32);
            }
            out.push(cell as u32);
        }
        Ok(())
    }

    /// A free cell for a new entry of `seq` (there is one: the caller counted).
    fn pick(&self, seq: Option<SeqId>) -> usize {
        let free = |c: usize| self.cells.get(c).is_some_and(|c| c.seqs.is_empty());
        if let Some(next) = seq.and_then(|s| self.last[s]).map(|c| c as usize + 1)
            && free(next)
        {
            return next;
        }
        let n = self.n_ctx();
        if let Some(run) = (0..n / RUN).find(|r| (r * RUN..(r + 1) * RUN).all(free)) {
            return run * RUN;
        }
        (0..n).find(|&c| free(c)).unwrap_or(0)
    }

    fn free_cell(&mut self, c: usize) {
        self.cells[c].seqs = SeqSet::EMPTY;
        self.shift[c] = 0;
        self.used -= 1;
    }

    /// Removes `seq` from its cells with positions in `p0..p1` (`p1 = None`: to the end);
    /// cells no sequence uses any more become free. llama.cpp's `llama_memory_seq_rm`.
    pub fn seq_rm(&mut self, seq: SeqId, p0: usize, p1: Option<usize>) {
        let p1 = p1.unwrap_or(usize::MAX);
        for c in 0..self.n_ctx() {
            let cell = &mut self.cells[c];
            if cell.seqs.contains(seq) && (p0..p1).contains(&cell.pos) {
                cell.seqs.remove(seq);
                if cell.seqs.is_empty() {
                    self.free_cell(c);
                }
            }
        }
        if p0 == 0 && p1 == usize::MAX {
            self.recurrent.reset(seq);
            self.last[seq.min(MAX_SEQ - 1)] = None;
        }
    }

    /// Adds `dst` to every cell of `src` with a position in `p0..p1`: the cells are shared, no
    /// data is copied. llama.cpp's `llama_memory_seq_cp`.
    pub fn seq_cp(&mut self, src: SeqId, dst: SeqId, p0: usize, p1: Option<usize>) {
        if src == dst {
            return;
        }
        let p1 = p1.unwrap_or(usize::MAX);
        for cell in &mut self.cells {
            if cell.seqs.contains(src) && (p0..p1).contains(&cell.pos) {
                cell.seqs.insert(dst);
            }
        }
        self.recurrent.copy(src, dst);
    }

    /// Frees every cell `seq` does not use and removes the other sequences from those it does.
    /// llama.cpp's `llama_memory_seq_keep`.
    pub fn seq_keep(&mut self, seq: SeqId) {
        for c in 0..self.n_ctx() {
            if self.cells[c].seqs.contains(seq) {
                self.cells[c].seqs = SeqSet::one(seq);
            } else if !self.cells[c].seqs.is_empty() {
                self.free_cell(c);
            }
        }
        for (s, last) in self.last.iter_mut().enumerate() {
            if s != seq {
                *last = None;
            }
        }
    }

    /// Adds `delta` to the positions of `seq`'s cells in `p0..p1`; a cell whose position would
    /// fall below 0 is freed. The keys are re-rotated before the next use
    /// ([`KvStore::take_shifts`]). llama.cpp's `llama_memory_seq_add` (it, too, moves a cell
    /// shared with other sequences for all of them).
    pub fn seq_add(&mut self, seq: SeqId, p0: usize, p1: Option<usize>, delta: isize) {
        if delta == 0 {
            return;
        }
        let p1 = p1.unwrap_or(usize::MAX);
        for c in 0..self.n_ctx() {
            let cell = self.cells[c];
            if !cell.seqs.contains(seq) || !(p0..p1).contains(&cell.pos) {
                continue;
            }
            match cell.pos.checked_add_signed(delta) {
                Some(p) => {
                    self.cells[c].pos = p;
                    self.shift[c] += delta as i64;
                    self.has_shift = true;
                }
                None => self.free_cell(c),
            }
        }
    }

    /// The largest position of `seq`, if it has any cell.
    pub fn seq_pos_max(&self, seq: SeqId) -> Option<usize> {
        self.cells
            .iter()
            .filter(|c| c.seqs.contains(seq))
            .map(|c| c.pos)
            .max()
    }

    /// The smallest position of `seq`, if it has any cell.
    pub fn seq_pos_min(&self, seq: SeqId) -> Option<usize> {
        self.cells
            .iter()
            .filter(|c| c.seqs.contains(seq))
            .map(|c| c.pos)
            .min()
    }

    /// Appends `seq`'s cells to `out`, in position order (then cell order).
    pub fn seq_cells(&self, seq: SeqId, out: &mut Vec<u32>) {
        let start = out.len();
        out.extend((0..self.n_ctx() as u32).filter(|&c| self.cells[c as usize].seqs.contains(seq)));
        let list = &mut out[start..];
        let key = |&c: &u32| (self.cells[c as usize].pos, c);
        if !list.is_sorted_by_key(key) {
            list.sort_unstable_by_key(key);
        }
    }

    /// Cells whose keys still need rotating by a position change, with that change; clears the
    /// record. `out` receives `(cell, delta)` pairs.
    pub(crate) fn take_shifts(&mut self, out: &mut Vec<(u32, i64)>) {
        out.clear();
        if !self.has_shift {
            return;
        }
        for (c, d) in self.shift.iter_mut().enumerate() {
            if *d != 0 {
                out.push((c as u32, *d));
                *d = 0;
            }
        }
        self.has_shift = false;
    }

    /// Writes the keys and values of `cells[i]` from rows `i` of `k` and `v` (all heads of a
    /// token, one after another) into layer `il`.
    pub(crate) fn store(&mut self, il: usize, cells: &[u32], k: &[f32], v: &[f32]) {
        let ops = kernels::ops::Ops::detected();
        let KvShape {
            n_head,
            head_dim: d,
        } = self.shapes[il];
        let n_ctx = self.n_ctx();
        for (i, &c) in cells.iter().enumerate() {
            for h in 0..n_head {
                let (to, from) = ((h * n_ctx + c as usize) * d, (i * n_head + h) * d);
                ops.f32_to_f16(&mut self.k[il][to..to + d], &k[from..from + d]);
                ops.f32_to_f16(&mut self.v[il][to..to + d], &v[from..from + d]);
            }
        }
    }

    /// What one cell of layer `il` holds (all 0: the layer has no cache of its own).
    pub fn shape(&self, il: usize) -> KvShape {
        self.shapes[il]
    }

    /// The keys of `cell` in layer `il`, every head, widened into `row`.
    pub(crate) fn read_keys(&self, il: usize, cell: usize, row: &mut [f32]) {
        let (ops, n_ctx) = (kernels::ops::Ops::detected(), self.n_ctx());
        let d = self.shapes[il].head_dim;
        for (h, r) in row.chunks_exact_mut(d).enumerate() {
            ops.f16_to_f32(r, &self.k[il][(h * n_ctx + cell) * d..][..d]);
        }
    }

    /// Writes the keys of `cell` in layer `il`, every head, from `row` (re-rotated keys).
    pub(crate) fn write_keys(&mut self, il: usize, cell: usize, row: &[f32]) {
        let (ops, n_ctx) = (kernels::ops::Ops::detected(), self.n_ctx());
        let d = self.shapes[il].head_dim;
        for (h, r) in row.chunks_exact(d).enumerate() {
            ops.f32_to_f16(&mut self.k[il][(h * n_ctx + cell) * d..][..d], r);
        }
    }

    /// Layer `il`'s keys and values as the attention kernels read them.
    pub fn cache(&self, il: usize) -> KvCache<'_> {
        let d = self.shapes[il].head_dim;
        KvCache {
            k: &self.k[il],
            v: &self.v[il],
            pos_stride: d,
            head_stride: self.n_ctx() * d,
        }
    }
}

/// Fixed-size recurrent state per sequence — the seam for hybrid models (Qwen3.5's delta-rule
/// layers, LFM2's short convolutions, Mamba): unlike attention's cells, a recurrent layer keeps
/// one state of `state_len` values per sequence whatever its length, updated in place by each
/// token. Since the state cannot be rolled back, a prompt prefix is reused through
/// checkpoints: copies of a sequence's state taken after a given position
/// ([`RecurrentState::checkpoint`]), restored when a new request shares that prefix.
/// Attention-only models have `state_len == 0` and nothing here costs anything.
pub struct RecurrentState {
    state_len: usize,
    /// `n_seq × state_len` values: sequence `s`'s state, all its recurrent layers together.
    states: Vec<f32>,
    /// Per sequence, the position its state has consumed up to (`None`: the initial state).
    pos: Vec<Option<usize>>,
    /// Saved `(sequence, position, state)`, at most `max_checkpoints` per sequence.
    checkpoints: Vec<(SeqId, usize, Vec<f32>)>,
    max_checkpoints: usize,
}

impl RecurrentState {
    pub fn new(n_seq: usize, state_len: usize) -> RecurrentState {
        RecurrentState {
            state_len,
            states: vec![0.0; n_seq * state_len],
            pos: vec![None; n_seq],
            checkpoints: Vec::new(),
            max_checkpoints: 4,
        }
    }

    pub fn state_len(&self) -> usize {
        self.state_len
    }

    /// Sequence `seq`'s state (empty for attention-only models).
    pub fn state_mut(&mut self, seq: SeqId) -> &mut [f32] {
        let n = self.state_len;
        self.states
            .get_mut(seq * n..(seq + 1) * n)
            .unwrap_or(&mut [])
    }

    /// Records that `seq`'s state has consumed positions up to `pos`.
    pub fn advance(&mut self, seq: SeqId, pos: usize) {
        if let Some(p) = self.pos.get_mut(seq) {
            *p = Some(pos);
        }
    }

    /// The position `seq`'s state has consumed up to.
    pub fn pos(&self, seq: SeqId) -> Option<usize> {
        self.pos.get(seq).copied().flatten()
    }

    /// Back to the initial (zero) state.
    pub fn reset(&mut self, seq: SeqId) {
        self.state_mut(seq).fill(0.0);
        if let Some(p) = self.pos.get_mut(seq) {
            *p = None;
        }
    }

    /// `dst`'s state becomes a copy of `src`'s.
    pub fn copy(&mut self, src: SeqId, dst: SeqId) {
        let n = self.state_len;
        if src == dst || n == 0 || src.max(dst) >= self.pos.len() {
            return;
        }
        self.states.copy_within(src * n..(src + 1) * n, dst * n);
        self.pos[dst] = self.pos[src];
    }

    /// Saves `seq`'s current state under its current position (dropping its oldest
    /// checkpoint beyond the limit).
    pub fn checkpoint(&mut self, seq: SeqId) {
        let Some(pos) = self.pos(seq) else { return };
        if self.state_len == 0 {
            return;
        }
        let state = self.state_mut(seq).to_vec();
        let mine = self.checkpoints.iter().filter(|c| c.0 == seq).count();
        if mine >= self.max_checkpoints
            && let Some(i) = self.checkpoints.iter().position(|c| c.0 == seq)
        {
            self.checkpoints.remove(i);
        }
        self.checkpoints.push((seq, pos, state));
    }

    /// Restores into `seq` the newest checkpoint of any sequence at a position `≤ max_pos`
    /// for which `shares_prefix(checkpoint_seq, pos)` holds; returns its position.
    pub fn restore(
        &mut self,
        seq: SeqId,
        max_pos: usize,
        shares_prefix: impl Fn(SeqId, usize) -> bool,
    ) -> Option<usize> {
        let best = self
            .checkpoints
            .iter()
            .filter(|(s, p, _)| *p <= max_pos && shares_prefix(*s, *p))
            .max_by_key(|(_, p, _)| *p)?;
        let (pos, state) = (best.1, best.2.clone());
        self.state_mut(seq).copy_from_slice(&state);
        self.advance(seq, pos);
        Some(pos)
    }

    fn clear(&mut self) {
        self.states.fill(0.0);
        self.pos.fill(None);
        self.checkpoints.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// An operation on the store.
    #[derive(Clone, Debug)]
    enum Step {
        /// `n` new positions of `seq` after its current last one.
        Append {
            seq: usize,
            n: usize,
        },
        Rm {
            seq: usize,
            p0: usize,
            p1: Option<usize>,
        },
        Cp {
            src: usize,
            dst: usize,
            p0: usize,
            p1: Option<usize>,
        },
        Keep {
            seq: usize,
        },
        Add {
            seq: usize,
            p0: usize,
            p1: Option<usize>,
            delta: isize,
        },
        Clear,
    }

    fn step() -> impl Strategy<Value = Step> {
        let seq = 0..4usize;
        let p = 0..40usize;
        let p1 = proptest::option::of(0..48usize);
        prop_oneof![
            4 => (seq.clone(), 1..9usize).prop_map(|(seq, n)| Step::Append { seq, n }),
            2 => (seq.clone(), p.clone(), p1.clone()).prop_map(|(seq, p0, p1)| Step::Rm { seq, p0, p1 }),
            2 => (seq.clone(), seq.clone(), p.clone(), p1.clone())
                .prop_map(|(src, dst, p0, p1)| Step::Cp { src, dst, p0, p1 }),
            1 => seq.clone().prop_map(|seq| Step::Keep { seq }),
            2 => (seq, p, p1, -12..12isize)
                .prop_map(|(seq, p0, p1, delta)| Step::Add { seq, p0, p1, delta }),
            1 => Just(Step::Clear),
        ]
    }

    /// The plain model: per cell id, its position and sequences, with llama.cpp's rules.
    #[derive(Default)]
    struct Plain {
        cells: BTreeMap<u32, (usize, BTreeSet<usize>)>,
    }

    impl Plain {
        fn in_range(p: usize, p0: usize, p1: Option<usize>) -> bool {
            p >= p0 && p1.is_none_or(|e| p < e)
        }

        fn apply(&mut self, s: &Step) {
            match *s {
                Step::Append { .. } | Step::Clear => unreachable!(),
                Step::Rm { seq, p0, p1 } => {
                    for (pos, seqs) in self.cells.values_mut() {
                        if Self::in_range(*pos, p0, p1) {
                            seqs.remove(&seq);
                        }
                    }
                }
                Step::Cp { src, dst, p0, p1 } => {
                    for (pos, seqs) in self.cells.values_mut() {
                        if seqs.contains(&src) && Self::in_range(*pos, p0, p1) {
                            seqs.insert(dst);
                        }
                    }
                }
                Step::Keep { seq } => {
                    for (_, seqs) in self.cells.values_mut() {
                        if seqs.contains(&seq) {
                            *seqs = BTreeSet::from([seq]);
                        } else {
                            seqs.clear();
                        }
                    }
                }
                Step::Add { seq, p0, p1, delta } => {
                    for (pos, seqs) in self.cells.values_mut() {
                        if seqs.contains(&seq) && Self::in_range(*pos, p0, p1) && delta != 0 {
                            match pos.checked_add_signed(delta) {
                                Some(p) => *pos = p,
                                None => seqs.clear(),
                            }
                        }
                    }
                }
            }
            self.cells.retain(|_, (_, seqs)| !seqs.is_empty());
        }

        fn positions(&self, seq: usize) -> Vec<usize> {
            let mut v: Vec<usize> = self
                .cells
                .values()
                .filter(|(_, s)| s.contains(&seq))
                .map(|(p, _)| *p)
                .collect();
            v.sort_unstable();
            v
        }
    }

    proptest! {
        /// remove / copy / keep / shift on the store agree with the plain model of the cell
        /// table; allocation never hands out a used cell, and fails only when full.
        #[test]
        fn sequence_operations_match_a_plain_cell_table(steps in proptest::collection::vec(step(), 1..40)) {
            const N_CTX: usize = 48;
            let mut kv = KvStore::new(1, N_CTX, KvShape::new(1, 2));
            let mut plain = Plain::default();
            let mut cells = Vec::new();
            for s in &steps {
                match *s {
                    Step::Append { seq, n } => {
                        let p0 = plain.positions(seq).last().map_or(0, |p| p + 1);
                        let free = N_CTX - plain.cells.len();
                        let r = kv.allocate(n, |i| p0 + i, |_| SeqSet::one(seq), &mut cells);
                        if n > free {
                            prop_assert_eq!(r, Err(NoSpace { needed: n, free }));
                            continue;
                        }
                        prop_assert!(r.is_ok());
                        for (i, &c) in cells.iter().enumerate() {
                            prop_assert!(!plain.cells.contains_key(&c), "cell {} handed out twice", c);
                            plain.cells.insert(c, (p0 + i, BTreeSet::from([seq])));
                        }
                    }
                    Step::Rm { seq, p0, p1 } => kv.seq_rm(seq, p0, p1),
                    Step::Cp { src, dst, p0, p1 } => kv.seq_cp(src, dst, p0, p1),
                    Step::Keep { seq } => kv.seq_keep(seq),
                    Step::Add { seq, p0, p1, delta } => kv.seq_add(seq, p0, p1, delta),
                    Step::Clear => {
                        kv.clear();
                        plain = Plain::default();
                    }
                }
                if !matches!(s, Step::Append { .. } | Step::Clear) {
                    plain.apply(s);
                }
                prop_assert_eq!(kv.used(), plain.cells.len());
                for (c, cell) in kv.cells().iter().enumerate() {
                    match plain.cells.get(&(c as u32)) {
                        Some((pos, seqs)) => {
                            prop_assert_eq!(cell.pos, *pos);
                            prop_assert_eq!(cell.seqs.iter().collect::<BTreeSet<_>>(), seqs.clone());
                        }
                        None => prop_assert!(cell.seqs.is_empty()),
                    }
                }
                for seq in 0..4 {
                    let want = plain.positions(seq);
                    prop_assert_eq!(kv.seq_pos_max(seq), want.last().copied());
                    prop_assert_eq!(kv.seq_pos_min(seq), want.first().copied());
                    let mut list = Vec::new();
                    kv.seq_cells(seq, &mut list);
                    let got: Vec<usize> = list.iter().map(|&c| kv.cells()[c as usize].pos).collect();
                    prop_assert_eq!(got, want);
                }
            }
        }
    }

    #[test]
    fn recurrent_state_copies_resets_and_restores_checkpoints() {
        let mut r = RecurrentState::new(3, 4);
        r.state_mut(0).copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
        r.advance(0, 9);
        r.checkpoint(0);
        r.state_mut(0).fill(7.0);
        r.advance(0, 15);
        r.copy(0, 1);
        assert_eq!(r.state_mut(1), &[7.0; 4]);
        assert_eq!(r.pos(1), Some(15));
        // A new request in sequence 2 shares sequence 0's first 10 positions.
        assert_eq!(r.restore(2, 12, |s, p| s == 0 && p <= 9), Some(9));
        assert_eq!(r.state_mut(2), &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(r.restore(2, 5, |_, _| true), None);
        r.reset(0);
        assert_eq!(r.pos(0), None);
        assert_eq!(r.state_mut(0), &[0.0; 4]);
    }
}
