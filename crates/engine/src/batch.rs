//! [`Batch`]: the tokens of one forward pass, from any number of sequences — llama.cpp's
//! `llama_batch`. Each entry has its token, its position, the sequences it belongs to and
//! whether its logits are wanted; [`Context::decode_batch`](crate::Context::decode_batch) runs
//! them all through the model at once, each attending only to its own sequence's cells.

/// A sequence in a context: `0..ContextParams::n_seq_max`.
pub type SeqId = usize;

/// Most sequences one context can hold ([`SeqSet`] is a 64-bit set).
pub const MAX_SEQ: usize = 64;

/// A set of sequence ids, as a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SeqSet(u64);

impl SeqSet {
    pub const EMPTY: SeqSet = SeqSet(0);

    /// The set of `seq` alone (empty when `seq` is not below [`MAX_SEQ`]).
    pub fn one(seq: SeqId) -> SeqSet {
        SeqSet(
            1u64.checked_shl(seq as u32)
                .filter(|_| seq < MAX_SEQ)
                .unwrap_or(0),
        )
    }

    pub fn contains(self, seq: SeqId) -> bool {
        seq < MAX_SEQ && self.0 >> seq & 1 == 1
    }

    pub fn insert(&mut self, seq: SeqId) {
        self.0 |= SeqSet::one(seq).0;
    }

    pub fn remove(&mut self, seq: SeqId) {
        self.0 &= !SeqSet::one(seq).0;
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The smallest id in the set.
    pub fn first(self) -> Option<SeqId> {
        (self.0 != 0).then(|| self.0.trailing_zeros() as SeqId)
    }

    /// The ids in increasing order.
    pub fn iter(self) -> impl Iterator<Item = SeqId> {
        (0..MAX_SEQ).filter(move |&s| self.contains(s))
    }
}

/// The entries of one forward pass. Build it with [`Batch::push`], reuse it with
/// [`Batch::clear`] (its buffers are kept, so a decode loop allocates nothing).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub(crate) tokens: Vec<u32>,
    pub(crate) pos: Vec<usize>,
    pub(crate) seqs: Vec<SeqSet>,
    pub(crate) logits: Vec<bool>,
    /// The first sequence id given that a [`SeqSet`] cannot hold (reported by `decode_batch`).
    pub(crate) bad_seq: Option<usize>,
}

impl Batch {
    pub fn with_capacity(n: usize) -> Batch {
        Batch {
            tokens: Vec::with_capacity(n),
            pos: Vec::with_capacity(n),
            seqs: Vec::with_capacity(n),
            logits: Vec::with_capacity(n),
            bad_seq: None,
        }
    }

    /// A batch of consecutive tokens of one sequence starting at position `pos0`; only the
    /// last one's logits are wanted.
    pub fn of_sequence(tokens: &[u32], pos0: usize, seq: SeqId) -> Batch {
        let mut b = Batch::with_capacity(tokens.len());
        for (i, &t) in tokens.iter().enumerate() {
            b.push(t, pos0 + i, &[seq], i + 1 == tokens.len());
        }
        b
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
        self.pos.clear();
        self.seqs.clear();
        self.logits.clear();
        self.bad_seq = None;
    }

    /// Adds `token` at position `pos` of each of `seqs` (one cell serves them all); with
    /// `logits`, its logits are computed ([`Context::batch_logits`](crate::Context::batch_logits)).
    pub fn push(&mut self, token: u32, pos: usize, seqs: &[SeqId], logits: bool) {
        let mut set = SeqSet::EMPTY;
        for &s in seqs {
            if s >= MAX_SEQ {
                self.bad_seq.get_or_insert(s);
            }
            set.insert(s);
        }
        self.tokens.push(token);
        self.pos.push(pos);
        self.seqs.push(set);
        self.logits.push(logits);
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn token(&self, i: usize) -> u32 {
        self.tokens[i]
    }

    pub fn pos(&self, i: usize) -> usize {
        self.pos[i]
    }

    pub fn seqs(&self, i: usize) -> SeqSet {
        self.seqs[i]
    }

    pub fn wants_logits(&self, i: usize) -> bool {
        self.logits[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_set_holds_ids_below_the_limit() {
        let mut s = SeqSet::EMPTY;
        s.insert(0);
        s.insert(63);
        s.insert(64);
        assert!(s.contains(0) && s.contains(63) && !s.contains(64));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 63]);
        assert_eq!(s.first(), Some(0));
        s.remove(0);
        assert_eq!((s.len(), s.first()), (1, Some(63)));
    }

    #[test]
    fn batch_remembers_an_out_of_range_sequence() {
        let mut b = Batch::with_capacity(2);
        b.push(1, 0, &[0], false);
        b.push(2, 1, &[70], true);
        assert_eq!(b.bad_seq, Some(70));
        b.clear();
        assert_eq!((b.len(), b.bad_seq), (0, None));
    }
}
