//! `hearth template (-m MODEL.gguf | --template FILE.jinja | --checkpoint DIR) --messages CONV.json [--tools
//! TOOLS.json] [--no-generation-prompt] [--bos TEXT] [--eos TEXT] [--now DATETIME]`: prints the
//! prompt a chat template makes of a conversation, exactly (no newline added).
//!
//! With `-m`, the template is the file's `tokenizer.chat_template` (the built-in one for its
//! architecture when it has none, said on stderr) and the BOS/EOS texts come from its
//! vocabulary. With `--checkpoint`, both come from a transformers checkpoint folder
//! (`chat_template.jinja` or `tokenizer_config.json`). `--messages` holds a JSON list of OpenAI-style messages, or an object with
//! `messages` (and optionally `tools` and `add_generation_prompt`, as in the template fixtures).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use engine::chat_template::{
    ChatTemplate, DateTime, Message, RenderRequest, SpecialTokens, TemplateOrigin, special_tokens,
};
use serde_json::Value as Json;

#[derive(clap::Args)]
#[command(group(
    clap::ArgGroup::new("source")
        .required(true)
        .args(["model", "template", "checkpoint"])
))]
pub struct Args {
    /// Take the template and special tokens from this GGUF model
    #[arg(short = 'm', long)]
    model: Option<PathBuf>,
    /// Take the template from this Jinja file
    #[arg(long)]
    template: Option<PathBuf>,
    /// Take the template and special tokens from this transformers checkpoint folder
    /// (chat_template.jinja, or the chat_template of tokenizer_config.json)
    #[arg(long, value_name = "DIR")]
    checkpoint: Option<PathBuf>,
    /// The conversation: a JSON list of messages, or {"messages": [...], "tools": [...]}
    #[arg(long)]
    messages: PathBuf,
    /// Tool definitions: a JSON list of {"type": "function", "function": {...}}
    #[arg(long)]
    tools: Option<PathBuf>,
    /// End after the last message instead of opening the assistant's turn
    #[arg(long)]
    no_generation_prompt: bool,
    /// BOS text (default: the model's, or empty with --template)
    #[arg(long)]
    bos: Option<String>,
    /// EOS text (default: the model's, or empty with --template)
    #[arg(long)]
    eos: Option<String>,
    /// What strftime_now reports, e.g. 2026-07-26T12:00:00 (default: now, UTC)
    #[arg(long)]
    now: Option<DateTime>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let prompt = render(&args)?;
    let mut out = std::io::stdout().lock();
    out.write_all(prompt.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// The conversation file's contents.
struct Conversation {
    messages: Vec<Message>,
    tools: Option<Json>,
    add_generation_prompt: Option<bool>,
}

fn read_json(path: &Path) -> anyhow::Result<Json> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

fn read_conversation(path: &Path) -> anyhow::Result<Conversation> {
    let doc = read_json(path)?;
    let (list, tools, add_generation_prompt) = match &doc {
        Json::Array(list) => (list, None, None),
        Json::Object(obj) => match obj.get("messages") {
            Some(Json::Array(list)) => (
                list,
                obj.get("tools").cloned(),
                obj.get("add_generation_prompt").and_then(Json::as_bool),
            ),
            _ => bail!("{}: expected a \"messages\" list", path.display()),
        },
        _ => bail!("{}: expected a list of messages", path.display()),
    };
    let messages = list
        .iter()
        .enumerate()
        .map(|(i, m)| Message::from_json(m).with_context(|| format!("message {}", i + 1)))
        .collect::<anyhow::Result<_>>()?;
    Ok(Conversation {
        messages,
        tools,
        add_generation_prompt,
    })
}

fn read_tools(path: &Path) -> anyhow::Result<Json> {
    match read_json(path)? {
        Json::Object(mut obj) if obj.contains_key("tools") => {
            Ok(obj.remove("tools").unwrap_or_default())
        }
        tools @ Json::Array(_) => Ok(tools),
        _ => bail!("{}: expected a list of tools", path.display()),
    }
}

/// The rendered prompt for `args`.
fn render(args: &Args) -> anyhow::Result<String> {
    let conv = read_conversation(&args.messages)?;
    let tools = match &args.tools {
        Some(path) => Some(read_tools(path)?),
        None => conv.tools,
    };
    let (template, tokens) = match (&args.model, &args.template, &args.checkpoint) {
        (Some(path), _, _) => {
            let map = kernels::mmap::Mmap::open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let file = gguf::Gguf::parse(&map)
                .with_context(|| format!("{} is not a valid GGUF file", path.display()))?;
            let (template, origin) = ChatTemplate::from_gguf(&file, tools.is_some())?;
            if let TemplateOrigin::Builtin(name) = origin {
                eprintln!(
                    "note: {} has no chat template; using the built-in {name} template for \
                     architecture {:?}",
                    path.display(),
                    file.architecture().unwrap_or("?")
                );
            }
            (template, special_tokens(&file))
        }
        (None, Some(path), _) => {
            let source = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            (ChatTemplate::new(&source)?, SpecialTokens::default())
        }
        (None, None, Some(dir)) => ChatTemplate::from_checkpoint_dir(dir, tools.is_some())?,
        (None, None, None) => {
            bail!("give a model (-m), a template (--template) or a checkpoint (--checkpoint)")
        }
    };
    let bos = args.bos.clone().or(tokens.bos.clone()).unwrap_or_default();
    let eos = args.eos.clone().or(tokens.eos.clone()).unwrap_or_default();
    let extra = tokens.extra_context();
    let req = RenderRequest {
        messages: &conv.messages,
        tools: tools.as_ref(),
        add_generation_prompt: !args.no_generation_prompt
            && conv.add_generation_prompt.unwrap_or(true),
        bos_token: &bos,
        eos_token: &eos,
        now: args.now,
        extra: Some(&extra),
        llama_cpp_concat: false,
    };
    Ok(template.render(&req)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn args(model: Option<PathBuf>, template: Option<PathBuf>, messages: PathBuf) -> Args {
        Args {
            model,
            template,
            checkpoint: None,
            messages,
            tools: None,
            no_generation_prompt: false,
            bos: None,
            eos: None,
            now: None,
        }
    }

    #[test]
    fn renders_smollm2_template_from_the_model() {
        let dir = std::env::temp_dir().join(format!("hearth-template-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let conv = write(&dir, "conv.json", r#"[{"role": "user", "content": "Hi"}]"#);
        let a = args(Some(test_models::path(test_models::SMOLLM2)), None, conv);
        assert_eq!(
            render(&a).unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by \
             Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn template_file_with_pinned_date_and_tokens() {
        let dir = std::env::temp_dir().join(format!("hearth-template-b-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tpl = write(
            &dir,
            "t.jinja",
            "{{ bos_token }}{{ strftime_now('%d %b %Y') }}|{% for m in messages %}{{ m.content }}\
             {% endfor %}{{ tools | length }}{% if add_generation_prompt %}>{% endif %}{{ eos_token }}",
        );
        let conv = write(
            &dir,
            "conv.json",
            r#"{"messages": [{"role": "user", "content": "A"}], "tools": [{}, {}],
                "add_generation_prompt": true}"#,
        );
        let mut a = args(None, Some(tpl), conv);
        a.bos = Some("<s>".into());
        a.eos = Some("</s>".into());
        a.now = Some("2026-07-26T12:00:00".parse().unwrap());
        assert_eq!(render(&a).unwrap(), "<s>26 Jul 2026|A2></s>");
        a.no_generation_prompt = true;
        assert_eq!(render(&a).unwrap(), "<s>26 Jul 2026|A2</s>");
    }

    #[test]
    fn template_errors_are_errors() {
        let dir = std::env::temp_dir().join(format!("hearth-template-c-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tpl = write(&dir, "t.jinja", "{{ raise_exception('no system role') }}");
        let conv = write(&dir, "conv.json", r#"[{"role": "system", "content": "x"}]"#);
        let err = render(&args(None, Some(tpl), conv.clone())).unwrap_err();
        assert!(format!("{err:#}").contains("no system role"), "{err:#}");
        let bad = write(&dir, "bad.json", r#"[{"content": "no role"}]"#);
        let tpl = write(&dir, "ok.jinja", "x");
        assert!(render(&args(None, Some(tpl), bad)).is_err());
    }
}
