//! The generation loop: feed the prompt (reusing whatever prefix the context already holds),
//! then sample, detokenize and stream until an end-of-generation token, a stop string or the
//! token limit.
//!
//! Stop strings never leak: text that could still become a stop string is held back until it
//! cannot, and the stop string itself is never emitted. Streamed text is always whole UTF-8.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use crate::context::{Context, ContextError};
use crate::sampler::{Chain, SamplerParams};

/// What to generate.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct GenerateParams {
    /// Most tokens to generate; `None` runs until the end or the context is full.
    pub max_tokens: Option<usize>,
    /// Generation stops before any of these strings, which are not emitted.
    pub stop: Vec<String>,
    pub sampler: SamplerParams,
    /// Keep going past end-of-generation tokens (benchmarks).
    pub ignore_eog: bool,
    /// When the context is full, drop half of the tokens after the first `keep` and go on
    /// (llama.cpp's `--context-shift`) instead of stopping with [`StopReason::ContextFull`].
    pub context_shift: Option<ContextShift>,
}

/// How [`GenerateParams::context_shift`] makes room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextShift {
    /// Tokens at the start of the context that are always kept (the system prompt, say).
    pub keep: usize,
}

/// Why generation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// `max_tokens` tokens were generated.
    MaxTokens,
    /// A stop string appeared (the string is given).
    StopString(String),
    /// The callback asked to stop.
    Cancelled,
    /// The context has no room for another token.
    ContextFull,
}

/// Token counts and times, as llama.cpp's timings report them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// Prompt tokens in the request.
    pub prompt_tokens: usize,
    /// Prompt tokens actually evaluated (the rest came from the cache).
    pub prompt_evaluated: usize,
    pub prompt_time: Duration,
    pub generated_tokens: usize,
    pub generation_time: Duration,
}

impl Timings {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        per_second(self.prompt_evaluated, self.prompt_time)
    }

    pub fn generation_tokens_per_second(&self) -> f64 {
        per_second(self.generated_tokens, self.generation_time)
    }
}

fn per_second(n: usize, t: Duration) -> f64 {
    if t.is_zero() {
        0.0
    } else {
        n as f64 / t.as_secs_f64()
    }
}

/// The result of one generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub stop_reason: StopReason,
    pub timings: Timings,
}

/// Holds back text that may still turn into a stop string.
#[derive(Debug, Default)]
pub struct StopMatcher {
    pub stops: Vec<String>,
    pub pending: String,
}

impl StopMatcher {
    /// Adds `piece`; returns the text safe to emit now and the stop string if one completed.
    pub fn push(&mut self, piece: &str) -> (String, Option<String>) {
        self.pending.push_str(piece);
        let first_hit = self
            .stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.pending.find(s.as_str()).map(|i| (i, s)))
            .min_by_key(|(i, _)| *i);
        if let Some((i, s)) = first_hit {
            let out = self.pending[..i].to_owned();
            let stop = s.clone();
            self.pending.clear();
            return (out, Some(stop));
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            for (k, _) in s.char_indices().skip(1) {
                if k > keep && self.pending.ends_with(&s[..k]) {
                    keep = k;
                }
            }
        }
        let cut = self.pending.len() - keep;
        let out = self.pending[..cut].to_owned();
        self.pending.drain(..cut);
        (out, None)
    }

    /// Text held back when generation ends for another reason.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

/// Evaluates `prompt` (reusing the longest prefix already in `ctx`), then generates, calling
/// `on_text` with each piece of new text; `on_text` returning `Break` stops generation.
pub fn generate(
    ctx: &mut Context,
    prompt: &[u32],
    params: &GenerateParams,
    mut on_text: impl FnMut(&str) -> ControlFlow<()>,
) -> Result<Generation, ContextError> {
    let mut chain = params.sampler.build_for(&ctx.model().tokenizer);
    generate_with(ctx, prompt, params, &mut chain, &mut on_text)
}

/// [`generate`] with a caller-built sampler chain.
pub fn generate_with(
    ctx: &mut Context,
    prompt: &[u32],
    params: &GenerateParams,
    chain: &mut Chain,
    on_text: &mut dyn FnMut(&str) -> ControlFlow<()>,
) -> Result<Generation, ContextError> {
    if prompt.is_empty() {
        return Err(ContextError::Empty);
    }
    let model = ctx.model().clone();
    let tok = &model.tokenizer;
    // Reuse the cached prefix, but always evaluate at least the last prompt token for logits.
    let common = ctx
        .tokens()
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count();
    let reuse = common.min(prompt.len() - 1);
    ctx.truncate(reuse);
    let mut timings = Timings {
        prompt_tokens: prompt.len(),
        ..Timings::default()
    };
    let t0 = Instant::now();
    ctx.decode(&prompt[reuse..])?;
    timings.prompt_evaluated = prompt.len() - reuse;
    timings.prompt_time = t0.elapsed();

    let mut detok = tok.detokenizer(false);
    let mut stops = StopMatcher {
        stops: params.stop.clone(),
        pending: String::new(),
    };
    let mut text = String::new();
    let mut tokens = Vec::new();
    let t1 = Instant::now();
    let reason = loop {
        if params.max_tokens.is_some_and(|m| tokens.len() >= m) {
            break StopReason::MaxTokens;
        }
        let id = chain.sample(ctx.logits());
        if tok.is_eog(id) && !params.ignore_eog {
            break StopReason::EndOfGeneration;
        }
        tokens.push(id);
        let piece = detok.push(id).unwrap_or_default();
        let (out, hit) = stops.push(&piece);
        if !out.is_empty() {
            text.push_str(&out);
            if on_text(&out).is_break() {
                break StopReason::Cancelled;
            }
        }
        if let Some(s) = hit {
            break StopReason::StopString(s);
        }
        if params.max_tokens.is_some_and(|m| tokens.len() >= m) {
            break StopReason::MaxTokens;
        }
        if ctx.n_past() >= ctx.params().n_ctx {
            match params.context_shift {
                Some(shift) if shift_context(ctx, shift)? => {}
                _ => break StopReason::ContextFull,
            }
        }
        ctx.decode(&[id])?;
    };
    if !matches!(reason, StopReason::StopString(_) | StopReason::Cancelled) {
        let mut rest = stops.flush();
        rest.push_str(&detok.finish());
        if !rest.is_empty() {
            text.push_str(&rest);
            let _ = on_text(&rest);
        }
    }
    timings.generated_tokens = tokens.len();
    timings.generation_time = t1.elapsed();
    Ok(Generation {
        text,
        tokens,
        stop_reason: reason,
        timings,
    })
}

/// Drops half of the tokens after the first `keep` and moves the rest back, as llama.cpp's
/// context shift does (`n_discard = (n_past - n_keep) / 2`): their cached keys are re-rotated
/// to the new positions (K-shift), nothing is re-evaluated. Returns false when nothing can be
/// dropped.
fn shift_context(ctx: &mut Context, shift: ContextShift) -> Result<bool, ContextError> {
    let n_past = ctx.n_past();
    let keep = shift.keep.min(n_past);
    let n_discard = (n_past - keep) / 2;
    if n_discard == 0 {
        return Ok(false);
    }
    ctx.shift(keep, n_discard);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, Option<String>) {
        let mut m = StopMatcher {
            stops: stops.iter().map(|s| s.to_string()).collect(),
            pending: String::new(),
        };
        let mut out = String::new();
        for p in pieces {
            let (o, hit) = m.push(p);
            out.push_str(&o);
            if hit.is_some() {
                return (out, hit);
            }
        }
        out.push_str(&m.flush());
        (out, None)
    }

    #[test]
    fn stop_string_split_across_pieces_is_not_leaked() {
        assert_eq!(
            run(&["</s>"], &["Hello <", "/", "s> more"]),
            ("Hello ".into(), Some("</s>".into()))
        );
    }

    #[test]
    fn partial_match_that_fails_is_released() {
        assert_eq!(run(&["STOP"], &["ST", "ART", "!"]), ("START!".into(), None));
    }

    #[test]
    fn earliest_stop_string_wins() {
        assert_eq!(run(&["b", "a"], &["xab"]), ("x".into(), Some("a".into())));
    }

    #[test]
    fn multibyte_text_is_cut_on_char_boundaries() {
        assert_eq!(run(&["é!"], &["café", "s"]), ("cafés".into(), None));
    }
}
