//! `hearth chat`: an interactive multi-turn chat in the terminal, streaming each reply.
//!
//! Line editing and history come from rustyline. The KV cache is kept across turns: each turn
//! re-renders the whole conversation, and `generate` evaluates only the tokens after the
//! prefix the context already holds. Ctrl-C stops the current reply without quitting; Ctrl-D,
//! Ctrl-C at the prompt, or `/exit` quits; `/clear` starts over.

use std::io::Write;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use engine::chat::{Chat, Message};
use engine::{Context, GenerateParams, StopReason};
use rustyline::error::ReadlineError;

use super::common::{ModelArgs, SamplingArgs, max_tokens};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// System message that opens the conversation
    #[arg(long)]
    system: Option<String>,
    /// Most tokens per reply (-1: no limit)
    #[arg(short = 'n', long = "n-predict", default_value_t = -1, allow_hyphen_values = true)]
    n_predict: i64,
    /// Print prompt and generation speed after each reply
    #[arg(short = 'v', long)]
    verbose: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let ctx_params = args.model.context_params()?;
    let sampler = args.sampling.params()?;
    let max_tokens = max_tokens(args.n_predict)?;
    let (model, _) = args.model.load()?;
    let chat = Chat::new(model.clone())?;
    let mut ctx = Context::new(model.clone(), ctx_params)?;
    let params = GenerateParams {
        max_tokens,
        stop: Vec::new(),
        sampler,
        ignore_eog: false,
        context_shift: args.model.context_shift(),
    };

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
            .context("cannot install the Ctrl-C handler")?;
    }
    let mut editor = rustyline::DefaultEditor::new().context("cannot open the terminal")?;
    let start = |system: &Option<String>| -> Vec<Message> {
        system
            .iter()
            .map(|s| Message::new("system", s.as_str()))
            .collect()
    };
    let mut messages = start(&args.system);
    eprintln!(
        "hearth chat with {} — /clear starts over, /exit or Ctrl-D quits",
        model.info.name
    );
    loop {
        let line = match editor.readline("> ") {
            Ok(l) => l,
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("cannot read input"),
        };
        let input = line.trim();
        if input.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(input);
        match input {
            "/exit" | "/quit" => break,
            "/clear" => {
                messages = start(&args.system);
                ctx.clear();
                eprintln!("(conversation cleared)");
                continue;
            }
            _ => {}
        }
        messages.push(Message::new("user", input));
        let rendered = chat.render(&messages, true)?;
        interrupted.store(false, Ordering::SeqCst);
        let mut out = std::io::stdout().lock();
        let generation = engine::generate(&mut ctx, &rendered.tokens, &params, |text| {
            let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
            if interrupted.load(Ordering::SeqCst) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        writeln!(out)?;
        let generation = match generation {
            Ok(g) => g,
            Err(e) => {
                eprintln!("error: {e}");
                messages.pop();
                continue;
            }
        };
        if generation.stop_reason == StopReason::ContextFull {
            eprintln!("(the context is full; /clear to start over)");
        }
        if generation.stop_reason == StopReason::Cancelled {
            eprintln!("(stopped)");
        }
        if args.verbose {
            let t = &generation.timings;
            eprintln!(
                "({} prompt tokens at {:.1} t/s, {} generated at {:.1} t/s)",
                t.prompt_evaluated,
                t.prompt_tokens_per_second(),
                t.generated_tokens,
                t.generation_tokens_per_second()
            );
        }
        messages.push(Message::new("assistant", generation.text.as_str()));
    }
    Ok(())
}
