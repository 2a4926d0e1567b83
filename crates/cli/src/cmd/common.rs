//! Arguments shared by the subcommands that run a model, and loading with a progress line.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use engine::sampler::{MirostatMode, SamplerType};
use engine::{ContextParams, Model, SamplerParams};

/// Which model to load and how to run it.
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// GGUF model: a local path, or a Hugging Face reference (org/repo[:QUANT], hf.co/…, a
    /// …/resolve/REV/FILE URL) pulled into the Hugging Face cache; or a transformers checkpoint
    /// folder, converted in memory
    #[arg(short = 'm', long = "model", visible_alias = "hf")]
    pub model: String,
    /// Use only the Hugging Face cache, never the network (as HF_HUB_OFFLINE=1)
    #[arg(long = "offline")]
    pub offline: bool,
    /// Threads to compute with (default: one per core)
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Context size in tokens (prompt and reply together)
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    pub ctx_size: usize,
    /// Most prompt tokens evaluated at once
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: usize,
    /// When the context fills up, drop half of it (after --keep tokens) and go on, instead of
    /// stopping
    #[arg(long = "context-shift")]
    pub context_shift: bool,
    /// Tokens at the start kept by --context-shift
    #[arg(long = "keep", default_value_t = 0, requires = "context_shift")]
    pub keep: usize,
    /// Sum products in llama.cpp's order (`llama`: the same text as llama.cpp) or the fastest
    /// (`fast`: about 1.3× the prompt speed, as close to exact arithmetic, other last bits)
    #[arg(long, value_enum, default_value = "llama")]
    pub arithmetic: Arithmetic,
}

/// How matrix products are summed (`engine::LoadOptions::llama_order`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// llama.cpp's order: results equal llama.cpp's bit for bit.
    Llama,
    /// The fastest order.
    Fast,
}

impl Arithmetic {
    pub fn load_options(self) -> engine::LoadOptions {
        engine::LoadOptions {
            llama_order: self == Arithmetic::Llama,
        }
    }
}

impl ModelArgs {
    /// Validates the settings before anything is loaded.
    pub fn context_params(&self) -> anyhow::Result<ContextParams> {
        if self.ctx_size == 0 {
            bail!("--ctx-size must be at least 1");
        }
        if self.batch_size == 0 {
            bail!("--batch-size must be at least 1");
        }
        let n_threads = self
            .threads
            .unwrap_or_else(engine::context::default_threads);
        if n_threads == 0 || n_threads > 1024 {
            bail!("--threads must be between 1 and 1024");
        }
        Ok(ContextParams {
            n_ctx: self.ctx_size,
            n_batch: self.batch_size,
            n_threads,
            ..ContextParams::default()
        })
    }

    /// The context-shift setting of the generation loop.
    pub fn context_shift(&self) -> Option<engine::ContextShift> {
        self.context_shift
            .then_some(engine::ContextShift { keep: self.keep })
    }

    /// Loads the model, showing a progress line on a terminal; returns it and the load time.
    pub fn load(&self) -> anyhow::Result<(Arc<Model>, Duration)> {
        // A transformers checkpoint folder: converted in memory, no file written.
        if Path::new(&self.model).join("config.json").is_file() {
            let start = Instant::now();
            let model = super::convert::load_checkpoint(Path::new(&self.model))?;
            return Ok((Arc::new(model), start.elapsed()));
        }
        let path = super::pull::resolve(&self.model, self.offline)?;
        let start = Instant::now();
        let spinner = std::io::stderr().is_terminal().then(|| {
            let s = indicatif::ProgressBar::new_spinner();
            s.set_message(format!("loading {}", path.display()));
            s.enable_steady_tick(Duration::from_millis(100));
            s
        });
        let model = Model::load_with(&path, self.arithmetic.load_options())
            .with_context(|| format!("cannot load model {}", path.display()));
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        Ok((Arc::new(model?), start.elapsed()))
    }
}

/// Sampling settings, with llama.cpp's flag names and defaults.
#[derive(clap::Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature; 0 is greedy decoding
    #[arg(long = "temp", visible_alias = "temperature", default_value_t = 0.8)]
    pub temp: f32,
    /// Keep only the K most likely tokens (0: all)
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling mass (1.0: off)
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one (0: off)
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Locally typical sampling mass (1.0: off)
    #[arg(long = "typical", visible_alias = "typical-p", default_value_t = 1.0)]
    pub typical: f32,
    /// Keep tokens within N standard deviations of the top logit (-1: off)
    #[arg(long = "top-nsigma", visible_alias = "top-n-sigma", default_value_t = -1.0, allow_hyphen_values = true)]
    pub top_n_sigma: f32,
    /// XTC: chance of removing the most likely tokens (0: off)
    #[arg(long = "xtc-probability", default_value_t = 0.0)]
    pub xtc_probability: f32,
    /// XTC: tokens at least this likely may be removed (above 0.5: off)
    #[arg(long = "xtc-threshold", default_value_t = 0.1)]
    pub xtc_threshold: f32,
    /// Dynamic temperature range: the temperature moves within temp ± this (0: off)
    #[arg(long = "dynatemp-range", default_value_t = 0.0)]
    pub dynatemp_range: f32,
    /// Dynamic temperature exponent
    #[arg(long = "dynatemp-exp", default_value_t = 1.0)]
    pub dynatemp_exp: f32,
    /// Penalty for repeated tokens (1.0: off)
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens of history the penalties look at (0: off)
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// Penalty for tokens already present (0: off)
    #[arg(
        long = "presence-penalty",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    pub presence_penalty: f32,
    /// Penalty proportional to how often a token appeared (0: off)
    #[arg(
        long = "frequency-penalty",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    pub frequency_penalty: f32,
    /// DRY repetition penalty multiplier (0: off)
    #[arg(long = "dry-multiplier", default_value_t = 0.0)]
    pub dry_multiplier: f32,
    /// DRY base: the penalty grows as base^(repeat length - allowed length)
    #[arg(long = "dry-base", default_value_t = 1.75)]
    pub dry_base: f32,
    /// DRY: repeats longer than this are penalized
    #[arg(long = "dry-allowed-length", default_value_t = 2)]
    pub dry_allowed_length: usize,
    /// DRY: tokens of history scanned for repeats (0: off)
    #[arg(long = "dry-penalty-last-n", default_value_t = 64)]
    pub dry_penalty_last_n: usize,
    /// DRY sequence breaker, repeatable; replaces the defaults ("\n", ":", "\"", "*");
    /// "none" for none
    #[arg(long = "dry-sequence-breaker", value_name = "STRING")]
    pub dry_sequence_breaker: Vec<String>,
    /// Mirostat: 0 off, 1 Mirostat, 2 Mirostat 2.0 (replaces top-k, top-p, typical, …)
    #[arg(long = "mirostat", default_value_t = 0)]
    pub mirostat: i64,
    /// Mirostat learning rate (eta)
    #[arg(long = "mirostat-lr", default_value_t = 0.1)]
    pub mirostat_lr: f32,
    /// Mirostat target entropy (tau)
    #[arg(long = "mirostat-ent", default_value_t = 5.0)]
    pub mirostat_ent: f32,
    /// Samplers in order, separated by ';' (default:
    /// penalties;dry;top_n_sigma;top_k;typ_p;top_p;min_p;xtc;temperature)
    #[arg(long = "samplers", value_name = "SAMPLERS")]
    pub samplers: Option<String>,
    /// Samplers in order as one-letter codes (default: edskypmxt)
    #[arg(
        long = "sampler-seq",
        visible_alias = "sampling-seq",
        value_name = "SEQUENCE"
    )]
    pub sampler_seq: Option<String>,
    /// Never end at an end-of-generation token (bans them)
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// Random seed (-1: a random one)
    #[arg(short = 's', long = "seed", default_value_t = -1, allow_hyphen_values = true)]
    pub seed: i64,
}

impl SamplingArgs {
    pub fn params(&self) -> anyhow::Result<SamplerParams> {
        for (name, v) in [
            ("--top-p", self.top_p),
            ("--min-p", self.min_p),
            ("--typical", self.typical),
            ("--xtc-probability", self.xtc_probability),
            ("--xtc-threshold", self.xtc_threshold),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("{name} must be between 0 and 1, got {v}");
            }
        }
        for (name, v) in [
            ("--temp", self.temp),
            ("--top-nsigma", self.top_n_sigma),
            ("--dynatemp-range", self.dynatemp_range),
            ("--dynatemp-exp", self.dynatemp_exp),
            ("--presence-penalty", self.presence_penalty),
            ("--frequency-penalty", self.frequency_penalty),
            ("--dry-multiplier", self.dry_multiplier),
            ("--mirostat-lr", self.mirostat_lr),
            ("--mirostat-ent", self.mirostat_ent),
        ] {
            if !v.is_finite() {
                bail!("{name} must be a finite number, got {v}");
            }
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            bail!("--repeat-penalty must be finite and positive");
        }
        if !self.dry_base.is_finite() || self.dry_base < 1.0 {
            bail!("--dry-base must be at least 1, got {}", self.dry_base);
        }
        let Some(mirostat) = MirostatMode::from_number(self.mirostat) else {
            bail!("--mirostat must be 0 (off), 1 or 2, got {}", self.mirostat);
        };
        let defaults = SamplerParams::default();
        let samplers = match (&self.samplers, &self.sampler_seq) {
            (Some(_), Some(_)) => bail!("give --samplers or --sampler-seq, not both"),
            (Some(list), None) => SamplerType::parse_list(list).context("--samplers")?,
            (None, Some(seq)) => SamplerType::parse_codes(seq).context("--sampler-seq")?,
            (None, None) => defaults.samplers.clone(),
        };
        let dry_sequence_breakers = if self.dry_sequence_breaker.is_empty() {
            defaults.dry_sequence_breakers.clone()
        } else if self.dry_sequence_breaker.iter().any(|b| b == "none") {
            Vec::new()
        } else {
            self.dry_sequence_breaker.clone()
        };
        let seed = match self.seed {
            -1 => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
            s if s >= 0 => s as u64,
            s => bail!("--seed must be -1 (random) or non-negative, got {s}"),
        };
        Ok(SamplerParams {
            // As llama.cpp: a negative temperature is greedy decoding, like 0.
            temperature: self.temp.max(0.0),
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            typical_p: self.typical,
            top_n_sigma: self.top_n_sigma,
            xtc_probability: self.xtc_probability,
            xtc_threshold: self.xtc_threshold,
            dynatemp_range: self.dynatemp_range,
            dynatemp_exponent: self.dynatemp_exp,
            repeat_penalty: self.repeat_penalty,
            repeat_last_n: self.repeat_last_n,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            dry_multiplier: self.dry_multiplier,
            dry_base: self.dry_base,
            dry_allowed_length: self.dry_allowed_length,
            dry_penalty_last_n: self.dry_penalty_last_n,
            dry_sequence_breakers,
            mirostat,
            mirostat_tau: self.mirostat_ent,
            mirostat_eta: self.mirostat_lr,
            ignore_eos: self.ignore_eos,
            samplers,
            seed,
            ..defaults
        })
    }
}

/// `-n`: -1 means until the end of generation or a full context; other negatives are errors.
pub fn max_tokens(n: i64) -> anyhow::Result<Option<usize>> {
    match n {
        -1 => Ok(None),
        n if n >= 0 => Ok(Some(n as usize)),
        n => bail!("-n/--n-predict must be -1 (no limit) or at least 0, got {n}"),
    }
}

/// Prints where the forward pass spent its time (`--profile`), by kind of operation.
pub fn print_profile() {
    let totals = engine::profile::totals();
    let total: f64 = totals.iter().map(|t| t.1.as_secs_f64()).sum();
    for (op, time, calls) in totals {
        let ms = time.as_secs_f64() * 1e3;
        let share = if total > 0.0 {
            100.0 * time.as_secs_f64() / total
        } else {
            0.0
        };
        eprintln!(
            "{:>16} = {ms:10.2} ms ({share:5.1} %) in {calls} calls",
            op.name()
        );
    }
}

/// What `perplexity` and `imatrix` start from: the text of `file`, the model `model_ref`
/// (a path or a Hub reference) loaded in llama.cpp's order or not, and the text's tokens (BOS
/// as the model asks); the tokenization time goes to stderr under `tool`'s name.
pub fn model_and_text_tokens(
    model_ref: &str,
    offline: bool,
    llama_order: bool,
    file: &Path,
    tool: &str,
) -> anyhow::Result<(Arc<Model>, Vec<u32>)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let path = super::pull::resolve(model_ref, offline)?;
    let model = Arc::new(
        Model::load_with(&path, engine::LoadOptions { llama_order })
            .with_context(|| format!("cannot load model {}", path.display()))?,
    );
    let t0 = Instant::now();
    let tokens = model.tokenizer.encode(&text, true, false);
    eprintln!(
        "{tool}: tokenization took {:.1} ms, {} tokens",
        t0.elapsed().as_secs_f64() * 1e3,
        tokens.len()
    );
    Ok((model, tokens))
}
