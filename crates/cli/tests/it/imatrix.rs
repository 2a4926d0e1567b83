//! `hearth imatrix` as a user runs it: run where llama-imatrix was run for the engine's
//! fixture (same text path, model and settings) it writes llama-imatrix's file byte for byte;
//! `--in-file` combines files; `--show-statistics` prints llama.cpp's table; a short text, an
//! unwritable output and a file that is not an imatrix are one-line errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::{hearth, smollm2};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures")
}

/// `hearth` run from the engine's fixture folder (the text's path is recorded in the file).
fn hearth_in_fixtures(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .current_dir(fixtures())
        .output()
        .unwrap()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hearth-imatrix-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn writes_llama_imatrixs_file_and_combines_files() {
    let dir = temp_dir("run");
    let out_file = dir.join("smollm2.gguf");
    let m = smollm2();
    let o = out_file.display().to_string();
    let args = [
        "imatrix",
        "-m",
        &m,
        "-f",
        "perplexity/gpl-3.txt",
        "-c",
        "160",
        "-b",
        "640",
        "--chunks",
        "5",
        "-t",
        "2",
        "-o",
        &o,
    ];
    let out = hearth_in_fixtures(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("Final estimate: PPL = "), "{stdout}");
    let ours = std::fs::read(&out_file).unwrap();
    let theirs = std::fs::read(fixtures().join("imatrix/smollm2-c160-b640.gguf")).unwrap();
    assert!(ours == theirs, "hearth's file is not llama-imatrix's");

    // Combining: two files in, their sums and counts added (each count doubles).
    let both = dir.join("both.gguf").display().to_string();
    let out = hearth(&[
        "imatrix",
        "--in-file",
        &o,
        "--in-file",
        &o,
        "-c",
        "160",
        "-o",
        &both,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&both).unwrap();
    let m = engine::imatrix::IMatrix::from_gguf(&gguf::Gguf::parse(&bytes).unwrap()).unwrap();
    assert_eq!(m.entries["blk.3.ffn_up.weight"].counts, [1600]);
    assert_eq!((m.file_chunk_count, m.datasets.len()), (10, 2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn show_statistics_prints_llama_imatrixs_table() {
    let out = hearth_in_fixtures(&[
        "imatrix",
        "--show-statistics",
        "--in-file",
        "imatrix/smollm2-c160-b640.gguf",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let want =
        std::fs::read_to_string(fixtures().join("imatrix/smollm2-c160-b640.stats.txt")).unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
}

#[test]
fn bad_input_is_a_one_line_error() {
    let dir = temp_dir("errors");
    let m = smollm2();
    let short = dir.join("short.txt");
    std::fs::write(&short, "Far too short for a chunk.").unwrap();
    let s = short.display().to_string();
    let o = dir.join("out.gguf").display().to_string();
    let missing_dir = dir.join("no/such/dir/out.gguf").display().to_string();
    let cases: [(Vec<&str>, &str); 5] = [
        (
            vec!["imatrix", "-m", &m, "-f", &s, "-c", "64", "-o", &o],
            "needs at least 128",
        ),
        (
            vec!["imatrix", "-m", &m, "-f", &s, "-o", &missing_dir],
            "cannot write the output file",
        ),
        (
            vec!["imatrix", "--in-file", &s, "-o", &o],
            "is not a GGUF file",
        ),
        (vec!["imatrix", "-o", &o], "nothing to do"),
        (
            vec!["imatrix", "--show-statistics", "--in-file", &m],
            "not an imatrix file",
        ),
    ];
    for (args, want) in cases {
        let out = hearth(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1);
    }
    assert!(!Path::new(&o).exists(), "a failed run left an output file");
    std::fs::remove_dir_all(&dir).unwrap();
}
