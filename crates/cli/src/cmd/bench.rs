//! `hearth bench`: prompt-processing and token-generation speed, measured the way
//! `llama-bench` measures it, with the same flags, columns and JSON fields so results compare
//! line by line.
//!
//! pp: one prompt of random token ids in batches of `-b`; tg: single-token decodes; pg: both.
//! Each test runs once as a warm-up, then `-r` times; reported as mean ± standard deviation of
//! tokens per second. Peak RSS and model load time (cold and warm page cache) are reported once.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use engine::sampler::Rng;
use engine::{Context, ContextParams, Model};
use serde_json::json;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// GGUF model file(s): local paths or Hugging Face references (org/repo[:QUANT])
    #[arg(
        short = 'm',
        long = "model",
        visible_alias = "hf",
        required = true,
        value_delimiter = ','
    )]
    pub models: Vec<String>,
    /// Prompt lengths to test (0 skips the pp test)
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test (0 skips the tg test)
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Prompt + generation tests, as PROMPT,GEN pairs (`-pg 512,128`)
    #[arg(long = "pg", value_parser = parse_pg)]
    pub pg: Vec<(usize, usize)>,
    /// Thread counts to test
    #[arg(short = 't', long = "threads", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Batch size for prompt processing
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: usize,
    /// Repetitions of each test
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub repetitions: usize,
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value = "md")]
    pub output: Format,
    /// Skip the cold-cache load measurement (it evicts the file from the page cache)
    #[arg(long)]
    pub no_cold_load: bool,
    /// Sum products in llama.cpp's order (`llama`, results equal to llama.cpp's) or the
    /// fastest (`fast`)
    #[arg(long, value_enum, default_value = "llama")]
    pub arithmetic: super::common::Arithmetic,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Md,
    Json,
    Csv,
}

fn parse_pg(s: &str) -> Result<(usize, usize), String> {
    let (p, g) = s
        .split_once(',')
        .ok_or_else(|| format!("expected PROMPT,GEN, got '{s}'"))?;
    let n = |x: &str| x.trim().parse::<usize>().map_err(|e| format!("'{x}': {e}"));
    Ok((n(p)?, n(g)?))
}

/// llama-bench spells the pair flag `-pg`; clap needs `--pg`.
pub fn normalize_argv(args: impl Iterator<Item = OsString>) -> Vec<OsString> {
    let mut in_bench = false;
    args.map(|a| {
        if a == "bench" {
            in_bench = true;
        }
        if in_bench && a == "-pg" {
            OsString::from("--pg")
        } else {
            a
        }
    })
    .collect()
}

/// One measured test.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub model: PathBuf,
    pub model_type: String,
    pub model_size: u64,
    pub model_n_params: u64,
    pub n_threads: usize,
    pub n_batch: usize,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub samples_ns: Vec<u64>,
    /// Bytes of weights one decoded token reads (`engine::model::ModelInfo::bytes_per_token`).
    pub bytes_per_token: u64,
    /// For generation tests: the streaming-read bandwidth (bytes/s) of a buffer of
    /// `bytes_per_token` bytes with the same threads, measured right after the test.
    pub read_bandwidth: Option<f64>,
}

impl TestResult {
    fn name(&self) -> String {
        match (self.n_prompt, self.n_gen) {
            (p, 0) => format!("pp{p}"),
            (0, g) => format!("tg{g}"),
            (p, g) => format!("pp{p}+tg{g}"),
        }
    }

    fn samples_ts(&self) -> Vec<f64> {
        let n = (self.n_prompt + self.n_gen) as f64;
        self.samples_ns
            .iter()
            .map(|&ns| n * 1e9 / ns.max(1) as f64)
            .collect()
    }
}

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
    (mean, var.sqrt())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.repetitions == 0 {
        bail!("-r/--repetitions must be at least 1");
    }
    if args.batch_size == 0 {
        bail!("-b/--batch-size must be at least 1");
    }
    let threads = if args.threads.is_empty() {
        vec![engine::context::default_threads()]
    } else {
        args.threads.clone()
    };
    if let Some(t) = threads.iter().find(|&&t| t == 0 || t > 1024) {
        bail!("thread count {t} must be between 1 and 1024");
    }
    let mut tests: Vec<(usize, usize)> = Vec::new();
    tests.extend(args.n_prompt.iter().filter(|&&p| p > 0).map(|&p| (p, 0)));
    tests.extend(args.n_gen.iter().filter(|&&g| g > 0).map(|&g| (0, g)));
    tests.extend(args.pg.iter().copied().filter(|&(p, g)| p + g > 0));
    if tests.is_empty() {
        bail!("nothing to measure: every test length is 0");
    }

    let mut results = Vec::new();
    let mut notes = Vec::new();
    let paths: Vec<PathBuf> = args
        .models
        .iter()
        .map(|m| super::pull::resolve(m, false))
        .collect::<anyhow::Result<_>>()?;
    for path in &paths {
        let cold_ms = if args.no_cold_load {
            None
        } else {
            kernels::mmap::evict_from_page_cache(path)
                .ok()
                .map(|()| time_load(path))
                .transpose()?
        };
        let warm_ms = time_load(path)?;
        let model = Arc::new(
            Model::load_with(path, args.arithmetic.load_options())
                .with_context(|| format!("cannot load {}", path.display()))?,
        );
        let model_type = model_type(&model);
        for &n_threads in &threads {
            for &(n_prompt, n_gen) in &tests {
                let n_ctx = (n_prompt + n_gen + 1).max(16);
                let params = ContextParams {
                    n_ctx,
                    n_batch: args.batch_size,
                    n_threads,
                    ..ContextParams::default()
                };
                let mut ctx = Context::new(model.clone(), params)?;
                let mut rng = Rng::new(42);
                // Warm-up, as llama-bench: the prompt, and one generated token.
                run_test(&mut ctx, &mut rng, n_prompt, n_gen.min(1))?;
                let mut samples_ns = Vec::with_capacity(args.repetitions);
                for _ in 0..args.repetitions {
                    let t0 = Instant::now();
                    run_test(&mut ctx, &mut rng, n_prompt, n_gen)?;
                    samples_ns.push(t0.elapsed().as_nanos() as u64);
                }
                let r = TestResult {
                    model: path.clone(),
                    model_type: model_type.clone(),
                    model_size: model.info.n_bytes,
                    model_n_params: model.info.n_params,
                    n_threads,
                    n_batch: args.batch_size,
                    n_prompt,
                    n_gen,
                    samples_ns,
                    bytes_per_token: model.info.bytes_per_token,
                    read_bandwidth: None,
                };
                if args.output == Format::Md {
                    eprint!(".");
                }
                results.push(r);
            }
        }
        let rss = peak_rss_bytes();
        notes.push(json!({
            "model_filename": path.display().to_string(),
            "load_ms_cold": cold_ms,
            "load_ms_warm": warm_ms,
            "peak_rss_bytes": rss,
        }));
    }
    // The read bandwidth beside each generation test, measured after every peak RSS was taken
    // (the buffer is as large as the bytes a token reads).
    let mut measured: Vec<((usize, u64), f64)> = Vec::new();
    for r in results
        .iter_mut()
        .filter(|r| r.n_gen > 0 && r.n_prompt == 0)
    {
        let key = (r.n_threads, r.bytes_per_token);
        let bw = match measured.iter().find(|(k, _)| *k == key) {
            Some(&(_, bw)) => bw,
            None => {
                let bytes = (r.bytes_per_token as usize).max(16 << 20);
                let pool = engine::context::shared_pool(r.n_threads);
                let bw = kernels::membw::read_bandwidth(&pool, bytes, Duration::from_millis(500));
                measured.push((key, bw));
                bw
            }
        };
        r.read_bandwidth = Some(bw);
    }
    if args.output == Format::Md {
        eprintln!();
    }
    let out = match args.output {
        Format::Md => render_md(&results, &notes),
        Format::Json => render_json(&results, &notes)?,
        Format::Csv => render_csv(&results),
    };
    print!("{out}");
    Ok(())
}

fn run_test(ctx: &mut Context, rng: &mut Rng, n_prompt: usize, n_gen: usize) -> anyhow::Result<()> {
    let n_vocab = ctx.model().hparams.n_vocab as u64;
    ctx.clear();
    if n_prompt > 0 {
        let prompt: Vec<u32> = (0..n_prompt)
            .map(|_| (rng.next_u64() % n_vocab) as u32)
            .collect();
        ctx.decode(&prompt)?;
    }
    for _ in 0..n_gen {
        let t = (rng.next_u64() % n_vocab) as u32;
        ctx.decode(&[t])?;
    }
    Ok(())
}

fn time_load(path: &std::path::Path) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let m = Model::load(path).with_context(|| format!("cannot load {}", path.display()))?;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    drop(m);
    Ok(ms)
}

/// llama.cpp's model description: architecture, size label and file type.
fn model_type(model: &Model) -> String {
    let params = model.info.n_params as f64;
    let size = if params >= 1e9 {
        format!("{:.0}B", params / 1e9)
    } else {
        format!("{:.0}M", params / 1e6)
    };
    format!("{} {size} {}", model.info.arch.name(), model.info.file_type)
}

/// Peak resident set size of this process (`VmHWM`), Linux only.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn render_md(results: &[TestResult], notes: &[serde_json::Value]) -> String {
    let mut o = String::new();
    o.push_str("| model | size | params | backend | threads | test | t/s |\n");
    o.push_str("| --- | ---: | ---: | --- | ---: | ---: | ---: |\n");
    for r in results {
        let (mean, std) = mean_std(&r.samples_ts());
        o.push_str(&format!(
            "| {} | {:.2} MiB | {:.2} M | CPU ({}) | {} | {} | {:.2} ± {:.2} |\n",
            r.model_type,
            r.model_size as f64 / (1024.0 * 1024.0),
            r.model_n_params as f64 / 1e6,
            kernels::isa::Isa::detected().name(),
            r.n_threads,
            r.name(),
            mean,
            std
        ));
    }
    let physical: Vec<String> = results.iter().filter_map(physical_view).collect();
    if !physical.is_empty() {
        o.push('\n');
        for line in physical {
            o.push_str(&line);
            o.push('\n');
        }
    }
    for n in notes {
        let ms = |k: &str| {
            n[k].as_f64()
                .map(|v| format!("{v:.1} ms"))
                .unwrap_or_else(|| "n/a".into())
        };
        let rss = n["peak_rss_bytes"]
            .as_u64()
            .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0));
        o.push_str(&format!(
            "\n{}: load {} (warm cache), {} (cold cache); peak RSS {}\n",
            n["model_filename"].as_str().unwrap_or(""),
            ms("load_ms_warm"),
            ms("load_ms_cold"),
            rss.unwrap_or_else(|| "n/a".into())
        ));
    }
    o
}

/// The generation speed as a read rate beside the memory's: "tg128 at 2 threads: 246.6 MB per
/// token × 81.1 t/s = 20.0 GB/s, 74 % of the streaming read of a buffer that size (27.0 GB/s)".
fn physical_view(r: &TestResult) -> Option<String> {
    let bw = r.read_bandwidth?;
    if r.n_prompt > 0 {
        return None;
    }
    let (ts, _) = mean_std(&r.samples_ts());
    let rate = ts * r.bytes_per_token as f64;
    Some(format!(
        "{} at {} threads: {:.1} MB per token × {:.1} t/s = {:.1} GB/s, {:.0} % of the streaming \
         read of a buffer that size ({:.1} GB/s)",
        r.name(),
        r.n_threads,
        r.bytes_per_token as f64 / 1e6,
        ts,
        rate / 1e9,
        100.0 * rate / bw,
        bw / 1e9
    ))
}

fn render_json(results: &[TestResult], notes: &[serde_json::Value]) -> anyhow::Result<String> {
    let rows: Vec<serde_json::Value> = results
        .iter()
        .map(|r| {
            let ts = r.samples_ts();
            let (avg_ts, stddev_ts) = mean_std(&ts);
            let ns: Vec<f64> = r.samples_ns.iter().map(|&v| v as f64).collect();
            let (avg_ns, stddev_ns) = mean_std(&ns);
            let note = notes
                .iter()
                .find(|n| n["model_filename"] == r.model.display().to_string());
            json!({
                "build_commit": env!("CARGO_PKG_VERSION"),
                "cpu_info": kernels::isa::Isa::detected().name(),
                "backends": "CPU",
                "model_filename": r.model.display().to_string(),
                "model_type": r.model_type,
                "model_size": r.model_size,
                "model_n_params": r.model_n_params,
                "n_batch": r.n_batch,
                "n_threads": r.n_threads,
                "n_prompt": r.n_prompt,
                "n_gen": r.n_gen,
                "test": r.name(),
                "avg_ns": avg_ns as u64,
                "stddev_ns": stddev_ns as u64,
                "avg_ts": avg_ts,
                "stddev_ts": stddev_ts,
                "samples_ns": r.samples_ns,
                "samples_ts": ts,
                "peak_rss_bytes": note.map(|n| n["peak_rss_bytes"].clone()),
                "load_ms_warm": note.map(|n| n["load_ms_warm"].clone()),
                "load_ms_cold": note.map(|n| n["load_ms_cold"].clone()),
                "bytes_per_token": r.bytes_per_token,
                "read_bandwidth_bps": r.read_bandwidth,
            })
        })
        .collect();
    Ok(serde_json::to_string_pretty(&rows)? + "\n")
}

fn render_csv(results: &[TestResult]) -> String {
    let mut o = String::from(
        "model_filename,model_type,model_size,model_n_params,n_batch,n_threads,n_prompt,n_gen,test,avg_ts,stddev_ts\n",
    );
    for r in results {
        let (avg, std) = mean_std(&r.samples_ts());
        o.push_str(&format!(
            "\"{}\",\"{}\",{},{},{},{},{},{},{},{avg:.6},{std:.6}\n",
            r.model.display(),
            r.model_type,
            r.model_size,
            r.model_n_params,
            r.n_batch,
            r.n_threads,
            r.n_prompt,
            r.n_gen,
            r.name()
        ));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_pairs_parse_and_reject_garbage() {
        assert_eq!(parse_pg("512,128"), Ok((512, 128)));
        assert!(parse_pg("512").is_err());
        assert!(parse_pg("a,1").is_err());
    }

    #[test]
    fn dash_pg_is_rewritten_only_after_bench() {
        let argv = ["hearth", "bench", "-m", "x", "-pg", "1,2"].map(OsString::from);
        assert_eq!(normalize_argv(argv.into_iter())[4], "--pg");
        let argv = ["hearth", "run", "-pg"].map(OsString::from);
        assert_eq!(normalize_argv(argv.into_iter())[2], "-pg");
    }

    #[test]
    fn mean_and_sample_std() {
        let (m, s) = mean_std(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, 2.5);
        assert!((s - 1.290_994).abs() < 1e-6);
    }
}
