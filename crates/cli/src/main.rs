//! `hearth`: local AI inference in one binary. This file only parses argv and dispatches to one
//! module per subcommand under `cmd/`; errors print as one line and exit non-zero.
#![forbid(unsafe_code)]

mod cmd;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hearth",
    version,
    about = "Local AI inference: run GGUF models on your own machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show a GGUF file's metadata and tensors (like gguf-dump)
    Inspect(cmd::inspect::Args),
    /// Generate a completion for a prompt, streamed to stdout
    Run(cmd::run::Args),
    /// Chat with a model in the terminal
    Chat(cmd::chat::Args),
    /// Measure prompt and generation speed, like llama-bench
    Bench(cmd::bench::Args),
    /// Measure many sequences decoded together, like llama-batched-bench
    BatchedBench(cmd::batched_bench::Args),
    /// Measure a model's perplexity on a text, like llama-perplexity
    Perplexity(cmd::perplexity::Args),
    /// Collect an importance matrix for quantization, like llama-imatrix
    Imatrix(cmd::imatrix::Args),
    /// Convert a GGUF model's weights to another type, like llama-quantize
    Quantize(cmd::quantize::Args),
    /// Show the token ids a model's tokenizer gives a text (like llama-tokenize)
    Tokenize(cmd::tokenize::Args),
    /// Render a conversation with a model's chat template and print the prompt
    Template(cmd::template::Args),
    /// Serve a model over HTTP: OpenAI-, llama-server- and Ollama-compatible
    Serve(cmd::serve::Args),
    /// Download a model from Hugging Face into the shared cache (org/repo[:QUANT])
    Pull(cmd::pull::Args),
    /// List the GGUF models in the Hugging Face cache
    List(cmd::list::Args),
    /// Remove a model from the Hugging Face cache
    Rm(cmd::rm::Args),
    /// Convert a transformers checkpoint folder to GGUF (like convert_hf_to_gguf.py)
    Convert(cmd::convert::Args),
}

fn main() -> std::process::ExitCode {
    // llama.cpp spells the Hugging Face alias of -m `-hf`.
    let argv = std::env::args_os().map(|a| if a == "-hf" { "--hf".into() } else { a });
    let argv = cmd::bench::normalize_argv(argv);
    let cli = Cli::parse_from(cmd::batched_bench::normalize_argv(argv));
    let result = match cli.command {
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Chat(a) => cmd::chat::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::BatchedBench(a) => cmd::batched_bench::run(a),
        Command::Perplexity(a) => cmd::perplexity::run(a),
        Command::Imatrix(a) => cmd::imatrix::run(a),
        Command::Quantize(a) => cmd::quantize::run(a),
        Command::Tokenize(a) => cmd::tokenize::run(a),
        Command::Template(a) => cmd::template::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Pull(a) => cmd::pull::run(a),
        Command::List(a) => cmd::list::run(a),
        Command::Rm(a) => cmd::rm::run(a),
        Command::Convert(a) => cmd::convert::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
