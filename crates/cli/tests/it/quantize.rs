//! `hearth quantize` as a user runs it: llama-quantize's argument order, clear errors.

use crate::{hearth, smollm2};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// llama-quantize's short form `IN TYPE NTHREADS` (a numeric type here: 7 is Q8_0) writes
/// `ggml-model-TYPE.gguf` beside the input.
#[test]
fn quantize_writes_a_file_that_runs() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("smollm2.gguf");
    std::os::unix::fs::symlink(smollm2(), &input).unwrap();
    let out = dir.path().join("ggml-model-Q8_0.gguf");
    let o = hearth(&[
        "quantize",
        "--allow-requantize",
        input.to_str().unwrap(),
        "7",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("model size ="), "{stdout}");
    assert!(stdout.contains("quant size ="), "{stdout}");
    // Streamed into `OUT.part`, then renamed.
    assert!(out.exists());
    assert!(!dir.path().join("ggml-model-Q8_0.gguf.part").exists());
    let o = hearth(&[
        "run",
        "-m",
        out.to_str().unwrap(),
        "-p",
        "The capital of France is",
        "-n",
        "4",
        "--temp",
        "0",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!o.stdout.is_empty());
}

#[test]
fn quantize_refuses_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.gguf");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &[&smollm2(), out, "Q4_9"],
            "unknown quantization type 'Q4_9'",
        ),
        (&[&smollm2(), out, "TQ1_0"], "TQ1_0 is not supported yet"),
        (
            &["--allow-requantize", &smollm2(), out, "IQ2_XXS"],
            "this quantization requires an importance matrix (--imatrix)",
        ),
        (&[&smollm2(), out, "Q4_K_M"], "--allow-requantize"),
        (
            &["/nonexistent/m.gguf", out, "Q4_0"],
            "cannot open /nonexistent/m.gguf",
        ),
        (
            &["--imatrix", "/nonexistent/i.gguf", &smollm2(), out, "Q4_0"],
            "/nonexistent/i.gguf",
        ),
    ];
    for (args, want) in cases {
        let mut argv = vec!["quantize"];
        argv.extend(args.iter().copied());
        let o = hearth(&argv);
        assert!(!o.status.success(), "{argv:?} succeeded");
        let e = stderr(&o);
        assert!(e.contains(want), "{argv:?}: expected {want:?} in {e}");
    }
    for path in [out.to_string(), format!("{out}.part")] {
        assert!(
            !std::path::Path::new(&path).exists(),
            "no output file on failure: {path}"
        );
    }
}
