//! Downloading one blob: under a lock file, into `blobs/<etag>.incomplete`, resumed with `Range`
//! when a previous attempt left part of it, hashed while it streams, and renamed to
//! `blobs/<etag>` only when the size and hash are right.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::Digest as _;

use crate::Error;
use crate::api::{Client, protocol};
use crate::cache::{RepoDir, io_err};

/// What the downloaded bytes must be.
#[derive(Clone, Debug)]
pub(crate) struct Expected {
    /// The blob's name in the cache: the sha256 of an LFS file, the git oid of another.
    pub etag: String,
    pub size: u64,
    pub digest: Digest,
}

#[derive(Clone, Debug)]
pub(crate) enum Digest {
    /// An LFS file: sha256 of the content (the API's `lfs.oid`, the `X-Linked-Etag`).
    Sha256(String),
    /// A plain git file: sha1 of `blob <size>\0` + content (the API's `oid`).
    GitSha1(String),
}

enum Hasher {
    Sha256(sha2::Sha256),
    GitSha1(sha1::Sha1),
}

impl Hasher {
    fn new(d: &Digest, size: u64) -> Hasher {
        match d {
            Digest::Sha256(_) => Hasher::Sha256(sha2::Sha256::new()),
            Digest::GitSha1(_) => {
                let mut h = sha1::Sha1::new();
                h.update(format!("blob {size}\0").as_bytes());
                Hasher::GitSha1(h)
            }
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::GitSha1(h) => h.update(b),
        }
    }
    fn hex(self) -> String {
        let bytes: Vec<u8> = match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::GitSha1(h) => h.finalize().to_vec(),
        };
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl Digest {
    fn hex(&self) -> &str {
        match self {
            Digest::Sha256(h) | Digest::GitSha1(h) => h,
        }
    }
}

/// How many times a download broken off mid-body is resumed within one call.
const ATTEMPTS: usize = 4;
const CHUNK: usize = 1 << 18;

/// Makes sure `blobs/<etag>` holds the verified file, downloading it from `url` if needed.
/// Returns whether bytes were downloaded.
pub(crate) fn blob(
    client: &Client,
    rd: &RepoDir,
    repo: &str,
    url: &str,
    expected: &Expected,
    label: &str,
    progress: bool,
) -> Result<bool, Error> {
    let etag = expected.etag.as_str();
    let blob = rd.blob(etag);
    if fs::metadata(&blob).is_ok_and(|m| m.len() == expected.size) {
        return Ok(false);
    }
    let blobs = rd.dir.join("blobs");
    fs::create_dir_all(&blobs).map_err(io_err(blobs.display()))?;
    crate::cache::tag_cache_dir(rd);
    fs::create_dir_all(&rd.locks).map_err(io_err(rd.locks.display()))?;
    let lock_path = rd.lock(etag);
    let lock = File::create(&lock_path).map_err(io_err(lock_path.display()))?;
    lock.lock().map_err(io_err(lock_path.display()))?;
    // Another process may have finished it while we waited for the lock.
    if fs::metadata(&blob).is_ok_and(|m| m.len() == expected.size) {
        return Ok(false);
    }
    let part = rd.incomplete(etag);
    let bar = progress_bar(progress, expected.size, label);
    let mut last_err = None;
    for _ in 0..ATTEMPTS {
        match attempt(client, repo, url, &part, expected, &bar) {
            Ok(()) => {
                fs::rename(&part, &blob).map_err(io_err(blob.display()))?;
                bar.finish_and_clear();
                return Ok(true);
            }
            // Broken off: try again from where it stopped.
            Err(e @ (Error::Network { .. } | Error::Incomplete { .. })) => last_err = Some(e),
            Err(e) => {
                bar.abandon();
                return Err(e);
            }
        }
    }
    bar.abandon();
    Err(last_err.unwrap_or_else(|| protocol(url, "download failed")))
}

fn progress_bar(on: bool, size: u64, label: &str) -> indicatif::ProgressBar {
    if !on {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(size),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label.to_string());
    bar
}

fn attempt(
    client: &Client,
    repo: &str,
    url: &str,
    part: &Path,
    expected: &Expected,
    bar: &indicatif::ProgressBar,
) -> Result<(), Error> {
    let etag = expected.etag.as_str();
    let ctx = part.display().to_string();
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(part)
        .map_err(io_err(&ctx))?;
    let mut have = file.metadata().map_err(io_err(&ctx))?.len();
    if have > expected.size {
        file.set_len(0).map_err(io_err(&ctx))?;
        have = 0;
    }
    // The bytes already there are hashed again: the hash covers the whole file.
    let mut hasher = Hasher::new(&expected.digest, expected.size);
    let mut buf = vec![0u8; CHUNK];
    file.seek(SeekFrom::Start(0)).map_err(io_err(&ctx))?;
    let mut left = have;
    while left > 0 {
        let n = file
            .read(&mut buf[..CHUNK.min(left as usize)])
            .map_err(io_err(&ctx))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    let mut pos = have - left;
    bar.set_position(pos);
    if pos < expected.size {
        let mut d = client.get(url, Some(pos), repo)?;
        if let Some(e) = d.etag.as_deref().filter(|&e| e != etag) {
            return Err(protocol(
                url,
                format!("the server's etag {e} is not the listed {etag}"),
            ));
        }
        match d.response.status().as_u16() {
            206 => {
                let range = d
                    .response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !range.starts_with(&format!("bytes {pos}-")) {
                    // Not the part we asked for: start again from nothing next attempt.
                    file.set_len(0).map_err(io_err(&ctx))?;
                    return Err(Error::Incomplete {
                        url: url.to_string(),
                        message: format!("unexpected Content-Range {range:?}"),
                    });
                }
            }
            _ if pos > 0 => {
                // A 200 to a Range request is the whole file again: restart cleanly.
                file.set_len(0).map_err(io_err(&ctx))?;
                hasher = Hasher::new(&expected.digest, expected.size);
                pos = 0;
                bar.set_position(0);
            }
            _ => {}
        }
        file.seek(SeekFrom::Start(pos)).map_err(io_err(&ctx))?;
        let mut body = d.response.body_mut().as_reader();
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    file.flush().map_err(io_err(&ctx))?;
                    return Err(crate::api::network(url, e));
                }
            };
            if pos + n as u64 > expected.size {
                file.set_len(0).map_err(io_err(&ctx))?;
                return Err(protocol(
                    url,
                    format!("more bytes than the {} listed", expected.size),
                ));
            }
            file.write_all(&buf[..n]).map_err(io_err(&ctx))?;
            hasher.update(&buf[..n]);
            pos += n as u64;
            bar.set_position(pos);
        }
        if pos < expected.size {
            return Err(Error::Incomplete {
                url: url.to_string(),
                message: format!("got {pos} of {} bytes", expected.size),
            });
        }
    }
    let actual = hasher.hex();
    if actual != expected.digest.hex() {
        drop(file);
        let _ = fs::remove_file(part);
        return Err(Error::Corrupt {
            file: url.to_string(),
            expected: expected.digest.hex().to_string(),
            actual,
        });
    }
    file.sync_all().map_err(io_err(&ctx))?;
    Ok(())
}
