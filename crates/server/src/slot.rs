//! A slot (one sequence of the shared KV store: the tokens it holds, the choice it is
//! generating) and [`Engine`], the one place the scheduler runs the engine.
//!
//! [`Engine::step`] builds one [`Batch`]: the next token of every generating slot plus chunks of
//! waiting prompts, up to `n_batch` tokens, runs it with one `decode_batch`, and samples for
//! every slot whose logits are ready. Slot `i` is sequence `i` of the one `Context`; with
//! `batch_invariant` on, a sequence's logits do not depend on what else is in the batch.

use std::sync::Arc;
use std::time::Instant;

use engine::generate::StopMatcher;
use engine::sampler::Chain;
use engine::tokenizer::{Detokenizer, Tokenizer};
use engine::{Batch, Context, ContextError};

use crate::scheduler::{Event, Finish, JobShared, Outcome, Progress, SlotView, TokenProbs};

/// Where a task is.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    /// Prompt tokens from `next` on are still to be evaluated.
    Prompt { next: usize },
    /// `token` was sampled and is to be evaluated next.
    Generate { token: u32 },
}

/// One choice of a job, running on a slot.
pub struct Task<'t> {
    pub job: Arc<JobShared>,
    pub index: usize,
    pub phase: Phase,
    pub n_cached: usize,
    pub chain: Chain,
    pub detok: Detokenizer<'t>,
    pub stops: StopMatcher,
    pub n_generated: usize,
    pub started: Instant,
    pub prompt_done: Option<Instant>,
}

/// A sequence of the KV store and the choice it runs, if any.
pub struct Slot<'t> {
    /// Also the sequence id.
    pub id: usize,
    /// The tokens the KV store holds for this sequence, in position order.
    pub tokens: Vec<u32>,
    pub task: Option<Task<'t>>,
    /// Scheduler clock of the last assignment (least recently used goes first).
    pub last_used: u64,
}

impl<'t> Slot<'t> {
    pub fn new(id: usize) -> Slot<'t> {
        Slot {
            id,
            tokens: Vec::new(),
            task: None,
            last_used: 0,
        }
    }

    /// Tokens at the start of `prompt` that this slot's cache holds exactly.
    pub fn common_prefix(&self, prompt: &[u32]) -> usize {
        self.tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
    }

    pub fn view(&self, n_ctx: usize) -> SlotView {
        let t = self.task.as_ref();
        SlotView {
            id: self.id,
            id_task: t.map(|t| t.job.id),
            is_processing: t.is_some(),
            n_ctx,
            n_past: self.tokens.len(),
            n_prompt: t.map_or(0, |t| t.job.prompt.len()),
            n_decoded: t.map_or(0, |t| t.n_generated),
            n_remain: t.and_then(|t| {
                t.job
                    .params
                    .max_tokens
                    .map(|m| m.saturating_sub(t.n_generated))
            }),
        }
    }
}

/// What one step did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stepped {
    /// Slots that ran.
    pub busy: usize,
    /// Prompt tokens evaluated.
    pub prompt_tokens: usize,
    /// Tokens sampled.
    pub generated_tokens: usize,
}

/// One slot's part of a step.
struct Entry {
    slot: usize,
    /// Its tokens in `Engine::tokens`.
    tokens: std::ops::Range<usize>,
    /// The batch entry holding its logits, when they are wanted.
    logits: Option<usize>,
}

/// The one context every slot decodes in, and the step's buffers.
pub struct Engine {
    pub ctx: Context,
    /// Most positions one slot may hold.
    pub n_ctx_slot: usize,
    n_batch: usize,
    batch: Batch,
    plan: Vec<Entry>,
    tokens: Vec<u32>,
    /// Slots whose choice ended in the last step, answered by [`Engine::finish`].
    finished: Vec<(usize, Finish)>,
}

impl Engine {
    pub fn new(ctx: Context, n_ctx_slot: usize) -> Engine {
        let n_batch = ctx.params().n_batch.max(1);
        Engine {
            ctx,
            n_ctx_slot,
            n_batch,
            batch: Batch::with_capacity(n_batch),
            plan: Vec::new(),
            tokens: Vec::new(),
            finished: Vec::new(),
        }
    }

    /// Sends the outcome of every choice that ended in the last step and frees its slot (after
    /// the scheduler published the step's counts, so a client that has its answer sees them).
    /// Frees the slots whose choices ended; their `Done` events are returned, to be sent once
    /// `/slots` and `/metrics` show the slots idle (a client that asks right after its answer
    /// sees them free, as with llama-server).
    pub fn finish(&mut self, slots: &mut [Slot<'_>]) -> Vec<(Arc<JobShared>, Event)> {
        self.finished
            .drain(..)
            .filter_map(|(i, finish)| finish_task(&mut slots[i], finish))
            .collect()
    }

    /// Makes `slot` hold `prompt[..reuse]`: its own cached prefix, or one shared from `donor`'s
    /// cells (no copy) when another slot holds a longer exact prefix.
    pub fn prepare(
        &mut self,
        slots: &mut [Slot<'_>],
        slot: usize,
        donor: Option<usize>,
        prompt: &[u32],
        reuse: usize,
    ) {
        match donor {
            Some(d) if d != slot => {
                self.ctx.seq_rm(slot, 0, None);
                self.ctx.seq_cp(d, slot, 0, Some(reuse));
                slots[slot].tokens.clear();
                slots[slot].tokens.extend_from_slice(&prompt[..reuse]);
            }
            _ => {
                self.ctx.seq_rm(slot, reuse, None);
                slots[slot].tokens.truncate(reuse);
            }
        }
    }

    /// One step over every busy slot: evaluate, then sample where logits are ready.
    pub fn step(&mut self, slots: &mut [Slot<'_>], tok: &Tokenizer) -> Stepped {
        self.plan.clear();
        self.tokens.clear();
        self.batch.clear();
        let mut out = Stepped::default();
        // Generating slots first: one token each keeps every stream flowing.
        for (i, slot) in slots.iter().enumerate() {
            if let Some(Task {
                phase: Phase::Generate { token },
                ..
            }) = slot.task
            {
                let at = self.tokens.len();
                self.tokens.push(token);
                self.batch.push(token, slot.tokens.len(), &[slot.id], true);
                self.plan.push(Entry {
                    slot: i,
                    tokens: at..at + 1,
                    logits: Some(self.batch.len() - 1),
                });
            }
        }
        // Then prompts, oldest first, in the room left.
        let mut budget = self.n_batch.saturating_sub(self.tokens.len()).max(1);
        let mut order: Vec<usize> = (0..slots.len())
            .filter(|&i| {
                matches!(
                    slots[i].task,
                    Some(Task {
                        phase: Phase::Prompt { .. },
                        ..
                    })
                )
            })
            .collect();
        order.sort_by_key(|&i| slots[i].task.as_ref().map(|t| t.started));
        for i in order {
            if budget == 0 {
                break;
            }
            let slot = &slots[i];
            let Some(t) = &slot.task else { continue };
            let Phase::Prompt { next } = t.phase else {
                continue;
            };
            let n = (t.job.prompt.len() - next).min(budget);
            let last = next + n == t.job.prompt.len();
            let at = self.tokens.len();
            let pos0 = slot.tokens.len();
            for (k, &token) in t.job.prompt[next..next + n].iter().enumerate() {
                self.tokens.push(token);
                self.batch
                    .push(token, pos0 + k, &[slot.id], last && k + 1 == n);
            }
            self.plan.push(Entry {
                slot: i,
                tokens: at..at + n,
                logits: last.then(|| self.batch.len() - 1),
            });
            budget -= n;
            out.prompt_tokens += n;
        }
        out.busy = self.plan.len();
        if self.batch.is_empty() {
            return out;
        }
        // One forward over every entry. A store without room first gives up the prompts idle
        // slots keep cached (with `--kv-unified` they share the running slots' room).
        let mut result = self.ctx.decode_batch(&self.batch);
        if matches!(result, Err(ContextError::NoFreeCells { .. })) {
            let mut evicted = false;
            for slot in slots
                .iter_mut()
                .filter(|s| s.task.is_none() && !s.tokens.is_empty())
            {
                self.ctx.seq_rm(slot.id, 0, None);
                slot.tokens.clear();
                evicted = true;
            }
            if evicted {
                result = self.ctx.decode_batch(&self.batch);
            }
        }
        if let Err(e) = result {
            let message = match e {
                ContextError::NoFreeCells { .. } => format!("context size has been exceeded: {e}"),
                e => e.to_string(),
            };
            for entry in &self.plan {
                let slot = &mut slots[entry.slot];
                if let Some(task) = slot.task.take() {
                    let _ = task.job.events.send(Event::Error {
                        message: message.clone(),
                    });
                }
            }
            return out;
        }
        for entry in &self.plan {
            let slot = &mut slots[entry.slot];
            slot.tokens
                .extend_from_slice(&self.tokens[entry.tokens.clone()]);
            if let Some(Task {
                phase: Phase::Prompt { next },
                index,
                job,
                n_cached,
                started,
                ..
            }) = &mut slot.task
            {
                *next += entry.tokens.len();
                if let (Some(tx), 0) = (&job.progress, *index) {
                    let elapsed = started.elapsed();
                    let _ = tx.send(Progress {
                        total: job.prompt.len(),
                        cache: *n_cached,
                        processed: *next,
                        time_ms: elapsed.as_millis() as u64,
                        prompt_ms: elapsed.as_secs_f64() * 1e3,
                    });
                }
            }
        }
        // Sample for every slot whose logits are ready.
        for entry in &self.plan {
            let Some(row) = entry.logits else { continue };
            let slot = &mut slots[entry.slot];
            let full = slot.tokens.len() >= self.n_ctx_slot;
            let Some(task) = &mut slot.task else { continue };
            let before = task.n_generated;
            let finish = sample(task, self.ctx.batch_logits(row), full, tok);
            out.generated_tokens += task.n_generated - before;
            if let Some(finish) = finish {
                self.finished.push((entry.slot, finish));
            }
        }
        out
    }
}

/// Samples the next token of `task` from its context's logits and sends its text; returns why
/// the choice ends, if it does.
fn sample(task: &mut Task<'_>, logits: &[f32], full: bool, tok: &Tokenizer) -> Option<Finish> {
    let now = Instant::now();
    if task.prompt_done.is_none() {
        task.prompt_done = Some(now);
        // The prompt's cells are in the store: the job's other choices may share them.
        task.job
            .prompt_shared
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let params = &task.job.params;
    // As llama-server, the limit is checked after a token: `n_predict: 0` still gives one.
    let limit = params.max_tokens.map(|m| m.max(1));
    if limit.is_some_and(|m| task.n_generated >= m) {
        return Some(Finish::Length);
    }
    let id = task.chain.sample(logits);
    // As llama-server, the end-of-generation token counts as predicted (`tokens_predicted`,
    // `completion_tokens`) though it is never shown.
    task.n_generated += 1;
    if tok.is_eog(id) && !params.ignore_eos {
        return Some(Finish::Eos);
    }
    let probs = params
        .n_probs
        .map(|n| token_probs(task, logits, id, n, tok));
    let piece = task.detok.push(id).unwrap_or_default();
    let (text, hit) = task.stops.push(&piece);
    if !text.is_empty() || probs.is_some() {
        let probs = probs.map(|mut p| {
            p.text.clone_from(&text);
            p
        });
        let _ = task.job.events.send(Event::Text {
            index: task.index,
            text,
            probs,
            token: Some(id),
        });
    }
    if let Some(s) = hit {
        return Some(Finish::Word(s));
    }
    if limit.is_some_and(|m| task.n_generated >= m) || full {
        return Some(Finish::Length);
    }
    task.phase = Phase::Generate { token: id };
    None
}

/// The probability of the token `id` just sampled and the `n_probs` most likely tokens, as
/// llama-server reports them: the softmax of the raw logits (ties by id), or with
/// `post_sampling_probs` the probabilities the sampler chain left, zeros dropped.
fn token_probs(task: &Task<'_>, logits: &[f32], id: u32, n: usize, tok: &Tokenizer) -> TokenProbs {
    let piece = |t: u32| {
        tok.token_to_piece(t, true)
            .map(|b| b.into_owned())
            .unwrap_or_default()
    };
    let (p, top) = if task.job.params.post_sampling_probs {
        let mut cands: Vec<(u32, f32)> = task
            .chain
            .last_candidates()
            .items
            .iter()
            .map(|c| (c.id, c.p))
            .collect();
        cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        // llama-server keeps 1 when the chain did not compute the chosen token's probability.
        let p = cands.iter().find(|c| c.0 == id).map_or(1.0, |c| c.1);
        let top = cands
            .iter()
            .take(n)
            .take_while(|c| c.1 != 0.0)
            .map(|&(t, p)| (t, piece(t), p))
            .collect();
        (p, top)
    } else {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
        let prob = |l: f32| (l - max).exp() / sum;
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        let k = n.min(order.len());
        let by_logit = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        if k > 0 && k < order.len() {
            order.select_nth_unstable_by(k - 1, by_logit);
        }
        order[..k].sort_by(by_logit);
        let top = order[..k]
            .iter()
            .map(|&t| (t, piece(t), prob(logits[t as usize])))
            .collect();
        (prob(logits[id as usize]), top)
    };
    TokenProbs {
        id,
        text: String::new(),
        p,
        top,
    }
}

/// Sends the held-back text and the outcome, and frees the slot.
fn finish_task(slot: &mut Slot<'_>, finish: Finish) -> Option<(Arc<JobShared>, Event)> {
    let mut task = slot.task.take()?;
    if !matches!(finish, Finish::Word(_)) {
        let mut rest = task.stops.flush();
        rest.push_str(&task.detok.finish());
        if !rest.is_empty() {
            let _ = task.job.events.send(Event::Text {
                index: task.index,
                text: rest,
                probs: None,
                token: None,
            });
        }
    }
    let now = Instant::now();
    let prompt_done = task.prompt_done.unwrap_or(now);
    let outcome = Outcome {
        finish,
        id_slot: slot.id,
        n_prompt: task.job.prompt.len(),
        n_cached: task.n_cached,
        n_generated: task.n_generated,
        prompt_time: prompt_done - task.started,
        generation_time: now - prompt_done,
    };
    let done = Event::Done {
        index: task.index,
        outcome,
    };
    Some((task.job, done))
}
