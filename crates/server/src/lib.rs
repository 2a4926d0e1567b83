//! `hearth serve`: an HTTP server speaking OpenAI's API, llama-server's own endpoints and
//! Ollama's, over one loaded model. The only crate with HTTP and wire types.
//!
//! [`start`] binds the listeners at once (so `/health` answers 503 while the model loads), loads
//! the model on a thread of its own, then starts the [`scheduler`] — a std thread owning every
//! engine context, never the async runtime. Handlers ([`openai`], [`llama`], [`ollama`]) parse
//! and validate a request, render and tokenize its prompt, submit a job and turn the
//! scheduler's events into a JSON answer or a stream.
#![forbid(unsafe_code)]

mod agent_tools;
mod constrain;
mod error;
mod http;
mod infill;
mod llama;
mod named_templates;
mod ollama;
mod openai;
mod params;
mod proxy;
pub mod scheduler;
mod slot;
mod tools;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use engine::chat::Chat;
use engine::chat_template::ChatTemplate;
use engine::{Model, SamplerParams};
use tokio::sync::watch;

pub use agent_tools::AgentTool;
pub use error::ApiError;
pub use named_templates::{NAMED_TEMPLATES, named_template};
pub use tools::ReasoningFormat;

use crate::params::Defaults;
use crate::scheduler::{Scheduler, SchedulerConfig};

/// Everything `hearth serve` is told on its command line.
#[derive(Clone, Debug)]
pub struct Config {
    pub model: PathBuf,
    /// Addresses to listen on (several listeners share one server).
    pub hosts: Vec<String>,
    pub port: u16,
    /// Context of all slots together; 0 takes the model's training context.
    pub n_ctx: usize,
    /// Slots: requests generated at the same time.
    pub n_parallel: usize,
    pub n_threads: usize,
    pub n_batch: usize,
    /// Most tokens a request may generate (`None`: no limit).
    pub n_predict: Option<usize>,
    /// Sampling defaults of requests that leave fields out.
    pub sampler: SamplerParams,
    /// `None`: each request without a seed gets a random one.
    pub seed: Option<u64>,
    /// The model's names in the APIs (llama-server's `--alias a,b`): the first in sorted order
    /// is its id; none: the model path.
    pub aliases: Vec<String>,
    /// Labels shown with the model in `/v1/models` (llama-server's `--tags`).
    pub tags: Vec<String>,
    /// Keys accepted in `Authorization: Bearer` (empty: no key needed).
    pub api_keys: Vec<String>,
    pub metrics: bool,
    pub slots_endpoint: bool,
    /// llama-server's `--spm-infill`: `/infill` prompts put the suffix before the prefix (the
    /// order some code models were trained on).
    pub spm_infill: bool,
    /// llama-server's `--verbose`: every completion answer carries `__verbose` (the native
    /// answer, with the prompt as the model saw it), as a request's `"verbose": true` asks.
    pub verbose: bool,
    /// A chat template replacing the model's.
    pub chat_template: Option<TemplateChoice>,
    /// Template variables every request gets (llama-server's `--chat-template-kwargs`); a
    /// request's own `chat_template_kwargs` override them.
    pub chat_template_kwargs: serde_json::Map<String, serde_json::Value>,
    /// llama-server's `--reasoning`: `Some(true)` on, `Some(false)` off (the template's
    /// `enable_thinking` is false and a thinking block it would open is closed empty), `None`
    /// auto (the template decides).
    pub reasoning: Option<bool>,
    /// llama-server's `--reasoning-format`: how chat replies' thinking blocks are returned
    /// when a request does not say (`auto`: as `reasoning_content`).
    pub reasoning_format: ReasoningFormat,
    /// llama-server's `--timeout`: the longest a client may take to send a request's head or
    /// body, or to take the next piece of a response, before its connection is closed.
    pub timeout: Duration,
    /// Origins allowed by CORS (`*`: any).
    pub cors_origins: Vec<String>,
    /// llama-server's `--ui-mcp-proxy`: `/cors-proxy?url=…` forwards requests to other servers.
    pub cors_proxy: bool,
    /// llama-server's `--tools`: the built-in agent tools `/tools` offers (none: `/tools`
    /// answers 403). They read, write and run anything the server's user can.
    pub tools: Vec<AgentTool>,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Requests that may wait for a slot.
    pub queue_size: usize,
    /// llama-server's `--kv-unified`: a slot may use the whole context, not its share.
    pub kv_unified: bool,
    /// How the model is loaded (`--arithmetic`: llama.cpp's summation order or the fastest).
    pub load_options: engine::LoadOptions,
}

impl Config {
    /// llama-server's defaults for `model`.
    pub fn new(model: PathBuf) -> Config {
        Config {
            model,
            hosts: vec!["127.0.0.1".into()],
            port: 8080,
            n_ctx: 0,
            n_parallel: 4,
            n_threads: engine::context::default_threads(),
            n_batch: 2048,
            n_predict: None,
            sampler: SamplerParams::default(),
            seed: None,
            aliases: Vec::new(),
            tags: Vec::new(),
            api_keys: Vec::new(),
            metrics: false,
            spm_infill: false,
            slots_endpoint: true,
            verbose: false,
            chat_template: None,
            chat_template_kwargs: serde_json::Map::new(),
            reasoning: None,
            reasoning_format: ReasoningFormat::Auto,
            timeout: Duration::from_secs(600),
            cors_origins: vec!["*".into()],
            cors_proxy: false,
            tools: Vec::new(),
            body_limit: 16 << 20,
            queue_size: 64,
            kv_unified: false,
            load_options: engine::LoadOptions::default(),
        }
    }
}

/// A chat template given on the command line.
#[derive(Clone, Debug)]
pub enum TemplateChoice {
    /// Jinja source.
    Source(String),
    /// The built-in template hearth uses for files of this architecture without one.
    BuiltinForArch(String),
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Load(String),
    #[error("{0}")]
    Runtime(String),
}

/// What the handlers see once the model is loaded.
pub(crate) struct Ready {
    pub model: Arc<Model>,
    /// The chat template, compiled once.
    pub chat: Arc<Chat>,
    /// The template's Jinja source, for `/props`.
    pub template_source: String,
    /// The thinking-block markers the template uses, if any (`<think>`, `</think>`).
    pub thinking_tags: Option<(&'static str, &'static str)>,
    /// How the template's model writes tool calls.
    pub tool_format: tools::Format,
    /// Template variables of every request: `--chat-template-kwargs`, and `enable_thinking`
    /// from `--reasoning`.
    pub template_kwargs: serde_json::Map<String, serde_json::Value>,
    pub scheduler: Scheduler,
    pub defaults: Defaults,
    /// The vocabulary prepared for grammars (`constrain`), built on first use.
    pub grammar_vocab: OnceLock<Result<engine::grammar::GrammarVocab, String>>,
}

impl Ready {
    pub fn n_ctx_slot(&self) -> usize {
        self.scheduler.config.n_ctx_slot
    }
}

/// The state every handler shares.
pub(crate) struct App {
    pub config: Config,
    /// The first listener's port (names the scheduler thread).
    pub port: u16,
    pub ready: OnceLock<Ready>,
    /// Unix time the server started (`created` of `/v1/models`).
    pub created: u64,
}

impl App {
    /// The loaded model, or 503 while it loads.
    pub fn ready(&self) -> Result<&Ready, ApiError> {
        self.ready
            .get()
            .ok_or_else(|| ApiError::unavailable("Loading model"))
    }

    /// The model's name in the APIs: its first alias in sorted order (as llama-server, which
    /// keeps them in a `std::set`), else its path.
    pub fn model_id(&self) -> String {
        self.config
            .aliases
            .iter()
            .min()
            .cloned()
            .unwrap_or_else(|| self.config.model.display().to_string())
    }
}

/// A started server.
pub struct Running {
    /// The addresses listened on (port 0 resolved).
    pub addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Waits until the server stops (SIGINT/SIGTERM, or [`Running::shutdown`]).
    pub fn wait(self) -> Result<(), ServeError> {
        self.thread
            .join()
            .map_err(|_| ServeError::Runtime("the server thread panicked".into()))?
    }

    /// Stops accepting connections, lets running requests finish, and waits.
    pub fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.stop.send(true);
        self.wait()
    }
}

/// Binds every listener, starts loading the model and serving; returns at once.
pub fn start(config: Config) -> Result<Running, ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("hearth-http")
        .enable_all()
        .build()
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    let mut listeners = Vec::new();
    for host in &config.hosts {
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{}", config.port)
        } else {
            format!("{host}:{}", config.port)
        };
        let l = rt
            .block_on(tokio::net::TcpListener::bind(&addr))
            .map_err(|source| ServeError::Bind {
                addr: addr.clone(),
                source,
            })?;
        listeners.push(l);
    }
    let addrs = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let port = addrs_port(&listeners);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let app = Arc::new(App {
        port,
        config: config.clone(),
        ready: OnceLock::new(),
        created,
    });
    let (stop, stop_rx) = watch::channel(false);
    let loader = {
        let app = app.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("hearth-load".into())
            .spawn(move || {
                let r = load(&app);
                if r.is_err() {
                    let _ = stop.send(true);
                }
                r
            })
            .map_err(|e| ServeError::Runtime(e.to_string()))?
    };
    let thread = std::thread::Builder::new()
        .name("hearth-serve".into())
        .spawn(move || {
            rt.block_on(http::serve(app.clone(), listeners, stop_rx));
            let loaded = match loader.join() {
                Ok(r) => r,
                Err(_) => Err(ServeError::Load("loading the model panicked".into())),
            };
            if let Some(r) = app.ready.get() {
                r.scheduler.stop();
            }
            loaded
        })
        .map_err(|e| ServeError::Runtime(e.to_string()))?;
    Ok(Running {
        addrs,
        stop,
        thread,
    })
}

fn addrs_port(listeners: &[tokio::net::TcpListener]) -> u16 {
    listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map_or(0, |a| a.port())
}

/// Loads the model and its template, starts the scheduler, and marks the server ready.
fn load(app: &App) -> Result<(), ServeError> {
    let c = &app.config;
    let model = Model::load_with(&c.model, c.load_options)
        .map_err(|e| ServeError::Load(format!("cannot load model {}: {e}", c.model.display())))?;
    let model = Arc::new(model);
    let (chat, template_source) = match &c.chat_template {
        Some(TemplateChoice::Source(src)) => {
            let t = ChatTemplate::new(src)
                .map_err(|e| ServeError::Load(format!("--chat-template: {e}")))?;
            (
                Chat::with_template(model.clone(), t, "--chat-template".into()),
                src.clone(),
            )
        }
        Some(TemplateChoice::BuiltinForArch(arch)) => {
            let (t, name) = ChatTemplate::builtin_for_arch(arch);
            (
                Chat::with_template(model.clone(), t, format!("built-in {name}")),
                String::new(),
            )
        }
        None => (
            Chat::new(model.clone())
                .map_err(|e| ServeError::Load(format!("the model's chat template: {e}")))?,
            model.chat_template.clone().unwrap_or_default(),
        ),
    };
    let n_parallel = c.n_parallel.max(1);
    let n_ctx = if c.n_ctx == 0 {
        model.hparams.n_ctx_train.max(1)
    } else {
        c.n_ctx
    };
    let n_ctx_slot = if c.kv_unified {
        n_ctx
    } else {
        n_ctx / n_parallel
    };
    if n_ctx_slot == 0 {
        return Err(ServeError::Load(format!(
            "a context of {n_ctx} cannot be shared by {n_parallel} slots"
        )));
    }
    let scheduler = Scheduler::start(
        model.clone(),
        SchedulerConfig {
            n_parallel,
            n_ctx_slot,
            kv_unified: c.kv_unified,
            n_batch: c.n_batch.max(1),
            n_threads: c.n_threads.max(1),
            queue_size: c.queue_size,
            thread_name: format!("sched-{}", app.port),
        },
    )
    .map_err(ServeError::Load)?;
    let ready = Ready {
        model,
        chat: Arc::new(chat),
        thinking_tags: http::thinking_tags(&template_source),
        tool_format: tools::Format::detect(&template_source),
        template_kwargs: {
            let mut kw = c.chat_template_kwargs.clone();
            if let Some(on) = c.reasoning {
                kw.insert("enable_thinking".into(), on.into());
            }
            kw
        },
        template_source,
        scheduler,
        defaults: Defaults {
            sampler: c.sampler.clone(),
            seed: c.seed,
            n_predict: c.n_predict,
        },
        grammar_vocab: OnceLock::new(),
    };
    let _ = app.ready.set(ready);
    Ok(())
}
