//! `hearth perplexity`: a model's perplexity on a text, measured as `llama-perplexity` measures
//! it (chunks of `-c` tokens, each from scratch, the second half of each scored), with
//! `-b / -c` chunks evaluated together as separate sequences. Progress goes to stderr, the
//! result to stdout.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use engine::perplexity::{self, Perplexity};
use engine::{Context, ContextParams};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// GGUF model file
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// The text to measure on
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Tokens per chunk
    #[arg(short = 'c', long = "ctx-size", default_value_t = 512)]
    pub ctx_size: usize,
    /// Tokens per forward pass; a multiple of -c evaluates that many chunks together
    #[arg(short = 'b', long = "batch-size", default_value_t = 2048)]
    pub batch_size: usize,
    /// Threads (default: one per core)
    #[arg(short = 't', long = "threads")]
    pub threads: Option<usize>,
    /// Measure only the first N chunks
    #[arg(long = "chunks")]
    pub chunks: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let c = args.ctx_size;
    if c < 4 {
        bail!("-c must be at least 4 tokens");
    }
    if args.batch_size == 0 {
        bail!("-b must be at least 1");
    }
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let model = std::sync::Arc::new(
        engine::Model::load(&args.model)
            .with_context(|| format!("cannot load model {}", args.model.display()))?,
    );
    let t0 = Instant::now();
    let tokens = model.tokenizer.encode(&text, true, false);
    eprintln!(
        "perplexity: tokenization took {:.1} ms, {} tokens",
        t0.elapsed().as_secs_f64() * 1e3,
        tokens.len()
    );
    let n_chunk = perplexity::n_chunks(tokens.len(), c, args.chunks);
    if n_chunk == 0 {
        bail!(
            "the text has {} tokens, fewer than one chunk of {c} (-c): use a longer text or a smaller -c",
            tokens.len()
        );
    }
    // llama.cpp: n_seq = n_batch / n_ctx chunks per forward, in micro-batches of at most 512.
    let n_seq = (args.batch_size / c).clamp(1, n_chunk.min(engine::batch::MAX_SEQ));
    let n_threads = args
        .threads
        .unwrap_or_else(engine::context::default_threads);
    let mut ctx = Context::new(
        model.clone(),
        ContextParams {
            n_ctx: c * n_seq,
            n_batch: args.batch_size.min(c * n_seq).min(512.max(c)),
            n_threads,
            n_seq_max: n_seq,
            ..ContextParams::default()
        },
    )?;
    eprintln!(
        "perplexity: calculating perplexity over {n_chunk} chunks, n_ctx={c}, batch_size={}, n_seq={n_seq}",
        args.batch_size
    );
    let bos = if model.tokenizer.add_bos() {
        model.tokenizer.bos()
    } else {
        None
    };
    let mut ppl = Perplexity::default();
    let t1 = Instant::now();
    let mut err = std::io::stderr();
    perplexity::score_chunks(&mut ctx, &tokens, c, n_seq, args.chunks, bos, |s| {
        ppl.add(-perplexity::log_softmax(s.logits, s.next).0);
        if !s.last_of_chunk {
            return;
        }
        let chunk = s.chunk;
        if chunk == 0 {
            let secs = t1.elapsed().as_secs_f64() / n_seq as f64;
            let _ = writeln!(
                err,
                "perplexity: {secs:.2} seconds per pass - ETA {:.1} s",
                secs * n_chunk as f64
            );
        }
        let _ = write!(err, "[{}]{:.4},", chunk + 1, ppl.ppl());
        let _ = err.flush();
    })?;
    let _ = writeln!(err);
    println!(
        "Final estimate: PPL = {:.4} +/- {:.5}",
        ppl.ppl(),
        ppl.error()
    );
    Ok(())
}
