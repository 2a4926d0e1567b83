//! `hearth quantize`: llama-quantize's command line over the `quantize` crate —
//! `[options] IN.gguf [OUT.gguf] TYPE [NTHREADS]`, the same argument order and names, so
//! scripts written for llama-quantize work unchanged.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use gguf::{GgmlType, Gguf};
use quantize::{Ftype, ImatrixInput, Options};

#[derive(clap::Args, Debug)]
#[command(after_help = supported_types_help())]
pub struct Args {
    /// Allow requantizing tensors that are already quantized (quality suffers compared with
    /// quantizing from 16 or 32 bits)
    #[arg(long)]
    allow_requantize: bool,
    /// Leave output.weight un(re)quantized
    #[arg(long)]
    leave_output_tensor: bool,
    /// Disable the k-quant mixes: every quantized tensor gets the same type
    #[arg(long)]
    pure: bool,
    /// Importance matrix (llama-imatrix's GGUF or legacy .dat file) for the quantizers
    #[arg(long, value_name = "FILE")]
    imatrix: Option<PathBuf>,
    /// Tensor type of output.weight (a ggml type name: q8_0, q6_k, f16...)
    #[arg(long, value_name = "TYPE")]
    output_tensor_type: Option<String>,
    /// Tensor type of token_embd.weight
    #[arg(long, value_name = "TYPE")]
    token_embedding_type: Option<String>,
    /// IN.gguf [OUT.gguf] TYPE [NTHREADS] (without OUT: IN's folder/ggml-model-TYPE.gguf)
    #[arg(required = true, num_args = 2..=4, value_name = "ARGS")]
    positional: Vec<String>,
}

fn supported_types_help() -> String {
    let names: Vec<&str> = quantize::FTYPES.iter().map(|(n, _)| *n).collect();
    format!(
        "TYPE: {} (or its llama_ftype number, e.g. 15 for Q4_K_M; Q3_K, Q4_K, Q5_K are the _M \
         mixes)",
        names.join(", ")
    )
}

/// The positional arguments as llama-quantize reads them.
struct Positional {
    input: PathBuf,
    output: PathBuf,
    ftype: Ftype,
    n_threads: Option<usize>,
}

fn parse_positional(p: &[String]) -> anyhow::Result<Positional> {
    let input = PathBuf::from(&p[0]);
    let second = p.get(1).context("missing TYPE")?;
    // `IN TYPE [NTHREADS]` when the second argument is a type, else `IN OUT TYPE [NTHREADS]`.
    let (output, ftype, rest) = match Ftype::parse(second) {
        Ok(f) if p.len() <= 3 => {
            let dir = input.parent().unwrap_or(Path::new(""));
            (
                dir.join(format!("ggml-model-{}.gguf", f.name())),
                f,
                &p[2..],
            )
        }
        _ => {
            let ty = p.get(2).context("missing TYPE (after IN.gguf OUT.gguf)")?;
            (PathBuf::from(second), Ftype::parse(ty)?, &p[3..])
        }
    };
    let n_threads = match rest.first() {
        Some(s) => Some(
            s.parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .with_context(|| format!("invalid NTHREADS '{s}'"))?,
        ),
        None => None,
    };
    Ok(Positional {
        input,
        output,
        ftype,
        n_threads,
    })
}

fn parse_type(flag: &str, s: &Option<String>) -> anyhow::Result<Option<GgmlType>> {
    let Some(s) = s else { return Ok(None) };
    let ty = GgmlType::from_name(s)
        .with_context(|| format!("{flag}: invalid ggml type '{s}' (e.g. q8_0, q6_k, f16)"))?;
    if !kernels::quant::is_supported(ty) {
        bail!("{flag}: hearth cannot write type {ty} yet");
    }
    Ok(Some(ty))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0 / 1024.0
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let pos = parse_positional(&args.positional)?;
    let output_tensor_type = parse_type("--output-tensor-type", &args.output_tensor_type)?;
    let token_embedding_type = parse_type("--token-embedding-type", &args.token_embedding_type)?;
    if let (Ok(a), Ok(b)) = (pos.input.canonicalize(), pos.output.canonicalize())
        && a == b
    {
        bail!(
            "input and output files are the same: {}",
            pos.input.display()
        );
    }
    let imatrix = match &args.imatrix {
        Some(p) => {
            let m = ImatrixInput::load(p)
                .with_context(|| format!("cannot load importance matrix {}", p.display()))?;
            eprintln!(
                "loaded {} importance matrix entries from {} computed on {} chunks",
                m.weights.len(),
                p.display(),
                m.chunk_count
            );
            Some(m)
        }
        None => None,
    };
    let n_threads = pos.n_threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let opts = Options {
        ftype: pos.ftype,
        allow_requantize: args.allow_requantize,
        output_tensor_type,
        token_embedding_type,
        leave_output_tensor: args.leave_output_tensor,
        pure: args.pure,
        n_threads,
    };

    let map = kernels::mmap::Mmap::open(&pos.input)
        .with_context(|| format!("cannot open {}", pos.input.display()))?;
    let file = Gguf::parse(&map)
        .with_context(|| format!("{} is not a valid GGUF file", pos.input.display()))?;
    eprintln!(
        "quantizing '{}' to '{}' as {} using {n_threads} threads",
        pos.input.display(),
        pos.output.display(),
        pos.ftype
    );
    let start = Instant::now();
    let bar = if std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(file.tensors().len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "[{bar:30}] {pos}/{len} {elapsed_precise} {wide_msg}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    // Written beside the output as `OUT.part`, renamed when complete: a failed or interrupted
    // run never leaves a file that looks finished.
    let mut part = pos.output.clone().into_os_string();
    part.push(".part");
    let part = PathBuf::from(part);
    let f = std::fs::File::create(&part)
        .with_context(|| format!("cannot create {}", part.display()))?;
    let mut w = BufWriter::new(f);
    let out = quantize::quantize(&file, &opts, imatrix.as_ref(), &mut w, |p| {
        let t = p.tensor;
        let line = format!(
            "[{:4}/{:4}] {:<36} {:>9} {:>7} -> {:<7} {:8.2} MiB -> {:8.2} MiB{}",
            p.index,
            p.total,
            t.name,
            format!("{:?}", t.shape),
            t.from.name(),
            t.to.name(),
            mib(p.bytes_in),
            mib(p.bytes_out),
            if t.fallback { " (fallback)" } else { "" }
        );
        if bar.is_hidden() {
            eprintln!("{line}");
        } else {
            bar.set_message(t.name.clone());
            bar.inc(1);
        }
    });
    bar.finish_and_clear();
    let flushed = w.flush();
    drop(w);
    let out = match (out, flushed) {
        (Ok(out), Ok(())) => out,
        (Err(e), _) => {
            let _ = std::fs::remove_file(&part);
            return Err(e.into());
        }
        (Ok(_), Err(e)) => {
            let _ = std::fs::remove_file(&part);
            return Err(e).with_context(|| format!("cannot write {}", part.display()));
        }
    };
    std::fs::rename(&part, &pos.output).with_context(|| {
        format!(
            "cannot rename {} to {}",
            part.display(),
            pos.output.display()
        )
    })?;
    let elapsed = start.elapsed();

    let bpw = |b: u64| b as f64 * 8.0 / out.n_elements.max(1) as f64;
    for name in &out.missing_imatrix {
        eprintln!("note: the importance matrix has no entry for {name}");
    }
    if out.n_fallback > 0 {
        eprintln!(
            "warning: {} of {} tensor(s) required fallback quantization",
            out.n_fallback,
            out.plan.len()
        );
    }
    println!(
        "model size = {:8.2} MiB ({:.2} BPW)",
        mib(out.bytes_before),
        bpw(out.bytes_before)
    );
    println!(
        "quant size = {:8.2} MiB ({:.2} BPW)",
        mib(out.bytes_after),
        bpw(out.bytes_after)
    );
    println!(
        "wrote {} in {:.2} s",
        pos.output.display(),
        elapsed.as_secs_f64()
    );
    Ok(())
}
