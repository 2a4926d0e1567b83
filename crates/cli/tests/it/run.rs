//! `hearth run` and `hearth chat` on the real SmolLM2 model, and the errors a user can cause:
//! each is one `error:` line on stderr and a non-zero exit, never a panic.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::{hearth, smollm2};

/// Asserts a failed run printed exactly one error line naming `needle`.
fn assert_one_error_line(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {stderr}");
    assert!(
        lines[0].starts_with("error:"),
        "not an error line: {stderr}"
    );
    assert!(
        lines[0].contains(needle),
        "error does not mention '{needle}': {stderr}"
    );
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let p = std::env::temp_dir().join(format!("hearth-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn greedy_run_prints_llama_cpps_continuation() {
    // llama.cpp's greedy continuation of this prompt starts " Paris." (generate.json, raw-capital).
    let out = hearth(&[
        "run",
        "-m",
        &smollm2(),
        "-p",
        "The capital of France is",
        "-n",
        "2",
        "--temp",
        "0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), " Paris.\n");
}

#[test]
fn fast_arithmetic_runs_and_keeps_a_clear_greedy_answer() {
    // raw-capital's continuation is robust (no near-ties), so the fastest order gives it too;
    // an unknown mode is one error line.
    let run = |mode: &str| {
        hearth(&[
            "run",
            "-m",
            &smollm2(),
            "-p",
            "The capital of France is",
            "-n",
            "2",
            "--temp",
            "0",
            "--arithmetic",
            mode,
        ])
    };
    let out = run("fast");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), " Paris.\n");
    assert!(!run("exact").status.success());
}

#[test]
fn verbose_run_reports_timings_on_stderr_only() {
    let out = hearth(&[
        "run",
        "-m",
        &smollm2(),
        "-p",
        "Hello",
        "-n",
        "4",
        "--temp",
        "0",
        "-v",
        "--seed",
        "1",
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("prompt eval time") && stderr.contains("tokens per second"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("eval time"));
}

#[test]
fn same_seed_same_text() {
    let args = [
        "run",
        "-m",
        &smollm2(),
        "-p",
        "Once upon a time",
        "-n",
        "24",
        "--seed",
        "7",
        "-t",
        "2",
    ];
    let a = hearth(&args);
    let b = hearth(&args);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
}

/// llama.cpp's greedy reply to the chat fixture (`chat-capital`: SmolLM2's own template with
/// its default system prompt around "What is the capital of France?"), first 16 tokens.
fn chat_capital_reply() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../engine/tests/fixtures/smollm2/generate.json"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let case = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "chat-capital")
        .unwrap();
    case["greedy_text_16"].as_str().unwrap().to_owned()
}

#[test]
fn chat_flag_renders_the_template_as_llama_cpp_does() {
    let out = hearth(&[
        "run",
        "-m",
        &smollm2(),
        "--chat",
        "-p",
        "What is the capital of France?",
        "-n",
        "16",
        "--temp",
        "0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        chat_capital_reply() + "\n"
    );
}

#[test]
fn interactive_chat_answers_and_exits() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["chat", "-m", &smollm2(), "--temp", "0", "-n", "16"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France?\n/clear\nSay hello.\n/exit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with(&chat_capital_reply()), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("conversation cleared"));
}

#[test]
fn missing_model_file_is_one_error_line() {
    let out = hearth(&["run", "-m", "/nonexistent/model.gguf", "-p", "hi"]);
    assert_one_error_line(&out, "/nonexistent/model.gguf");
}

#[test]
fn non_gguf_file_is_one_error_line() {
    let p = temp_file("not.gguf", b"this is not a model");
    let out = hearth(&["run", "-m", p.to_str().unwrap(), "-p", "hi"]);
    let _ = std::fs::remove_file(&p);
    assert_one_error_line(&out, "not a GGUF file");
}

#[test]
fn unsupported_architecture_is_one_error_line() {
    let mut b = gguf::Builder::new();
    b.set("general.architecture", gguf::Value::string("mamba"))
        .unwrap();
    let p = temp_file("mamba.gguf", &b.to_bytes());
    let out = hearth(&["run", "-m", p.to_str().unwrap(), "-p", "hi"]);
    let _ = std::fs::remove_file(&p);
    assert_one_error_line(&out, "unsupported architecture 'mamba'");
}

#[test]
fn zero_context_is_rejected_before_loading() {
    let out = hearth(&[
        "run",
        "-m",
        "/nonexistent/model.gguf",
        "-p",
        "hi",
        "-c",
        "0",
    ]);
    assert_one_error_line(&out, "--ctx-size");
}

#[test]
fn negative_token_count_is_rejected() {
    let out = hearth(&["run", "-m", &smollm2(), "-p", "hi", "-n", "-5"]);
    assert_one_error_line(&out, "-n");
}

#[test]
fn bad_sampler_settings_are_rejected_before_loading() {
    for (flags, needle) in [
        (&["--mirostat", "3"][..], "--mirostat"),
        (&["--samplers", "top_k;bogus"], "bogus"),
        (&["--sampler-seq", "kq"], "--sampler-seq"),
        (&["--dry-base", "0.5"], "--dry-base"),
        (&["--xtc-probability", "1.5"], "--xtc-probability"),
        (&["--top-nsigma", "inf"], "--top-nsigma"),
    ] {
        let mut args = vec!["run", "-m", "/nonexistent/model.gguf", "-p", "hi"];
        args.extend_from_slice(flags);
        assert_one_error_line(&hearth(&args), needle);
    }
}

#[test]
fn llama_cpps_other_samplers_run_and_repeat_with_a_seed() {
    let model = smollm2();
    let base = [
        "run",
        "-m",
        &model,
        "-p",
        "Once upon a time",
        "-n",
        "8",
        "-s",
        "3",
    ];
    for extra in [
        &[
            "--samplers",
            "penalties;dry;top_n_sigma;top_k;xtc;temperature",
            "--dry-multiplier",
            "0.8",
            "--dry-sequence-breaker",
            "\n",
            "--xtc-probability",
            "0.5",
            "--top-nsigma",
            "1.5",
            "--dynatemp-range",
            "0.3",
        ][..],
        &[
            "--mirostat",
            "2",
            "--mirostat-ent",
            "3",
            "--mirostat-lr",
            "0.2",
        ],
        &["--mirostat", "1", "--ignore-eos"],
        &["--sampler-seq", "kt", "--temperature", "0.5"],
    ] {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().copied()).collect();
        let a = hearth(&args);
        let b = hearth(&args);
        assert!(
            a.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&a.stderr)
        );
        assert!(!a.stdout.is_empty(), "{extra:?}: no text");
        assert_eq!(a.stdout, b.stdout, "{extra:?}: same seed, different text");
    }
}

#[test]
fn grammar_flags_constrain_the_output_as_llama_cpps() {
    let fixtures = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../engine/tests/fixtures/grammars"
    );
    // llama-completion's greedy text under list.gbnf (fixtures/grammars/llama_cpp.json, "list").
    let list = format!("{fixtures}/list.gbnf");
    let out = hearth(&[
        "run",
        "-m",
        &smollm2(),
        "-p",
        "A shopping list:",
        "-n",
        "40",
        "--temp",
        "0",
        "--grammar-file",
        &list,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "- 1.2, 2.4, 3.6, 4.8, 5.1, 5.3, 5.5, 5.7\n"
    );
    let out = hearth(&[
        "run",
        "-m",
        &smollm2(),
        "-p",
        "Is the sky blue? Answer:",
        "--temp",
        "0",
        "-j",
        r#"{"enum": ["yes", "no"]}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text == "\"yes\"\n" || text == "\"no\"\n", "{text:?}");
    let out = hearth(&[
        "run",
        "-m",
        &smollm2(),
        "-p",
        "x",
        "--grammar",
        "root ::= (\"a\"",
    ]);
    assert_one_error_line(&out, "GBNF");
    let out = hearth(&[
        "run",
        "-m",
        &smollm2(),
        "-p",
        "x",
        "-j",
        r#"{"type": "hiccup"}"#,
    ]);
    assert_one_error_line(&out, "JSON schema");
}
