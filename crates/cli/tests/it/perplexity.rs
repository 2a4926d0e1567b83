//! `hearth perplexity`: llama-perplexity's output line, and the KL-divergence mode (a model
//! against itself is 0 with the same top token everywhere; the fast arithmetic against
//! llama.cpp's order is small and positive). The value itself is checked against llama.cpp's
//! in the engine's tests.

use crate::{hearth, smollm2};

const TEXT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../engine/tests/fixtures/perplexity/gpl-3.txt"
);

fn stdout_of(args: &[&str]) -> String {
    let out = hearth(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn value(out: &str, label: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no '{label}' line in:\n{out}"));
    let v = line.split(':').nth(1).unwrap().trim();
    v.split([' ', '%']).next().unwrap().parse().unwrap()
}

#[test]
fn kl_divergence_against_itself_and_against_the_fast_arithmetic() {
    let m = smollm2();
    let dir = std::env::temp_dir().join(format!("hearth-kld-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let base = dir.join("base.kld").display().to_string();
    let common = [
        "perplexity",
        "-m",
        &m,
        "-f",
        TEXT,
        "-c",
        "128",
        "-b",
        "256",
        "--chunks",
        "2",
        "-t",
        "2",
    ];
    fn with<'a>(common: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [common, extra].concat()
    }

    let out = stdout_of(&with(&common, &["--kl-divergence-base", &base]));
    assert!(out.starts_with("Final estimate: PPL = "), "{out}");

    let same = stdout_of(&with(
        &common,
        &["--kl-divergence-base", &base, "--kl-divergence"],
    ));
    assert!(value(&same, "Mean    KLD").abs() < 1e-4, "{same}");
    assert_eq!(value(&same, "Same top p"), 100.0, "{same}");

    let fast = stdout_of(&with(
        &common,
        &[
            "--kl-divergence-base",
            &base,
            "--kl-divergence",
            "--arithmetic",
            "fast",
        ],
    ));
    let kld = value(&fast, "Mean    KLD");
    assert!(kld > 0.0 && kld < 0.01, "{fast}");
    assert!(value(&fast, "Same top p") > 90.0, "{fast}");

    // Another chunk size is refused with a message saying why.
    let out = hearth(&[
        "perplexity",
        "-m",
        &m,
        "-f",
        TEXT,
        "-c",
        "64",
        "--chunks",
        "2",
        "--kl-divergence-base",
        &base,
        "--kl-divergence",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another text or chunk size"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_text_shorter_than_a_chunk_is_one_error_line() {
    let m = smollm2();
    let dir = std::env::temp_dir().join(format!("hearth-ppl-short-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let short = dir.join("short.txt");
    std::fs::write(&short, "Hello there.").unwrap();
    let out = hearth(&[
        "perplexity",
        "-m",
        &m,
        "-f",
        short.to_str().unwrap(),
        "-c",
        "256",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fewer than one chunk of 256"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
