//! A slot (one sequence: its context, the choice it is generating) and [`Engine::step`], the
//! one place the scheduler runs the engine.
//!
//! A step collects the next token of every generating slot plus chunks of waiting prompts, up
//! to `n_batch` tokens, runs them, and samples for every slot whose logits are ready. Today
//! each slot owns an `engine::Context` and the step decodes the slots' tokens in turn; with
//! `batch_invariant` on, a sequence's logits are the same whatever else runs, so moving the
//! step to one many-sequence forward changes this file only.

use std::sync::Arc;
use std::time::Instant;

use engine::Context;
use engine::generate::StopMatcher;
use engine::sampler::Chain;
use engine::tokenizer::{Detokenizer, Tokenizer};

use crate::scheduler::{Event, Finish, JobShared, Outcome, SlotView};

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

/// A sequence and the choice it runs, if any.
pub struct Slot<'t> {
    pub id: usize,
    pub ctx: Context,
    pub task: Option<Task<'t>>,
    /// Scheduler clock of the last assignment (least recently used goes first).
    pub last_used: u64,
}

impl<'t> Slot<'t> {
    pub fn new(id: usize, ctx: Context) -> Slot<'t> {
        Slot {
            id,
            ctx,
            task: None,
            last_used: 0,
        }
    }

    /// Tokens at the start of `prompt` that this slot's cache holds exactly.
    pub fn common_prefix(&self, prompt: &[u32]) -> usize {
        self.ctx
            .tokens()
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
    }

    pub fn view(&self) -> SlotView {
        let t = self.task.as_ref();
        SlotView {
            id: self.id,
            id_task: t.map(|t| t.job.id),
            is_processing: t.is_some(),
            n_ctx: self.ctx.params().n_ctx,
            n_past: self.ctx.n_past(),
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

/// Runs the engine for the scheduler.
pub struct Engine {
    n_batch: usize,
    /// This step's entries: slot index and the range of its tokens in `tokens`.
    plan: Vec<(usize, std::ops::Range<usize>)>,
    tokens: Vec<u32>,
}

impl Engine {
    pub fn new(n_batch: usize) -> Engine {
        Engine {
            n_batch: n_batch.max(1),
            plan: Vec::new(),
            tokens: Vec::new(),
        }
    }

    /// One step over every busy slot: evaluate, then sample where logits are ready.
    pub fn step(&mut self, slots: &mut [Slot<'_>], tok: &Tokenizer) -> Stepped {
        self.plan.clear();
        self.tokens.clear();
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
                self.plan.push((i, at..at + 1));
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
            let Some(t) = &slots[i].task else { continue };
            let Phase::Prompt { next } = t.phase else {
                continue;
            };
            let n = (t.job.prompt.len() - next).min(budget);
            let at = self.tokens.len();
            self.tokens.extend_from_slice(&t.job.prompt[next..next + n]);
            self.plan.push((i, at..at + n));
            budget -= n;
            out.prompt_tokens += n;
        }
        out.busy = self.plan.len();
        // Evaluate. (One context per slot today: each slot's tokens in turn.)
        for (i, range) in &self.plan {
            let slot = &mut slots[*i];
            let r = slot.ctx.decode(&self.tokens[range.clone()]);
            let Some(task) = &mut slot.task else { continue };
            match r {
                Ok(()) => {
                    if let Phase::Prompt { next } = &mut task.phase {
                        *next += range.len();
                    }
                }
                Err(e) => {
                    let _ = task.job.events.send(Event::Error {
                        message: e.to_string(),
                    });
                    slot.task = None;
                }
            }
        }
        // Sample for every slot whose logits are ready.
        for (i, _) in &self.plan {
            let slot = &mut slots[*i];
            let Some(task) = &mut slot.task else { continue };
            let ready = match task.phase {
                Phase::Prompt { next } => next == task.job.prompt.len(),
                Phase::Generate { .. } => true,
            };
            if !ready {
                continue;
            }
            let before = task.n_generated;
            let finish = sample(task, &slot.ctx, tok);
            out.generated_tokens += task.n_generated - before;
            if let Some(finish) = finish {
                finish_task(slot, finish);
            }
        }
        out
    }
}

/// Samples the next token of `task` from its context's logits and sends its text; returns why
/// the choice ends, if it does.
fn sample(task: &mut Task<'_>, ctx: &Context, tok: &Tokenizer) -> Option<Finish> {
    let now = Instant::now();
    task.prompt_done.get_or_insert(now);
    let params = &task.job.params;
    if params.max_tokens.is_some_and(|m| task.n_generated >= m) {
        return Some(Finish::Length);
    }
    let id = task.chain.sample(ctx.logits());
    if tok.is_eog(id) && !params.ignore_eos {
        return Some(Finish::Eos);
    }
    task.n_generated += 1;
    let piece = task.detok.push(id).unwrap_or_default();
    let (text, hit) = task.stops.push(&piece);
    if !text.is_empty() {
        let _ = task.job.events.send(Event::Text {
            index: task.index,
            text,
        });
    }
    if let Some(s) = hit {
        return Some(Finish::Word(s));
    }
    if params.max_tokens.is_some_and(|m| task.n_generated >= m)
        || ctx.n_past() >= ctx.params().n_ctx
    {
        return Some(Finish::Length);
    }
    task.phase = Phase::Generate { token: id };
    None
}

/// Sends the held-back text and the outcome, and frees the slot.
fn finish_task(slot: &mut Slot<'_>, finish: Finish) {
    let Some(mut task) = slot.task.take() else {
        return;
    };
    if !matches!(finish, Finish::Word(_)) {
        let mut rest = task.stops.flush();
        rest.push_str(&task.detok.finish());
        if !rest.is_empty() {
            let _ = task.job.events.send(Event::Text {
                index: task.index,
                text: rest,
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
    let _ = task.job.events.send(Event::Done {
        index: task.index,
        outcome,
    });
}
