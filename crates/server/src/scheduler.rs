//! The scheduler: one std thread that owns the engine's [`Context`] (one KV store, a sequence
//! per slot) and runs all generation. HTTP handlers never touch the engine; they
//! [`Scheduler::submit`] a [`Job`] over a bounded channel (full → the caller answers 503) and
//! read [`Event`]s back from a channel of their own.
//!
//! Each step of the loop: take new jobs while a slot is free, drop the work of clients that went
//! away (their event receiver is closed), then one forward pass over every busy slot — the next
//! token of each generating slot plus chunks of waiting prompts (see [`crate::slot`]) — and
//! sample for each slot whose logits are ready. A slot keeps its cells when its job ends; a new
//! job starts from the longest exact token prefix any slot holds (its own, or another's cells
//! shared without copying), so only equal tokens are ever reused.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{
    Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel,
};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use engine::generate::StopMatcher;
use engine::{Context, ContextParams, Model, SamplerParams};
use tokio::sync::mpsc::UnboundedSender;

use crate::slot::{Engine, Phase, Slot, Task};

/// What to generate for one request.
#[derive(Clone, Debug)]
pub struct GenParams {
    /// Most tokens to generate per choice; `None` until the end or a full context.
    pub max_tokens: Option<usize>,
    /// Generation stops before any of these strings, which are never sent.
    pub stop: Vec<String>,
    pub sampler: SamplerParams,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
    /// Report the probabilities of this many most likely tokens at each step, with the chosen
    /// token's (llama-server's `n_probs`; OpenAI's `top_logprobs`). `None`: no probabilities.
    pub n_probs: Option<usize>,
    /// Probabilities after the sampler chain (llama-server's `post_sampling_probs`) instead of
    /// the softmax of the raw logits.
    pub post_sampling_probs: bool,
    /// The text shows control tokens (`<|channel|>`, `[TOOL_CALLS]`): a chat reply whose
    /// markup is made of them is parsed from it (see `tools`).
    pub special: bool,
}

/// One generated token's probability and its most likely alternatives.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenProbs {
    pub id: u32,
    /// The text sent with this token (after stop-string hold-back and UTF-8 joining, as
    /// llama-server's `text_to_send`).
    pub text: String,
    pub p: f32,
    /// The most likely tokens: id, piece bytes, probability; most likely first.
    pub top: Vec<(u32, Vec<u8>, f32)>,
}

/// One request for the scheduler.
pub struct Job {
    pub prompt: Vec<u32>,
    pub params: GenParams,
    /// Choices to generate (`n`); choice `i` samples with seed `seed + i`.
    pub n: usize,
    /// Run on this slot (llama-server's `id_slot`).
    pub id_slot: Option<usize>,
    /// Reuse the longest exact token prefix a slot holds (llama-server's `cache_prompt`).
    pub cache_prompt: bool,
    /// Where the text goes; dropping the receiver cancels the job.
    pub events: UnboundedSender<Event>,
    /// Where prompt progress goes, if the request asked (llama-server's `return_progress`).
    pub progress: Option<UnboundedSender<Progress>>,
}

/// How far a job's prompt is (llama-server's `prompt_progress`): sent when a slot takes the
/// job, then after every step that evaluated part of its prompt.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Prompt tokens.
    pub total: usize,
    /// Prompt tokens taken from the cache.
    pub cache: usize,
    /// Prompt tokens in the slot so far (cached included).
    pub processed: usize,
    /// Since the slot took the job.
    pub time_ms: u64,
    /// Until the last step that evaluated prompt tokens (0 before the first).
    pub prompt_ms: f64,
}

/// Why a choice ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finish {
    /// An end-of-generation token.
    Eos,
    /// The token limit, or a full context.
    Length,
    /// A stop string (given).
    Word(String),
}

/// Counts and times of a finished choice.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub finish: Finish,
    pub id_slot: usize,
    pub n_prompt: usize,
    /// Prompt tokens taken from the slot's cache instead of evaluated.
    pub n_cached: usize,
    pub n_generated: usize,
    pub prompt_time: Duration,
    pub generation_time: Duration,
}

/// What a job's handler receives, in order per choice: `Text`s, then one `Done`.
#[derive(Clone, Debug)]
pub enum Event {
    /// Generated text; with `n_probs` set, one event per token with its probabilities.
    Text {
        index: usize,
        text: String,
        probs: Option<TokenProbs>,
        /// The token sampled at this step (`None` for text held back until the end).
        token: Option<u32>,
    },
    Done {
        index: usize,
        outcome: Outcome,
    },
    Error {
        message: String,
    },
}

/// Why a job was not taken.
#[derive(Debug)]
pub enum SubmitError {
    QueueFull,
    Stopped,
}

/// The settings of the scheduler and its slots.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub n_parallel: usize,
    /// Most positions one slot may hold.
    pub n_ctx_slot: usize,
    /// llama-server's `--kv-unified`: every slot may fill the whole store (of `n_ctx_slot`
    /// cells) rather than its share; a step that finds no free cells first drops idle slots'
    /// cached prompts, then fails its requests with "context size has been exceeded".
    pub kv_unified: bool,
    pub n_batch: usize,
    pub n_threads: usize,
    /// Jobs waiting beyond the busy slots.
    pub queue_size: usize,
    /// The scheduler thread's name.
    pub thread_name: String,
}

impl SchedulerConfig {
    /// Cells of the shared KV store.
    pub fn n_ctx_total(&self) -> usize {
        if self.kv_unified {
            self.n_ctx_slot
        } else {
            self.n_ctx_slot * self.n_parallel
        }
    }
}

/// What `/slots` shows of a slot.
#[derive(Clone, Debug, Default)]
pub struct SlotView {
    pub id: usize,
    pub id_task: Option<u64>,
    pub is_processing: bool,
    pub n_ctx: usize,
    pub n_past: usize,
    pub n_prompt: usize,
    pub n_decoded: usize,
    pub n_remain: Option<usize>,
}

/// Counters for `/metrics`, as llama-server keeps them.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub n_prompt_tokens_total: u64,
    pub n_prompt_tokens_cached_total: u64,
    pub t_prompt_total: Duration,
    pub n_tokens_predicted_total: u64,
    pub t_predicted_total: Duration,
    pub n_decode_total: u64,
    pub n_busy_slots_total: u64,
    pub n_tokens_max: usize,
    pub n_requests_total: u64,
    pub kv_cells_used: usize,
}

/// State the scheduler thread publishes for the handlers.
#[derive(Default)]
pub struct Shared {
    pub slots: Mutex<Vec<SlotView>>,
    pub stats: Mutex<Stats>,
    /// Jobs submitted and not yet taken by a slot.
    pub queued: AtomicUsize,
    /// Set to end the scheduler thread.
    pub stop: AtomicBool,
}

impl Shared {
    pub fn slots(&self) -> Vec<SlotView> {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn stats(&self) -> Stats {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The handlers' end of the scheduler.
#[derive(Clone)]
pub struct Scheduler {
    tx: SyncSender<Job>,
    pub shared: Arc<Shared>,
    pub config: SchedulerConfig,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Scheduler {
    /// Makes every slot's context, then starts the scheduler thread.
    pub fn start(model: Arc<Model>, config: SchedulerConfig) -> Result<Scheduler, String> {
        if config.n_parallel == 0 || config.n_parallel > engine::batch::MAX_SEQ {
            return Err(format!(
                "{} slots: between 1 and {} are possible",
                config.n_parallel,
                engine::batch::MAX_SEQ
            ));
        }
        // One KV store for every slot; each slot may fill its share of it.
        let params = ContextParams {
            n_ctx: config.n_ctx_total(),
            n_batch: config.n_batch,
            n_threads: config.n_threads,
            batch_invariant: true,
            n_seq_max: config.n_parallel,
            // As llama-server: a slot's share of the context unless the store is unified.
            n_ctx_seq: (!config.kv_unified).then_some(config.n_ctx_slot),
        };
        let ctx = Context::new(model.clone(), params).map_err(|e| e.to_string())?;
        let (tx, rx) = sync_channel(config.queue_size.max(1));
        let shared = Arc::new(Shared::default());
        {
            let mut views = shared.slots.lock().unwrap_or_else(PoisonError::into_inner);
            *views = (0..config.n_parallel)
                .map(|id| SlotView {
                    id,
                    n_ctx: config.n_ctx_slot,
                    ..SlotView::default()
                })
                .collect();
        }
        let sh = shared.clone();
        let cfg = config.clone();
        let thread = std::thread::Builder::new()
            .name(config.thread_name.clone())
            .spawn(move || run(model, ctx, cfg, rx, sh))
            .map_err(|e| e.to_string())?;
        Ok(Scheduler {
            tx,
            shared,
            config,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Stops the scheduler thread (dropping any work left) and waits for it.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }

    /// Queues a job; a full queue is refused at once.
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        self.shared.queued.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shared.queued.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::QueueFull,
                    TrySendError::Disconnected(_) => SubmitError::Stopped,
                })
            }
        }
    }
}

/// A choice of a job waiting for a slot.
struct Pending {
    job: Arc<JobShared>,
    index: usize,
}

/// The parts of a job its choices share.
pub(crate) struct JobShared {
    pub id: u64,
    pub prompt: Vec<u32>,
    pub params: GenParams,
    pub id_slot: Option<usize>,
    pub cache_prompt: bool,
    pub events: UnboundedSender<Event>,
    pub progress: Option<UnboundedSender<Progress>>,
    /// Choice 0 has evaluated the prompt: the other choices may share its cells.
    pub prompt_shared: AtomicBool,
}

fn run(
    model: Arc<Model>,
    ctx: Context,
    cfg: SchedulerConfig,
    rx: Receiver<Job>,
    shared: Arc<Shared>,
) {
    let tok = &model.tokenizer;
    let mut slots: Vec<Slot<'_>> = (0..cfg.n_parallel).map(Slot::new).collect();
    let mut engine = Engine::new(ctx, cfg.n_ctx_slot);
    let mut waiting: VecDeque<Pending> = VecDeque::new();
    let mut next_id = 0u64;
    let mut clock = 0u64;
    let mut open = true;
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        // Intake: block only when there is nothing else to do.
        let idle = slots.iter().all(|s| s.task.is_none()) && waiting.is_empty();
        if idle {
            if !open {
                return;
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(job) => enqueue(job, &mut waiting, &mut next_id, &shared),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        while open && waiting.is_empty() && slots.iter().any(|s| s.task.is_none()) {
            match rx.try_recv() {
                Ok(job) => enqueue(job, &mut waiting, &mut next_id, &shared),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        // Clients that went away stop here, waiting or running.
        waiting.retain(|p| !p.job.events.is_closed());
        for slot in &mut slots {
            if slot.task.as_ref().is_some_and(|t| t.job.events.is_closed()) {
                slot.task = None;
            }
        }
        // Assign waiting choices to free slots, in arrival order. Further choices of a job wait
        // until choice 0 has evaluated the prompt, then share its cells.
        let mut i = 0;
        while i < waiting.len() {
            let p = &waiting[i];
            let ready = p.index == 0 || p.job.prompt_shared.load(Ordering::Relaxed);
            let Some(s) = ready.then(|| pick_slot(&slots, &p.job)).flatten() else {
                i += 1;
                continue;
            };
            let Some(p) = waiting.remove(i) else { break };
            clock += 1;
            slots[s].last_used = clock;
            let stops = StopMatcher {
                stops: p.job.params.stop.clone(),
                pending: String::new(),
            };
            let mut sampler = p.job.params.sampler.clone();
            sampler.seed = sampler.seed.wrapping_add(p.index as u64);
            // The longest exact prefix: this slot's own, or another slot's shared.
            let (donor, common) = if p.job.cache_prompt {
                slots
                    .iter()
                    .map(|o| (o.id, o.common_prefix(&p.job.prompt)))
                    .max_by_key(|&(id, n)| (n, id == s))
                    .map_or((None, 0), |(id, n)| (Some(id), n))
            } else {
                (None, 0)
            };
            let reuse = common.min(p.job.prompt.len().saturating_sub(1));
            engine.prepare(&mut slots, s, donor, &p.job.prompt, reuse);
            if let (Some(tx), 0) = (&p.job.progress, p.index) {
                let _ = tx.send(Progress {
                    total: p.job.prompt.len(),
                    cache: reuse,
                    processed: reuse,
                    time_ms: 0,
                    prompt_ms: 0.0,
                });
            }
            slots[s].task = Some(Task {
                index: p.index,
                phase: Phase::Prompt { next: reuse },
                n_cached: reuse,
                chain: sampler.build_for(tok),
                detok: tok.detokenizer(p.job.params.special),
                stops,
                n_generated: 0,
                started: Instant::now(),
                prompt_done: None,
                job: p.job,
            });
            let mut st = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
            st.n_requests_total += 1;
            st.n_prompt_tokens_cached_total += reuse as u64;
        }
        if slots.iter().all(|s| s.task.is_none()) {
            publish(&slots, &engine, &shared, None);
            continue;
        }
        // One engine step over every busy slot.
        let t0 = Instant::now();
        let stepped = engine.step(&mut slots, tok);
        let dt = t0.elapsed();
        publish(&slots, &engine, &shared, Some((stepped, dt)));
        let done = engine.finish(&mut slots);
        publish(&slots, &engine, &shared, None);
        for (job, event) in done {
            let _ = job.events.send(event);
        }
    }
}

fn enqueue(job: Job, waiting: &mut VecDeque<Pending>, next_id: &mut u64, shared: &Shared) {
    shared.queued.fetch_sub(1, Ordering::SeqCst);
    *next_id += 1;
    let n = job.n.max(1);
    let job = Arc::new(JobShared {
        id: *next_id,
        prompt: job.prompt,
        params: job.params,
        id_slot: job.id_slot,
        cache_prompt: job.cache_prompt,
        events: job.events,
        progress: job.progress,
        prompt_shared: AtomicBool::new(false),
    });
    for index in 0..n {
        waiting.push_back(Pending {
            job: job.clone(),
            index,
        });
    }
}

/// The free slot for a job: the one it asked for, else the one holding the longest exact
/// prefix of its prompt, else the least recently used.
fn pick_slot(slots: &[Slot<'_>], job: &JobShared) -> Option<usize> {
    if let Some(id) = job.id_slot {
        return slots.get(id).filter(|s| s.task.is_none()).map(|s| s.id);
    }
    slots
        .iter()
        .filter(|s| s.task.is_none())
        .max_by_key(|s| {
            let common = if job.cache_prompt {
                s.common_prefix(&job.prompt)
            } else {
                0
            };
            (common, std::cmp::Reverse(s.last_used))
        })
        .map(|s| s.id)
}

/// Copies what `/slots` and `/metrics` show.
fn publish(
    slots: &[Slot<'_>],
    engine: &Engine,
    shared: &Shared,
    step: Option<(crate::slot::Stepped, Duration)>,
) {
    let views: Vec<SlotView> = slots.iter().map(|s| s.view(engine.n_ctx_slot)).collect();
    if let Some((s, dt)) = step {
        let mut st = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
        st.n_decode_total += 1;
        st.n_busy_slots_total += s.busy as u64;
        st.n_prompt_tokens_total += s.prompt_tokens as u64;
        st.n_tokens_predicted_total += s.generated_tokens as u64;
        let total = s.prompt_tokens + s.generated_tokens;
        if total > 0 {
            // Split the step's time between prompt and generation by their token counts.
            let p = dt.mul_f64(s.prompt_tokens as f64 / total as f64);
            st.t_prompt_total += p;
            st.t_predicted_total += dt.saturating_sub(p);
        }
        st.n_tokens_max = st
            .n_tokens_max
            .max(views.iter().map(|v| v.n_past).max().unwrap_or(0));
        st.kv_cells_used = engine.ctx.kv_cells_used();
    } else {
        let mut st = shared.stats.lock().unwrap_or_else(PoisonError::into_inner);
        st.kv_cells_used = engine.ctx.kv_cells_used();
    }
    *shared.slots.lock().unwrap_or_else(PoisonError::into_inner) = views;
}
