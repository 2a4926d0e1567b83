//! Pulling from the local Hub: selection, the cache layout, resume, verification, offline use,
//! gated repositories and hostile listings.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use hub::{Error, HubRef, Options};

use crate::server::{COMMIT, FileSpec, HubServer, RepoSpec, tiny_repo};

const REPO_DIR: &str = "models--test-org--tiny-GGUF";

struct Env {
    server: HubServer,
    _tmp: tempfile::TempDir,
    opts: Options,
}

fn env_with(repos: Vec<RepoSpec>) -> Env {
    let server = HubServer::start(repos);
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        endpoint: server.url.clone(),
        cache_dir: tmp.path().join("hub"),
        token: None,
        offline: false,
        progress: false,
    };
    Env {
        server,
        _tmp: tmp,
        opts,
    }
}

fn env() -> Env {
    env_with(vec![tiny_repo()])
}

fn file(name: &str) -> FileSpec {
    tiny_repo()
        .files
        .into_iter()
        .find(|f| f.path == name)
        .unwrap()
}

fn pull(e: &Env, reference: &str) -> Result<hub::Pulled, Error> {
    hub::pull(&HubRef::parse(reference).unwrap(), &e.opts)
}

/// Checks `snapshots/<commit>/<path>` is a relative symlink to the blob named by the file's
/// etag, holding the file's bytes — huggingface_hub's layout.
fn assert_cached(e: &Env, f: &FileSpec) -> PathBuf {
    let repo = e.opts.cache_dir.join(REPO_DIR);
    let snap = repo.join("snapshots").join(COMMIT).join(&f.path);
    let target = fs::read_link(&snap).unwrap();
    let depth = f.path.matches('/').count() + 2;
    let expected: PathBuf = std::iter::repeat_n("..", depth)
        .chain(["blobs", &f.etag()])
        .collect();
    assert_eq!(target, expected, "{}", f.path);
    assert_eq!(fs::read(&snap).unwrap(), *f.data, "{}", f.path);
    assert!(repo.join("blobs").join(f.etag()).is_file());
    assert!(
        !repo
            .join("blobs")
            .join(format!("{}.incomplete", f.etag()))
            .exists()
    );
    snap
}

#[test]
fn pull_by_default_and_by_tag_into_huggingface_hub_layout() {
    let e = env();
    let p = pull(&e, "test-org/tiny-GGUF").unwrap();
    assert_eq!(p.commit, COMMIT);
    assert_eq!(p.files.len(), 1);
    let snap = assert_cached(&e, &file("tiny-Q4_K_M.gguf"));
    assert_eq!(p.path(), snap);
    assert!(p.files[0].downloaded);
    let repo = e.opts.cache_dir.join(REPO_DIR);
    assert_eq!(fs::read_to_string(repo.join("refs/main")).unwrap(), COMMIT);
    let lock = e
        .opts
        .cache_dir
        .join(".locks")
        .join(REPO_DIR)
        .join(format!("{}.lock", file("tiny-Q4_K_M.gguf").etag()));
    assert!(lock.is_file());
    let tag = fs::read_to_string(e.opts.cache_dir.join("CACHEDIR.TAG")).unwrap();
    assert!(tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55\n"));
    // The token-less listing went through two pages (the server pages every 4 entries).
    assert!(e.server.seen().iter().any(|s| s.path.contains("/tree/")));

    for (tag, name) in [
        ("q8_0", "tiny-Q8_0.gguf"),
        ("IQ4_XS", "tiny-IQ4_XS.gguf"),
        ("F16", "tiny-F16.gguf"),
    ] {
        let p = pull(&e, &format!("hf.co/test-org/tiny-GGUF:{tag}")).unwrap();
        assert_eq!(p.files[0].file, name);
        assert_cached(&e, &file(name));
    }
    // The projector is never picked, and was never downloaded.
    let mm = file("mmproj-tiny-f16.gguf");
    assert!(!repo.join("blobs").join(mm.etag()).exists());
}

#[test]
fn split_model_pulls_every_shard() {
    let e = env();
    let p = pull(&e, "test-org/tiny-GGUF:Q2_K").unwrap();
    let names: Vec<&str> = p.files.iter().map(|f| f.file.as_str()).collect();
    assert_eq!(
        names,
        [
            "Q2_K/tiny-Q2_K-00001-of-00003.gguf",
            "Q2_K/tiny-Q2_K-00002-of-00003.gguf",
            "Q2_K/tiny-Q2_K-00003-of-00003.gguf"
        ]
    );
    for n in names {
        assert_cached(&e, &file(n));
    }
    assert!(p.path().ends_with("tiny-Q2_K-00001-of-00003.gguf"));
}

#[test]
fn no_match_and_unknown_repo_list_what_exists() {
    let e = env();
    let err = pull(&e, "test-org/tiny-GGUF:Q3_K_S")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("available: F16, IQ4_XS, Q2_K, Q4_K_M, Q8_0"),
        "{err}"
    );
    let err = pull(&e, "test-org/missing").unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert!(!e.opts.cache_dir.join("models--test-org--missing").exists());
}

#[test]
fn second_pull_hits_the_cache() {
    let e = env();
    pull(&e, "test-org/tiny-GGUF:Q8_0").unwrap();
    assert_eq!(e.server.file_gets().len(), 1);
    e.server.clear_seen();
    let p = pull(&e, "test-org/tiny-GGUF:Q8_0").unwrap();
    assert!(!p.files[0].downloaded);
    assert!(e.server.file_gets().is_empty(), "{:?}", e.server.seen());
    // The same blob under a new snapshot name would be linked, not downloaded: covered by
    // the blob check in download::blob. A file URL resolves to the same cached file.
    let url = format!(
        "{}/test-org/tiny-GGUF/resolve/main/tiny-Q8_0.gguf",
        e.server.url
    );
    let p = pull(&e, &url).unwrap();
    assert!(!p.files[0].downloaded);
    assert!(e.server.file_gets().is_empty());
}

#[test]
fn a_plain_git_file_is_verified_by_its_git_hash() {
    let e = env();
    let url = format!("{}/test-org/tiny-GGUF/resolve/main/README.md", e.server.url);
    let p = pull(&e, &url).unwrap();
    assert_cached(&e, &file("README.md"));
    assert_eq!(p.files[0].file, "README.md");
    e.server.faults().corrupt.store(true, Ordering::SeqCst);
    fs::remove_dir_all(e.opts.cache_dir.join(REPO_DIR)).unwrap();
    let err = pull(&e, &url).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn a_connection_cut_at_half_is_resumed() {
    let e = env();
    let f = file("tiny-Q4_K_M.gguf");
    let half = f.data.len() / 2;
    // Cut once: the same pull resumes where the bytes stopped.
    e.server.faults().cut_at_half.store(1, Ordering::SeqCst);
    pull(&e, "test-org/tiny-GGUF").unwrap();
    assert_cached(&e, &f);
    let gets = e.server.file_gets();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(gets[1].range.as_deref(), Some(&*format!("bytes={half}-")));
}

#[test]
fn an_interrupted_pull_is_resumed_by_the_next_one() {
    let e = env();
    let f = file("tiny-Q4_K_M.gguf");
    let half = f.data.len() / 2;
    e.server.faults().cut_at_half.store(1000, Ordering::SeqCst);
    let err = pull(&e, "test-org/tiny-GGUF").unwrap_err();
    assert!(
        matches!(err, Error::Network { .. } | Error::Incomplete { .. }),
        "{err}"
    );
    let blobs = e.opts.cache_dir.join(REPO_DIR).join("blobs");
    let part = blobs.join(format!("{}.incomplete", f.etag()));
    assert_eq!(fs::metadata(&part).unwrap().len(), half as u64);
    assert!(!blobs.join(f.etag()).exists());
    assert!(!e.opts.cache_dir.join(REPO_DIR).join("snapshots").exists());

    e.server.faults().cut_at_half.store(0, Ordering::SeqCst);
    e.server.clear_seen();
    pull(&e, "test-org/tiny-GGUF").unwrap();
    assert_cached(&e, &f);
    let gets = e.server.file_gets();
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].range.as_deref(), Some(&*format!("bytes={half}-")));
}

#[test]
fn a_range_answered_with_200_restarts_cleanly() {
    let e = env();
    let f = file("tiny-Q4_K_M.gguf");
    e.server.faults().cut_at_half.store(1000, Ordering::SeqCst);
    pull(&e, "test-org/tiny-GGUF").unwrap_err();
    e.server.faults().cut_at_half.store(0, Ordering::SeqCst);
    e.server.faults().ignore_range.store(true, Ordering::SeqCst);
    pull(&e, "test-org/tiny-GGUF").unwrap();
    assert_cached(&e, &f);
}

#[test]
fn a_corrupted_byte_is_detected_and_the_file_not_placed() {
    let e = env();
    let f = file("tiny-Q4_K_M.gguf");
    e.server.faults().corrupt.store(true, Ordering::SeqCst);
    let err = pull(&e, "test-org/tiny-GGUF").unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(&f.sha256()), "{err}");
    let repo = e.opts.cache_dir.join(REPO_DIR);
    assert!(!repo.join("blobs").join(f.etag()).exists());
    assert!(
        !repo
            .join("blobs")
            .join(format!("{}.incomplete", f.etag()))
            .exists()
    );
    assert!(!repo.join("snapshots").exists());
    // Once the server is right again, the pull succeeds.
    e.server.faults().corrupt.store(false, Ordering::SeqCst);
    pull(&e, "test-org/tiny-GGUF").unwrap();
    assert_cached(&e, &f);
}

#[test]
fn unsafe_file_names_are_refused_before_anything_is_written() {
    for bad in [
        "../evil-Q4_K_M.gguf",
        "sub/../../evil-Q4_K_M.gguf",
        "/tmp/evil-Q4_K_M.gguf",
        "sub\\evil-Q4_K_M.gguf",
        "C:evil-Q4_K_M.gguf",
    ] {
        let mut repo = tiny_repo();
        repo.files = vec![FileSpec::new(bad, b"GGUF".to_vec(), true)];
        let e = env_with(vec![repo]);
        let err = pull(&e, "test-org/tiny-GGUF").unwrap_err();
        assert!(matches!(err, Error::UnsafePath(_)), "{bad}: {err}");
        assert!(!e.opts.cache_dir.exists(), "{bad}: something was written");
        assert!(e.server.file_gets().is_empty());
    }
}

#[test]
fn offline_uses_only_the_cache() {
    let e = env();
    let mut offline = e.opts.clone();
    offline.offline = true;
    let r = HubRef::parse("test-org/tiny-GGUF:Q8_0").unwrap();
    let err = hub::pull(&r, &offline).unwrap_err();
    assert!(matches!(err, Error::Offline(_)), "{err}");
    assert!(
        err.to_string()
            .contains("hearth pull test-org/tiny-GGUF:Q8_0"),
        "{err}"
    );
    assert!(e.server.seen().is_empty());

    let online = hub::pull(&r, &e.opts).unwrap();
    e.server.clear_seen();
    let p = hub::pull(&r, &offline).unwrap();
    assert_eq!(p.path(), online.path());
    assert_eq!(p.commit, COMMIT);
    assert!(e.server.seen().is_empty(), "offline made requests");
    // A quant that is not cached is an offline error naming what is.
    let err = hub::pull(&HubRef::parse("test-org/tiny-GGUF:F16").unwrap(), &offline)
        .unwrap_err()
        .to_string();
    assert!(err.contains("available: Q8_0"), "{err}");
    // The default reference finds the one cached GGUF.
    assert_eq!(
        hub::resolve_model("test-org/tiny-GGUF", &offline).unwrap(),
        online.path()
    );
}

#[test]
fn an_unreachable_hub_falls_back_to_the_cache() {
    let e = env();
    let first = pull(&e, "test-org/tiny-GGUF:Q8_0").unwrap();
    let mut gone = e.opts.clone();
    // A port nothing listens on: bind one, then drop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    gone.endpoint = format!("http://127.0.0.1:{port}");
    let p = hub::pull(&HubRef::parse("test-org/tiny-GGUF:Q8_0").unwrap(), &gone).unwrap();
    assert_eq!(p.path(), first.path());
    let err = hub::pull(&HubRef::parse("test-org/other").unwrap(), &gone).unwrap_err();
    assert!(matches!(err, Error::Network { .. }), "{err}");
}

#[test]
fn a_gated_repo_asks_for_the_license_and_a_token() {
    let mut repo = tiny_repo();
    repo.gated_token = Some("hf_secret".into());
    let mut e = env_with(vec![repo]);
    let err = pull(&e, "test-org/tiny-GGUF").unwrap_err();
    assert!(matches!(err, Error::Gated { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("accept the model's license"), "{msg}");
    assert!(
        msg.contains(&format!("{}/test-org/tiny-GGUF", e.server.url)),
        "{msg}"
    );
    assert!(msg.contains("HF_TOKEN"), "{msg}");
    e.opts.token = Some("hf_wrong".into());
    let msg = pull(&e, "test-org/tiny-GGUF").unwrap_err().to_string();
    assert!(msg.contains("your token was refused"), "{msg}");
    e.opts.token = Some("hf_secret".into());
    e.server.clear_seen();
    pull(&e, "test-org/tiny-GGUF").unwrap();
    assert_cached(&e, &file("tiny-Q4_K_M.gguf"));
    // The token goes to the Hub, never to the CDN the download is redirected to.
    let seen = e.server.seen();
    assert!(
        seen.iter()
            .filter(|s| !s.path.starts_with("/cdn/"))
            .all(|s| s.auth)
    );
    let cdn: Vec<_> = seen
        .iter()
        .filter(|s| s.path.starts_with("/cdn/"))
        .collect();
    assert_eq!(cdn.len(), 1);
    assert!(!cdn[0].auth);
}

#[test]
fn two_pulls_at_once_download_once() {
    let e = env();
    let f = file("tiny-Q8_0.gguf");
    std::thread::scope(|s| {
        let a = s.spawn(|| pull(&e, "test-org/tiny-GGUF:Q8_0"));
        let b = s.spawn(|| pull(&e, "test-org/tiny-GGUF:Q8_0"));
        a.join().unwrap().unwrap();
        b.join().unwrap().unwrap();
    });
    assert_cached(&e, &f);
    assert_eq!(e.server.file_gets().len(), 1, "{:?}", e.server.file_gets());
}

#[test]
fn local_paths_come_first() {
    let e = env();
    let tmp = tempfile::tempdir().unwrap();
    // A local folder shaped like a repository id is a path, not a reference.
    let local = tmp.path().join("test-org").join("tiny-GGUF");
    fs::create_dir_all(local.parent().unwrap()).unwrap();
    fs::write(&local, b"GGUF").unwrap();
    assert_eq!(
        hub::resolve_model(local.to_str().unwrap(), &e.opts).unwrap(),
        local
    );
    let err = hub::resolve_model("missing-model.gguf", &e.opts).unwrap_err();
    assert!(matches!(err, Error::NoSuchFile(_)), "{err}");
    let err = hub::resolve_model("./test-org/tiny-GGUF", &e.opts).unwrap_err();
    assert!(matches!(err, Error::NoSuchFile(_)), "{err}");
    assert!(e.server.seen().is_empty());
}

#[test]
fn list_and_remove() {
    let e = env();
    pull(&e, "test-org/tiny-GGUF:Q8_0").unwrap();
    pull(&e, "test-org/tiny-GGUF").unwrap();
    let listed = hub::list(&e.opts).unwrap();
    let rows: Vec<(&str, &str, Option<&str>, u64)> = listed
        .iter()
        .map(|c| (c.repo.as_str(), c.file.as_str(), c.quant.as_deref(), c.size))
        .collect();
    assert_eq!(
        rows,
        [
            (
                "test-org/tiny-GGUF",
                "tiny-Q4_K_M.gguf",
                Some("Q4_K_M"),
                file("tiny-Q4_K_M.gguf").data.len() as u64
            ),
            (
                "test-org/tiny-GGUF",
                "tiny-Q8_0.gguf",
                Some("Q8_0"),
                file("tiny-Q8_0.gguf").data.len() as u64
            ),
        ]
    );
    let removed = hub::remove(&HubRef::parse("test-org/tiny-GGUF:q8_0").unwrap(), &e.opts).unwrap();
    assert_eq!(removed.files, ["tiny-Q8_0.gguf"]);
    assert_eq!(removed.bytes, file("tiny-Q8_0.gguf").data.len() as u64);
    let blobs = e.opts.cache_dir.join(REPO_DIR).join("blobs");
    assert!(!blobs.join(file("tiny-Q8_0.gguf").etag()).exists());
    assert!(blobs.join(file("tiny-Q4_K_M.gguf").etag()).exists());
    let err = hub::remove(&HubRef::parse("test-org/tiny-GGUF:F16").unwrap(), &e.opts).unwrap_err();
    assert!(err.to_string().contains("tiny-Q4_K_M.gguf"), "{err}");
    hub::remove(&HubRef::parse("test-org/tiny-GGUF").unwrap(), &e.opts).unwrap();
    assert!(!e.opts.cache_dir.join(REPO_DIR).exists());
    assert!(hub::list(&e.opts).unwrap().is_empty());
}

#[test]
fn options_follow_huggingface_hub_environment() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    };
    let o = Options::from_vars(vars(&[("HOME", "/home/u")]));
    assert_eq!(o.cache_dir, Path::new("/home/u/.cache/huggingface/hub"));
    assert_eq!(o.endpoint, "https://huggingface.co");
    assert!(!o.offline);
    let o = Options::from_vars(vars(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/x")]));
    assert_eq!(o.cache_dir, Path::new("/x/huggingface/hub"));
    let o = Options::from_vars(vars(&[("XDG_CACHE_HOME", "/x"), ("HF_HOME", "/h")]));
    assert_eq!(o.cache_dir, Path::new("/h/hub"));
    let o = Options::from_vars(vars(&[
        ("HF_HOME", "/h"),
        ("HF_HUB_CACHE", "/c"),
        ("HF_ENDPOINT", "http://mirror/"),
        ("HF_HUB_OFFLINE", "yes"),
        ("HF_TOKEN", " hf_x\n"),
    ]));
    assert_eq!(o.cache_dir, Path::new("/c"));
    assert_eq!(o.endpoint, "http://mirror");
    assert!(o.offline);
    assert_eq!(o.token.as_deref(), Some("hf_x"));
    let o = Options::from_vars(vars(&[("HF_HUB_OFFLINE", "0")]));
    assert!(!o.offline);

    // The token file huggingface_hub's login writes.
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("token"), "hf_file\n").unwrap();
    let home = tmp.path().to_str().unwrap().to_string();
    let o = Options::from_vars(move |k| (k == "HF_HOME").then(|| home.clone()));
    assert_eq!(o.token.as_deref(), Some("hf_file"));
}

#[test]
fn a_url_at_a_commit_writes_no_ref_and_works_offline() {
    let e = env();
    let url = format!(
        "{}/test-org/tiny-GGUF/resolve/{COMMIT}/tiny-F16.gguf",
        e.server.url
    );
    let p = pull(&e, &url).unwrap();
    assert_cached(&e, &file("tiny-F16.gguf"));
    assert!(!e.opts.cache_dir.join(REPO_DIR).join("refs").exists());
    let mut offline = e.opts.clone();
    offline.offline = true;
    assert_eq!(hub::resolve_model(&url, &offline).unwrap(), p.path());
    // Another revision name is not in the cache.
    let other = format!(
        "{}/test-org/tiny-GGUF/resolve/v2/tiny-F16.gguf",
        e.server.url
    );
    let err = hub::resolve_model(&other, &offline)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "run `hearth pull https://huggingface.co/test-org/tiny-GGUF/resolve/v2/tiny-F16.gguf`"
        ),
        "{err}"
    );
}
