//! `hearth run`: one completion streamed to stdout. Only generated text goes to stdout (the
//! prompt too with `--echo`); logs and timings go to stderr.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use engine::chat::{Chat, Message};
use engine::generate::Timings;
use engine::grammar::{GrammarSource, GrammarVocab};
use engine::{Context, GenerateParams};

use super::common::{ModelArgs, SamplingArgs, max_tokens};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    /// The prompt
    #[arg(short = 'p', long = "prompt", conflicts_with = "file")]
    prompt: Option<String>,
    /// Read the prompt from a file
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Tokens to generate (-1: until the model stops or the context is full)
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_hyphen_values = true)]
    n_predict: i64,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    grammar: GrammarArgs,
    /// Wrap the prompt in the model's chat template as a user message
    #[arg(long)]
    chat: bool,
    /// System message (with --chat)
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Stop before this text (repeatable)
    #[arg(long = "stop")]
    stop: Vec<String>,
    /// Also print the prompt
    #[arg(long)]
    echo: bool,
    /// Print load time and prompt/generation speed to stderr
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Also print where the forward pass spent its time, by kind of operation (stderr)
    #[arg(long)]
    profile: bool,
}

/// Constrained output, with llama-cli's flags.
#[derive(clap::Args)]
struct GrammarArgs {
    /// A GBNF grammar the output must follow (llama.cpp's format)
    #[arg(long = "grammar", value_name = "GBNF", group = "constraint")]
    grammar: Option<String>,
    /// Read the GBNF grammar from a file
    #[arg(long = "grammar-file", value_name = "FILE", group = "constraint")]
    grammar_file: Option<PathBuf>,
    /// A JSON schema the output must validate against
    #[arg(
        short = 'j',
        long = "json-schema",
        value_name = "SCHEMA",
        group = "constraint"
    )]
    json_schema: Option<String>,
    /// Read the JSON schema from a file
    #[arg(long = "json-schema-file", value_name = "FILE", group = "constraint")]
    json_schema_file: Option<PathBuf>,
}

impl GrammarArgs {
    fn source(&self) -> anyhow::Result<Option<GrammarSource>> {
        let read = |f: &PathBuf| {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))
        };
        let schema = |text: &str, what: &str| -> anyhow::Result<GrammarSource> {
            let v = serde_json::from_str(text).with_context(|| format!("{what} is not JSON"))?;
            Ok(GrammarSource::JsonSchema(v))
        };
        Ok(match self {
            GrammarArgs {
                grammar: Some(g), ..
            } => Some(GrammarSource::Gbnf(g.clone())),
            GrammarArgs {
                grammar_file: Some(f),
                ..
            } => Some(GrammarSource::Gbnf(read(f)?)),
            GrammarArgs {
                json_schema: Some(s),
                ..
            } => Some(schema(s, "--json-schema")?),
            GrammarArgs {
                json_schema_file: Some(f),
                ..
            } => Some(schema(&read(f)?, "--json-schema-file")?),
            _ => None,
        })
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let ctx_params = args.model.context_params()?;
    let sampler = args.sampling.params()?;
    let max_tokens = max_tokens(args.n_predict)?;
    let prompt = match (&args.prompt, &args.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read prompt file {}", f.display()))?,
        (None, None) => bail!("give a prompt with -p TEXT or -f FILE"),
    };
    let grammar = args.grammar.source()?;
    let (model, load_time) = args.model.load()?;
    let mut sampler = sampler;
    if let Some(src) = grammar {
        let vocab = GrammarVocab::new(&model.tokenizer)?;
        sampler.grammar = Some(vocab.compile(&src, &model.tokenizer)?);
    }
    let tokens = if args.chat {
        let mut messages = Vec::new();
        if let Some(s) = &args.system {
            messages.push(Message::new("system", s.as_str()));
        }
        messages.push(Message::new("user", prompt.as_str()));
        let chat = Chat::new(model.clone())?;
        if args.verbose {
            eprintln!("chat template: {}", chat.template_name());
        }
        let rendered = chat.render(&messages, true)?;
        rendered.tokens
    } else {
        // As llama-completion: BOS when the model asks for it, special-token text parsed.
        model.tokenizer.encode(&prompt, true, true)
    };
    if tokens.is_empty() {
        bail!("the prompt is empty after tokenization");
    }
    let mut ctx = Context::new(model.clone(), ctx_params)?;
    let params = GenerateParams {
        max_tokens,
        stop: args.stop.clone(),
        sampler,
        ignore_eog: false,
        context_shift: args.model.context_shift(),
    };
    let mut out = std::io::stdout().lock();
    if args.echo {
        write!(out, "{}", model.tokenizer.decode(&tokens, false)?)?;
    }
    engine::profile::enable(args.profile);
    let t0 = Instant::now();
    let mut write_err = None;
    let generation = engine::generate(&mut ctx, &tokens, &params, |text| {
        match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_err = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = write_err {
        return Err(e).context("cannot write to stdout");
    }
    writeln!(out)?;
    if args.profile {
        super::common::print_profile();
    }
    if args.verbose {
        print_timings(
            load_time.as_secs_f64() * 1e3,
            &generation.timings,
            t0.elapsed().as_secs_f64() * 1e3,
        );
    }
    Ok(())
}

/// Timings in llama.cpp's format, to stderr.
pub fn print_timings(load_ms: f64, t: &Timings, total_ms: f64) {
    let line = |what: &str, ms: f64, n: usize, unit: &str| {
        let per = if n > 0 { ms / n as f64 } else { 0.0 };
        let tps = if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
        eprintln!(
            "{what:>16} = {ms:10.2} ms / {n:5} {unit} ({per:8.2} ms per token, {tps:8.2} tokens per second)"
        );
    };
    eprintln!("{:>16} = {load_ms:10.2} ms", "load time");
    line(
        "prompt eval time",
        t.prompt_time.as_secs_f64() * 1e3,
        t.prompt_evaluated,
        "tokens",
    );
    line(
        "eval time",
        t.generation_time.as_secs_f64() * 1e3,
        t.generated_tokens,
        "runs  ",
    );
    eprintln!(
        "{:>16} = {total_ms:10.2} ms / {:5} tokens",
        "total time",
        t.prompt_evaluated + t.generated_tokens
    );
}
