//! The official `openai` and `ollama` Python clients (pinned in
//! scripts/test-clients-requirements.txt, venv made once by scripts/test-venv.sh) against a
//! real server.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{TestServer, config};

#[test]
fn official_python_clients() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(root.join("scripts/test-venv.sh"))
        .output()
        .expect("run scripts/test-venv.sh");
    assert!(
        out.status.success(),
        "scripts/test-venv.sh failed (it needs python3 and PyPI once):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let s = TestServer::start(config());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/clients.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}", s.addr))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    // Bounded: a hung client fails the test instead of stalling CI.
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "python clients failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
