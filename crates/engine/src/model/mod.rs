//! [`Model`]: a GGUF file mapped into memory, its hyper-parameters, its weights bound by name,
//! its tokenizer and chat template. Loading validates everything once, so the forward pass can
//! trust shapes and ranges.

mod hparams;
mod tensors;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gguf::{GgmlType, Gguf};
use kernels::mmap::Mmap;

use crate::arch::{self, Arch, ArchWeights};
use crate::tokenizer::{Tokenizer, TokenizerError};

pub use hparams::{HParams, Keys, LayerShape, RopeScaling};
pub use tensors::{Binder, ExpertMats, MatRef};

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid GGUF file: {0}")]
    Gguf(#[from] gguf::Error),
    #[error("unsupported architecture '{0}' (hearth runs: {list})", list = Arch::supported_list())]
    UnsupportedArch(String),
    #[error("missing metadata key '{0}'")]
    MissingKey(String),
    #[error("bad hyper-parameter '{key}': {reason}")]
    BadHParam { key: String, reason: String },
    #[error("missing tensor '{0}'")]
    MissingTensor(String),
    #[error("tensor '{name}' has shape {found:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        found: Vec<u64>,
        expected: Vec<u64>,
    },
    #[error("tensor '{name}' has type {ty}, which hearth cannot compute yet")]
    UnsupportedType { name: String, ty: GgmlType },
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
}

/// Facts about a loaded model, for display and benchmarks.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub arch: Arch,
    /// `general.name`, or the file name.
    pub name: String,
    /// Total elements of all tensors.
    pub n_params: u64,
    /// Total bytes of all tensor data.
    pub n_bytes: u64,
    /// Bytes of weights one decoded token reads: every tensor, the LM head included, but one
    /// row of each embedding table (unless it is also the LM head), and each layer's experts in
    /// the proportion `n_expert_used / n_expert`. The floor of decode time is this over the
    /// memory's read bandwidth (`hearth bench` reports the ratio).
    pub bytes_per_token: u64,
    /// The quantization mix named by `general.file_type` (`Q4_K_M`, …), or the most common
    /// tensor type when the key is absent.
    pub file_type: String,
}

/// A loaded model: immutable, shared by every context that runs it.
pub struct Model {
    /// The mapped file, which unpacked matrices read in place (they hold it too).
    _map: Arc<Mmap>,
    pub info: ModelInfo,
    pub hparams: HParams,
    pub(crate) weights: ArchWeights,
    pub tokenizer: Tokenizer,
    /// `tokenizer.chat_template`, when the file has one.
    pub chat_template: Option<String>,
    /// How it was loaded.
    options: LoadOptions,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("info", &self.info)
            .field("hparams", &self.hparams)
            .finish()
    }
}

/// How a model is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Sum matrix products in llama.cpp's float order wherever every matrix type of the file
    /// allows it (the default), so results equal llama.cpp's bit for bit. Off, every product
    /// takes the fastest order: the same quantized products summed in another f32 order
    /// (results differ from llama.cpp's in the last bits), with about 1.3× the prompt and
    /// batched-decode speed on the 32-value formats. Either way each token's results are
    /// independent of the others in its batch.
    pub llama_order: bool,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions { llama_order: true }
    }
}

impl Model {
    /// Maps `path`, reads its hyper-parameters, binds every tensor and builds the tokenizer.
    pub fn load(path: &Path) -> Result<Model, LoadError> {
        Model::load_with(path, LoadOptions::default())
    }

    /// Whether products sum in llama.cpp's order ([`LoadOptions::llama_order`]).
    pub fn llama_order(&self) -> bool {
        self.options.llama_order
    }

    /// [`Model::load`] with options.
    pub fn load_with(path: &Path, options: LoadOptions) -> Result<Model, LoadError> {
        let io = |source| LoadError::Io {
            path: path.to_owned(),
            source,
        };
        let map = Arc::new(Mmap::open(path).map_err(io)?);
        Model::from_map(map, path, options)
    }

    /// A model from a GGUF file built in memory (`hearth run` on a transformers checkpoint,
    /// converted on the fly); `path` names it in `info` and messages.
    pub fn load_bytes(
        bytes: Vec<u8>,
        path: &Path,
        options: LoadOptions,
    ) -> Result<Model, LoadError> {
        Model::from_map(Arc::new(Mmap::from_vec(bytes)), path, options)
    }

    fn from_map(map: Arc<Mmap>, path: &Path, options: LoadOptions) -> Result<Model, LoadError> {
        // Built once here rather than in the first token's forward pass.
        kernels::ops::Ops::init_ggml_tables();
        let file = Gguf::parse(&map)?;
        let arch_name = file.architecture()?;
        let arch = Arch::from_name(arch_name)
            .ok_or_else(|| LoadError::UnsupportedArch(arch_name.to_owned()))?;
        let tokenizer = Tokenizer::from_gguf(&file)?;
        let hparams = HParams::read(&file, arch.name(), tokenizer.n_vocab())?;
        let keys = Keys::new(&file, arch.name());
        let release = |range| map.release(range);
        let weights = arch::bind(
            arch,
            &hparams,
            &Binder::new(&file, &map, &release, options.llama_order),
            &keys,
        )?;
        let name = match file.get_opt::<&str>("general.name")? {
            Some(n) => n.to_owned(),
            None => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let info = ModelInfo {
            path: path.to_owned(),
            arch,
            name,
            n_params: file.tensors().iter().map(|t| t.n_elements()).sum(),
            n_bytes: file.tensors().iter().map(|t| t.n_bytes()).sum(),
            bytes_per_token: bytes_per_token(&file, &hparams),
            file_type: file_type_name(&file),
        };
        let chat_template = file
            .get_opt::<&str>("tokenizer.chat_template")?
            .map(str::to_owned);
        drop(file);
        Ok(Model {
            _map: map,
            info,
            hparams,
            weights,
            tokenizer,
            chat_template,
            options,
        })
    }
}

/// [`ModelInfo::bytes_per_token`].
fn bytes_per_token(file: &Gguf<'_>, hp: &HParams) -> u64 {
    let tied = !file.tensors().iter().any(|t| t.name == "output.weight");
    file.tensors()
        .iter()
        .map(|t| {
            let bytes = t.n_bytes();
            let rows = (t.n_elements() / t.shape.first().copied().unwrap_or(1).max(1)).max(1);
            let is_table =
                t.name.ends_with("token_embd.weight") || t.name.contains("per_layer_token_embd");
            if is_table && !(tied && t.name == "token_embd.weight") {
                bytes / rows
            } else if t.name.contains("_exps") && hp.n_expert > 0 {
                bytes * hp.n_expert_used.min(hp.n_expert) as u64 / hp.n_expert as u64
            } else {
                bytes
            }
        })
        .sum()
}

/// llama.cpp's name for a `general.file_type` value (`llama_ftype`).
fn file_type_name(file: &Gguf<'_>) -> String {
    let name = match file.get_opt::<u32>("general.file_type").ok().flatten() {
        Some(0) => "F32",
        Some(1) => "F16",
        Some(2) => "Q4_0",
        Some(3) => "Q4_1",
        Some(7) => "Q8_0",
        Some(8) => "Q5_0",
        Some(9) => "Q5_1",
        Some(10) => "Q2_K",
        Some(11) => "Q3_K_S",
        Some(12) => "Q3_K_M",
        Some(13) => "Q3_K_L",
        Some(14) => "Q4_K_S",
        Some(15) => "Q4_K_M",
        Some(16) => "Q5_K_S",
        Some(17) => "Q5_K_M",
        Some(18) => "Q6_K",
        Some(19) => "IQ2_XXS",
        Some(20) => "IQ2_XS",
        Some(21) => "Q2_K_S",
        Some(22) => "IQ3_XS",
        Some(23) => "IQ3_XXS",
        Some(24) => "IQ1_S",
        Some(25) => "IQ4_NL",
        Some(26) => "IQ3_S",
        Some(27) => "IQ3_M",
        Some(28) => "IQ2_S",
        Some(29) => "IQ2_M",
        Some(30) => "IQ4_XS",
        Some(31) => "IQ1_M",
        Some(32) => "BF16",
        Some(36) => "TQ1_0",
        Some(37) => "TQ2_0",
        Some(38) => "MXFP4_MOE",
        _ => "",
    };
    if !name.is_empty() {
        return name.to_owned();
    }
    let mut bytes_by_type = std::collections::BTreeMap::<GgmlType, u64>::new();
    for t in file.tensors() {
        *bytes_by_type.entry(t.ty).or_default() += t.n_bytes();
    }
    bytes_by_type
        .into_iter()
        .max_by_key(|(_, b)| *b)
        .map(|(t, _)| t.to_string())
        .unwrap_or_default()
}
