//! `hearth serve`: llama-server's command line over `server::start`.
//!
//! The flags are llama-server's, parsed by hand because its spellings are not clap's:
//! two-letter short options (`-np`, `-ub`, `-fa`), `_` and `-` equivalent in long options,
//! `--name=value`, and `LLAMA_ARG_*` environment variables as defaults. Flags llama-server has
//! that change nothing here (GPU layers, cache types, web UI) are accepted; flags for features
//! hearth lacks are refused by name; anything else is an unknown-option error.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};

/// `hearth serve`'s arguments, kept raw for the llama-server-style parser.
#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true)]
pub struct Args {
    /// llama-server's options: -m MODEL [--host H] [--port P] [-c N] [-np N] … (see --help)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<OsString>,
}

const HELP: &str = "\
Serve a model over HTTP: OpenAI's API (/v1/chat/completions, /v1/completions, /v1/models),
llama-server's own (/completion, /health, /props, /slots, /metrics, /tokenize, /detokenize,
/apply-template) and Ollama's (/api/chat, /api/generate, /api/tags, /api/show, /api/ps).

Usage: hearth serve -m MODEL [OPTIONS]

Options (llama-server's names; `_` and `-` are the same in long options; LLAMA_ARG_* variables
give defaults):
  -m, --model FILE            GGUF model to serve: a path, or org/repo[:QUANT] from
                              Hugging Face (-hf/--hf-repo alike; --offline: cache only)
      --host HOST[,HOST…]     addresses to listen on (default 127.0.0.1)
      --port PORT             port (default 8080)
  -c, --ctx-size N            context of all slots together (default 0: the model's)
  -np, --parallel N           slots: requests generated at once (default 4)
  -t, --threads N             compute threads (default: one per core)
  -b, --batch-size N          most prompt tokens evaluated in one step (default 2048)
  -ub, --ubatch-size N        accepted (hearth has one batch size)
  -n, --n-predict N           tokens a request generates when it sets no limit (default -1: none)
      --temp T                default temperature (0.8)
  -s, --seed N                default seed (-1: random per request)
      --top-k, --top-p, --min-p, --typical, --repeat-penalty, --repeat-last-n,
      --presence-penalty, --frequency-penalty   default sampling settings
  -a, --alias NAME[,NAME…]    the model's names in the APIs (its id: the first in sorted order)
      --tags TAG[,TAG…]       labels shown with the model in /v1/models
      --api-key KEY[,KEY…]    require `Authorization: Bearer KEY` (/health stays open)
      --api-key-file FILE     keys, one per line
      --metrics               enable /metrics
  -v, --verbose               answers carry llama-server's `__verbose` debug object
  -kvu, --kv-unified          a slot may fill the whole context, not its share of -c
      --slots, --no-slots     enable or disable /slots (default enabled)
      --chat-template-file F  Jinja chat template replacing the model's
      --chat-template T       Jinja source, or a built-in: chatml, gemma, llama3, command-r
      --jinja, --no-jinja     accepted (templates are always Jinja)
      --chat-template-kwargs J  JSON object of extra template variables (requests may add more)
  -rea, --reasoning on|off|auto  thinking in chat templates: off sets enable_thinking false and
                              closes the thinking block (default auto: the template decides)
      --reasoning-format F    none|deepseek|deepseek-legacy|auto: where chat replies' thinking
                              goes when a request does not say (default auto: reasoning_content)
      --timeout SECONDS       longest wait for a client to send or take data (default 600)
      --cors-origins O[,O…]   origins allowed by CORS (default *)
      --ui-mcp-proxy          enable /cors-proxy?url=… (forwards only x-llama-server-proxy-header-*
                              headers; http:// targets)
      --tools T[,T…]|all      experimental: enable llama-server's built-in agent tools at /tools
                              (read_file, file_glob_search, grep_search, exec_shell_command,
                              write_file, edit_file, get_info) - they read, write and run
                              anything this user can: do not enable in untrusted environments;
                              CORS origins default to localhost
  -ag, --agent                --ui-mcp-proxy and --tools all
      --tools-runtime R       refused: hearth runs tools on the host only
      --queue N               requests that may wait for a slot (default 64)
      --arithmetic llama|fast  sum products in llama.cpp's order (default) or the fastest (about
                              1.3x the prompt speed, as accurate, other last bits)
  -h, --help                  this help
";

/// What argv asked for.
#[derive(Debug)]
pub enum Parsed {
    Help,
    Serve(Box<server::Config>),
}

/// Environment variables llama-server reads as defaults, and the option each stands for.
const ENV: &[(&str, &str)] = &[
    ("LLAMA_ARG_MODEL", "--model"),
    ("LLAMA_ARG_HOST", "--host"),
    ("LLAMA_ARG_PORT", "--port"),
    ("LLAMA_ARG_CTX_SIZE", "--ctx-size"),
    ("LLAMA_ARG_N_PARALLEL", "--parallel"),
    ("LLAMA_ARG_THREADS", "--threads"),
    ("LLAMA_ARG_BATCH", "--batch-size"),
    ("LLAMA_ARG_UBATCH", "--ubatch-size"),
    ("LLAMA_ARG_N_PREDICT", "--n-predict"),
    ("LLAMA_ARG_ALIAS", "--alias"),
    ("LLAMA_ARG_TAGS", "--tags"),
    ("LLAMA_API_KEY", "--api-key"),
    ("LLAMA_ARG_ENDPOINT_METRICS", "--metrics"),
    ("LLAMA_ARG_KV_UNIFIED", "--kv-unified"),
    ("LLAMA_ARG_ENDPOINT_SLOTS", "--slots"),
    ("LLAMA_ARG_CHAT_TEMPLATE", "--chat-template"),
    ("LLAMA_ARG_CHAT_TEMPLATE_FILE", "--chat-template-file"),
    ("LLAMA_ARG_JINJA", "--jinja"),
    ("LLAMA_ARG_CHAT_TEMPLATE_KWARGS", "--chat-template-kwargs"),
    ("LLAMA_ARG_REASONING", "--reasoning"),
    ("LLAMA_ARG_THINK", "--reasoning-format"),
    ("LLAMA_ARG_TIMEOUT", "--timeout"),
    ("LLAMA_ARG_CORS_ORIGINS", "--cors-origins"),
    ("LLAMA_ARG_UI_MCP_PROXY", "--ui-mcp-proxy"),
    ("LLAMA_ARG_TOOLS", "--tools"),
    ("LLAMA_ARG_TOOLS_RUNTIME", "--tools-runtime"),
    ("LLAMA_ARG_AGENT", "--agent"),
    ("LLAMA_ARG_N_GPU_LAYERS", "--n-gpu-layers"),
    ("LLAMA_ARG_FLASH_ATTN", "--flash-attn"),
];

/// llama-server options that take a value and change nothing in hearth.
const IGNORED_VALUE: &[&str] = &[
    "--n-gpu-layers",
    "-ngl",
    "--gpu-layers",
    "--cache-type-k",
    "-ctk",
    "--cache-type-v",
    "-ctv",
    "--threads-batch",
    "-tb",
    "--threads-http",
    "--slot-save-path",
    "--reasoning-budget",
    "--sleep-idle-seconds",
    "--cache-ram",
    "--cache-reuse",
    "--keep",
    "--ctx-checkpoints",
    "--slot-prompt-similarity",
    "-sps",
    "--log-file",
    "--log-verbosity",
    "-lv",
    "--numa",
    "--device",
    "-dev",
    "--split-mode",
    "-sm",
    "--main-gpu",
    "-mg",
];

/// llama-server flags without a value that change nothing in hearth.
const IGNORED_FLAG: &[&str] = &[
    "--offline",
    "--log-disable",
    "--log-colors",
    "--no-webui",
    "--webui",
    "--no-ui",
    "--cont-batching",
    "-cb",
    "--no-cont-batching",
    "-nocb",
    "--swa-full",
    "--context-shift",
    "--no-context-shift",
    "--no-mmap",
    "--mlock",
    "--no-warmup",
    "--props",
    "--no-perf",
    "--no-mmproj",
    "--no-cache-idle-slots",
    "--special",
    "--backend-sampling",
    "--no-models-autoload",
];

/// llama-server options for features hearth does not have: refused by name.
const REFUSED: &[&str] = &[
    "--embedding",
    "--embeddings",
    "--reranking",
    "--rerank",
    "--lora",
    "--lora-scaled",
    "--model-draft",
    "-md",
    "-hfr",
    "--hf-file",
    "-hff",
    "--model-url",
    "-mu",
    "--mmproj",
    "--mmproj-url",
    "--spec-type",
    "--models-dir",
    "--models-preset",
    "--grammar",
    "--grammar-file",
    "--json-schema",
    "--pooling",
    "--grp-attn-n",
    "--grp-attn-w",
    "--api-prefix",
    "--path",
];

/// Sampling flags shared with `run` and `chat` (parsed by their clap `SamplingArgs`), and
/// whether each takes a value.
const SAMPLING: &[(&str, bool)] = &[
    ("--temp", true),
    ("--top-k", true),
    ("--top-p", true),
    ("--min-p", true),
    ("--typical", true),
    ("--top-nsigma", true),
    ("--xtc-probability", true),
    ("--xtc-threshold", true),
    ("--dynatemp-range", true),
    ("--dynatemp-exp", true),
    ("--repeat-penalty", true),
    ("--repeat-last-n", true),
    ("--presence-penalty", true),
    ("--frequency-penalty", true),
    ("--dry-multiplier", true),
    ("--dry-base", true),
    ("--dry-allowed-length", true),
    ("--dry-penalty-last-n", true),
    ("--dry-sequence-breaker", true),
    ("--mirostat", true),
    ("--mirostat-lr", true),
    ("--mirostat-ent", true),
    ("--samplers", true),
    ("--sampler-seq", true),
    ("--seed", true),
    ("-s", true),
    ("--ignore-eos", false),
];

#[derive(clap::Parser)]
#[command(no_binary_name = true)]
struct SamplingOnly {
    #[command(flatten)]
    sampling: super::common::SamplingArgs,
}

/// Parses `hearth serve`'s arguments; `env` looks up environment variables.
pub fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Parsed> {
    let mut s = Settings::default();
    for (var, opt) in ENV {
        if let Some(v) = env(var) {
            let takes = takes_value(opt);
            if takes {
                s.apply(opt, Some(v))
                    .with_context(|| format!("environment variable {var}"))?;
            } else if is_truthy(&v) {
                s.apply(opt, None)
                    .with_context(|| format!("environment variable {var}"))?;
            }
        }
    }
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "-h" || arg == "--help" {
            return Ok(Parsed::Help);
        }
        if !arg.starts_with('-') || arg == "-" {
            bail!("unexpected argument '{arg}' (options start with -; see hearth serve --help)");
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let name = if name.starts_with("--") {
            name.replace('_', "-")
        } else {
            name
        };
        if REFUSED.contains(&name.as_str()) {
            bail!("{name} is not supported by hearth serve");
        }
        if let Some(&(_, takes)) = SAMPLING.iter().find(|(n, _)| *n == name) {
            s.sampling.push(name.clone());
            if takes {
                let v = match inline {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .ok_or_else(|| anyhow!("option {name} needs a value"))?;
                        i += 1;
                        v.clone()
                    }
                };
                s.sampling.push(v);
            }
            continue;
        }
        if name == "-fa" || name == "--flash-attn" {
            // A value (on/off/auto) is optional.
            if inline.is_none()
                && args.get(i).is_some_and(|v| {
                    matches!(v.as_str(), "on" | "off" | "auto" | "enabled" | "disabled")
                })
            {
                i += 1;
            }
            continue;
        }
        let value = if takes_value(&name) {
            match inline {
                Some(v) => Some(v),
                None => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| anyhow!("option {name} needs a value"))?;
                    i += 1;
                    Some(v.clone())
                }
            }
        } else {
            if inline.is_some() {
                bail!("option {name} takes no value");
            }
            None
        };
        s.apply(&name, value)?;
    }
    s.finish().map(|c| Parsed::Serve(Box::new(c)))
}

fn is_truthy(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "1" | "true" | "on" | "enabled" | "yes"
    )
}

fn takes_value(name: &str) -> bool {
    IGNORED_VALUE.contains(&name)
        || matches!(
            name,
            "-m" | "--model"
                | "-hf"
                | "--hf-repo"
                | "--host"
                | "--port"
                | "-c"
                | "--ctx-size"
                | "-np"
                | "--parallel"
                | "-t"
                | "--threads"
                | "-b"
                | "--batch-size"
                | "-ub"
                | "--ubatch-size"
                | "-n"
                | "--n-predict"
                | "--predict"
                | "--temp"
                | "-s"
                | "--seed"
                | "--top-k"
                | "--top-p"
                | "--min-p"
                | "--typical"
                | "--repeat-penalty"
                | "--repeat-last-n"
                | "--presence-penalty"
                | "--frequency-penalty"
                | "-a"
                | "--alias"
                | "--tags"
                | "--api-key"
                | "--api-key-file"
                | "--chat-template"
                | "--chat-template-file"
                | "--chat-template-kwargs"
                | "--reasoning"
                | "-rea"
                | "--reasoning-format"
                | "--timeout"
                | "-to"
                | "--cors-origins"
                | "--tools"
                | "--tools-runtime"
                | "--queue"
                | "--arithmetic"
        )
}

/// Parsed values before defaults are filled in.
#[derive(Default)]
struct Settings {
    /// Sampling flags, for `SamplingArgs`.
    sampling: Vec<String>,
    model: Option<PathBuf>,
    /// `-hf`: used when no `-m` names a file (llama-server, offline, serves the `-m` file).
    hf_repo: Option<PathBuf>,
    hosts: Option<Vec<String>>,
    port: Option<u16>,
    n_ctx: Option<usize>,
    n_parallel: Option<usize>,
    threads: Option<usize>,
    batch: Option<usize>,
    n_predict: Option<i64>,
    aliases: Vec<String>,
    tags: Vec<String>,
    api_keys: Vec<String>,
    metrics: bool,
    spm_infill: bool,
    kv_unified: bool,
    verbose: bool,
    cors_proxy: bool,
    /// `--tools` (names as given; `all` allowed).
    tools: Vec<String>,
    tools_runtime: Option<String>,
    slots: Option<bool>,
    chat_template: Option<server::TemplateChoice>,
    chat_template_kwargs: serde_json::Map<String, serde_json::Value>,
    reasoning: Option<bool>,
    reasoning_format: Option<server::ReasoningFormat>,
    timeout: Option<u64>,
    cors: Option<Vec<String>>,
    queue: Option<usize>,
    fast_arithmetic: bool,
}

fn num<T: std::str::FromStr>(name: &str, v: &str) -> anyhow::Result<T> {
    v.trim()
        .parse()
        .map_err(|_| anyhow!("option {name}: '{v}' is not a valid number"))
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Settings {
    fn apply(&mut self, name: &str, value: Option<String>) -> anyhow::Result<()> {
        let v = value.unwrap_or_default();
        match name {
            "-m" | "--model" => self.model = Some(PathBuf::from(v)),
            "-hf" | "--hf-repo" => self.hf_repo = Some(PathBuf::from(v)),
            "--host" => self.hosts = Some(list(&v)),
            "--port" => self.port = Some(num(name, &v)?),
            "-c" | "--ctx-size" => self.n_ctx = Some(num(name, &v)?),
            "-np" | "--parallel" => self.n_parallel = Some(num(name, &v)?),
            "-t" | "--threads" => {
                let n: i64 = num(name, &v)?;
                self.threads = (n > 0).then_some(n as usize);
            }
            "-b" | "--batch-size" => self.batch = Some(num(name, &v)?),
            "-ub" | "--ubatch-size" => {
                let _: usize = num(name, &v)?;
            }
            "-n" | "--n-predict" | "--predict" => self.n_predict = Some(num(name, &v)?),
            "-a" | "--alias" => self.aliases = list(&v),
            "--tags" => self.tags = list(&v),
            "--api-key" => self.api_keys.extend(list(&v)),
            "--api-key-file" => {
                let text = std::fs::read_to_string(&v)
                    .with_context(|| format!("cannot read --api-key-file {v}"))?;
                self.api_keys.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
            }
            "--metrics" => self.metrics = true,
            "--spm-infill" => self.spm_infill = true,
            "--ui-mcp-proxy" | "--webui-mcp-proxy" => self.cors_proxy = true,
            "--no-ui-mcp-proxy" | "--no-webui-mcp-proxy" => self.cors_proxy = false,
            "--tools" => self.tools = list(&v),
            "--tools-runtime" => self.tools_runtime = Some(v),
            // llama-server's shorthand for the CORS proxy and every built-in tool.
            "-ag" | "--agent" => {
                self.tools = vec!["all".into()];
                self.cors_proxy = true;
            }
            "-no-ag" | "--no-agent" => {
                self.tools.clear();
                self.cors_proxy = false;
            }
            "-v" | "--verbose" | "--log-verbose" => self.verbose = true,
            "--kv-unified" | "-kvu" => self.kv_unified = true,
            "--no-kv-unified" => self.kv_unified = false,
            "--slots" => self.slots = Some(true),
            "--no-slots" => self.slots = Some(false),
            "--jinja" | "--no-jinja" => {}
            "--chat-template" => self.chat_template = Some(builtin_template(&v)?),
            "--chat-template-file" => {
                let src = std::fs::read_to_string(&v)
                    .with_context(|| format!("cannot read --chat-template-file {v}"))?;
                self.chat_template = Some(server::TemplateChoice::Source(src));
            }
            "--chat-template-kwargs" => match serde_json::from_str(&v) {
                Ok(serde_json::Value::Object(m)) => self.chat_template_kwargs = m,
                _ => bail!("--chat-template-kwargs must be a JSON object, got '{v}'"),
            },
            "--reasoning" | "-rea" => {
                self.reasoning = match v.to_ascii_lowercase().as_str() {
                    "on" | "true" | "1" | "enabled" => Some(true),
                    "off" | "false" | "0" | "disabled" => Some(false),
                    "auto" => None,
                    _ => bail!("--reasoning takes on, off or auto, got '{v}'"),
                }
            }
            "--reasoning-format" => {
                self.reasoning_format =
                    Some(server::ReasoningFormat::from_name(&v).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--reasoning-format takes none, deepseek, deepseek-legacy or auto, \
                             got '{v}'"
                        )
                    })?);
            }
            "--timeout" | "-to" => self.timeout = Some(num(name, &v)?),
            "--cors-origins" => self.cors = Some(list(&v)),
            "--queue" => self.queue = Some(num(name, &v)?),
            "--arithmetic" => {
                self.fast_arithmetic = match v.as_str() {
                    "llama" => false,
                    "fast" => true,
                    _ => bail!("--arithmetic takes llama or fast, got '{v}'"),
                }
            }
            n if IGNORED_VALUE.contains(&n) || IGNORED_FLAG.contains(&n) => {}
            n => bail!("unknown option '{n}' (see hearth serve --help)"),
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<server::Config> {
        let model = self
            .model
            .or(self.hf_repo)
            .ok_or_else(|| anyhow!("a model is needed: hearth serve -m MODEL.gguf"))?;
        let mut c = server::Config::new(model);
        if let Some(h) = self.hosts {
            if h.is_empty() {
                bail!("--host needs at least one address");
            }
            c.hosts = h;
        }
        if let Some(p) = self.port {
            c.port = p;
        }
        if let Some(n) = self.n_ctx {
            c.n_ctx = n;
        }
        if let Some(n) = self.n_parallel {
            if n == 0 || n > engine::batch::MAX_SEQ {
                bail!(
                    "--parallel must be between 1 and {}, got {n}",
                    engine::batch::MAX_SEQ
                );
            }
            c.n_parallel = n;
        }
        if let Some(t) = self.threads {
            if t > 1024 {
                bail!("--threads must be between 1 and 1024");
            }
            c.n_threads = t;
        }
        if let Some(b) = self.batch {
            if b == 0 {
                bail!("--batch-size must be at least 1");
            }
            c.n_batch = b;
        }
        c.n_predict = match self.n_predict {
            None | Some(-1) => None,
            Some(n) if n >= 0 => Some(n as usize),
            Some(n) => bail!("--n-predict must be -1 (no limit) or at least 0, got {n}"),
        };
        let sampling = <SamplingOnly as clap::Parser>::try_parse_from(&self.sampling)
            .map_err(|e| anyhow!("{}", e.to_string().trim_end()))?
            .sampling;
        c.seed = match sampling.seed {
            -1 => None,
            s if s >= 0 => Some(s as u64),
            s => bail!("--seed must be -1 (random) or non-negative, got {s}"),
        };
        c.sampler = sampling.params()?;
        c.aliases = self.aliases;
        c.tags = self.tags;
        c.api_keys = self.api_keys;
        c.metrics = self.metrics;
        c.spm_infill = self.spm_infill;
        c.kv_unified = self.kv_unified;
        c.load_options = engine::LoadOptions {
            llama_order: !self.fast_arithmetic,
        };
        c.verbose = self.verbose;
        c.cors_proxy = self.cors_proxy;
        c.slots_endpoint = self.slots.unwrap_or(true);
        c.chat_template = self.chat_template;
        c.chat_template_kwargs = self.chat_template_kwargs;
        c.reasoning = self.reasoning;
        if let Some(f) = self.reasoning_format {
            c.reasoning_format = f;
        }
        if let Some(t) = self.timeout {
            c.timeout = Duration::from_secs(t);
        }
        if let Some(spec) = &self.tools_runtime {
            tools_runtime(spec)?;
        }
        c.tools =
            server::AgentTool::parse_list(&self.tools).map_err(|e| anyhow!("--tools: {e}"))?;
        if let Some(o) = self.cors {
            c.cors_origins = o;
        } else if !c.tools.is_empty() {
            // As llama-server: tools reach the files of this machine, so only local pages may
            // call them unless --cors-origins says otherwise.
            c.cors_origins = vec!["localhost".into()];
        }
        if let Some(q) = self.queue {
            if q == 0 {
                bail!("--queue must be at least 1");
            }
            c.queue_size = q;
        }
        Ok(c)
    }
}

/// `--tools-runtime`: llama-server's isolates for the tools (`docker:IMAGE`, `podman:IMAGE`,
/// `docker-container:ID`, `podman-container:ID`, `ssh:TARGET`). hearth runs tools on the host
/// only, so a well-formed value is refused as unsupported, a malformed one as malformed.
fn tools_runtime(spec: &str) -> anyhow::Result<()> {
    let known = [
        "docker:",
        "podman:",
        "docker-container:",
        "podman-container:",
        "ssh:",
    ]
    .iter()
    .any(|p| spec.strip_prefix(p).is_some_and(|rest| !rest.is_empty()));
    if !known {
        bail!(
            "unknown --tools-runtime option: {spec} (llama-server takes docker:IMAGE, \
             podman:IMAGE, docker-container:ID, podman-container:ID or ssh:TARGET)"
        );
    }
    bail!(
        "--tools-runtime {spec}: tool runtimes (containers, ssh) are not supported by hearth; \
         without --tools-runtime the tools run on this host"
    )
}

/// `--chat-template`: Jinja source, or the name of a built-in.
fn builtin_template(v: &str) -> anyhow::Result<server::TemplateChoice> {
    if v.contains("{%") || v.contains("{{") {
        return Ok(server::TemplateChoice::Source(v.to_owned()));
    }
    if let Some(src) = server::named_template(v) {
        return Ok(server::TemplateChoice::Source(src.to_owned()));
    }
    let arch = match v {
        "chatml" => "llama",
        "gemma" | "gemma3" => "gemma3",
        _ => bail!(
            "--chat-template '{v}': not Jinja source and not a built-in hearth knows (chatml, \
             gemma, {})",
            server::NAMED_TEMPLATES.join(", ")
        ),
    };
    Ok(server::TemplateChoice::BuiltinForArch(arch.to_owned()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let argv: Vec<String> = args
        .args
        .into_iter()
        .map(|a| {
            a.into_string()
                .map_err(|a| anyhow!("argument {a:?} is not valid UTF-8"))
        })
        .collect::<anyhow::Result<_>>()?;
    let config = match parse(&argv, |k| std::env::var(k).ok())? {
        Parsed::Help => {
            print!("{HELP}");
            return Ok(());
        }
        Parsed::Serve(c) => *c,
    };
    // `-m` (or `-hf`) may name a Hugging Face model: fetched, or found in the cache, first.
    let offline = argv.iter().any(|a| a == "--offline");
    let mut config = config;
    config.model = super::pull::resolve(&config.model.to_string_lossy(), offline)?;
    if !config.tools.is_empty() {
        eprintln!(
            "hearth serve: warning: security: server tools (experimental) enabled - do not \
             expose to untrusted environments (anyone who can reach the server can read, write \
             and run anything this user can)"
        );
        if config.cors_origins == ["localhost"] {
            eprintln!(
                "hearth serve: server tools are enabled, using localhost as the default CORS \
                 origin (change with --cors-origins)"
            );
        }
    }
    let running = server::start(config.clone())?;
    for a in &running.addrs {
        eprintln!("hearth serve: listening on http://{a}");
    }
    running.wait()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_args(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<server::Config> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        match parse(&args, |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })? {
            Parsed::Serve(c) => Ok(*c),
            Parsed::Help => bail!("help"),
        }
    }

    #[test]
    fn llama_server_flags_parse() {
        let c = parse_args(
            &[
                "-m",
                "m.gguf",
                "--host",
                "0.0.0.0",
                "--port",
                "9000",
                "-c",
                "8192",
                "-np",
                "2",
                "-t",
                "3",
                "-b",
                "64",
                "-ub",
                "32",
                "-n",
                "100",
                "--temp",
                "0",
                "--seed",
                "42",
                "-a",
                "tiny",
                "--api-key",
                "k1,k2",
                "--metrics",
                "--no-slots",
                "--jinja",
                "--timeout",
                "30",
                "--cors-origins",
                "http://a,http://b",
                "-fa",
                "on",
                "--n-gpu-layers",
                "99",
                "--offline",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(c.model, PathBuf::from("m.gguf"));
        assert_eq!(c.hosts, ["0.0.0.0"]);
        assert_eq!(c.port, 9000);
        assert_eq!(
            (c.n_ctx, c.n_parallel, c.n_threads, c.n_batch),
            (8192, 2, 3, 64)
        );
        assert_eq!(c.n_predict, Some(100));
        assert_eq!(c.sampler.temperature, 0.0);
        assert_eq!(c.seed, Some(42));
        assert_eq!(c.aliases, ["tiny"]);
        assert_eq!(c.api_keys, ["k1", "k2"]);
        assert!(c.metrics && !c.slots_endpoint);
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.cors_origins, ["http://a", "http://b"]);
    }

    #[test]
    fn arithmetic_flag() {
        let c = parse_args(&["-m", "m.gguf"], &[]).unwrap();
        assert!(c.load_options.llama_order);
        let c = parse_args(&["-m", "m.gguf", "--arithmetic", "fast"], &[]).unwrap();
        assert!(!c.load_options.llama_order);
        let e = parse_args(&["-m", "m.gguf", "--arithmetic", "exact"], &[]).unwrap_err();
        assert!(e.to_string().contains("llama or fast"), "{e}");
    }

    #[test]
    fn model_file_wins_over_hf_repo() {
        let c = parse_args(&["--model", "m.gguf", "--hf-repo", "org/repo:Q4_K_M"], &[]).unwrap();
        assert_eq!(c.model, PathBuf::from("m.gguf"));
        let c = parse_args(&["-hf", "org/repo:Q4_K_M"], &[]).unwrap();
        assert_eq!(c.model, PathBuf::from("org/repo:Q4_K_M"));
    }

    #[test]
    fn reasoning_format_flag_and_variable() {
        let c = parse_args(&["-m", "m.gguf"], &[]).unwrap();
        assert_eq!(c.reasoning_format, server::ReasoningFormat::Auto);
        let c = parse_args(&["-m", "m.gguf", "--reasoning-format", "none"], &[]).unwrap();
        assert_eq!(c.reasoning_format, server::ReasoningFormat::None);
        let c = parse_args(&["-m", "m.gguf"], &[("LLAMA_ARG_THINK", "deepseek")]).unwrap();
        assert_eq!(c.reasoning_format, server::ReasoningFormat::Deepseek);
        assert!(parse_args(&["-m", "m.gguf", "--reasoning-format", "loud"], &[]).is_err());
    }

    #[test]
    fn llama_cpp_sampling_flags_set_the_defaults() {
        let c = parse_args(
            &[
                "-m",
                "m",
                "--mirostat",
                "2",
                "--mirostat-ent",
                "4",
                "--dry-multiplier",
                "0.8",
                "--xtc-probability=0.5",
                "--samplers",
                "top_k;temperature",
                "--top_k",
                "7",
                "--ignore-eos",
                "-s",
                "5",
            ],
            &[],
        )
        .unwrap();
        let sp = &c.sampler;
        assert_eq!(sp.mirostat, engine::sampler::MirostatMode::V2);
        assert_eq!(
            (sp.mirostat_tau, sp.dry_multiplier, sp.xtc_probability),
            (4.0, 0.8, 0.5)
        );
        assert_eq!(sp.samplers.len(), 2);
        assert_eq!(sp.top_k, 7);
        assert!(sp.ignore_eos);
        assert_eq!(c.seed, Some(5));
        let e = parse_args(&["-m", "m", "--top-p", "7"], &[]).unwrap_err();
        assert!(e.to_string().contains("--top-p"), "{e}");
    }

    #[test]
    fn underscores_and_equals_in_long_options() {
        let c = parse_args(
            &["--model=m.gguf", "--ctx_size", "512", "--n_predict=7"],
            &[],
        )
        .unwrap();
        assert_eq!((c.n_ctx, c.n_predict), (512, Some(7)));
    }

    #[test]
    fn env_gives_defaults_and_argv_wins() {
        let c = parse_args(
            &["--port", "1234"],
            &[
                ("LLAMA_ARG_MODEL", "e.gguf"),
                ("LLAMA_ARG_PORT", "5678"),
                ("LLAMA_ARG_N_PARALLEL", "3"),
                ("LLAMA_ARG_ENDPOINT_METRICS", "1"),
            ],
        )
        .unwrap();
        assert_eq!(c.model, PathBuf::from("e.gguf"));
        assert_eq!((c.port, c.n_parallel), (1234, 3));
        assert!(c.metrics);
    }

    #[test]
    fn defaults_are_llama_servers() {
        let c = parse_args(&["-m", "m.gguf"], &[]).unwrap();
        assert_eq!(c.hosts, ["127.0.0.1"]);
        assert_eq!((c.port, c.n_parallel, c.n_ctx), (8080, 4, 0));
        assert!(c.slots_endpoint && !c.metrics);
        assert_eq!(c.seed, None);
    }

    #[test]
    fn tools_flags_as_llama_servers() {
        let c = parse_args(&["-m", "m", "--tools", "read_file,get_info"], &[]).unwrap();
        assert_eq!(
            c.tools,
            [server::AgentTool::ReadFile, server::AgentTool::GetInfo]
        );
        // With tools, CORS origins default to localhost; an explicit list wins.
        assert_eq!(c.cors_origins, ["localhost"]);
        let c = parse_args(&["-m", "m", "--tools", "all", "--cors-origins", "*"], &[]).unwrap();
        assert_eq!(
            (c.tools.len(), c.cors_origins.as_slice()),
            (7, &["*".to_owned()][..])
        );
        let c = parse_args(&["-m", "m"], &[("LLAMA_ARG_TOOLS", "all")]).unwrap();
        assert_eq!(c.tools.len(), 7);
        let c = parse_args(&["-m", "m", "--agent"], &[]).unwrap();
        assert!(c.cors_proxy && c.tools.len() == 7);
        let c = parse_args(&["-m", "m"], &[]).unwrap();
        assert!(c.tools.is_empty() && c.cors_origins == ["*"]);
        let e = parse_args(&["-m", "m", "--tools", "read_file,rm"], &[]).unwrap_err();
        assert!(e.to_string().contains("unknown tool \"rm\""), "{e}");
        let e = parse_args(
            &[
                "-m",
                "m",
                "--tools",
                "all",
                "--tools-runtime",
                "docker:busybox",
            ],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("not supported by hearth"), "{e}");
        let e = parse_args(&["-m", "m", "--tools-runtime", "lxc:x"], &[]).unwrap_err();
        assert!(
            e.to_string().contains("unknown --tools-runtime option"),
            "{e}"
        );
    }

    #[test]
    fn unknown_and_refused_flags_are_named() {
        let e = parse_args(&["-m", "m.gguf", "--frobnicate"], &[]).unwrap_err();
        assert!(e.to_string().contains("--frobnicate"), "{e}");
        let e = parse_args(&["-m", "m.gguf", "--embedding"], &[]).unwrap_err();
        assert!(e.to_string().contains("--embedding"), "{e}");
        let e = parse_args(&["-m"], &[]).unwrap_err();
        assert!(e.to_string().contains("-m"), "{e}");
        let e = parse_args(&["--port", "1"], &[]).unwrap_err();
        assert!(e.to_string().contains("model"), "{e}");
        let e = parse_args(&["-m", "m", "-np", "0"], &[]).unwrap_err();
        assert!(e.to_string().contains("--parallel"), "{e}");
    }
}
