//! `hearth tokenize -m MODEL.gguf [--no-bos] [--parse-special] [--ids] TEXT | -f FILE`: the
//! ids the model's tokenizer gives a text, one `id -> 'piece'` per line as llama-tokenize
//! prints them, or `[1, 2, 3]` with `--ids`. Works on vocabulary-only GGUF files.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use engine::tokenizer::Tokenizer;
use gguf::Gguf;

#[derive(clap::Args)]
pub struct Args {
    /// The GGUF model (or vocabulary-only) file
    #[arg(short, long)]
    model: PathBuf,
    /// The text to tokenize
    #[arg(conflicts_with = "file")]
    text: Option<String>,
    /// Read the text from a file ('-' for standard input)
    #[arg(short, long)]
    file: Option<PathBuf>,
    /// Do not add the BOS token even when the model asks for it
    #[arg(long)]
    no_bos: bool,
    /// Turn the text of special tokens (like <|im_start|>) into those tokens
    #[arg(long)]
    parse_special: bool,
    /// Print only the ids, as [1, 2, 3]
    #[arg(long)]
    ids: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let text = match (&args.text, &args.file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => read_text(f)?,
        (None, None) => bail!("give the text to tokenize, or --file FILE"),
    };
    let map = kernels::mmap::Mmap::open(&args.model)
        .with_context(|| format!("cannot open {}", args.model.display()))?;
    let file = Gguf::parse(&map)
        .with_context(|| format!("{} is not a valid GGUF file", args.model.display()))?;
    let tok = Tokenizer::from_gguf(&file)
        .with_context(|| format!("cannot build the tokenizer of {}", args.model.display()))?;
    for w in tok.warnings() {
        eprintln!("warning: {w}");
    }
    let ids = tok.encode(&text, !args.no_bos, args.parse_special);
    let out = if args.ids {
        render_ids(&ids)
    } else {
        render_pieces(&tok, &ids)?
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}

fn read_text(path: &PathBuf) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().read_to_end(&mut bytes)?;
    } else {
        bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not valid UTF-8", path.display()))
}

fn render_ids(ids: &[u32]) -> String {
    let list: Vec<String> = ids.iter().map(u32::to_string).collect();
    format!("[{}]\n", list.join(", "))
}

/// `id -> 'piece'` lines; bytes of a character split across tokens show as `\xNN`.
fn render_pieces(tok: &Tokenizer, ids: &[u32]) -> anyhow::Result<String> {
    let mut out = String::new();
    for &id in ids {
        let piece = tok.token_to_piece(id, true)?;
        let _ = write!(out, "{id:6} -> '");
        for chunk in piece.utf8_chunks() {
            out.push_str(chunk.valid());
            for b in chunk.invalid() {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
        out.push_str("'\n");
    }
    Ok(out)
}
