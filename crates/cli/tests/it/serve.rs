//! `hearth serve` as a process: llama-server's flags, errors naming unknown ones, and a
//! graceful stop on SIGTERM that lets a running stream finish.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{hearth, smollm2};

#[test]
fn unknown_and_unsupported_flags_are_errors_naming_them() {
    let m = smollm2();
    let out = hearth(&["serve", "-m", &m, "--frobnicate"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--frobnicate"), "{err}");
    let out = hearth(&["serve", "-m", &m, "--embedding"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--embedding"));
    let out = hearth(&["serve", "--port", "0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("-m"));
    // A missing model, and one that cannot load, end the server with the reason.
    let out = hearth(&["serve", "-m", "/nonexistent/model.gguf", "--port", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such file"));
    let bad = std::env::temp_dir().join(format!("hearth-serve-bad-{}.gguf", std::process::id()));
    std::fs::write(&bad, b"not a gguf file").unwrap();
    let out = hearth(&["serve", "-m", bad.to_str().unwrap(), "--port", "0"]);
    std::fs::remove_file(&bad).unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot load model"));
    let out = hearth(&["serve", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--parallel"));
}

fn get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[test]
fn sigterm_stops_the_server_after_running_streams_end() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args([
            "serve",
            "-m",
            &smollm2(),
            "--port",
            "0",
            "-np",
            "1",
            "-c",
            "512",
            "-t",
            "1",
        ])
        .args(["--temp", "0", "--host", "127.0.0.1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim()
        .to_owned();
    let t0 = Instant::now();
    while !get(&addr, "/health").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(t0.elapsed() < Duration::from_secs(60), "not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let body = r#"{"messages":[{"role":"user","content":"Tell me a story."}],"max_tokens":48,"stream":true}"#;
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 64];
    let n = s.read(&mut first).unwrap();
    assert!(n > 0);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("data: [DONE]"), "the stream was cut: {rest}");
    let t0 = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "{code:?}");
}

fn preflight(addr: &str, origin: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "OPTIONS /completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: {origin}\r\n\
         Access-Control-Request-Method: POST\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// `--tools` as llama-server: unknown names and tool runtimes are refused at startup; with
/// tools, a security warning is printed and only local pages may call the server (CORS).
#[test]
fn tools_flag_warns_and_limits_cors_to_localhost() {
    let m = smollm2();
    let out = hearth(&["serve", "-m", &m, "--tools", "read_file,format_disk"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown tool \"format_disk\""), "{err}");
    let out = hearth(&[
        "serve",
        "-m",
        &m,
        "--tools",
        "all",
        "--tools-runtime",
        "docker:busybox",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not supported by hearth"), "{err}");

    // Tools from llama-server's variable; only local pages may call them.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args([
            "serve", "-m", &m, "--port", "0", "-np", "1", "-c", "256", "-t", "1",
        ])
        .env("LLAMA_ARG_TOOLS", "all")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let addr = loop {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("no address in {seen:?}");
        };
        if let Some(a) = line.split("listening on http://").nth(1) {
            break a.trim().to_owned();
        }
        seen.push(line);
    };
    let t0 = Instant::now();
    while !get(&addr, "/health").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(t0.elapsed() < Duration::from_secs(60), "not ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let local = preflight(&addr, "http://localhost:8080");
    let evil = preflight(&addr, "http://evil.com");
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.join("\n");
    assert!(
        seen.contains("do not expose to untrusted environments"),
        "{seen}"
    );
    assert!(
        seen.contains("localhost as the default CORS origin"),
        "{seen}"
    );
    assert!(
        local.contains("Access-Control-Allow-Origin: http://localhost:8080"),
        "{local}"
    );
    assert!(!evil.contains("Access-Control-Allow-Origin"), "{evil}");
}
