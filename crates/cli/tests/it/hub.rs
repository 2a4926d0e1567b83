//! `hearth pull`, `list`, `rm` and `run -m org/repo:QUANT` against a local Hub.

use std::path::Path;
use std::process::{Command, Output};

use crate::hub_server::{ConnectProxy, FileSpec, HubServer, RepoSpec, tiny_repo};

/// Runs `hearth` with the Hugging Face variables pointing at `server` and `cache`.
fn hearth_hub(server: Option<&HubServer>, cache: &Path, args: &[&str]) -> Output {
    hearth_hub_env(server, cache, args, &[])
}

fn hearth_hub_env(
    server: Option<&HubServer>,
    cache: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hearth"));
    c.args(args).env("HF_HUB_CACHE", cache);
    for v in [
        "HF_TOKEN",
        "HF_HUB_OFFLINE",
        "HF_HOME",
        "HUGGING_FACE_HUB_TOKEN",
    ] {
        c.env_remove(v);
    }
    c.env("HF_TOKEN_PATH", cache.join("no-token"));
    match server {
        Some(s) => c.env("HF_ENDPOINT", &s.url),
        // Nothing listens on port 9 of loopback: any request would fail.
        None => c.env("HF_ENDPOINT", "http://127.0.0.1:9"),
    };
    c.envs(env.iter().copied());
    c.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn pull_list_and_rm() {
    let server = HubServer::start(vec![tiny_repo()]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");

    let out = hearth_hub(Some(&server), &cache, &["pull", "test-org/tiny-GGUF:q8_0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = text(&out.stdout);
    let path = Path::new(path.trim());
    assert!(path.starts_with(&cache), "{path:?}");
    assert!(path.ends_with("tiny-Q8_0.gguf"));
    assert!(
        text(&out.stderr).contains("tiny-Q8_0.gguf (80 kB, downloaded)"),
        "{}",
        text(&out.stderr)
    );
    let out = hearth_hub(
        Some(&server),
        &cache,
        &["pull", "hf.co/test-org/tiny-GGUF:Q8_0"],
    );
    assert!(
        text(&out.stderr).contains("already in the cache"),
        "{}",
        text(&out.stderr)
    );
    let out = hearth_hub(Some(&server), &cache, &["pull", "test-org/tiny-GGUF"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = hearth_hub(None, &cache, &["list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let lines: Vec<Vec<&str>> = listing
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(lines.len(), 3, "{listing}");
    assert_eq!(lines[0], ["REPO", "FILE", "QUANT", "SIZE", "LAST USED"]);
    assert_eq!(
        lines[1][..4],
        ["test-org/tiny-GGUF", "tiny-Q4_K_M.gguf", "Q4_K_M", "66 kB"]
    );
    assert_eq!(
        lines[2][..4],
        ["test-org/tiny-GGUF", "tiny-Q8_0.gguf", "Q8_0", "80 kB"]
    );
    assert_eq!(lines[1][4], "just now");

    let out = hearth_hub(None, &cache, &["rm", "test-org/tiny-GGUF:Q8_0"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "removed test-org/tiny-GGUF/tiny-Q8_0.gguf\n"
    );
    assert!(!path.exists());
    let out = hearth_hub(None, &cache, &["list"]);
    assert_eq!(text(&out.stdout).lines().count(), 2);

    let out = hearth_hub(None, &cache, &["rm", "test-org/tiny-GGUF:Q8_0"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("tiny-Q4_K_M.gguf"),
        "{}",
        text(&out.stderr)
    );
    let out = hearth_hub(None, &cache, &["rm", "test-org/tiny-GGUF"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = hearth_hub(None, &cache, &["list"]);
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).starts_with("no models in "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn pull_errors_are_one_line() {
    let mut gated = tiny_repo();
    gated.id = "test-org/gated".into();
    gated.gated_token = Some("hf_ok".into());
    let server = HubServer::start(vec![tiny_repo(), gated]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    for (reference, expected) in [
        ("test-org/gated", "accept the model's license at"),
        (
            "test-org/tiny-GGUF:Q5_K_M",
            "available: F16, IQ4_XS, Q2_K, Q4_K_M, Q8_0",
        ),
        ("test-org/nope", "repository test-org/nope not found"),
        ("not a ref", "not a model reference"),
    ] {
        let out = hearth_hub(Some(&server), &cache, &["pull", reference]);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.starts_with("error: ") && err.contains(expected),
            "{reference}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let out = hearth_hub(None, &cache, &["pull", "test-org/tiny-GGUF"]);
    assert!(
        text(&out.stderr).contains("cannot download"),
        "{}",
        text(&out.stderr)
    );
}

/// The real test model served by the local Hub runs by reference, with the same text as from
/// its path; afterwards it runs offline from the cache.
#[test]
fn run_a_model_by_hub_reference() {
    let local = crate::smollm2();
    let data = std::fs::read(&local).unwrap();
    let repo = RepoSpec {
        id: "test-org/SmolLM2-135M-Instruct-GGUF".into(),
        commit: "89abcdef0123456789abcdef0123456789abcdef".into(),
        files: vec![FileSpec::new("SmolLM2-135M-Instruct.Q4_1.gguf", data, true)],
        gated_token: None,
    };
    let server = HubServer::start(vec![repo]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let prompt = [
        "-p",
        "The capital of France is",
        "-n",
        "6",
        "--temp",
        "0",
        "-t",
        "1",
    ];
    let by_path = crate::hearth(&[&["run", "-m", local.as_str()][..], &prompt[..]].concat());
    assert!(by_path.status.success(), "{}", text(&by_path.stderr));

    let reference = "test-org/SmolLM2-135M-Instruct-GGUF:Q4_1";
    let out = hearth_hub(
        Some(&server),
        &cache,
        &[&["run", "-hf", reference][..], &prompt[..]].concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), text(&by_path.stdout));
    let blobs = cache.join("models--test-org--SmolLM2-135M-Instruct-GGUF/blobs");
    assert_eq!(std::fs::read_dir(blobs).unwrap().count(), 1);

    drop(server);
    let out = hearth_hub(
        None,
        &cache,
        &[&["run", "--offline", "-m", reference][..], &prompt[..]].concat(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), text(&by_path.stdout));
    let out = hearth_hub(
        None,
        &cache,
        &[
            &[
                "run",
                "--offline",
                "-m",
                "test-org/SmolLM2-135M-Instruct-GGUF:Q8_0",
            ][..],
            &prompt[..],
        ]
        .concat(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("offline"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn downloads_go_through_https_proxy_unless_no_proxy() {
    let server = HubServer::start(vec![tiny_repo()]);
    let proxy = ConnectProxy::start();
    let tmp = tempfile::tempdir().unwrap();
    let hosts = |url: &str| url.trim_start_matches("http://").to_string();

    let env = [("HTTPS_PROXY", proxy.url.as_str())];
    let cache = tmp.path().join("a");
    let out = hearth_hub_env(Some(&server), &cache, &["pull", "test-org/tiny-GGUF"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut targets = proxy.targets();
    targets.sort();
    targets.dedup();
    let mut expected = vec![hosts(&server.url), hosts(&server.cdn)];
    expected.sort();
    assert_eq!(targets, expected);

    let env = [
        ("HTTPS_PROXY", proxy.url.as_str()),
        ("NO_PROXY", "127.0.0.1"),
    ];
    let cache = tmp.path().join("b");
    let before = proxy.targets().len();
    let out = hearth_hub_env(Some(&server), &cache, &["pull", "test-org/tiny-GGUF"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(proxy.targets().len(), before);
}

#[test]
fn a_split_model_is_pulled_whole_and_run_says_it_cannot_load_it() {
    let server = HubServer::start(vec![tiny_repo()]);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let out = hearth_hub(Some(&server), &cache, &["pull", "test-org/tiny-GGUF:q2_k"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let paths = text(&out.stdout);
    let names: Vec<&str> = paths
        .lines()
        .map(|l| l.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "tiny-Q2_K-00001-of-00003.gguf",
            "tiny-Q2_K-00002-of-00003.gguf",
            "tiny-Q2_K-00003-of-00003.gguf"
        ]
    );
    let out = hearth_hub(
        Some(&server),
        &cache,
        &["run", "-m", "test-org/tiny-GGUF:Q2_K", "-p", "hi"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("first of 3 parts of a split model"), "{err}");
}
