//! `hearth batched-bench`: many sequences decoded together, measured as `llama-batched-bench`
//! measures it, with its flags, columns and JSON fields so results compare line by line.
//!
//! For each prompt length PP, generation length TG and number of parallel sequences B: decode B
//! prompts of PP random tokens (one shared prompt copied to every sequence with `-pps`) in
//! batches of `-b`, then TG steps that each decode one token of every sequence in one batch.
//! Reported: N_KV (cells used), the time and speed of the prompt and generation phases and of
//! the whole. One warm-up decode runs first; the store is cleared between configurations.

use std::ffi::OsString;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use engine::sampler::Rng;
use engine::{Batch, Context, ContextParams, Model};
use serde_json::json;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// GGUF model: a local path, or a Hugging Face reference (org/repo[:QUANT], hf.co/…)
    #[arg(short = 'm', long = "model", visible_alias = "hf")]
    pub model: String,
    /// Use only the Hugging Face cache, never the network
    #[arg(long = "offline")]
    pub offline: bool,
    /// KV cells (0: just enough for the largest configuration)
    #[arg(short = 'c', long = "ctx-size", default_value_t = 0)]
    pub ctx_size: usize,
    /// Most tokens per forward pass
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    pub batch_size: usize,
    /// Accepted for llama-batched-bench compatibility (hearth's pieces are `-b` long)
    #[arg(long = "ubatch-size", visible_alias = "ub")]
    pub ubatch_size: Option<usize>,
    /// Threads
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Prompt lengths (`-npp`)
    #[arg(long = "npp", value_delimiter = ',', default_value = "128")]
    pub npp: Vec<usize>,
    /// Generation lengths (`-ntg`)
    #[arg(long = "ntg", value_delimiter = ',', default_value = "128")]
    pub ntg: Vec<usize>,
    /// Parallel sequences (`-npl`)
    #[arg(long = "npl", value_delimiter = ',', default_value = "1,2,4,8")]
    pub npl: Vec<usize>,
    /// One prompt shared by every sequence (`-pps`)
    #[arg(long = "pps")]
    pub pps: bool,
    /// Compute every token as if it were alone (what `hearth serve` does)
    #[arg(long)]
    pub batch_invariant: bool,
    /// Sum products in llama.cpp's order (`llama`, results equal to llama.cpp's) or the
    /// fastest (`fast`)
    #[arg(long, value_enum, default_value = "llama")]
    pub arithmetic: Arithmetic,
    /// Print where the time went, by kind of operation (to stderr)
    #[arg(long)]
    pub profile: bool,
    /// Output format (`json` prints llama-batched-bench's JSON lines)
    #[arg(short = 'o', long = "output-format", value_enum, default_value = "md")]
    pub output: Format,
}

use super::common::Arithmetic;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Md,
    #[value(alias = "jsonl")]
    Json,
}

/// llama-batched-bench spells its flags `-npp`, `-ntg`, `-npl`, `-pps`; clap needs `--npp`.
pub fn normalize_argv(args: Vec<OsString>) -> Vec<OsString> {
    let in_cmd = args.iter().any(|a| a == "batched-bench");
    args.into_iter()
        .map(|a| match a.to_str() {
            Some(f @ ("-npp" | "-ntg" | "-npl" | "-pps")) if in_cmd => {
                OsString::from(format!("-{f}"))
            }
            _ => a,
        })
        .collect()
}

/// One measured configuration.
struct Row {
    pp: usize,
    tg: usize,
    pl: usize,
    n_kv: usize,
    t_pp: f64,
    t_tg: f64,
}

impl Row {
    fn speed_pp(&self, shared: bool) -> f64 {
        let n = if shared { self.pp } else { self.pl * self.pp };
        n as f64 / self.t_pp
    }

    fn speed_tg(&self) -> f64 {
        (self.pl * self.tg) as f64 / self.t_tg
    }

    fn t(&self) -> f64 {
        self.t_pp + self.t_tg
    }

    fn speed(&self) -> f64 {
        self.n_kv as f64 / self.t()
    }
}

fn needed_cells(pp: usize, tg: usize, pl: usize, shared: bool) -> usize {
    if shared { pp + pl * tg } else { pl * (pp + tg) }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args
        .npl
        .iter()
        .any(|&n| n == 0 || n > engine::batch::MAX_SEQ)
    {
        anyhow::bail!("-npl values must be 1..={}", engine::batch::MAX_SEQ);
    }
    let path = super::pull::resolve(&args.model, args.offline)?;
    let model = Arc::new(
        Model::load_with(
            &path,
            engine::LoadOptions {
                llama_order: args.arithmetic == Arithmetic::Llama,
            },
        )
        .with_context(|| format!("loading {}", path.display()))?,
    );
    let threads = args
        .threads
        .unwrap_or_else(engine::context::default_threads);
    let mut max_needed = 1;
    for &pp in &args.npp {
        for &tg in &args.ntg {
            for &pl in &args.npl {
                max_needed = max_needed.max(needed_cells(pp, tg, pl, args.pps));
            }
        }
    }
    let n_ctx = if args.ctx_size == 0 {
        max_needed
    } else {
        args.ctx_size
    };
    let n_seq_max = args.npl.iter().copied().max().unwrap_or(1);
    let mut ctx = Context::new(
        model.clone(),
        ContextParams {
            n_ctx,
            n_batch: args.batch_size,
            n_threads: threads,
            batch_invariant: args.batch_invariant,
            n_seq_max,
            // llama-batched-bench's store is not unified: each sequence gets its share.
            n_ctx_seq: Some(n_ctx / n_seq_max.max(1)),
        },
    )?;
    engine::profile::enable(args.profile);
    let n_vocab = model.hparams.n_vocab as u64;
    let mut rng = Rng::new(1234);
    let mut token = move || (rng.next_u64() % n_vocab) as u32;
    let n_batch = ctx.params().n_batch;

    if args.output == Format::Md {
        println!(
            "main: n_kv_max = {n_ctx}, n_batch = {n_batch}, n_ubatch = {n_batch}, flash_attn = 0, \
             is_pp_shared = {}, n_gpu_layers = 0, n_threads = {threads}, n_threads_batch = {threads}",
            i32::from(args.pps)
        );
        println!();
        println!(
            "|    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s |      T s |    S t/s |"
        );
        println!(
            "|-------|--------|------|--------|----------|----------|----------|----------|----------|----------|"
        );
    }

    // Warm-up, as llama-batched-bench does.
    let mut batch = Batch::with_capacity(n_batch.max(n_seq_max));
    let warm: Vec<u32> = (0..16.min(n_ctx)).map(|_| token()).collect();
    ctx.decode_batch(&Batch::of_sequence(&warm, 0, 0))?;
    ctx.clear();

    for &pp in &args.npp {
        for &tg in &args.ntg {
            for &pl in &args.npl {
                if needed_cells(pp, tg, pl, args.pps) > n_ctx {
                    continue;
                }
                ctx.clear();
                batch.clear();
                let prompts = if args.pps { 1 } else { pl };
                for s in 0..prompts {
                    for p in 0..pp {
                        // Logits for the last prompt token only, as llama-batched-bench asks.
                        let last = s + 1 == prompts && p + 1 == pp;
                        batch.push(token(), p, &[s], last);
                    }
                }
                let t0 = Instant::now();
                if !batch.is_empty() {
                    ctx.decode_batch(&batch)?;
                }
                let t_pp = t0.elapsed().as_secs_f64();
                if args.pps {
                    for s in 1..pl {
                        ctx.seq_cp(0, s, 0, None);
                    }
                }
                let t1 = Instant::now();
                for i in 0..tg {
                    batch.clear();
                    for s in 0..pl {
                        batch.push(token(), pp + i, &[s], true);
                    }
                    ctx.decode_batch(&batch)?;
                }
                let t_tg = t1.elapsed().as_secs_f64();
                let row = Row {
                    pp,
                    tg,
                    pl,
                    n_kv: needed_cells(pp, tg, pl, args.pps),
                    t_pp,
                    t_tg,
                };
                match args.output {
                    Format::Md => println!(
                        "|{:6} | {:6} | {:4} | {:6} | {:8.3} | {:8.2} | {:8.3} | {:8.2} | {:8.3} | {:8.2} |",
                        row.pp,
                        row.tg,
                        row.pl,
                        row.n_kv,
                        row.t_pp,
                        row.speed_pp(args.pps),
                        row.t_tg,
                        row.speed_tg(),
                        row.t(),
                        row.speed()
                    ),
                    Format::Json => println!(
                        "{}",
                        json!({
                            "n_kv_max": n_ctx,
                            "n_batch": n_batch,
                            "n_ubatch": n_batch,
                            "flash_attn": 0,
                            "is_pp_shared": i32::from(args.pps),
                            "n_gpu_layers": 0,
                            "n_threads": threads,
                            "n_threads_batch": threads,
                            "pp": row.pp,
                            "tg": row.tg,
                            "pl": row.pl,
                            "n_kv": row.n_kv,
                            "t_pp": row.t_pp,
                            "speed_pp": row.speed_pp(args.pps),
                            "t_tg": row.t_tg,
                            "speed_tg": row.speed_tg(),
                            "t": row.t(),
                            "speed": row.speed(),
                        })
                    ),
                }
            }
        }
    }
    if args.profile {
        super::common::print_profile();
    }
    Ok(())
}
