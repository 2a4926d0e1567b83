//! The sampler chain: small stateful steps that narrow and reshape the candidate tokens, then a
//! final pick — the shape of llama.cpp's `llama_sampler` API.
//!
//! Each step implements [`Sampler`]: `apply` works on the [`Candidates`] of one position,
//! `accept` sees the token finally chosen (penalties remember history), `reset` forgets.
//! [`Chain`] is itself a sampler. [`SamplerParams::build`] assembles llama.cpp's default order:
//! logit bias → penalties → top-k → typical-p → top-p → min-p → temperature → pick.
//! The candidate buffer is allocated once per vocabulary size; sampling a token allocates nothing.

use std::collections::VecDeque;

/// One candidate token: its id, its logit, and its probability once a step computed them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub id: u32,
    pub logit: f32,
    pub p: f32,
}

/// The candidate tokens of one position, and the pick once made.
#[derive(Debug, Default)]
pub struct Candidates {
    pub items: Vec<Candidate>,
    /// Whether `items` is sorted by descending logit.
    pub sorted: bool,
    /// Index into `items` of the chosen token, set by the final step.
    pub selected: Option<usize>,
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

    fn sort_desc(&mut self) {
        if !self.sorted {
            self.items
                .sort_unstable_by(|a, b| b.logit.total_cmp(&a.logit));
            self.sorted = true;
        }
    }

    /// Keeps the `k` largest logits (sorted), in O(n + k log k).
    fn keep_top(&mut self, k: usize) {
        let k = k.clamp(1, self.items.len().max(1));
        if k < self.items.len() {
            self.items
                .select_nth_unstable_by(k - 1, |a, b| b.logit.total_cmp(&a.logit));
            self.items.truncate(k);
            self.sorted = false;
        }
        self.sort_desc();
    }

    /// Sets `p` to the softmax of the logits (sorting first).
    fn softmax(&mut self) {
        self.sort_desc();
        let Some(max) = self.items.first().map(|c| c.logit) else {
            return;
        };
        let mut sum = 0.0f64;
        for c in &mut self.items {
            c.p = (c.logit - max).exp();
            sum += f64::from(c.p);
        }
        let inv = if sum > 0.0 { (1.0 / sum) as f32 } else { 0.0 };
        for c in &mut self.items {
            c.p *= inv;
        }
    }
}

/// A step of the chain.
pub trait Sampler: Send {
    /// Narrows or reshapes the candidates, or picks one.
    fn apply(&mut self, cands: &mut Candidates);
    /// Sees the token finally chosen for this position.
    fn accept(&mut self, _token: u32) {}
    /// Forgets any history.
    fn reset(&mut self) {}
}

/// Steps applied in order; itself a sampler.
#[derive(Default)]
pub struct Chain {
    steps: Vec<Box<dyn Sampler>>,
    cands: Candidates,
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
    /// The chain must end with a picking step ([`Greedy`] or [`Dist`]); if none picked, the
    /// most likely remaining candidate is taken.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let mut cands = std::mem::take(&mut self.cands);
        cands.fill(logits);
        self.apply(&mut cands);
        let id = match cands.selected_id() {
            Some(id) => id,
            None => {
                Greedy.apply(&mut cands);
                cands.selected_id().unwrap_or(0)
            }
        };
        self.cands = cands;
        self.accept(id);
        id
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
        for s in &mut self.steps {
            s.accept(token);
        }
    }

    fn reset(&mut self) {
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
            let i = id as usize;
            match cands.items.get_mut(i) {
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
    /// (token, count) of the tokens in `history`, small and scanned linearly.
    counts: Vec<(u32, u32)>,
}

impl Penalties {
    pub fn new(last_n: usize, repeat: f32, frequency: f32, presence: f32) -> Penalties {
        Penalties {
            last_n,
            repeat,
            frequency,
            presence,
            history: VecDeque::with_capacity(last_n),
            counts: Vec::with_capacity(last_n),
        }
    }

    fn is_noop(&self) -> bool {
        self.last_n == 0 || (self.repeat == 1.0 && self.frequency == 0.0 && self.presence == 0.0)
    }
}

impl Sampler for Penalties {
    fn apply(&mut self, cands: &mut Candidates) {
        if self.is_noop() || self.counts.is_empty() {
            return;
        }
        for c in &mut cands.items {
            let Some(&(_, count)) = self.counts.iter().find(|(t, _)| *t == c.id) else {
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
        cands.sorted = false;
    }

    fn accept(&mut self, token: u32) {
        if self.last_n == 0 {
            return;
        }
        if self.history.len() == self.last_n
            && let Some(old) = self.history.pop_front()
            && let Some(i) = self.counts.iter().position(|(t, _)| *t == old)
        {
            self.counts[i].1 -= 1;
            if self.counts[i].1 == 0 {
                self.counts.swap_remove(i);
            }
        }
        self.history.push_back(token);
        match self.counts.iter_mut().find(|(t, _)| *t == token) {
            Some(e) => e.1 += 1,
            None => self.counts.push((token, 1)),
        }
    }

    fn reset(&mut self) {
        self.history.clear();
        self.counts.clear();
    }
}

/// Keeps the `k` most likely tokens (`k == 0` keeps all).
pub struct TopK(pub usize);

impl Sampler for TopK {
    fn apply(&mut self, cands: &mut Candidates) {
        if self.0 > 0 {
            cands.keep_top(self.0);
        }
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
        cands.softmax();
        let entropy: f32 = -cands
            .items
            .iter()
            .filter(|c| c.p > 0.0)
            .map(|c| c.p * c.p.ln())
            .sum::<f32>();
        self.order.clear();
        self.order.extend(
            cands
                .items
                .iter()
                .enumerate()
                .map(|(i, c)| ((-c.p.ln() - entropy).abs(), i)),
        );
        self.order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
        let mut cum = 0.0;
        let mut keep = self.order.len();
        for (n, &(_, i)) in self.order.iter().enumerate() {
            cum += cands.items[i].p;
            if cum > self.p && n + 1 >= self.min_keep {
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
        cands.softmax();
        let mut cum = 0.0;
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
        let max = cands
            .items
            .iter()
            .map(|c| c.logit)
            .fold(f32::NEG_INFINITY, f32::max);
        let threshold = max + self.p.ln();
        cands.sort_desc();
        let n_above = cands
            .items
            .iter()
            .take_while(|c| c.logit >= threshold)
            .count();
        cands
            .items
            .truncate(n_above.max(self.min_keep).min(cands.items.len()));
    }
}

/// Divides logits by the temperature; `t <= 0` keeps only the most likely token.
pub struct Temperature(pub f32);

impl Sampler for Temperature {
    fn apply(&mut self, cands: &mut Candidates) {
        if self.0 <= 0.0 {
            cands.keep_top(1);
            return;
        }
        let inv = 1.0 / self.0;
        for c in &mut cands.items {
            c.logit *= inv;
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

/// Picks at random by probability, from a seeded generator.
pub struct Dist {
    rng: Rng,
    seed: u64,
}

impl Dist {
    pub fn new(seed: u64) -> Dist {
        Dist {
            rng: Rng::new(seed),
            seed,
        }
    }
}

impl Sampler for Dist {
    fn apply(&mut self, cands: &mut Candidates) {
        if cands.items.is_empty() {
            return;
        }
        cands.softmax();
        let total: f32 = cands.items.iter().map(|c| c.p).sum();
        let mut r = self.rng.next_f32() * total;
        let mut pick = cands.items.len() - 1;
        for (i, c) in cands.items.iter().enumerate() {
            if r < c.p {
                pick = i;
                break;
            }
            r -= c.p;
        }
        cands.selected = Some(pick);
    }

    fn reset(&mut self) {
        self.rng = Rng::new(self.seed);
    }
}

/// xoshiro256** seeded through splitmix64: small, fast, and the same on every platform.
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

/// The user-facing sampling settings, with llama.cpp's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerParams {
    /// `<= 0` is greedy decoding.
    pub temperature: f32,
    /// `0` keeps all tokens.
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    /// `1.0` is off.
    pub typical_p: f32,
    /// `1.0` is off.
    pub repeat_penalty: f32,
    pub repeat_last_n: usize,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub logit_bias: Vec<(u32, f32)>,
    pub seed: u64,
}

impl Default for SamplerParams {
    fn default() -> Self {
        SamplerParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            typical_p: 1.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            logit_bias: Vec::new(),
            seed: 0,
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

    /// The chain in llama.cpp's default order.
    pub fn build(&self) -> Chain {
        let mut chain = Chain::new();
        chain.push(LogitBias(self.logit_bias.clone()));
        chain.push(Penalties::new(
            self.repeat_last_n,
            self.repeat_penalty,
            self.frequency_penalty,
            self.presence_penalty,
        ));
        if self.temperature <= 0.0 {
            chain.push(Greedy);
            return chain;
        }
        chain.push(TopK(self.top_k));
        chain.push(TypicalP::new(self.typical_p, 1));
        chain.push(TopP {
            p: self.top_p,
            min_keep: 1,
        });
        chain.push(MinP {
            p: self.min_p,
            min_keep: 1,
        });
        chain.push(Temperature(self.temperature));
        chain.push(Dist::new(self.seed));
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
    fn greedy_takes_argmax_and_lowest_id_on_ties() {
        let mut chain = SamplerParams::greedy().build();
        assert_eq!(chain.sample(&[0.1, 3.0, -1.0, 3.0]), 1);
    }

    #[test]
    fn top_k_keeps_k_largest_sorted() {
        let mut c = cands(&[0.0, 5.0, 1.0, 4.0, 2.0]);
        TopK(3).apply(&mut c);
        assert_eq!(ids(&c), [1, 3, 4]);
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
    fn min_p_is_relative_to_the_best() {
        let mut c = cands(&[0.0, (0.5f32).ln(), (0.04f32).ln()]);
        MinP {
            p: 0.05,
            min_keep: 1,
        }
        .apply(&mut c);
        assert_eq!(ids(&c), [0, 1]);
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
    fn typical_p_one_is_off_and_lower_narrows() {
        let mut c = cands(&[3.0, 2.0, 1.0, 0.0]);
        TypicalP::new(1.0, 1).apply(&mut c);
        assert_eq!(c.items.len(), 4);
        TypicalP::new(0.3, 1).apply(&mut c);
        assert!(c.items.len() < 4);
    }

    #[test]
    fn zero_temperature_is_greedy() {
        let mut c = cands(&[0.0, 9.0, 1.0]);
        Temperature(0.0).apply(&mut c);
        assert_eq!(ids(&c), [1]);
    }
}
