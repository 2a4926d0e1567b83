//! The sampler chain: small stateful steps that narrow and reshape the candidate tokens, then a
//! final pick — llama.cpp's `llama_sampler` API, step for step.
//!
//! Each step implements [`Sampler`]: `apply` works on the [`Candidates`] of one position,
//! `accept` sees the token finally chosen (penalties and DRY remember history), `reset` forgets.
//! [`Chain`] is itself a sampler. [`SamplerParams::build_for`] assembles the chain the way
//! llama.cpp's `common_sampler_init` does: logit bias, then the [`SamplerType`] steps in the
//! configured order (by default penalties → DRY → top-n-σ → top-k → typical → top-p → min-p →
//! XTC → temperature), then the random pick ([`Dist`]) — or temperature and Mirostat instead.
//!
//! **Architecture Invariant:** with the same logits, settings and seed, every step produces
//! the candidates llama.cpp's does — same order, same float arithmetic — and picks the same
//! token. The random steps draw from [`Mt19937`] exactly as libstdc++'s `std::mt19937`,
//! `uniform_real_distribution` and `discrete_distribution` do (the fixtures in
//! `tests/fixtures/samplers` come from llama.cpp itself). Only ties between equal logits may
//! order differently: llama.cpp's sorts leave them unspecified, ours put the lower id first.
//!
//! The candidate buffer is allocated once per vocabulary size; the default chain allocates
//! nothing per token.

use std::collections::{HashMap, VecDeque};

use crate::grammar::Grammar;
use crate::tokenizer::Tokenizer;

/// One candidate token: its id, its logit, and its probability once a step computed them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
    pub p: f32,
}

/// The candidate tokens of one position, and the pick once made
/// (llama.cpp's `llama_token_data_array`).
#[derive(Debug, Default)]
pub struct Candidates {
    pub items: Vec<Candidate>,
    /// Whether `items` is sorted by descending logit.
    pub sorted: bool,
    /// Index into `items` of the chosen token, set by the final step.
    pub selected: Option<usize>,
}

/// Descending logit, then ascending id: a total order, so sorts are deterministic.
fn by_logit_desc(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

impl Candidates {
    /// Fills the buffer from a full logit vector (reusing its allocation).
    pub fn fill(&mut self, logits: &[f32]) {
        self.items.clear();
        self.items
            .extend(logits.iter().enumerate().map(|(i, &logit)| Candidate {
                id: i as u32,
                logit,
                p: 0.0,
            }));
        self.sorted = false;
        self.selected = None;
    }

    /// The chosen token id.
    pub fn selected_id(&self) -> Option<u32> {
        self.selected.and_then(|i| self.items.get(i)).map(|c| c.id)
    }

    /// Sorts by descending logit (if not already).
    /// The largest logit (the first when sorted), scanning as llama.cpp does. At least one
    /// candidate.
    fn max_logit(&self) -> f32 {
        let mut max_l = self.items[0].logit;
        if !self.sorted {
            for c in &self.items[1..] {
                if max_l < c.logit {
                    max_l = c.logit;
                }
            }
        }
        max_l
    }

    fn sort_desc(&mut self) {
        if !self.sorted {
            self.items.sort_unstable_by(by_logit_desc);
            self.sorted = true;
        }
    }

    /// Keeps the `k` largest logits, sorted (llama.cpp's `partial_sort_inplace`).
    fn partial_sort_keep(&mut self, k: usize) {
        if k == 0 {
            self.items.clear();
        } else if k < self.items.len() {
            self.items.select_nth_unstable_by(k - 1, by_logit_desc);
            self.items.truncate(k);
            self.items.sort_unstable_by(by_logit_desc);
        } else {
            self.items.sort_unstable_by(by_logit_desc);
        }
        self.sorted = true;
    }

    /// llama.cpp's `top_k_impl`: `k <= 0` keeps everything.
    fn top_k(&mut self, k: i64) {
        if k <= 0 {
            return;
        }
        let k = (k as usize).min(self.items.len());
        if !self.sorted {
            self.partial_sort_keep(k);
        }
        self.items.truncate(k);
    }

    /// llama.cpp's `softmax_impl`: sets `p` (in f32, as it does), sorting first if `do_sort`.
    fn softmax(&mut self, do_sort: bool) {
        if self.items.is_empty() {
            return;
        }
        if do_sort {
            self.sort_desc();
        }
        let max_l = self.max_logit();
        let mut sum = 0.0f32;
        for c in &mut self.items {
            c.p = (c.logit - max_l).exp();
            sum += c.p;
        }
        for c in &mut self.items {
            c.p /= sum;
        }
    }
}

/// llama.cpp's `temp_impl`: divides the logits by `temp`; `temp <= 0` leaves only the first
/// largest logit finite (the others become `-inf`, nothing is removed).
fn apply_temperature(cands: &mut Candidates, temp: f32) {
    if cands.items.is_empty() {
        return;
    }
    if temp <= 0.0 {
        let mut max_i = 0;
        let mut max_l = cands.items[0].logit;
        for i in 1..cands.items.len() {
            if cands.items[i].logit > max_l {
                cands.items[max_i].logit = f32::NEG_INFINITY;
                max_i = i;
                max_l = cands.items[i].logit;
            } else {
                cands.items[i].logit = f32::NEG_INFINITY;
            }
        }
        return;
    }
    for c in &mut cands.items {
        c.logit /= temp;
    }
}

/// A step of the chain.
pub trait Sampler: Send {
    /// Narrows or reshapes the candidates, or picks one.
    fn apply(&mut self, cands: &mut Candidates);
    /// Sees the token finally chosen for this position.
    fn accept(&mut self, _token: u32) {}
    /// Forgets any history and restarts any random generator from its seed.
    fn reset(&mut self) {}
}

/// Steps applied in order; itself a sampler.
#[derive(Default)]
pub struct Chain {
    steps: Vec<Box<dyn Sampler>>,
    cands: Candidates,
    /// Applied around the steps, not as one of them (see [`Chain::sample`]).
    grammar: Option<Grammar>,
}

impl Chain {
    pub fn new() -> Chain {
        Chain::default()
    }

    pub fn push(&mut self, step: impl Sampler + 'static) -> &mut Chain {
        self.steps.push(Box::new(step));
        self
    }

    /// Picks a token from `logits`, then lets every step `accept` it.
    /// The chain should end with a picking step ([`Dist`], [`Greedy`], a Mirostat); if none
    /// picked, the most likely remaining candidate is taken.
    ///
    /// With a grammar, as llama.cpp's `common_sampler_sample`: the pick from the unconstrained
    /// candidates stands if the grammar allows it; otherwise the candidates are refilled, the
    /// grammar's mask applied (disallowed tokens `-inf`) and the chain picks again.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let mut cands = std::mem::take(&mut self.cands);
        cands.fill(logits);
        self.apply(&mut cands);
        let mut id = Chain::picked(&mut cands);
        if let Some(mut g) = self.grammar.take() {
            if !g.allows(id) {
                cands.fill(logits);
                g.apply(&mut cands);
                self.apply(&mut cands);
                id = Chain::picked(&mut cands);
            }
            self.grammar = Some(g);
        }
        self.cands = cands;
        self.accept(id);
        id
    }

    fn picked(cands: &mut Candidates) -> u32 {
        match cands.selected_id() {
            Some(id) => id,
            None => {
                Greedy.apply(cands);
                cands.selected_id().unwrap_or(0)
            }
        }
    }

    /// Constrains every pick to `grammar` (see [`Chain::sample`]).
    pub fn set_grammar(&mut self, grammar: Option<Grammar>) {
        self.grammar = grammar;
    }

    /// Whether the chain's grammar, if any, can take no more text.
    pub fn grammar_done(&self) -> bool {
        self.grammar.as_ref().is_some_and(Grammar::is_done)
    }

    /// The candidates as the last [`Chain::sample`] left them (after every step).
    pub fn last_candidates(&self) -> &Candidates {
        &self.cands
    }
}

impl Sampler for Chain {
    fn apply(&mut self, cands: &mut Candidates) {
        for s in &mut self.steps {
            if cands.selected.is_some() {
                break;
            }
            s.apply(cands);
        }
    }

    fn accept(&mut self, token: u32) {
        if let Some(g) = &mut self.grammar {
            g.accept(token);
        }
        for s in &mut self.steps {
            s.accept(token);
        }
    }

    fn reset(&mut self) {
        if let Some(g) = &mut self.grammar {
            g.reset();
        }
        for s in &mut self.steps {
            s.reset();
        }
    }
}

/// Adds a fixed bias to chosen tokens' logits (`-inf` bans a token).
pub struct LogitBias(pub Vec<(u32, f32)>);

impl Sampler for LogitBias {
    fn apply(&mut self, cands: &mut Candidates) {
        if self.0.is_empty() {
            return;
        }
        // Candidates are still in id order when this runs first; fall back to a search if not.
        for &(id, bias) in &self.0 {
            match cands.items.get_mut(id as usize) {
                Some(c) if c.id == id => c.logit += bias,
                _ => {
                    if let Some(c) = cands.items.iter_mut().find(|c| c.id == id) {
                        c.logit += bias;
                    }
                }
            }
        }
        cands.sorted = false;
    }
}

/// Repetition, frequency and presence penalties over the last `last_n` accepted tokens.
pub struct Penalties {
    last_n: usize,
    repeat: f32,
    frequency: f32,
    presence: f32,
    history: VecDeque<u32>,
    counts: HashMap<u32, u32>,
}

impl Penalties {
    pub fn new(last_n: usize, repeat: f32, frequency: f32, presence: f32) -> Penalties {
        Penalties {
            last_n,
            repeat,
            frequency,
            presence,
            history: VecDeque::with_capacity(last_n.min(4096)),
            counts: HashMap::new(),
        }
    }

    fn is_noop(&self) -> bool {
        self.last_n == 0 || (self.repeat == 1.0 && self.frequency == 0.0 && self.presence == 0.0)
    }
}

impl Sampler for Penalties {
    fn apply(&mut self, cands: &mut Candidates) {
        if self.is_noop() {
            return;
        }
        if !self.counts.is_empty() {
            for c in &mut cands.items {
                let Some(&count) = self.counts.get(&c.id) else {
                    continue;
                };
                // As llama.cpp: divide positive logits and multiply negative ones by the penalty.
                if c.logit <= 0.0 {
                    c.logit *= self.repeat;
                } else {
                    c.logit /= self.repeat;
                }
                c.logit -= count as f32 * self.frequency + self.presence;
            }
        }
        cands.sorted = false;
    }

    fn accept(&mut self, token: u32) {
        if self.last_n == 0 {
            return;
        }
        if self.history.len() == self.last_n
            && let Some(old) = self.history.pop_front()
            && let Some(n) = self.counts.get_mut(&old)
        {
            *n -= 1;
            if *n == 0 {
                self.counts.remove(&old);
            }
        }
        self.history.push_back(token);
        *self.counts.entry(token).or_insert(0) += 1;
    }

    fn reset(&mut self) {
        self.history.clear();
        self.counts.clear();
    }
}

/// DRY ("don't repeat yourself", Koboldcpp's, as llama.cpp ports it): a token that would
/// extend a sequence already repeated in the last `penalty_last_n` tokens loses
/// `multiplier * base^(length - allowed_length)` from its logit, once the repeat is at least
/// `allowed_length` long. Sequence breakers (newline, `:`…) cut the look-back short.
pub struct Dry {
    multiplier: f32,
    base: f32,
    allowed_length: usize,
    penalty_last_n: usize,
    /// Head token → the tails that complete a breaker after it (empty: the head alone).
    breakers: HashMap<u32, Vec<Vec<u32>>>,
    last_tokens: VecDeque<u32>,
    repeat_count: Vec<usize>,
    max_token_repeat: HashMap<u32, usize>,
}

/// Breakers longer than this many bytes are cut (llama.cpp's `MAX_CHAR_LEN`).
const DRY_MAX_BREAKER_BYTES: usize = 40;
/// Breaker tails longer than this many tokens are cut (llama.cpp's `MAX_SEQ_LEN`).
const DRY_MAX_TAIL_TOKENS: usize = 20;

impl Dry {
    /// DRY with breakers already as token sequences (head first), as llama.cpp's
    /// `llama_sampler_init_dry_testing`.
    pub fn with_token_breakers(
        multiplier: f32,
        base: f32,
        allowed_length: usize,
        penalty_last_n: usize,
        breakers: &[Vec<u32>],
    ) -> Dry {
        let mut map: HashMap<u32, Vec<Vec<u32>>> = HashMap::new();
        for b in breakers {
            if let Some((&head, tail)) = b.split_first() {
                map.entry(head).or_default().push(tail.to_vec());
            }
        }
        Dry {
            multiplier,
            base,
            allowed_length,
            penalty_last_n,
            breakers: map,
            last_tokens: VecDeque::with_capacity(penalty_last_n.min(1 << 16)),
            repeat_count: Vec::new(),
            max_token_repeat: HashMap::new(),
        }
    }

    /// DRY with breaker strings, turned into token sequences through `vocab` as llama.cpp's
    /// `llama_sampler_init_dry` does: every token whose text contains a breaker breaks on its
    /// own; a token whose text ends with the start of a breaker breaks when followed by the
    /// tokenization of the breaker's rest.
    pub fn new(
        vocab: &Tokenizer,
        multiplier: f32,
        base: f32,
        allowed_length: usize,
        penalty_last_n: usize,
        breakers: &[String],
    ) -> Dry {
        let mut dry =
            Dry::with_token_breakers(multiplier, base, allowed_length, penalty_last_n, &[]);
        if !dry.enabled() || breakers.iter().all(|b| b.is_empty()) {
            return dry;
        }
        let texts: Vec<Vec<u8>> = (0..vocab.n_vocab() as u32)
            .map(|id| token_text(vocab, id))
            .collect();
        for b in breakers {
            let mut b = b.as_bytes();
            if b.is_empty() {
                continue;
            }
            if b.len() > DRY_MAX_BREAKER_BYTES {
                b = &b[..DRY_MAX_BREAKER_BYTES];
            }
            dry.add_overlapping_sequences(vocab, &texts, b);
        }
        dry
    }

    fn enabled(&self) -> bool {
        self.multiplier != 0.0 && self.base >= 1.0 && self.penalty_last_n != 0
    }

    /// llama.cpp's `get_overlapping_token_sequences`.
    fn add_overlapping_sequences(&mut self, vocab: &Tokenizer, texts: &[Vec<u8>], s: &[u8]) {
        for (id, word) in texts.iter().enumerate() {
            let id = id as u32;
            if find(word, s).is_some() {
                self.breakers.entry(id).or_default().push(Vec::new());
                continue;
            }
            for pos in word
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == s[0])
                .map(|(i, _)| i)
            {
                let mut i = 1;
                let mut matched = true;
                while i < s.len() && i + pos < word.len() {
                    if word[pos + i] != s[i] {
                        matched = false;
                        break;
                    }
                    i += 1;
                }
                if !matched {
                    continue;
                }
                let rest = String::from_utf8_lossy(&s[i..]);
                let mut tail = vocab.encode(&rest, false, false);
                tail.truncate(DRY_MAX_TAIL_TOKENS);
                let tails = self.breakers.entry(id).or_default();
                if !tails.contains(&tail) {
                    tails.push(tail);
                }
            }
        }
    }

    /// The i-th last accepted token (0: the latest).
    fn rat(&self, i: usize) -> u32 {
        self.last_tokens[self.last_tokens.len() - 1 - i]
    }
}

/// The bytes of one token as llama.cpp's `detokenize({id}, special = true)`: raw bytes, with
/// the leading space a SentencePiece vocabulary adds removed.
fn token_text(vocab: &Tokenizer, id: u32) -> Vec<u8> {
    let Ok(piece) = vocab.token_to_piece(id, true) else {
        return Vec::new();
    };
    let decoded = vocab.decode(&[id], true).unwrap_or_default();
    if std::str::from_utf8(&piece).is_ok() {
        return decoded.into_bytes();
    }
    // Part of a UTF-8 character: keep the raw bytes, stripped as `decode` stripped them.
    if piece.first() == Some(&b' ') && String::from_utf8_lossy(&piece[1..]) == decoded {
        piece[1..].to_vec()
    } else {
        piece.into_owned()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Sampler for Dry {
    fn apply(&mut self, cands: &mut Candidates) {
        if !self.enabled() {
            return;
        }
        let last_n_repeat = self.last_tokens.len().min(self.penalty_last_n);
        if last_n_repeat <= self.allowed_length {
            return;
        }
        self.repeat_count.clear();
        self.repeat_count.resize(last_n_repeat, 0);
        self.max_token_repeat.clear();

        // Step 1: the latest breaker limits how far back a repeat may reach.
        let mut rep_limit = last_n_repeat;
        for i in 0..last_n_repeat {
            let Some(tails) = self.breakers.get(&self.rat(i)) else {
                continue;
            };
            let mut longest: Option<usize> = None;
            for tail in tails {
                let len = tail.len();
                if longest.is_none_or(|l| len > l) && len <= i {
                    let matched = (0..len).all(|o| tail[o] == self.rat(i - o - 1));
                    if matched {
                        longest = Some(len);
                    }
                }
            }
            if let Some(l) = longest {
                rep_limit = i - l;
                break;
            }
        }
        if rep_limit < self.allowed_length {
            return;
        }

        // Step 2: the Z-algorithm, backwards: how long a suffix of the history also ends at
        // each earlier position.
        let last = last_n_repeat - 1;
        let (mut lt, mut rt) = (0usize, 0usize);
        for k in 1..last_n_repeat {
            if k > rt {
                let mut n = 0;
                while n + k < last_n_repeat && self.rat(n) == self.rat(n + k) {
                    n += 1;
                }
                self.repeat_count[last - k] = n.min(rep_limit);
                if n > 0 {
                    lt = k;
                    rt = k + n - 1;
                }
            } else {
                let p = k - lt;
                let right_part_len = rt - k + 1;
                if self.repeat_count[last - p] < right_part_len {
                    self.repeat_count[last - k] = self.repeat_count[last - p].min(rep_limit);
                } else {
                    let mut i = rt + 1;
                    while i < last_n_repeat && self.rat(i) == self.rat(i - k) {
                        i += 1;
                    }
                    self.repeat_count[last - k] = (i - k).min(rep_limit);
                    lt = k;
                    rt = i - 1;
                }
            }
        }

        // Step 3: the token after each repeat would extend it; keep its longest repeat.
        for i in 0..last_n_repeat - 1 {
            let len = self.repeat_count[i];
            if len >= self.allowed_length {
                let token = self.rat(last_n_repeat - 2 - i);
                let e = self.max_token_repeat.entry(token).or_insert(len);
                *e = (*e).max(len);
            }
        }

        // Step 4: penalize, except tokens that are single-token breakers themselves.
        // llama.cpp's 88.7228391f, the same f32.
        const FLOAT_MAX_LOG: f32 = 88.722_84;
        let max_exponent = if self.base > 1.000_001 {
            (FLOAT_MAX_LOG / self.base.ln()) as i64
        } else {
            0
        };
        for c in &mut cands.items {
            let Some(&len) = self.max_token_repeat.get(&c.id) else {
                continue;
            };
            let single_breaker = self
                .breakers
                .get(&c.id)
                .is_some_and(|tails| tails.iter().any(|t| t.is_empty()));
            if single_breaker {
                continue;
            }
            let mut exp = len as i64 - self.allowed_length as i64;
            if max_exponent > 0 && exp > max_exponent {
                exp = max_exponent;
            }
            // `std::pow(float, int)` computes in double.
            let penalty =
                (f64::from(self.multiplier) * f64::from(self.base).powf(exp as f64)) as f32;
            c.logit -= penalty;
        }
        cands.sorted = false;
    }

    fn accept(&mut self, token: u32) {
        if !self.enabled() {
            return;
        }
        if self.last_tokens.len() == self.penalty_last_n {
            self.last_tokens.pop_front();
        }
        self.last_tokens.push_back(token);
    }

    fn reset(&mut self) {
        self.last_tokens.clear();
        self.repeat_count.clear();
        self.max_token_repeat.clear();
    }
}

/// Top-nσ: masks (`-inf`) tokens more than `n` standard deviations of the logits below the
/// largest logit; `n <= 0` is off.
pub struct TopNSigma(pub f32);

impl Sampler for TopNSigma {
    fn apply(&mut self, cands: &mut Candidates) {
        if self.0 <= 0.0 || cands.items.len() <= 1 {
            return;
        }
        let mut max = cands.items[0].logit;
        let mut sum = 0.0f32;
        let mut valid = 0usize;
        for c in &cands.items {
            if c.logit != f32::NEG_INFINITY {
                if max < c.logit {
                    max = c.logit;
                }
                sum += c.logit;
                valid += 1;
            }
        }
        let mean = if valid > 0 { sum / valid as f32 } else { 0.0 };
        let mut acc = 0.0f32;
        for c in &cands.items {
            if c.logit != f32::NEG_INFINITY {
                // `acc += pow(x - mean, 2)` adds a double to a float.
                let d = f64::from(c.logit - mean);
                acc = (f64::from(acc) + d * d) as f32;
            }
        }
        let std = if valid > 0 {
            (acc / valid as f32).sqrt()
        } else {
            0.0
        };
        let threshold = max - self.0 * std;
        for c in &mut cands.items {
            if c.logit < threshold {
                c.logit = f32::NEG_INFINITY;
            }
        }
    }
}

/// Keeps the `k` most likely tokens (`k == 0` keeps all).
pub struct TopK(pub usize);

impl Sampler for TopK {
    fn apply(&mut self, cands: &mut Candidates) {
        cands.top_k(self.0.min(i64::MAX as usize) as i64);
    }
}

/// Locally typical sampling (Meister et al.), `p >= 1` is off.
pub struct TypicalP {
    pub p: f32,
    pub min_keep: usize,
    /// (distance from the entropy, candidate index), reused between calls.
    order: Vec<(f32, usize)>,
    kept: Vec<Candidate>,
}

impl TypicalP {
    pub fn new(p: f32, min_keep: usize) -> TypicalP {
        TypicalP {
            p,
            min_keep,
            order: Vec::new(),
            kept: Vec::new(),
        }
    }
}

impl Sampler for TypicalP {
    fn apply(&mut self, cands: &mut Candidates) {
        if self.p >= 1.0 || cands.items.is_empty() {
            return;
        }
        cands.softmax(true);
        let mut entropy = 0.0f32;
        for c in &cands.items {
            entropy += -c.p * c.p.ln();
        }
        self.order.clear();
        self.order.extend(
            cands
                .items
                .iter()
                .enumerate()
                .map(|(i, c)| ((-c.p.ln() - entropy).abs(), i)),
        );
        self.order
            .sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut cum = 0.0f32;
        let mut keep = self.order.len();
        for (n, &(_, i)) in self.order.iter().enumerate() {
            cum += cands.items[i].p;
            if cum > self.p && (self.min_keep == 0 || n + 1 >= self.min_keep) {
                keep = n + 1;
                break;
            }
        }
        self.kept.clear();
        self.kept
            .extend(self.order[..keep].iter().map(|&(_, i)| cands.items[i]));
        std::mem::swap(&mut cands.items, &mut self.kept);
        cands.sorted = false;
    }
}

/// Nucleus sampling: keeps the smallest set of most likely tokens whose mass reaches `p`.
pub struct TopP {
    pub p: f32,
    pub min_keep: usize,
}

impl Sampler for TopP {
    fn apply(&mut self, cands: &mut Candidates) {
        if self.p >= 1.0 || cands.items.is_empty() {
            return;
        }
        // Probabilities in the current order (the sum's rounding depends on it), then sorted.
        cands.softmax(false);
        cands.sort_desc();
        let mut cum = 0.0f32;
        let mut keep = cands.items.len();
        for (i, c) in cands.items.iter().enumerate() {
            cum += c.p;
            if cum >= self.p && i + 1 >= self.min_keep {
                keep = i + 1;
                break;
            }
        }
        cands.items.truncate(keep);
    }
}

/// Keeps tokens whose probability is at least `p` times the most likely one's.
pub struct MinP {
    pub p: f32,
    pub min_keep: usize,
}

impl Sampler for MinP {
    fn apply(&mut self, cands: &mut Candidates) {
        if self.p <= 0.0 || cands.items.is_empty() {
            return;
        }
        // On logits: p_i / p_max >= p  <=>  logit_i >= logit_max + ln(p).
        if !cands.sorted {
            let mut max = -f32::MAX;
            for c in &cands.items {
                if max < c.logit {
                    max = c.logit;
                }
            }
            let min_logit = max + self.p.ln();
            let n = cands.items.iter().filter(|c| c.logit >= min_logit).count();
            if n > 0 && n >= self.min_keep {
                // In place, keeping the order.
                cands.items.retain(|c| c.logit >= min_logit);
                return;
            }
            cands.sort_desc();
        }
        let min_logit = cands.items[0].logit + self.p.ln();
        let mut i = 1;
        while i < cands.items.len() {
            if cands.items[i].logit < min_logit && i >= self.min_keep {
                break;
            }
            i += 1;
        }
        cands.items.truncate(i);
    }
}

/// XTC ("exclude top choices"): with probability `probability`, drops every token at least
/// `threshold` likely except the least likely of them. Off when `probability <= 0` or
/// `threshold > 0.5`.
pub struct Xtc {
    probability: f32,
    threshold: f32,
    min_keep: usize,
    seed: u32,
    rng: Mt19937,
}

impl Xtc {
    pub fn new(probability: f32, threshold: f32, min_keep: usize, seed: u32) -> Xtc {
        Xtc {
            probability,
            threshold,
            min_keep,
            seed,
            rng: Mt19937::new(seed),
        }
    }
}

impl Sampler for Xtc {
    fn apply(&mut self, cands: &mut Candidates) {
        if self.probability <= 0.0 || self.threshold > 0.5 || cands.items.len() < 2 {
            return;
        }
        if self.rng.uniform_f32() > self.probability {
            return;
        }
        cands.softmax(true);
        let mut pos_last = 0;
        for (i, c) in cands.items.iter().enumerate() {
            if c.p >= self.threshold {
                pos_last = i;
            } else {
                break;
            }
        }
        if cands.items.len() - pos_last >= self.min_keep && pos_last > 0 {
            cands.items.drain(..pos_last);
        }
    }

    fn reset(&mut self) {
        self.rng = Mt19937::new(self.seed);
    }
}

/// Divides logits by the temperature; `t <= 0` leaves only the most likely token finite.
pub struct Temperature(pub f32);

impl Sampler for Temperature {
    fn apply(&mut self, cands: &mut Candidates) {
        apply_temperature(cands, self.0);
    }
}

/// Temperature with llama.cpp's dynamic range (`temp_ext`): when `delta > 0` the temperature
/// moves within `[temp - delta, temp + delta]` with the normalized entropy of the candidates,
/// raised to `exponent`.
pub struct DynamicTemperature {
    pub temp: f32,
    pub delta: f32,
    pub exponent: f32,
}

impl Sampler for DynamicTemperature {
    fn apply(&mut self, cands: &mut Candidates) {
        if self.delta <= 0.0 {
            apply_temperature(cands, self.temp);
            return;
        }
        let min_temp = (self.temp - self.delta).max(0.0);
        let max_temp = self.temp + self.delta;
        let n = cands.items.len();
        if n <= 1 {
            return;
        }
        let max_entropy = -(1.0f32 / n as f32).ln();
        cands.softmax(true);
        let mut entropy = 0.0f32;
        for c in &cands.items {
            if c.p > 0.0 {
                entropy -= c.p * c.p.ln();
            }
        }
        let normalized = entropy / max_entropy;
        let dyn_temp = min_temp + (max_temp - min_temp) * normalized.powf(self.exponent);
        apply_temperature(cands, dyn_temp);
        // Probabilities again, in double as llama.cpp computes them here.
        let max_l = f64::from(cands.items[0].logit);
        let mut sum = 0.0f64;
        for c in &mut cands.items {
            let p = (f64::from(c.logit) - max_l).exp();
            c.p = p as f32;
            sum += p;
        }
        for c in &mut cands.items {
            c.p = (f64::from(c.p) / sum) as f32;
        }
    }
}

/// Picks the most likely candidate (the lowest id among equal logits, as argmax does).
pub struct Greedy;

impl Sampler for Greedy {
    fn apply(&mut self, cands: &mut Candidates) {
        let mut best: Option<(usize, f32, u32)> = None;
        for (i, c) in cands.items.iter().enumerate() {
            let better = match best {
                None => true,
                Some((_, l, id)) => c.logit > l || (c.logit == l && c.id < id),
            };
            if better {
                best = Some((i, c.logit, c.id));
            }
        }
        cands.selected = best.map(|b| b.0);
    }
}

/// Picks at random by probability (softmax of the logits, in the candidates' current order),
/// from a seeded [`Mt19937`] — llama.cpp's `dist`.
pub struct Dist {
    rng: Mt19937,
    seed: u32,
}

impl Dist {
    pub fn new(seed: u32) -> Dist {
        Dist {
            rng: Mt19937::new(seed),
            seed,
        }
    }
}

impl Sampler for Dist {
    fn apply(&mut self, cands: &mut Candidates) {
        if cands.items.is_empty() {
            return;
        }
        if cands.items.len() == 1 {
            // One draw anyway, so the generator advances as llama.cpp's does.
            self.rng.uniform_f64();
            cands.items[0].p = 1.0;
            cands.selected = Some(0);
            return;
        }
        let max_l = cands.max_logit();
        let mut sum = 0.0f64;
        for c in &mut cands.items {
            c.p = (c.logit - max_l).exp();
            sum += f64::from(c.p);
        }
        let target = sum * self.rng.uniform_f64();
        let mut run = 0.0f64;
        let mut pick = None;
        for (i, c) in cands.items.iter_mut().enumerate() {
            if pick.is_none() {
                run += f64::from(c.p);
                if run >= target {
                    pick = Some(i);
                }
            }
            c.p = (f64::from(c.p) / sum) as f32;
        }
        cands.selected = Some(pick.unwrap_or(cands.items.len() - 1));
    }

    fn reset(&mut self) {
        self.rng = Mt19937::new(self.seed);
    }
}

/// Picks by probability as libstdc++'s `std::discrete_distribution` over the candidates'
/// `p` (llama.cpp's `llama_sample_dist`, used by Mirostat): fewer than two candidates pick
/// the first without a draw.
fn discrete_pick(cands: &Candidates, rng: &mut Mt19937, cum: &mut Vec<f64>) -> usize {
    if cands.items.len() < 2 {
        return 0;
    }
    let sum: f64 = cands.items.iter().fold(0.0, |s, c| s + f64::from(c.p));
    cum.clear();
    let mut run = 0.0f64;
    for c in &cands.items {
        run += f64::from(c.p) / sum;
        cum.push(run);
    }
    if let Some(last) = cum.last_mut() {
        *last = 1.0;
    }
    let u = rng.uniform_f64();
    cum.partition_point(|&c| c < u)
}

/// Mirostat 1.0 (Basu et al.): estimates the Zipf exponent from the `m` most likely tokens,
/// keeps the top k that targets surprise `tau`, picks, and adapts `mu` with rate `eta`.
pub struct Mirostat {
    /// Vocabulary size; `None` takes the number of candidates at the first step.
    n_vocab: Option<usize>,
    seed: u32,
    tau: f32,
    eta: f32,
    m: usize,
    mu: f32,
    rng: Mt19937,
    cum: Vec<f64>,
}

impl Mirostat {
    pub fn new(n_vocab: Option<usize>, seed: u32, tau: f32, eta: f32, m: usize) -> Mirostat {
        Mirostat {
            n_vocab,
            seed,
            tau,
            eta,
            m,
            mu: 2.0 * tau,
            rng: Mt19937::new(seed),
            cum: Vec::new(),
        }
    }
}

/// C's `int(x)` on x86: out of range or NaN gives `INT_MIN`.
fn cvt_i32(x: f32) -> i32 {
    if !(-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        i32::MIN
    } else {
        x as i32
    }
}

impl Sampler for Mirostat {
    fn apply(&mut self, cands: &mut Candidates) {
        if cands.items.is_empty() {
            return;
        }
        let n_vocab = *self.n_vocab.get_or_insert(cands.items.len());
        cands.softmax(true);
        let mut sum_ti_bi = 0.0f32;
        let mut sum_ti_sq = 0.0f32;
        let n = self.m.saturating_sub(1).min(cands.items.len() - 1);
        for i in 0..n {
            let t_i = ((i + 2) as f32 / (i + 1) as f32).ln();
            let b_i = (cands.items[i].p / cands.items[i + 1].p).ln();
            sum_ti_bi += t_i * b_i;
            sum_ti_sq += t_i * t_i;
        }
        let s_hat = sum_ti_bi / sum_ti_sq;
        let epsilon_hat = s_hat - 1.0;
        let k = ((epsilon_hat * 2f32.powf(self.mu)) / (1.0 - (n_vocab as f32).powf(-epsilon_hat)))
            .powf(1.0 / s_hat);
        cands.top_k(i64::from(cvt_i32(k).max(1)));
        cands.softmax(true);
        let idx = discrete_pick(cands, &mut self.rng, &mut self.cum);
        cands.selected = Some(idx);
        let observed = -cands.items[idx].p.log2();
        self.mu -= self.eta * (observed - self.tau);
    }

    fn reset(&mut self) {
        self.mu = 2.0 * self.tau;
        self.rng = Mt19937::new(self.seed);
    }
}

/// Mirostat 2.0: drops tokens more surprising than `mu`, picks, and adapts `mu` toward the
/// target surprise `tau` with rate `eta`.
pub struct MirostatV2 {
    seed: u32,
    tau: f32,
    eta: f32,
    mu: f32,
    rng: Mt19937,
    cum: Vec<f64>,
}

impl MirostatV2 {
    pub fn new(seed: u32, tau: f32, eta: f32) -> MirostatV2 {
        MirostatV2 {
            seed,
            tau,
            eta,
            mu: 2.0 * tau,
            rng: Mt19937::new(seed),
            cum: Vec::new(),
        }
    }
}

impl Sampler for MirostatV2 {
    fn apply(&mut self, cands: &mut Candidates) {
        if cands.items.is_empty() {
            return;
        }
        cands.softmax(true);
        let keep = cands
            .items
            .iter()
            .position(|c| -c.p.log2() > self.mu)
            .unwrap_or(cands.items.len())
            .max(1);
        cands.items.truncate(keep);
        cands.softmax(true);
        let idx = discrete_pick(cands, &mut self.rng, &mut self.cum);
        cands.selected = Some(idx);
        let observed = -cands.items[idx].p.log2();
        self.mu -= self.eta * (observed - self.tau);
    }

    fn reset(&mut self) {
        self.mu = 2.0 * self.tau;
        self.rng = Mt19937::new(self.seed);
    }
}

/// The 32-bit Mersenne Twister, as C++'s `std::mt19937`, with libstdc++'s
/// `generate_canonical` for uniform floats — so seeded picks match llama.cpp's.
#[derive(Clone)]
pub struct Mt19937 {
    state: Box<[u32; 624]>,
    index: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl Mt19937 {
    pub fn new(seed: u32) -> Mt19937 {
        let mut state = Box::new([0u32; 624]);
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn twist(&mut self) {
        let s = &mut self.state;
        for i in 0..624 {
            let y = (s[i] & 0x8000_0000) | (s[(i + 1) % 624] & 0x7fff_ffff);
            let mut v = s[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            s[i] = v;
        }
        self.index = 0;
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `std::uniform_real_distribution<double>(0, 1)`: two draws, in [0, 1).
    pub fn uniform_f64(&mut self) -> f64 {
        let lo = f64::from(self.next_u32());
        let hi = f64::from(self.next_u32());
        let r = (lo + hi * 4_294_967_296.0) / 18_446_744_073_709_551_616.0;
        if r >= 1.0 {
            1.0 - f64::EPSILON / 2.0
        } else {
            r
        }
    }

    /// `std::uniform_real_distribution<float>(0, 1)`: one draw, in [0, 1).
    pub fn uniform_f32(&mut self) -> f32 {
        let r = self.next_u32() as f32 / 4_294_967_296.0;
        if r >= 1.0 {
            1.0 - f32::EPSILON / 2.0
        } else {
            r
        }
    }
}

/// xoshiro256** seeded through splitmix64: small, fast, the same on every platform. Not used by
/// the samplers (they draw from [`Mt19937`] as llama.cpp does); `hearth bench` makes its random
/// prompts with it.
#[derive(Clone, Debug)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A step of the configurable part of the chain, by llama.cpp's names (`--samplers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplerType {
    Penalties,
    Dry,
    TopNSigma,
    TopK,
    TypicalP,
    TopP,
    MinP,
    Xtc,
    Temperature,
}

impl SamplerType {
    /// llama.cpp's default order.
    pub const DEFAULT_ORDER: [SamplerType; 9] = [
        SamplerType::Penalties,
        SamplerType::Dry,
        SamplerType::TopNSigma,
        SamplerType::TopK,
        SamplerType::TypicalP,
        SamplerType::TopP,
        SamplerType::MinP,
        SamplerType::Xtc,
        SamplerType::Temperature,
    ];

    const ALL: [(SamplerType, &'static str, char); 9] = [
        (SamplerType::Dry, "dry", 'd'),
        (SamplerType::TopK, "top_k", 'k'),
        (SamplerType::TypicalP, "typ_p", 'y'),
        (SamplerType::TopP, "top_p", 'p'),
        (SamplerType::TopNSigma, "top_n_sigma", 's'),
        (SamplerType::MinP, "min_p", 'm'),
        (SamplerType::Temperature, "temperature", 't'),
        (SamplerType::Xtc, "xtc", 'x'),
        (SamplerType::Penalties, "penalties", 'e'),
    ];

    /// llama.cpp's canonical name (`top_k`, `typ_p`, …).
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|e| e.0 == self).map_or("", |e| e.1)
    }

    /// llama.cpp's one-letter code (`--sampler-seq`).
    pub fn code(self) -> char {
        Self::ALL.iter().find(|e| e.0 == self).map_or('?', |e| e.2)
    }

    /// Parses a name as llama.cpp does: case-insensitive, canonical (`top_k`), kebab-case
    /// (`top-k`), without separators (`topk`), or an alias (`nucleus`, `temp`, `typ`).
    pub fn from_name(name: &str) -> Result<SamplerType, SamplerParseError> {
        let lower = name.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "nucleus" => Some(SamplerType::TopP),
            "temp" => Some(SamplerType::Temperature),
            "typ" => Some(SamplerType::TypicalP),
            _ => None,
        };
        if let Some(t) = alias {
            return Ok(t);
        }
        for &(t, canonical, _) in &Self::ALL {
            let kebab = canonical.replace('_', "-");
            let bare = canonical.replace('_', "");
            if lower == canonical || (canonical.contains('_') && (lower == kebab || lower == bare))
            {
                return Ok(t);
            }
        }
        Err(SamplerParseError(name.to_owned()))
    }

    /// Parses a `;`-separated list of names (`--samplers`); empty items are skipped.
    pub fn parse_list(list: &str) -> Result<Vec<SamplerType>, SamplerParseError> {
        list.split(';')
            .filter(|s| !s.is_empty())
            .map(SamplerType::from_name)
            .collect()
    }

    /// Parses one-letter codes (`--sampler-seq`, e.g. `edskypmxt`).
    pub fn parse_codes(codes: &str) -> Result<Vec<SamplerType>, SamplerParseError> {
        codes
            .chars()
            .map(|c| {
                Self::ALL
                    .iter()
                    .find(|e| e.2 == c)
                    .map(|e| e.0)
                    .ok_or_else(|| SamplerParseError(c.to_string()))
            })
            .collect()
    }
}

/// A sampler name or code llama.cpp's list does not have (or hearth does not support:
/// `infill`, `adaptive_p`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamplerParseError(pub String);

impl std::fmt::Display for SamplerParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown sampler {:?} (known: penalties, dry, top_n_sigma, top_k, typ_p, top_p, \
             min_p, xtc, temperature)",
            self.0
        )
    }
}

impl std::error::Error for SamplerParseError {}

/// Which Mirostat replaces the configurable chain (`mirostat` 0, 1 or 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MirostatMode {
    #[default]
    Off,
    V1,
    V2,
}

impl MirostatMode {
    /// llama.cpp's number: 0 off, 1 Mirostat, 2 Mirostat 2.0; anything else is `None`.
    pub fn from_number(n: i64) -> Option<MirostatMode> {
        match n {
            0 => Some(MirostatMode::Off),
            1 => Some(MirostatMode::V1),
            2 => Some(MirostatMode::V2),
            _ => None,
        }
    }

    pub fn number(self) -> u8 {
        match self {
            MirostatMode::Off => 0,
            MirostatMode::V1 => 1,
            MirostatMode::V2 => 2,
        }
    }
}

/// The user-facing sampling settings, with llama.cpp's names (`common_params_sampling`) and
/// defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerParams {
    /// `<= 0` keeps only the most likely token (greedy decoding).
    pub temperature: f32,
    /// `0` keeps all tokens.
    pub top_k: usize,
    /// `1.0` is off.
    pub top_p: f32,
    /// `0.0` is off.
    pub min_p: f32,
    /// `1.0` is off.
    pub typical_p: f32,
    /// Samplers keep at least this many tokens (`0`: no minimum).
    pub min_keep: usize,
    /// Top-nσ; `<= 0` is off (llama.cpp's default is `-1`).
    pub top_n_sigma: f32,
    /// XTC: the chance of removing the top tokens; `0` is off.
    pub xtc_probability: f32,
    /// XTC: tokens at least this likely are candidates for removal; `> 0.5` is off.
    pub xtc_threshold: f32,
    /// Dynamic temperature range; `0` is off.
    pub dynatemp_range: f32,
    pub dynatemp_exponent: f32,
    /// `1.0` is off.
    pub repeat_penalty: f32,
    /// Tokens of history the repeat/frequency/presence penalties look at; `0` is off.
    pub repeat_last_n: usize,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    /// DRY multiplier; `0` is off.
    pub dry_multiplier: f32,
    /// DRY base (`>= 1`; llama.cpp's server and CLI keep the default for smaller values).
    pub dry_base: f32,
    pub dry_allowed_length: usize,
    /// Tokens of history DRY looks at; `0` is off.
    pub dry_penalty_last_n: usize,
    /// Strings that end a repeat for DRY (turned into tokens by [`SamplerParams::build_for`]).
    pub dry_sequence_breakers: Vec<String>,
    pub mirostat: MirostatMode,
    /// Mirostat target surprise (entropy).
    pub mirostat_tau: f32,
    /// Mirostat learning rate.
    pub mirostat_eta: f32,
    /// Ban end-of-generation tokens (a `-inf` bias on each; needs the vocabulary).
    pub ignore_eos: bool,
    /// The configurable steps, in order.
    pub samplers: Vec<SamplerType>,
    pub logit_bias: Vec<(u32, f32)>,
    /// Seeds every random step. 32-bit as llama.cpp's: higher bits are ignored.
    pub seed: u64,
    /// Constrains the output to a grammar (compiled with [`crate::grammar::GrammarVocab`]).
    pub grammar: Option<Grammar>,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            typical_p: 1.0,
            min_keep: 0,
            top_n_sigma: -1.0,
            xtc_probability: 0.0,
            xtc_threshold: 0.1,
            dynatemp_range: 0.0,
            dynatemp_exponent: 1.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            dry_multiplier: 0.0,
            dry_base: 1.75,
            dry_allowed_length: 2,
            dry_penalty_last_n: 64,
            dry_sequence_breakers: ["\n", ":", "\"", "*"].map(String::from).to_vec(),
            mirostat: MirostatMode::Off,
            mirostat_tau: 5.0,
            mirostat_eta: 0.1,
            ignore_eos: false,
            samplers: SamplerType::DEFAULT_ORDER.to_vec(),
            logit_bias: Vec::new(),
            seed: 0,
            grammar: None,
        }
    }
}

impl SamplerParams {
    /// Greedy decoding (temperature 0), other settings at their defaults.
    pub fn greedy() -> SamplerParams {
        SamplerParams {
            temperature: 0.0,
            ..SamplerParams::default()
        }
    }

    /// The chain as llama.cpp's `common_sampler_init` builds it, for a model's vocabulary:
    /// DRY's sequence breakers are tokenized with it, `ignore_eos` bans its end-of-generation
    /// tokens, and Mirostat 1 uses its size.
    pub fn build_for(&self, vocab: &Tokenizer) -> Chain {
        self.build_with(Some(vocab))
    }

    /// The chain without a vocabulary: as [`SamplerParams::build_for`], except that DRY has
    /// no sequence breakers, `ignore_eos` bans nothing and Mirostat 1 takes the vocabulary
    /// size from the logits.
    pub fn build(&self) -> Chain {
        self.build_with(None)
    }

    fn build_with(&self, vocab: Option<&Tokenizer>) -> Chain {
        let seed = self.seed as u32;
        let mut chain = Chain::new();
        chain.set_grammar(self.grammar.clone());
        let mut bias = self.logit_bias.clone();
        if self.ignore_eos
            && let Some(v) = vocab
        {
            bias.extend(v.eog_tokens().iter().map(|&id| (id, f32::NEG_INFINITY)));
        }
        if !bias.is_empty() {
            chain.push(LogitBias(bias));
        }
        match self.mirostat {
            MirostatMode::Off => {
                for &s in &self.samplers {
                    match s {
                        SamplerType::Penalties => {
                            chain.push(Penalties::new(
                                self.repeat_last_n,
                                self.repeat_penalty,
                                self.frequency_penalty,
                                self.presence_penalty,
                            ));
                        }
                        SamplerType::Dry => {
                            let dry = match vocab {
                                Some(v) => Dry::new(
                                    v,
                                    self.dry_multiplier,
                                    self.dry_base,
                                    self.dry_allowed_length,
                                    self.dry_penalty_last_n,
                                    &self.dry_sequence_breakers,
                                ),
                                None => Dry::with_token_breakers(
                                    self.dry_multiplier,
                                    self.dry_base,
                                    self.dry_allowed_length,
                                    self.dry_penalty_last_n,
                                    &[],
                                ),
                            };
                            chain.push(dry);
                        }
                        SamplerType::TopNSigma => {
                            chain.push(TopNSigma(self.top_n_sigma));
                        }
                        SamplerType::TopK => {
                            chain.push(TopK(self.top_k));
                        }
                        SamplerType::TypicalP => {
                            chain.push(TypicalP::new(self.typical_p, self.min_keep));
                        }
                        SamplerType::TopP => {
                            chain.push(TopP {
                                p: self.top_p,
                                min_keep: self.min_keep,
                            });
                        }
                        SamplerType::MinP => {
                            chain.push(MinP {
                                p: self.min_p,
                                min_keep: self.min_keep,
                            });
                        }
                        SamplerType::Xtc => {
                            chain.push(Xtc::new(
                                self.xtc_probability,
                                self.xtc_threshold,
                                self.min_keep,
                                seed,
                            ));
                        }
                        SamplerType::Temperature => {
                            chain.push(DynamicTemperature {
                                temp: self.temperature,
                                delta: self.dynatemp_range,
                                exponent: self.dynatemp_exponent,
                            });
                        }
                    }
                }
                chain.push(Dist::new(seed));
            }
            MirostatMode::V1 => {
                chain.push(Temperature(self.temperature));
                chain.push(Mirostat::new(
                    vocab.map(Tokenizer::n_vocab),
                    seed,
                    self.mirostat_tau,
                    self.mirostat_eta,
                    100,
                ));
            }
            MirostatMode::V2 => {
                chain.push(Temperature(self.temperature));
                chain.push(MirostatV2::new(seed, self.mirostat_tau, self.mirostat_eta));
            }
        }
        chain
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(c: &Candidates) -> Vec<u32> {
        c.items.iter().map(|c| c.id).collect()
    }

    fn cands(logits: &[f32]) -> Candidates {
        let mut c = Candidates::default();
        c.fill(logits);
        c
    }

    #[test]
    fn mt19937_is_the_standard_generator() {
        // The C++ standard's check: the 10000th output of a default-seeded mt19937.
        let mut r = Mt19937::new(5489);
        assert_eq!(r.next_u32(), 3_499_211_612);
        for _ in 1..9999 {
            r.next_u32();
        }
        assert_eq!(r.next_u32(), 4_123_659_995);
    }

    #[test]
    fn uniform_floats_stay_below_one() {
        let mut r = Mt19937::new(1);
        for _ in 0..10_000 {
            let (a, b) = (r.uniform_f64(), r.uniform_f32());
            assert!((0.0..1.0).contains(&a) && (0.0..1.0).contains(&b));
        }
    }

    #[test]
    fn greedy_takes_argmax_and_lowest_id_on_ties() {
        let mut chain = SamplerParams::greedy().build();
        assert_eq!(chain.sample(&[0.1, 3.0, -1.0, 3.0]), 1);
        let mut c = cands(&[0.1, 3.0, -1.0, 3.0]);
        Greedy.apply(&mut c);
        assert_eq!(c.selected_id(), Some(1));
    }

    #[test]
    fn top_k_keeps_k_largest_sorted() {
        let mut c = cands(&[0.0, 5.0, 1.0, 4.0, 2.0]);
        TopK(3).apply(&mut c);
        assert_eq!(ids(&c), [1, 3, 4]);
        assert!(c.sorted);
    }

    #[test]
    fn top_p_keeps_smallest_set_reaching_mass() {
        // probabilities ~ [0.6652, 0.2447, 0.0900]
        let mut c = cands(&[2.0, 1.0, 0.0]);
        TopP {
            p: 0.9,
            min_keep: 1,
        }
        .apply(&mut c);
        assert_eq!(ids(&c), [0, 1]);
        let mut c = cands(&[2.0, 1.0, 0.0]);
        TopP {
            p: 0.95,
            min_keep: 1,
        }
        .apply(&mut c);
        assert_eq!(ids(&c), [0, 1, 2]);
    }

    #[test]
    fn min_p_is_relative_to_the_best_and_keeps_the_order() {
        let mut c = cands(&[(0.04f32).ln(), 0.0, (0.5f32).ln()]);
        MinP {
            p: 0.05,
            min_keep: 1,
        }
        .apply(&mut c);
        assert_eq!(ids(&c), [1, 2]);
        // min_keep above what passes: sorted, and the best min_keep kept.
        let mut c = cands(&[(0.04f32).ln(), 0.0, (0.5f32).ln()]);
        MinP {
            p: 0.9,
            min_keep: 2,
        }
        .apply(&mut c);
        assert_eq!(ids(&c), [1, 2]);
    }

    #[test]
    fn penalties_follow_llama_cpp_signs() {
        let mut p = Penalties::new(64, 2.0, 0.5, 0.25);
        p.accept(0);
        p.accept(0);
        p.accept(1);
        let mut c = cands(&[4.0, -4.0, 1.0]);
        p.apply(&mut c);
        assert_eq!(c.items[0].logit, 4.0 / 2.0 - 2.0 * 0.5 - 0.25);
        assert_eq!(c.items[1].logit, -4.0 * 2.0 - 0.5 - 0.25);
        assert_eq!(c.items[2].logit, 1.0);
    }

    #[test]
    fn penalties_forget_beyond_last_n() {
        let mut p = Penalties::new(2, 2.0, 0.0, 0.0);
        for t in [7, 1, 2] {
            p.accept(t);
        }
        let mut c = cands(&[1.0; 8]);
        p.apply(&mut c);
        assert_eq!(c.items[7].logit, 1.0);
        assert_eq!(c.items[1].logit, 0.5);
    }

    #[test]
    fn logit_bias_can_ban_the_argmax() {
        let mut chain = SamplerParams {
            logit_bias: vec![(1, f32::NEG_INFINITY)],
            ..SamplerParams::greedy()
        }
        .build();
        assert_eq!(chain.sample(&[0.1, 3.0, 2.0]), 2);
    }

    #[test]
    fn same_seed_same_tokens_and_distribution_is_respected() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let params = SamplerParams {
            seed: 42,
            ..SamplerParams::default()
        };
        let run = |params: &SamplerParams| {
            let mut chain = params.build();
            (0..200).map(|_| chain.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(&params), run(&params));
        assert_ne!(
            run(&params),
            run(&SamplerParams {
                seed: 43,
                ..params.clone()
            })
        );

        // With only temperature and the pick, frequencies follow the softmax.
        let mut chain = Chain::new();
        chain.push(Temperature(1.0)).push(Dist::new(7));
        let logits = [0.0f32, (3.0f32).ln()];
        let n = 20_000;
        let ones = (0..n).filter(|_| chain.sample(&logits) == 1).count();
        let frac = ones as f64 / n as f64;
        assert!(
            (frac - 0.75).abs() < 0.02,
            "picked token 1 with frequency {frac}"
        );
    }

    #[test]
    fn reset_replays_the_same_picks() {
        let logits: Vec<f32> = (0..32).map(|i| (i as f32 * 0.9).cos()).collect();
        let mut chain = SamplerParams {
            seed: 5,
            xtc_probability: 0.5,
            mirostat: MirostatMode::Off,
            ..SamplerParams::default()
        }
        .build();
        let a: Vec<u32> = (0..40).map(|_| chain.sample(&logits)).collect();
        chain.reset();
        let b: Vec<u32> = (0..40).map(|_| chain.sample(&logits)).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn typical_p_one_is_off_and_lower_narrows() {
        let mut c = cands(&[3.0, 2.0, 1.0, 0.0]);
        TypicalP::new(1.0, 1).apply(&mut c);
        assert_eq!(c.items.len(), 4);
        TypicalP::new(0.3, 1).apply(&mut c);
        assert!(c.items.len() < 4);
    }

    #[test]
    fn zero_temperature_leaves_only_the_best_finite() {
        let mut c = cands(&[0.0, 9.0, 1.0, 9.0]);
        Temperature(0.0).apply(&mut c);
        let finite: Vec<u32> = c
            .items
            .iter()
            .filter(|c| c.logit.is_finite())
            .map(|c| c.id)
            .collect();
        assert_eq!(finite, [1]);
    }

    /// llama.cpp's `tests/test-sampling.cpp` DRY cases: probabilities after DRY and a softmax.
    #[test]
    fn dry_matches_llama_cpps_own_tests() {
        type Case<'a> = (
            &'a [f32],
            &'a [u32],
            &'a [f32],
            f32,
            f32,
            usize,
            usize,
            &'a [Vec<u32>],
        );
        let cases: [Case; 5] = [
            (&[0.25; 4], &[0, 1], &[0.25; 4], 1.0, 1.1, 2, 4, &[]),
            (
                &[0.25; 4],
                &[0, 1, 2, 0, 1],
                &[0.296923, 0.296923, 0.109232, 0.296923],
                1.0,
                1.1,
                2,
                5,
                &[],
            ),
            (
                &[0.2; 5],
                &[0, 1, 3, 4, 0, 1],
                &[0.2; 5],
                1.0,
                1.1,
                2,
                6,
                &[vec![3]],
            ),
            (
                &[0.2; 5],
                &[0, 1, 2, 0, 1],
                &[0.241818, 0.241818, 0.032727, 0.241818, 0.241818],
                2.0,
                1.1,
                2,
                5,
                &[],
            ),
            (
                &[0.2; 5],
                &[0, 1, 2, 3, 4, 0, 1],
                &[0.2; 5],
                1.0,
                1.1,
                4,
                7,
                &[],
            ),
        ];
        for (probs, history, want, mult, base, allowed, last_n, breakers) in cases {
            let logits: Vec<f32> = probs.iter().map(|p| p.ln()).collect();
            let mut dry = Dry::with_token_breakers(mult, base, allowed, last_n, breakers);
            for &t in history {
                dry.accept(t);
            }
            let mut c = cands(&logits);
            dry.apply(&mut c);
            Dist::new(0).apply(&mut c);
            let got: Vec<f32> = c.items.iter().map(|c| c.p).collect();
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-5, "{history:?}: {got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn top_n_sigma_matches_llama_cpps_own_test() {
        let mut c = cands(&[0.1f32, 0.2, 0.3, 0.4].map(f32::ln));
        TopNSigma(1.0).apply(&mut c);
        c.softmax(false);
        let got: Vec<f32> = c.items.iter().map(|c| c.p).collect();
        for (g, w) in got.iter().zip([0.0, 0.0, 0.428571, 0.571429]) {
            assert!((g - w).abs() < 1e-5, "{got:?}");
        }
    }

    #[test]
    fn sampler_names_parse_as_llama_cpp() {
        use SamplerType::*;
        assert_eq!(
            SamplerType::parse_list(
                "penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature"
            )
            .unwrap(),
            SamplerType::DEFAULT_ORDER
        );
        assert_eq!(
            SamplerType::parse_list("Top-K;topp;nucleus;temp;typ;MIN_P").unwrap(),
            [TopK, TopP, TopP, Temperature, TypicalP, MinP]
        );
        assert_eq!(
            SamplerType::parse_codes("edskypmxt").unwrap(),
            SamplerType::DEFAULT_ORDER
        );
        let codes: String = SamplerType::DEFAULT_ORDER
            .iter()
            .map(|t| t.code())
            .collect();
        assert_eq!(codes, "edskypmxt");
        assert!(SamplerType::parse_list("top_k;infill").is_err());
        assert!(SamplerType::parse_list("dr-y").is_err());
        assert!(SamplerType::parse_codes("kq").is_err());
        assert_eq!(SamplerType::from_name("typ-p"), Ok(TypicalP));
        assert_eq!(TopNSigma.name(), "top_n_sigma");
    }

    #[test]
    fn mirostat_modes_are_llama_cpps_numbers() {
        assert_eq!(MirostatMode::from_number(0), Some(MirostatMode::Off));
        assert_eq!(MirostatMode::from_number(2), Some(MirostatMode::V2));
        assert_eq!(MirostatMode::from_number(3), None);
        assert_eq!(MirostatMode::V1.number(), 1);
    }

    #[test]
    fn mirostat_never_leaves_the_candidates_empty() {
        for v2 in [false, true] {
            let mut chain = SamplerParams {
                mirostat: if v2 {
                    MirostatMode::V2
                } else {
                    MirostatMode::V1
                },
                mirostat_tau: 0.01,
                ..SamplerParams::default()
            }
            .build();
            for _ in 0..20 {
                assert!(chain.sample(&[1.0, 5.0, 2.0, f32::NEG_INFINITY]) < 3);
            }
        }
    }
}
