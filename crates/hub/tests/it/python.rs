//! Python's huggingface_hub and hearth share one cache: each finds what the other downloaded.
//! The venv comes from `scripts/hf-venv.sh` (created once, cached outside git).

use std::path::PathBuf;
use std::process::Command;

use hub::{HubRef, Options};

use crate::server::{COMMIT, HubServer, tiny_repo};

fn python() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/hf-venv.sh");
    let out = Command::new(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed (it needs python3 with venv and pip):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(stdout.lines().last().unwrap().trim())
}

/// `hf_hub_download(repo, file)` in Python; returns the path it gives, or its error.
fn hf_hub_download(opts: &Options, offline: bool, file: &str) -> Result<String, String> {
    let code = "import sys\nfrom huggingface_hub import hf_hub_download\n\
                print(hf_hub_download('test-org/tiny-GGUF', sys.argv[1]))";
    let mut c = Command::new(python());
    c.args(["-c", code, file])
        .env("HF_ENDPOINT", &opts.endpoint)
        .env("HF_HUB_CACHE", &opts.cache_dir)
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .env("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        .env("HF_TOKEN_PATH", opts.cache_dir.join("no-token"))
        .env_remove("HF_TOKEN")
        .env_remove("HF_HOME");
    if offline {
        c.env("HF_HUB_OFFLINE", "1");
    } else {
        c.env_remove("HF_HUB_OFFLINE");
    }
    let out = c.output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap().trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn huggingface_hub_and_hearth_share_the_cache() {
    let server = HubServer::start(vec![tiny_repo()]);
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options {
        endpoint: server.url.clone(),
        cache_dir: tmp.path().join("hub"),
        token: None,
        offline: false,
        progress: false,
    };
    // hearth pulls; Python, offline, finds the file where it would have put it.
    let ours = hub::pull(&HubRef::parse("test-org/tiny-GGUF").unwrap(), &opts).unwrap();
    let theirs = hf_hub_download(&opts, true, "tiny-Q4_K_M.gguf").unwrap();
    assert_eq!(PathBuf::from(theirs), ours.path());

    // Python downloads from the local Hub; hearth then finds it without downloading.
    let theirs = hf_hub_download(&opts, false, "tiny-Q8_0.gguf").unwrap();
    server.clear_seen();
    let ours = hub::pull(&HubRef::parse("test-org/tiny-GGUF:Q8_0").unwrap(), &opts).unwrap();
    assert_eq!(ours.path(), PathBuf::from(&theirs));
    assert!(!ours.files[0].downloaded);
    assert!(server.file_gets().is_empty(), "{:?}", server.seen());
    assert!(theirs.contains(COMMIT), "{theirs}");
    // And hearth reads it offline too.
    let mut offline = opts.clone();
    offline.offline = true;
    let again = hub::pull(&HubRef::parse("test-org/tiny-GGUF:Q8_0").unwrap(), &offline).unwrap();
    assert_eq!(again.path(), PathBuf::from(&theirs));
    // Python's blobs are named as ours: the same file is one blob.
    let blobs = opts.cache_dir.join("models--test-org--tiny-GGUF/blobs");
    let mut names: Vec<String> = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let repo = tiny_repo();
    let mut expected: Vec<String> = ["tiny-Q4_K_M.gguf", "tiny-Q8_0.gguf"]
        .iter()
        .map(|n| repo.files.iter().find(|f| &f.path == n).unwrap().etag())
        .collect();
    expected.sort();
    assert_eq!(names, expected);
}
