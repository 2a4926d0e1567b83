//! `hearth bench`: argument handling and output formats (not speed), on the real SmolLM2 model
//! with tiny tests so the runs take a moment.

use serde_json::Value;

use super::{hearth, smollm2};

#[test]
fn json_has_llama_bench_fields_per_test_and_thread_count() {
    let m = smollm2();
    let out = hearth(&[
        "bench",
        "-m",
        &m,
        "-p",
        "8",
        "-n",
        "4",
        "-pg",
        "8,2",
        "-t",
        "1,2",
        "-r",
        "2",
        "-o",
        "json",
        "--no-cold-load",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let tests: Vec<(u64, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["n_threads"].as_u64().unwrap(),
                r["n_prompt"].as_u64().unwrap(),
                r["n_gen"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tests,
        [
            (1, 8, 0),
            (1, 0, 4),
            (1, 8, 2),
            (2, 8, 0),
            (2, 0, 4),
            (2, 8, 2)
        ]
    );
    for r in &rows {
        assert_eq!(r["model_filename"].as_str().unwrap(), m);
        assert_eq!(r["samples_ts"].as_array().unwrap().len(), 2);
        assert_eq!(r["samples_ns"].as_array().unwrap().len(), 2);
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
        assert!(r["stddev_ts"].as_f64().unwrap() >= 0.0);
        assert_eq!(r["model_n_params"].as_u64().unwrap(), 134_515_008);
        assert!(r["peak_rss_bytes"].as_u64().unwrap() > 0);
        // SmolLM2's LM head is its token embedding: a decoded token reads the whole file.
        assert_eq!(r["bytes_per_token"], r["model_size"]);
        let decode_only = r["n_prompt"] == 0;
        assert_eq!(
            r["read_bandwidth_bps"].as_f64().is_some_and(|b| b > 1e8),
            decode_only,
            "{r}"
        );
    }
}

#[test]
fn markdown_table_has_llama_bench_columns() {
    let out = hearth(&[
        "bench",
        "-m",
        &smollm2(),
        "-p",
        "8",
        "-n",
        "2",
        "-r",
        "1",
        "-t",
        "1",
        "--no-cold-load",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "| model | size | params | backend | threads | test | t/s |"
    );
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| llama")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0].contains("| pp8 |") && rows[1].contains("| tg2 |"),
        "{text}"
    );
    assert!(
        rows[0].contains("92.10 MiB") && rows[0].contains("134.52 M"),
        "{text}"
    );
    assert!(text.contains("peak RSS"), "{text}");
    assert!(
        text.contains("tg2 at 1 threads: 96.6 MB per token ×") && text.contains("streaming read"),
        "{text}"
    );
}

#[test]
fn csv_has_a_header_and_a_row_per_test() {
    let out = hearth(&[
        "bench",
        "-m",
        &smollm2(),
        "-p",
        "8",
        "-n",
        "0",
        "-r",
        "1",
        "-t",
        "1",
        "-o",
        "csv",
        "--no-cold-load",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("model_filename,"));
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains(",pp8,"));
}

#[test]
fn bad_arguments_are_one_error_line() {
    for (args, needle) in [
        (vec!["-r", "0"], "repetitions"),
        (vec!["-t", "0"], "thread count"),
        (vec!["-p", "0", "-n", "0"], "nothing to measure"),
        (vec!["-b", "0"], "batch-size"),
    ] {
        let m = smollm2();
        let mut all = vec!["bench", "-m", m.as_str()];
        all.extend(args);
        let out = hearth(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{all:?}");
        assert!(
            stderr.starts_with("error:") && stderr.contains(needle),
            "{all:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"));
    }
    let out = hearth(&["bench", "-m", &smollm2(), "-pg", "8"]);
    assert!(!out.status.success());
}
