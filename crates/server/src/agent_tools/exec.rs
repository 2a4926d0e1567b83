//! Subprocesses for the tools: [`run`] starts a command in a process group of its own with
//! stdout and stderr in one pipe, keeps at most `max_output` bytes (draining the rest so the
//! command never blocks), and kills the whole group at its deadline or when the caller's
//! client is gone. `exec_shell_command` (`sh -c`) and `get_info` (`uname -a`) are built on it,
//! with llama-server's limits and result text.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{CallError, Params};

/// Most output `exec_shell_command` returns (llama-server's 16 KB).
pub(super) const MAX_OUTPUT: usize = 16 * 1024;
/// Longest `exec_shell_command` timeout (llama-server's 60 s; the default is 10).
pub(super) const MAX_TIMEOUT_S: i64 = 60;
const DEFAULT_TIMEOUT_S: i64 = 10;
/// `get_info`'s limits.
const INFO_MAX_OUTPUT: usize = 4096;
const INFO_TIME: Duration = Duration::from_secs(5);
/// How long reading waits for the pipe to close after the command was killed (a process that
/// left the group may still hold it).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How often a streamed call checks that its client is still there while the command is quiet.
const PING: Duration = Duration::from_millis(250);

/// What a command did.
pub(super) struct Output {
    /// Its output (lossy UTF-8), cut at the cap, with `\n[output truncated]` when cut.
    pub text: String,
    /// Its exit status; 1 when a signal ended it, -1 when it could not start (as
    /// llama-server's subprocess library reports them).
    pub exit_code: i32,
    pub timed_out: bool,
    pub truncated: bool,
}

/// Runs `args` (the first is the program, looked up in `PATH`) in `cwd` (empty: the server's),
/// for at most `timeout`. `on_chunk` gets each piece of output as it comes (whole UTF-8
/// characters) and returns false to stop the command (the client is gone); while the command
/// is quiet it is asked with an empty string.
pub(super) fn run(
    args: &[&str],
    cwd: &str,
    max_output: usize,
    timeout: Duration,
    mut on_chunk: Option<&mut dyn FnMut(String) -> bool>,
) -> Output {
    let failed = Output {
        text: "failed to spawn process".into(),
        exit_code: -1,
        timed_out: false,
        truncated: false,
    };
    let Some((prog, rest)) = args.split_first() else {
        return failed;
    };
    let Ok((mut reader, writer)) = std::io::pipe() else {
        return failed;
    };
    let Ok(writer2) = writer.try_clone() else {
        return failed;
    };
    let mut cmd = Command::new(prog);
    cmd.args(rest)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2);
    if !cwd.is_empty() {
        cmd.current_dir(cwd);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
    }
    let child = cmd.spawn();
    // The command's copies of the pipe's writing end must close here, or reading never ends.
    drop(cmd);
    let Ok(mut child) = child else {
        return failed;
    };
    let pid = child.id();
    // The watchdog kills the group at the deadline, or when told to (the client is gone).
    let (stop_tx, stop_rx) = mpsc::channel::<bool>();
    let deadline = Instant::now() + timeout;
    let watchdog = std::thread::Builder::new()
        .name("tool-watchdog".into())
        .spawn(move || {
            let timed_out =
                match stop_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(false) | Err(mpsc::RecvTimeoutError::Disconnected) => return false,
                    Ok(true) => false,
                    Err(mpsc::RecvTimeoutError::Timeout) => true,
                };
            kill_group(pid);
            timed_out
        });
    let (data_tx, data_rx) = mpsc::channel::<Vec<u8>>();
    // Reading happens on its own thread so that a pipe held open by an escaped process cannot
    // hold this call past the deadline.
    let reader_thread = std::thread::Builder::new()
        .name("tool-output".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if data_tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        });
    let mut output: Vec<u8> = Vec::new();
    let mut truncated = false;
    // Bytes of an incomplete UTF-8 character held back from the last chunk.
    let mut pending: Vec<u8> = Vec::new();
    let mut stopped = false;
    // Past this, reading gives up (a process that left the group may hold the pipe).
    let mut give_up = deadline + DRAIN_GRACE;
    while reader_thread.is_ok() {
        let now = Instant::now();
        if now >= give_up {
            break;
        }
        let piece = match data_rx.recv_timeout((give_up - now).min(PING)) {
            Ok(p) => p,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // No output for a while: is the client still there? (An empty chunk asks.)
                if let Some(f) = on_chunk.as_deref_mut()
                    && !stopped
                    && !f(String::new())
                {
                    stopped = true;
                    let _ = stop_tx.send(true);
                    give_up = Instant::now() + DRAIN_GRACE;
                }
                continue;
            }
        };
        if truncated || stopped {
            continue;
        }
        let room = max_output - output.len();
        let keep = &piece[..piece.len().min(room)];
        output.extend_from_slice(keep);
        if piece.len() > room {
            truncated = true;
        }
        if let Some(f) = on_chunk.as_deref_mut() {
            pending.extend_from_slice(keep);
            let text = take_utf8(&mut pending, truncated);
            if !text.is_empty() && !f(text) && !truncated {
                stopped = true;
                let _ = stop_tx.send(true);
                give_up = Instant::now() + DRAIN_GRACE;
            }
        }
    }
    let status = child.wait();
    let _ = stop_tx.send(false);
    let timed_out = watchdog.map(|w| w.join().unwrap_or(false)).unwrap_or(false);
    let exit_code = match status {
        Ok(s) => s.code().unwrap_or(1),
        Err(_) => -1,
    };
    let mut text = String::from_utf8_lossy(&output).into_owned();
    if truncated {
        text.push_str("\n[output truncated]");
    }
    Output {
        text,
        exit_code,
        timed_out,
        truncated,
    }
}

/// The complete UTF-8 text at the front of `pending` (invalid bytes replaced), leaving an
/// incomplete character's first bytes unless `flush`.
fn take_utf8(pending: &mut Vec<u8>, flush: bool) -> String {
    let keep_from = if flush {
        pending.len()
    } else {
        match std::str::from_utf8(pending) {
            Ok(_) => pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => pending.len(),
        }
    };
    let rest = pending.split_off(keep_from);
    let text = String::from_utf8_lossy(pending).into_owned();
    *pending = rest;
    text
}

#[cfg(unix)]
fn kill_group(pid: u32) {
    use nix::sys::signal::{Signal, killpg};
    use nix::unistd::Pid;
    if let Ok(p) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(p), Signal::SIGKILL);
    }
}

#[cfg(not(unix))]
fn kill_group(pid: u32) {
    let _ = Command::new("taskkill")
        .args(["/T", "/F", "/PID", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub(super) fn exec_shell_command(
    p: &Params,
    chunk: Option<&mut dyn FnMut(String) -> bool>,
) -> Result<Value, CallError> {
    let command = p.str("command")?;
    let timeout = p.opt_int("timeout", DEFAULT_TIMEOUT_S).min(MAX_TIMEOUT_S);
    // As llama-server: a negative size reads as huge, so it is the cap.
    let max_output = match p.opt_int("max_output_size", MAX_OUTPUT as i64) {
        n if n < 0 => MAX_OUTPUT,
        n => (n as usize).min(MAX_OUTPUT),
    };
    let timeout = Duration::from_secs(timeout.max(0) as u64);
    #[cfg(unix)]
    let args = ["sh", "-c", command.as_str()];
    #[cfg(not(unix))]
    let args = ["cmd", "/c", command.as_str()];
    let cwd = p.cwd();
    if let Some(push) = chunk {
        let mut alive = true;
        let res = {
            let mut forward = |c: String| {
                alive = push(c);
                alive
            };
            run(&args, &cwd, max_output, timeout, Some(&mut forward))
        };
        if alive {
            push(tail(&res));
        }
        return Ok(Value::Null);
    }
    let res = run(&args, &cwd, max_output, timeout, None);
    Ok(json!({ "plain_text_response": format!("{}{}", res.text, tail(&res)) }))
}

/// `\n[exit code: N]`, and ` [exit due to timed out]` when it was killed at its deadline.
fn tail(res: &Output) -> String {
    let mut t = format!("\n[exit code: {}]", res.exit_code);
    if res.timed_out {
        t.push_str(" [exit due to timed out]");
    }
    t
}

pub(super) fn get_info(p: &Params) -> Result<Value, CallError> {
    let cwd = p.cwd();
    #[cfg(unix)]
    let args = ["uname", "-a"];
    #[cfg(not(unix))]
    let args = ["cmd", "/c", "ver"];
    let res = run(&args, &cwd, INFO_MAX_OUTPUT, INFO_TIME, None);
    let os = if res.exit_code == 0 && !res.timed_out {
        res.text.trim().to_owned()
    } else {
        "unknown".to_owned()
    };
    let cwd = if cwd.is_empty() {
        std::env::current_dir()
            .map(|d| super::display(&d))
            .unwrap_or_default()
    } else {
        cwd
    };
    Ok(json!({"os": os, "cwd": cwd}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_chunks_hold_back_split_characters() {
        let mut p = "é".as_bytes()[..1].to_vec();
        assert_eq!(take_utf8(&mut p, false), "");
        p.extend_from_slice(&"é".as_bytes()[1..]);
        p.extend_from_slice(b"x");
        assert_eq!(take_utf8(&mut p, false), "éx");
        assert!(p.is_empty());
    }

    #[test]
    fn a_command_past_its_deadline_is_killed_with_its_children() {
        let t0 = Instant::now();
        // The shell's child holds the pipe too; killing the group ends both.
        let r = run(
            &["sh", "-c", "sleep 30 | cat; echo never"],
            "",
            100,
            Duration::from_millis(300),
            None,
        );
        assert!(r.timed_out, "{}", r.text);
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        assert_eq!(r.text, "");
    }

    #[test]
    fn output_over_the_cap_is_cut_and_drained() {
        let r = run(
            &["sh", "-c", "yes | head -c 100000; echo done >&2"],
            "",
            10,
            Duration::from_secs(10),
            None,
        );
        assert_eq!(r.text, "y\ny\ny\ny\ny\n\n[output truncated]");
        assert_eq!((r.exit_code, r.timed_out), (0, false));
        let r = run(
            &["/nonexistent/program"],
            "",
            10,
            Duration::from_secs(1),
            None,
        );
        assert_eq!(
            (r.text.as_str(), r.exit_code),
            ("failed to spawn process", -1)
        );
    }
}
