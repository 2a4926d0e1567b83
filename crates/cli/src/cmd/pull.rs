//! `hearth pull REF`: download a model from Hugging Face into the cache huggingface_hub and
//! llama.cpp share, verified, and print where it is. Also the one place the other subcommands
//! turn `-m REF` into a path ([`resolve`]).

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context as _;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// org/repo, org/repo:QUANT (Q4_K_M, q8_0, IQ4_XS, F16…), hf.co/org/repo[:QUANT] or
    /// https://huggingface.co/org/repo/resolve/REV/FILE
    pub reference: String,
}

/// The Hub settings: huggingface_hub's environment variables, `--offline`, and a progress bar
/// when stderr is a terminal.
pub fn hub_options(offline: bool) -> hub::Options {
    let mut o = hub::Options::from_env();
    o.offline |= offline;
    o.progress = std::io::stderr().is_terminal();
    o
}

/// A `-m` argument as a local file: the path itself when it exists, else a Hub reference pulled
/// into the cache (the first shard of a split model).
pub fn resolve(model: &str, offline: bool) -> anyhow::Result<PathBuf> {
    let path = hub::resolve_model(model, &hub_options(offline))
        .with_context(|| format!("model {model}"))?;
    // The engine loads one file; say so plainly rather than fail on a missing tensor.
    if let Some((_, n)) = hub::quant::split_part(&path.to_string_lossy()).filter(|&(_, n)| n > 1) {
        anyhow::bail!(
            "{} is the first of {n} parts of a split model, which hearth cannot load yet \
             (merge the parts with llama-gguf-split --merge)",
            path.display()
        );
    }
    Ok(path)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = hub_options(false);
    let r = hub::HubRef::parse(&args.reference)?;
    let pulled = hub::pull(&r, &opts)?;
    for f in &pulled.files {
        let how = if f.downloaded {
            "downloaded"
        } else {
            "already in the cache"
        };
        eprintln!(
            "{}: {} ({}, {how})",
            pulled.repo,
            f.file,
            super::list::human_size(f.size)
        );
        println!("{}", f.path.display());
    }
    Ok(())
}
