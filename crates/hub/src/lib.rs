//! Hugging Face Hub support, and the only crate of hearth that talks to the network.
//!
//! [`resolve_model`] turns what a user typed after `-m` into a local GGUF path: a file that exists
//! is used as it is; otherwise the text is a [`HubRef`] (`org/repo[:TAG]`, `hf.co/org/repo[:TAG]`
//! or a `…/resolve/REV/FILE` URL), resolved through the Hub API (`api`) to a commit and a file
//! list, narrowed to one GGUF (or every shard of a split one) by its quant name (`quant`), and
//! downloaded (`download`) into huggingface_hub's own cache layout (`cache`), so Python's
//! huggingface_hub and llama.cpp find what hearth pulled and the other way round.
//!
//! Downloads are verified (sha256 for LFS files, the git blob hash otherwise) while they stream
//! and placed only when complete and right; a lock file keeps two processes off the same blob and
//! a broken download resumes with `Range`. Every file name that comes from the network is checked
//! before it is used in a path ([`reference::check_file_path`]).
#![forbid(unsafe_code)]

mod api;
mod cache;
mod download;
pub mod quant;
pub mod reference;

use std::path::{Path, PathBuf};

pub use cache::{CachedFile, Removed};
pub use reference::{HubRef, Selector};

/// Where the Hub is, where the cache is, and how to talk to it. [`Options::from_env`] reads the
/// environment variables huggingface_hub reads.
#[derive(Clone, Debug)]
pub struct Options {
    /// `https://huggingface.co`, or `HF_ENDPOINT`.
    pub endpoint: String,
    /// The hub cache folder (`HF_HUB_CACHE`, `HF_HOME/hub`, …).
    pub cache_dir: PathBuf,
    /// Bearer token (`HF_TOKEN`, or the file `huggingface-cli login` writes).
    pub token: Option<String>,
    /// Use only the cache (`HF_HUB_OFFLINE`, `--offline`).
    pub offline: bool,
    /// Draw a progress bar on stderr while downloading.
    pub progress: bool,
}

impl Options {
    /// Settings from the process environment (see [`Options::from_vars`]); no progress bar.
    pub fn from_env() -> Options {
        Options::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// Settings from variables as huggingface_hub's `constants.py` reads them: `HF_ENDPOINT`;
    /// `HF_HUB_CACHE` (else the old `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, where `HF_HOME`
    /// defaults to `XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`); `HF_TOKEN` (else
    /// `HUGGING_FACE_HUB_TOKEN`, else the file `HF_TOKEN_PATH`, default `HF_HOME/token`);
    /// `HF_HUB_OFFLINE` (1/ON/YES/TRUE). Proxies (`HTTPS_PROXY`, `NO_PROXY`, …) are read by the
    /// HTTP client.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Options {
        let home = || {
            var("HOME")
                .or_else(|| var("USERPROFILE"))
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
        };
        let expand = |p: String| match p.strip_prefix("~/") {
            Some(rest) => home().join(rest),
            None => PathBuf::from(p),
        };
        let hf_home = var("HF_HOME").map(expand).unwrap_or_else(|| {
            var("XDG_CACHE_HOME")
                .map(expand)
                .unwrap_or_else(|| home().join(".cache"))
                .join("huggingface")
        });
        let cache_dir = var("HF_HUB_CACHE")
            .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
            .map(expand)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token = var("HF_TOKEN")
            .or_else(|| var("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                let path = var("HF_TOKEN_PATH")
                    .map(expand)
                    .unwrap_or_else(|| hf_home.join("token"));
                std::fs::read_to_string(path).ok()
            })
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty());
        let offline = var("HF_HUB_OFFLINE").is_some_and(|v| {
            ["1", "ON", "YES", "TRUE"].contains(&v.trim().to_ascii_uppercase().as_str())
        });
        Options {
            endpoint: var("HF_ENDPOINT")
                .map(|e| e.trim_end_matches('/').to_string())
                .unwrap_or_else(|| "https://huggingface.co".to_string()),
            cache_dir,
            token,
            offline,
            progress: false,
        }
    }
}

/// Everything that can go wrong between a reference and a verified file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("not a model reference: {0}")]
    BadReference(String),
    #[error("no such file: {0} (and not a Hugging Face reference such as org/repo:Q4_K_M)")]
    NoSuchFile(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{}", gated_message(repo, url, *had_token))]
    Gated {
        repo: String,
        url: String,
        had_token: bool,
    },
    #[error("{0}")]
    NoMatch(String),
    #[error("offline: {0}")]
    Offline(String),
    #[error("refusing an unsafe file name: {0:?}")]
    UnsafePath(String),
    #[error(
        "{file}: checksum mismatch (expected {expected}, got {actual}); the download was discarded"
    )]
    Corrupt {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("HTTP {status} from {url}")]
    Http { status: u16, url: String },
    #[error("cannot download {url}: {message}")]
    Network { url: String, message: String },
    #[error("download of {url} broken off: {message}")]
    Incomplete { url: String, message: String },
    #[error("unexpected answer from {url}: {message}")]
    Protocol { url: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

fn gated_message(repo: &str, url: &str, had_token: bool) -> String {
    if had_token {
        format!(
            "{repo} is gated or private and your token was refused: accept the model's license \
             at {url} with the account the token belongs to"
        )
    } else {
        format!(
            "{repo} is gated or private: accept the model's license at {url}, then set HF_TOKEN \
             to an access token (or run `huggingface-cli login`)"
        )
    }
}

/// A model file in the cache, after [`pull`].
#[derive(Clone, Debug)]
pub struct PulledFile {
    /// Path in the repository.
    pub file: String,
    /// `snapshots/<commit>/<file>` in the cache.
    pub path: PathBuf,
    pub size: u64,
    /// False when the cache already had it.
    pub downloaded: bool,
}

/// What [`pull`] resolved and fetched.
#[derive(Clone, Debug)]
pub struct Pulled {
    pub repo: String,
    pub commit: String,
    /// One file, or every shard of a split model, first shard first.
    pub files: Vec<PulledFile>,
}

impl Pulled {
    /// The file to load (the first shard of a split model).
    pub fn path(&self) -> &Path {
        &self.files[0].path
    }
}

/// A local path as it is, else a Hub reference pulled into the cache: the GGUF to load.
pub fn resolve_model(reference: &str, opts: &Options) -> Result<PathBuf, Error> {
    let path = Path::new(reference);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let looks_like_path = reference.starts_with(['.', '/', '~'])
        || (reference.to_ascii_lowercase().ends_with(".gguf") && !reference.contains("://"));
    if looks_like_path {
        return Err(Error::NoSuchFile(reference.to_string()));
    }
    let r = HubRef::parse(reference).map_err(|e| match e {
        Error::BadReference(_) if !reference.contains('/') => {
            Error::NoSuchFile(reference.to_string())
        }
        e => e,
    })?;
    Ok(pull(&r, opts)?.path().to_path_buf())
}

/// Resolves a reference and downloads what is not cached yet. Offline, or when the Hub cannot
/// be reached, the cache alone answers (as huggingface_hub does).
pub fn pull(r: &HubRef, opts: &Options) -> Result<Pulled, Error> {
    if opts.offline {
        return from_cache(r, opts);
    }
    match pull_online(r, opts) {
        Err(e @ (Error::Network { .. } | Error::Http { status: 500.., .. })) => {
            from_cache(r, opts).map_err(|_| e)
        }
        other => other,
    }
}

fn pull_online(r: &HubRef, opts: &Options) -> Result<Pulled, Error> {
    let client = api::Client::new(opts);
    let commit = client.commit(&r.repo, &r.revision)?;
    let tree = client.tree(&r.repo, &commit)?;
    // A hostile listing is refused whole, before anything is written.
    for e in &tree {
        reference::check_file_path(&e.path)?;
    }
    let chosen: Vec<&api::TreeEntry> =
        match &r.selector {
            Selector::File(f) => vec![tree.iter().find(|e| &e.path == f).ok_or_else(|| {
                Error::NotFound(format!("{f} not found in {} at {commit}", r.repo))
            })?],
            Selector::Default | Selector::Tag(_) => {
                let groups = quant::groups(tree.iter().map(|e| e.path.as_str()));
                let g = quant::select(&r.repo, &groups, tag(r))?;
                g.files
                    .iter()
                    .filter_map(|f| tree.iter().find(|e| &e.path == f))
                    .collect()
            }
        };
    let rd = cache::RepoDir::new(&opts.cache_dir, &r.repo);
    let mut files = Vec::new();
    for e in chosen {
        let (etag, expected) = match &e.lfs {
            Some(lfs) => (
                lfs.oid.clone(),
                download::Expected {
                    etag: lfs.oid.clone(),
                    size: lfs.size,
                    digest: download::Digest::Sha256(lfs.oid.clone()),
                },
            ),
            None => {
                let oid = e.oid.clone().unwrap_or_default();
                (
                    oid.clone(),
                    download::Expected {
                        etag: oid.clone(),
                        size: e.size,
                        digest: download::Digest::GitSha1(oid),
                    },
                )
            }
        };
        let hex_len_ok = match expected.digest {
            download::Digest::Sha256(_) => etag.len() == 64,
            download::Digest::GitSha1(_) => etag.len() == 40,
        };
        if !hex_len_ok || !etag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(api::protocol(
                client.endpoint(),
                format!("bad object id {etag:?} for {}", e.path),
            ));
        }
        let snapshot = rd.snapshot_file(&commit, &e.path)?;
        let cached = std::fs::metadata(&snapshot).is_ok_and(|m| m.len() == expected.size);
        let mut downloaded = false;
        if !cached {
            let url = format!(
                "{}/{}/resolve/{commit}/{}",
                client.endpoint(),
                r.repo,
                e.path
            );
            downloaded = download::blob(
                &client,
                &rd,
                &r.repo,
                &url,
                &expected,
                &e.path,
                opts.progress,
            )?;
            rd.link(&commit, &e.path, &etag)?;
        }
        files.push(PulledFile {
            file: e.path.clone(),
            path: snapshot,
            size: expected.size,
            downloaded,
        });
    }
    rd.write_ref(&r.revision, &commit)?;
    Ok(Pulled {
        repo: r.repo.clone(),
        commit,
        files,
    })
}

fn tag(r: &HubRef) -> Option<&str> {
    match &r.selector {
        Selector::Tag(t) => Some(t),
        _ => None,
    }
}

/// The reference answered from the cache alone.
fn from_cache(r: &HubRef, opts: &Options) -> Result<Pulled, Error> {
    let rd = cache::RepoDir::new(&opts.cache_dir, &r.repo);
    let pull_hint = format!("run `hearth pull {r}` while online");
    let commit = rd.commit_for(&r.revision).ok_or_else(|| {
        Error::Offline(format!(
            "{} ({}) is not in the cache at {}; {pull_hint}",
            r.repo,
            r.revision,
            opts.cache_dir.display()
        ))
    })?;
    let cached = rd.snapshot_files(&commit);
    let files: Vec<String> = match &r.selector {
        Selector::File(f) => {
            if !cached.contains(f) {
                return Err(Error::Offline(format!(
                    "{f} of {} is not in the cache; {pull_hint}",
                    r.repo
                )));
            }
            vec![f.clone()]
        }
        Selector::Default | Selector::Tag(_) => {
            let groups = quant::groups(cached.iter().map(String::as_str));
            quant::select(&r.repo, &groups, tag(r))
                .map_err(|e| Error::Offline(format!("in the cache, {e}; {pull_hint}")))?
                .files
        }
    };
    let files = files
        .into_iter()
        .map(|f| {
            let path = rd.snapshot_file(&commit, &f)?;
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            Ok(PulledFile {
                file: f,
                path,
                size,
                downloaded: false,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Pulled {
        repo: r.repo.clone(),
        commit,
        files,
    })
}

/// Every GGUF model file in the cache.
pub fn list(opts: &Options) -> Result<Vec<CachedFile>, Error> {
    cache::list(&opts.cache_dir)
}

/// Removes a cached model: the whole repository for `org/repo`, the matching GGUF(s) for
/// `org/repo:TAG` or a file URL (with blobs no snapshot uses any more).
pub fn remove(r: &HubRef, opts: &Options) -> Result<Removed, Error> {
    let rd = cache::RepoDir::new(&opts.cache_dir, &r.repo);
    if !rd.dir.is_dir() {
        return Err(Error::NotFound(format!(
            "{} is not in the cache at {}",
            r.repo,
            opts.cache_dir.display()
        )));
    }
    let mut targets = Vec::new();
    for commit in rd.snapshots() {
        let files = rd.snapshot_files(&commit);
        match &r.selector {
            Selector::Default => return cache::remove_repo(&rd),
            Selector::File(f) => {
                if files.contains(f) {
                    targets.push((commit.clone(), f.clone()));
                }
            }
            Selector::Tag(t) => {
                let groups = quant::groups(files.iter().map(String::as_str));
                if let Ok(g) = quant::select(&r.repo, &groups, Some(t)) {
                    targets.extend(g.files.into_iter().map(|f| (commit.clone(), f)));
                }
            }
        }
    }
    if targets.is_empty() {
        let cached: Vec<String> = list(opts)?
            .into_iter()
            .filter(|c| c.repo == r.repo)
            .map(|c| c.file)
            .collect();
        return Err(Error::NotFound(format!(
            "nothing in the cache matches {r}; cached from {}: {}",
            r.repo,
            if cached.is_empty() {
                "no GGUF".to_string()
            } else {
                cached.join(", ")
            }
        )));
    }
    cache::remove_files(&rd, &targets)
}
