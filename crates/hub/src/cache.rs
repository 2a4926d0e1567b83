//! huggingface_hub's cache layout, so Python, llama.cpp and hearth share one copy of a file:
//!
//! ```text
//! <cache>/models--org--repo/blobs/<etag>                    the bytes (etag: sha256 or git oid)
//! <cache>/models--org--repo/refs/<revision>                 the commit a branch pointed to
//! <cache>/models--org--repo/snapshots/<commit>/<path>       relative symlink to ../../blobs/<etag>
//! <cache>/.locks/models--org--repo/<etag>.lock              held while a blob is downloaded
//! ```
//!
//! A download is written to `blobs/<etag>.incomplete` (huggingface_hub's name, so an interrupted
//! download by either can be resumed by the other) and renamed into place when verified.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::Error;
use crate::reference::check_file_path;

/// One repository's folder in the cache.
#[derive(Clone, Debug)]
pub struct RepoDir {
    /// `<cache>/models--org--repo`.
    pub dir: PathBuf,
    /// `<cache>/.locks/models--org--repo`.
    pub locks: PathBuf,
}

pub(crate) fn io_err(context: impl std::fmt::Display) -> impl FnOnce(io::Error) -> Error {
    let context = context.to_string();
    move |source| Error::Io { context, source }
}

impl RepoDir {
    pub fn new(cache: &Path, repo: &str) -> RepoDir {
        let name = format!("models--{}", repo.replace('/', "--"));
        RepoDir {
            dir: cache.join(&name),
            locks: cache.join(".locks").join(&name),
        }
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(etag)
    }

    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{etag}.incomplete"))
    }

    pub fn lock(&self, etag: &str) -> PathBuf {
        self.locks.join(format!("{etag}.lock"))
    }

    /// `snapshots/<commit>/<path>`, refusing any path that could leave the snapshot folder.
    pub fn snapshot_file(&self, commit: &str, path: &str) -> Result<PathBuf, Error> {
        check_file_path(path)?;
        let snapshot = self.dir.join("snapshots").join(commit);
        let full = snapshot.join(path);
        // check_file_path leaves only normal components; this states the invariant once more.
        let inside = full.starts_with(&snapshot)
            && full
                .strip_prefix(&snapshot)
                .is_ok_and(|rel| rel.components().all(|c| matches!(c, Component::Normal(_))));
        if !inside {
            return Err(Error::UnsafePath(path.to_string()));
        }
        Ok(full)
    }

    /// The commit `refs/<revision>` records, or the revision itself when it is a commit.
    pub fn commit_for(&self, revision: &str) -> Option<String> {
        if crate::reference::is_commit(revision) {
            return Some(revision.to_string());
        }
        let s = fs::read_to_string(self.dir.join("refs").join(revision)).ok()?;
        let s = s.trim();
        crate::reference::is_commit(s).then(|| s.to_string())
    }

    /// Records that `revision` points at `commit` (huggingface_hub writes no ref for a commit).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<(), Error> {
        if revision == commit {
            return Ok(());
        }
        let refs = self.dir.join("refs");
        fs::create_dir_all(&refs).map_err(io_err(refs.display()))?;
        let path = refs.join(revision);
        if fs::read_to_string(&path).is_ok_and(|s| s == commit) {
            return Ok(());
        }
        let tmp = refs.join(unique_tmp_name(revision));
        fs::write(&tmp, commit).map_err(io_err(tmp.display()))?;
        fs::rename(&tmp, &path).map_err(io_err(path.display()))
    }

    /// Points `snapshots/<commit>/<path>` at `blobs/<etag>` with a relative symlink, as
    /// huggingface_hub does (a copy where symlinks are not available).
    pub fn link(&self, commit: &str, path: &str, etag: &str) -> Result<PathBuf, Error> {
        let target = self.snapshot_file(commit, path)?;
        let parent = target.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent).map_err(io_err(parent.display()))?;
        let depth = path.split('/').count(); // snapshots/<commit>/<dirs…>/<file>
        let mut rel = PathBuf::new();
        for _ in 0..depth + 1 {
            rel.push("..");
        }
        rel.push("blobs");
        rel.push(etag);
        // Made under a temporary name and renamed over the target, so that two processes
        // linking the same file both succeed.
        let tmp = parent.join(unique_tmp_name("link"));
        make_link(&rel, &self.blob(etag), &tmp).map_err(io_err(tmp.display()))?;
        fs::rename(&tmp, &target).map_err(io_err(target.display()))?;
        Ok(target)
    }

    /// Every file of a cached snapshot, as repository paths (`/`-separated), sorted.
    pub fn snapshot_files(&self, commit: &str) -> Vec<String> {
        let root = self.dir.join("snapshots").join(commit);
        let mut out = Vec::new();
        walk(&root, "", &mut out);
        out.sort();
        out
    }

    /// The commits that have a snapshot folder.
    pub fn snapshots(&self) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(self.dir.join("snapshots"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        out.sort();
        out
    }
}

/// Marks the cache folder with a `CACHEDIR.TAG` (as huggingface_hub does) so that backup tools
/// skip it; best effort.
pub(crate) fn tag_cache_dir(rd: &RepoDir) {
    let Some(cache) = rd.dir.parent() else { return };
    let tag = cache.join("CACHEDIR.TAG");
    if !tag.exists() {
        let _ = fs::write(
            tag,
            "Signature: 8a477f597d28d172789f06886806bc55\n\
             # This file is a cache directory tag created by hearth (as huggingface_hub does).\n\
             # For information about cache directory tags see https://bford.info/cachedir/\n",
        );
    }
}

#[cfg(unix)]
fn make_link(rel: &Path, _blob: &Path, target: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(rel, target)
}

#[cfg(not(unix))]
fn make_link(_rel: &Path, blob: &Path, target: &Path) -> io::Result<()> {
    fs::copy(blob, target).map(|_| ())
}

/// Files (or symlinks to existing files) below `dir`, depth-limited.
fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    if prefix.matches('/').count() > 16 {
        return;
    }
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let rel = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            walk(&path, &rel, out);
        } else if fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            out.push(rel);
        }
    }
}

/// A GGUF in the cache, as `hearth list` shows it.
#[derive(Clone, Debug)]
pub struct CachedFile {
    pub repo: String,
    pub commit: String,
    /// Path in the repository.
    pub file: String,
    pub quant: Option<String>,
    pub size: u64,
    /// When the blob was last read (its access time, as huggingface_hub's `scan_cache_dir`).
    pub last_used: Option<SystemTime>,
    /// The snapshot path (what `-m` resolves to).
    pub path: PathBuf,
}

/// Every cached GGUF model file, by repository and path.
pub fn list(cache: &Path) -> Result<Vec<CachedFile>, Error> {
    let entries = match fs::read_dir(cache) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(cache.display())(e)),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("models--") else {
            continue;
        };
        let repo = rest.replacen("--", "/", 1);
        let rd = RepoDir::new(cache, &repo);
        for commit in rd.snapshots() {
            for file in rd.snapshot_files(&commit) {
                if !crate::quant::is_model_gguf(&file) {
                    continue;
                }
                let path = rd.dir.join("snapshots").join(&commit).join(&file);
                let Ok(meta) = fs::metadata(&path) else {
                    continue;
                };
                out.push(CachedFile {
                    repo: repo.clone(),
                    commit: commit.clone(),
                    quant: crate::quant::quant_of(&file),
                    file,
                    size: meta.len(),
                    last_used: meta.accessed().ok(),
                    path,
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.repo, &a.file, &a.commit).cmp(&(&b.repo, &b.file, &b.commit)));
    Ok(out)
}

/// What `hearth rm` removed.
#[derive(Clone, Debug, Default)]
pub struct Removed {
    /// Snapshot files removed, as `org/repo/path`.
    pub files: Vec<String>,
    /// Bytes of blobs deleted.
    pub bytes: u64,
}

/// Removes a whole repository from the cache.
pub fn remove_repo(rd: &RepoDir) -> Result<Removed, Error> {
    let mut removed = Removed::default();
    for commit in rd.snapshots() {
        for f in rd.snapshot_files(&commit) {
            removed.files.push(f);
        }
    }
    removed.files.sort();
    removed.files.dedup();
    for e in fs::read_dir(rd.dir.join("blobs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        removed.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
    }
    fs::remove_dir_all(&rd.dir).map_err(io_err(rd.dir.display()))?;
    let _ = fs::remove_dir_all(&rd.locks);
    Ok(removed)
}

/// Removes the given snapshot files, then every blob no snapshot links to any more, and the
/// repository folder once no snapshot file is left.
pub fn remove_files(rd: &RepoDir, files: &[(String, String)]) -> Result<Removed, Error> {
    let mut removed = Removed::default();
    for (commit, file) in files {
        let p = rd.snapshot_file(commit, file)?;
        fs::remove_file(&p).map_err(io_err(p.display()))?;
        removed.files.push(file.clone());
        // Empty folders up to the snapshot root go too.
        let root = rd.dir.join("snapshots");
        let mut dir = p.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == root || fs::remove_dir(&d).is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    // Blobs still referenced by some snapshot.
    let mut used = std::collections::HashSet::new();
    for commit in rd.snapshots() {
        for f in rd.snapshot_files(&commit) {
            let p = rd.dir.join("snapshots").join(&commit).join(&f);
            if let Ok(t) = fs::canonicalize(&p) {
                used.insert(t);
            }
        }
    }
    for e in fs::read_dir(rd.dir.join("blobs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        let keep = fs::canonicalize(&p).is_ok_and(|c| used.contains(&c));
        if !keep {
            removed.bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&p).map_err(io_err(p.display()))?;
        }
    }
    if rd
        .snapshots()
        .iter()
        .all(|c| rd.snapshot_files(c).is_empty())
    {
        fs::remove_dir_all(&rd.dir).map_err(io_err(rd.dir.display()))?;
        let _ = fs::remove_dir_all(&rd.locks);
    }
    Ok(removed)
}

/// A temporary file name no other writer in any process uses (`.hearth-<what>-<pid>-<n>`), for
/// writing a file beside its target and renaming it into place.
fn unique_tmp_name(what: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!(
        ".hearth-{what}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}
