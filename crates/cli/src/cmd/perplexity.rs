//! `hearth perplexity`: a model's perplexity on a text, measured as `llama-perplexity` measures
//! it (chunks of `-c` tokens, each from scratch, the second half of each scored), with
//! `-b / -c` chunks evaluated together as separate sequences. Progress goes to stderr, the
//! result to stdout.

use std::io::{BufReader, BufWriter, Write as _};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use engine::perplexity::{self, KlDivergence, Perplexity, QuantizedLogProbs, base_file};
use engine::{Context, ContextParams};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// GGUF model: a local path, or a Hugging Face reference (org/repo[:QUANT], hf.co/…)
    #[arg(short = 'm', long = "model", visible_alias = "hf")]
    pub model: String,
    /// Use only the Hugging Face cache, never the network
    #[arg(long = "offline")]
    pub offline: bool,
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
    /// Alone: save this (base) model's log-probabilities at every scored token to FILE. With
    /// --kl-divergence: compare this model against the base saved in FILE.
    #[arg(long = "kl-divergence-base", value_name = "FILE")]
    pub kl_divergence_base: Option<PathBuf>,
    /// Sum products in llama.cpp's order (`llama`) or the fastest (`fast`)
    #[arg(long, value_enum, default_value = "llama")]
    pub arithmetic: super::common::Arithmetic,
    /// Print KL-divergence and token-probability statistics against --kl-divergence-base
    #[arg(long = "kl-divergence", requires = "kl_divergence_base")]
    pub kl_divergence: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let c = args.ctx_size;
    if c < 4 {
        bail!("-c must be at least 4 tokens");
    }
    if args.batch_size == 0 {
        bail!("-b must be at least 1");
    }
    let (model, tokens) = super::common::model_and_text_tokens(
        &args.model,
        args.offline,
        args.arithmetic == super::common::Arithmetic::Llama,
        &args.file,
        "perplexity",
    )?;
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
    let n_vocab = model.hparams.n_vocab;
    let header = base_file::Header {
        n_vocab,
        n_chunk_tokens: c,
        n_chunks: n_chunk,
        tokens: tokens.clone(),
    };
    // Saving a base, or comparing with one.
    let mut save = None;
    let mut compare = None;
    match (&args.kl_divergence_base, args.kl_divergence) {
        (Some(path), false) => {
            let f = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut w = BufWriter::new(f);
            base_file::write_header(&mut w, &header)?;
            save = Some(w);
        }
        (Some(path), true) => {
            let f = std::fs::File::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let mut r = BufReader::new(f);
            let h = base_file::read_header(&mut r, tokens.len())
                .with_context(|| format!("{} is not a usable base file", path.display()))?;
            if h.n_vocab != n_vocab {
                bail!(
                    "the base file is for a vocabulary of {} tokens, this model has {n_vocab}",
                    h.n_vocab
                );
            }
            if h.n_chunk_tokens != c || h.tokens != tokens {
                bail!(
                    "the base file was measured on another text or chunk size (-c {}, {} tokens); use the same -f and -c",
                    h.n_chunk_tokens,
                    h.tokens.len()
                );
            }
            if h.n_chunks < n_chunk {
                bail!(
                    "the base file holds {} chunks, this run measures {n_chunk}: use --chunks {}",
                    h.n_chunks,
                    h.n_chunks
                );
            }
            compare = Some((r, KlDivergence::default()));
        }
        _ => {}
    }
    let mut row = QuantizedLogProbs {
        scale: 0.0,
        min: 0.0,
        q: vec![0; n_vocab],
    };
    let mut io_error: Option<std::io::Error> = None;

    let mut ppl = Perplexity::default();
    let t1 = Instant::now();
    let mut err = std::io::stderr();
    perplexity::score_chunks(&mut ctx, &tokens, c, n_seq, args.chunks, bos, |s| {
        ppl.add(-perplexity::log_softmax(s.logits, s.next).0);
        if io_error.is_none() {
            if let Some(w) = &mut save {
                let q = QuantizedLogProbs::from_logits(s.logits);
                io_error = base_file::write_row(w, &q).err();
            }
            if let Some((r, kld)) = &mut compare {
                match base_file::read_row(r, &mut row) {
                    Ok(()) => kld.add(s.logits, &row, s.next),
                    Err(e) => io_error = Some(e),
                }
            }
        }
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
    if let Some(e) = io_error {
        return Err(e).context("kl-divergence base file");
    }
    if let Some(mut w) = save {
        w.flush().context("writing the kl-divergence base file")?;
    }
    println!(
        "Final estimate: PPL = {:.4} +/- {:.5}",
        ppl.ppl(),
        ppl.error()
    );
    if let Some((_, kld)) = compare {
        print_kld(&kld);
    }
    Ok(())
}

/// Prints what `llama-perplexity --kl-divergence` prints.
fn print_kld(k: &KlDivergence) {
    let n = k.count() as f64;
    let (q, b) = (&k.ppl, &k.ppl_base);
    let cor = k.nll_correlation();
    let ln_r = (q.ppl() / b.ppl()).ln();
    // Errors of the log-ratio and difference by the delta method, with the correlation.
    let (eq, eb) = (q.error() / q.ppl(), b.error() / b.ppl());
    let e_ln = (eq * eq + eb * eb - 2.0 * cor * eq * eb).max(0.0).sqrt();
    let (ea, ebb) = (q.error(), b.error());
    let e_diff = (ea * ea + ebb * ebb - 2.0 * cor * ea * ebb).max(0.0).sqrt();
    println!();
    println!("====== Perplexity statistics ======");
    println!(
        "Mean PPL(Q)                   : {:10.6} ± {:10.6}",
        q.ppl(),
        q.error()
    );
    println!(
        "Mean PPL(base)                : {:10.6} ± {:10.6}",
        b.ppl(),
        b.error()
    );
    println!("Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%", 100.0 * cor);
    println!("Mean ln(PPL(Q)/PPL(base))     : {ln_r:10.6} ± {e_ln:10.6}");
    println!(
        "Mean PPL(Q)/PPL(base)         : {:10.6} ± {:10.6}",
        ln_r.exp(),
        ln_r.exp() * e_ln
    );
    println!(
        "Mean PPL(Q)-PPL(base)         : {:10.6} ± {e_diff:10.6}",
        q.ppl() - b.ppl()
    );
    println!();
    println!("====== KL divergence statistics ======");
    let (m, e) = KlDivergence::mean_err(&k.kld);
    println!("Mean    KLD: {m:10.6} ± {e:10.6}");
    let qs = |v: &[f64], p: f64| KlDivergence::quantile(v, p);
    println!("Maximum KLD: {:10.6}", qs(&k.kld, 1.0));
    for (name, p) in [
        ("99.9%", 0.999),
        ("99.0%", 0.99),
        ("95.0%", 0.95),
        ("90.0%", 0.90),
        ("Median", 0.5),
        ("10.0%", 0.10),
        (" 5.0%", 0.05),
        (" 1.0%", 0.01),
        (" 0.1%", 0.001),
    ] {
        println!("{name:<7} KLD: {:10.6}", qs(&k.kld, p));
    }
    println!("Minimum KLD: {:10.6}", qs(&k.kld, 0.0));
    println!();
    println!("====== Token probability statistics ======");
    let (m, e) = KlDivergence::mean_err(&k.p_diff);
    println!("Mean    Δp: {:6.3} ± {:5.3} %", 100.0 * m, 100.0 * e);
    println!("Maximum Δp: {:6.3}%", 100.0 * qs(&k.p_diff, 1.0));
    for (name, p) in [
        ("99.9%", 0.999),
        ("99.0%", 0.99),
        ("95.0%", 0.95),
        ("90.0%", 0.90),
        ("75.0%", 0.75),
        ("Median", 0.5),
        ("25.0%", 0.25),
        ("10.0%", 0.10),
        (" 5.0%", 0.05),
        (" 1.0%", 0.01),
        (" 0.1%", 0.001),
    ] {
        println!("{name:<7} Δp: {:6.3}%", 100.0 * qs(&k.p_diff, p));
    }
    println!("Minimum Δp: {:6.3}%", 100.0 * qs(&k.p_diff, 0.0));
    let sq: Vec<f64> = k.p_diff.iter().map(|d| d * d).collect();
    let (ms, es) = KlDivergence::mean_err(&sq);
    let rms = ms.sqrt();
    let e_rms = if rms > 0.0 { es / (2.0 * rms) } else { 0.0 };
    println!("RMS Δp    : {:6.3} ± {:5.3} %", 100.0 * rms, 100.0 * e_rms);
    let p_same = k.same_top as f64 / n;
    let e_same = (p_same * (1.0 - p_same) / (n - 1.0).max(1.0)).sqrt();
    println!(
        "Same top p: {:6.3} ± {:5.3} %",
        100.0 * p_same,
        100.0 * e_same
    );
}
