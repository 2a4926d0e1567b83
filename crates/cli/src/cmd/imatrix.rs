//! `hearth imatrix`: the importance matrix `llama-imatrix` collects, in its GGUF file format
//! (files go both ways). A text is walked as llama-imatrix walks it (chunks of `-c` tokens from
//! scratch, `-b / -c` of them together), every weight product of the layers summed by
//! `engine::imatrix::Collector`; `--in-file` adds earlier files (alone: combines them).
//! `--show-statistics` prints llama-imatrix's per-tensor table for one file. Progress goes to
//! stderr, the perplexity estimate and the statistics to stdout.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use engine::imatrix::{self, CollectParams, Collector, IMatrix};
use engine::{Context, ContextParams};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// GGUF model: a local path, or a Hugging Face reference (org/repo[:QUANT], hf.co/…)
    #[arg(short = 'm', long = "model", visible_alias = "hf")]
    pub model: Option<String>,
    /// Use only the Hugging Face cache, never the network
    #[arg(long = "offline")]
    pub offline: bool,
    /// The text to collect on (without it, --in-file files are only combined)
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Where to write the importance matrix
    #[arg(short = 'o', long = "output-file", default_value = "imatrix.gguf")]
    pub output: PathBuf,
    /// Tokens per chunk
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx_size: usize,
    /// Tokens per forward pass; a multiple of -c evaluates that many chunks together
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    pub batch_size: usize,
    /// Threads (default: one per core)
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Collect over at most N chunks
    #[arg(long = "chunks")]
    pub chunks: Option<usize>,
    /// Skip the first N chunks of the text
    #[arg(long = "chunk", default_value_t = 0)]
    pub skip_chunks: usize,
    /// Add an earlier imatrix file (repeatable); without -f, combine them into -o
    #[arg(long = "in-file", value_name = "FILE")]
    pub in_files: Vec<PathBuf>,
    /// Write the file every N chunks while collecting (0: only at the end)
    #[arg(long = "output-frequency", default_value_t = 10)]
    pub output_frequency: usize,
    /// Also keep a copy every N chunks, as FILE.at_N (0: never)
    #[arg(long = "save-frequency", default_value_t = 0)]
    pub save_frequency: usize,
    /// Do not measure perplexity on the way
    #[arg(long = "no-ppl")]
    pub no_ppl: bool,
    /// Print statistics of the one --in-file imatrix and exit
    #[arg(long = "show-statistics")]
    pub show_statistics: bool,
    /// Sum products in llama.cpp's order (`llama`) or the fastest (`fast`)
    #[arg(long, value_enum, default_value = "llama")]
    pub arithmetic: super::common::Arithmetic,
}

/// llama.cpp's micro-batch: the most tokens one forward pass takes (its collector's
/// 16-row rule applies per pass, so the passes must be the same).
const N_UBATCH: usize = 512;

pub fn run(args: Args) -> anyhow::Result<()> {
    let c = args.ctx_size;
    if c < 4 {
        bail!("-c must be at least 4 tokens");
    }
    if args.batch_size == 0 {
        bail!("-b must be at least 1");
    }
    if args.show_statistics {
        let [file] = args.in_files.as_slice() else {
            bail!("--show-statistics needs exactly one --in-file");
        };
        let m = read_imatrix(file)?;
        print_statistics(file, &m);
        return Ok(());
    }
    check_writable(&args.output)?;
    // llama-imatrix: chunk_size = n_ctx / n_parallel = -c.
    let mut total = IMatrix::new(u32::try_from(c).context("-c is too large")?);
    for f in &args.in_files {
        eprintln!("imatrix: loading {}", f.display());
        let m = read_imatrix(f)?;
        total
            .add(&m)
            .with_context(|| format!("cannot combine {}", f.display()))?;
    }
    let Some(text_path) = &args.file else {
        if args.in_files.is_empty() {
            bail!("nothing to do: give a text (-f) to collect on, or --in-file files to combine");
        }
        save(&total, &args.output)?;
        eprintln!(
            "imatrix: {} {} file(s) into {}",
            if args.in_files.len() > 1 {
                "combined"
            } else {
                "saved"
            },
            args.in_files.len(),
            args.output.display()
        );
        return Ok(());
    };
    let Some(model_ref) = &args.model else {
        bail!("-m MODEL is needed to collect on a text");
    };
    let (model, tokens) = super::common::model_and_text_tokens(
        model_ref,
        args.offline,
        args.arithmetic == super::common::Arithmetic::Llama,
        text_path,
        "imatrix",
    )?;
    let params = CollectParams {
        n_chunk_tokens: c,
        n_batch: args.batch_size,
        max_chunks: args.chunks,
        skip_chunks: args.skip_chunks,
        bos: model.tokenizer.bos().filter(|_| model.tokenizer.add_bos()),
        compute_ppl: !args.no_ppl,
    };
    let n_chunk = imatrix::n_chunks(tokens.len(), &params)?;
    let n_seq = imatrix::n_seq(&params)
        .min(engine::batch::MAX_SEQ)
        .min(n_chunk);
    let n_threads = args
        .threads
        .unwrap_or_else(engine::context::default_threads);
    let mut ctx = Context::new(
        model.clone(),
        ContextParams {
            n_ctx: c * n_seq,
            n_batch: args.batch_size.min(c * n_seq).min(N_UBATCH),
            n_threads,
            n_seq_max: n_seq,
            ..ContextParams::default()
        },
    )?;
    eprintln!(
        "imatrix: computing over {n_chunk} chunks, n_ctx={c}, batch_size={}, n_seq={n_seq}",
        args.batch_size
    );
    total.datasets.push(text_path.display().to_string());
    let mut collector = Collector::new(total);
    let t1 = Instant::now();
    let mut err = std::io::stderr();
    let mut saved_at = 0;
    let mut save_error = None;
    // Written as it goes, like llama-imatrix: a long run stopped early keeps what it had.
    let ppl = {
        let mut on_progress = |p: imatrix::Progress<'_>, m: &IMatrix| {
            if p.chunks_done == n_seq.min(p.n_chunks) {
                let secs = t1.elapsed().as_secs_f64();
                let _ = writeln!(
                    err,
                    "imatrix: {secs:.2} seconds per pass - ETA {:.1} s",
                    secs * p.n_chunks.div_ceil(n_seq) as f64
                );
            }
            match p.ppl {
                Some(ppl) => {
                    let _ = write!(err, "[{}]{:.4},", p.chunks_done, ppl.ppl());
                }
                None => {
                    let _ = write!(err, "[{}]", p.chunks_done);
                }
            }
            let _ = err.flush();
            let crossed = |every: usize| every > 0 && p.chunks_done / every > saved_at / every;
            if save_error.is_none() && p.chunks_done < p.n_chunks {
                if crossed(args.output_frequency) {
                    save_error = save(m, &args.output).err();
                }
                if crossed(args.save_frequency) {
                    let at = p.chunks_done - p.chunks_done % args.save_frequency;
                    let copy = PathBuf::from(format!("{}.at_{at}", args.output.display()));
                    save_error = save(m, &copy).err();
                }
            }
            saved_at = p.chunks_done;
        };
        imatrix::collect(&mut ctx, &tokens, &params, &mut collector, |p, m| {
            on_progress(p, m)
        })?
    };
    let _ = writeln!(err);
    if let Some(e) = save_error {
        return Err(e);
    }
    let m = &collector.imatrix;
    for (name, share) in m.partial_entries() {
        eprintln!(
            "imatrix: warning: {name} has partial data ({:.2}%)",
            100.0 * share
        );
    }
    save(m, &args.output)?;
    eprintln!(
        "imatrix: stored {} entries after {} chunks in {}",
        m.entries.len(),
        m.chunk_count(),
        args.output.display()
    );
    if !args.no_ppl {
        println!(
            "Final estimate: PPL = {:.4} +/- {:.5}",
            ppl.ppl(),
            ppl.error()
        );
    }
    Ok(())
}

fn read_imatrix(path: &Path) -> anyhow::Result<IMatrix> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = gguf::Gguf::parse(&bytes).with_context(|| {
        format!(
            "{} is not a GGUF file (llama.cpp's older .dat imatrix format is not read)",
            path.display()
        )
    })?;
    IMatrix::from_gguf(&file).with_context(|| format!("cannot read {}", path.display()))
}

/// Fails now, before any work, when `path` cannot be written (missing folder, no permission).
fn check_writable(path: &Path) -> anyhow::Result<()> {
    let probe = temp_path(path);
    std::fs::File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .with_context(|| format!("cannot write the output file {}", path.display()))
}

/// A name beside `path` for writing before the rename.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `m` to `path` whole or not at all (a temporary file renamed into place).
fn save(m: &IMatrix, path: &Path) -> anyhow::Result<()> {
    let builder = m.to_gguf()?;
    let tmp = temp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        builder.write_to(&mut f)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("cannot write {}", path.display()))
    })
}

/// llama-imatrix's `--show-statistics` table, character for character: per tensor, the
/// statistics of its mean squared activations (`in_sum2 / count`); then per layer, averages
/// weighted by element counts.
fn print_statistics(path: &Path, m: &IMatrix) {
    print!(
        "{}",
        imatrix::statistics_table(&path.display().to_string(), m)
    );
}
