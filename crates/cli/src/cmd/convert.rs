//! `hearth convert DIR`: a transformers checkpoint folder to a GGUF file, as llama.cpp's
//! `convert_hf_to_gguf.py` writes it. Progress goes to stderr; the file is written under a
//! temporary name and renamed when complete.

use std::io::{BufWriter, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use convert::{Conversion, Outtype};

#[derive(clap::Args)]
pub struct Args {
    /// The checkpoint folder (config.json, model.safetensors or shards, tokenizer.json)
    dir: PathBuf,
    /// Output type: f32, f16, bf16, q8_0, or auto (bf16 for a bf16 checkpoint, else f16)
    #[arg(long, default_value = "auto")]
    outtype: String,
    /// Output file (default: DIR/{name}-{size}-{TYPE}.gguf)
    #[arg(short = 'o', long = "outfile")]
    outfile: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let Some(outtype) = Outtype::from_name(&args.outtype) else {
        bail!(
            "unknown --outtype {:?}: use f32, f16, bf16, q8_0 or auto",
            args.outtype
        );
    };
    let start = Instant::now();
    let conversion = Conversion::plan(&args.dir, outtype)
        .with_context(|| format!("cannot convert {}", args.dir.display()))?;
    let out = args
        .outfile
        .unwrap_or_else(|| args.dir.join(conversion.default_file_name()));
    let n_tensors = conversion.tensors().count();
    eprintln!(
        "converting {} ({}, {n_tensors} tensors) to {} as {}",
        args.dir.display(),
        conversion.arch().name(),
        out.display(),
        conversion.outtype().label()
    );
    let mut part = out.clone().into_os_string();
    part.push(".part");
    let part = PathBuf::from(part);
    let file = std::fs::File::create(&part)
        .with_context(|| format!("cannot create {}", part.display()))?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(n_tensors as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} tensors {msg}")
        {
            bar.set_style(style);
        }
        bar
    });
    let written = conversion.write_to(BufWriter::new(file), |i, _, name| {
        if let Some(b) = &bar {
            b.set_position(i as u64);
            b.set_message(name.to_owned());
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let written = match written {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e).with_context(|| format!("cannot convert {}", args.dir.display()));
        }
    };
    std::fs::rename(&part, &out)
        .with_context(|| format!("cannot rename {} to {}", part.display(), out.display()))?;
    eprintln!(
        "wrote {} ({:.1} MB) in {:.2} s",
        out.display(),
        written as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A transformers checkpoint folder converted in memory (`--outtype auto`) and loaded: what
/// `hearth run -m DIR` runs. No file is written.
pub fn load_checkpoint(dir: &Path) -> anyhow::Result<engine::Model> {
    let conversion = Conversion::plan(dir, Outtype::Auto)
        .with_context(|| format!("cannot convert {}", dir.display()))?;
    eprintln!(
        "converting {} ({}, {}) in memory",
        dir.display(),
        conversion.arch().name(),
        conversion.outtype().label()
    );
    let bytes = conversion
        .to_bytes()
        .with_context(|| format!("cannot convert {}", dir.display()))?;
    engine::Model::load_bytes(bytes, dir, engine::LoadOptions::default())
        .with_context(|| format!("cannot load the conversion of {}", dir.display()))
}
