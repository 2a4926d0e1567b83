//! llama-server's built-in agent tools (`--tools`) against llama-server's own answers:
//! `fixtures/agent_tools.json` (made by `scripts/gen_agent_tools_fixture.py` with llama-server)
//! holds a small tree, `GET /tools`, and ~80 calls with their statuses and bodies, replayed
//! here in a fresh copy of the tree (once plain, once as a git work tree with a .gitignore).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{TestServer, config};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/agent_tools.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tools_server() -> TestServer {
    let mut c = config();
    c.n_parallel = 1;
    c.tools = server::AgentTool::ALL.to_vec();
    TestServer::start(c)
}

/// The fixture's tree under `root`; as the generator makes it, a git work tree ignoring
/// `docs/` and `*.md` with two files added, when `git`.
fn build_tree(root: &Path, tree: &Value, git: bool) {
    for (rel, text) in tree.as_object().unwrap() {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let text = text.as_str().unwrap();
        let bytes: Vec<u8> = if rel == "latin1.txt" {
            text.chars().map(|c| c as u8).collect()
        } else {
            text.as_bytes().to_vec()
        };
        std::fs::write(&path, bytes).unwrap();
    }
    if git {
        std::fs::write(root.join(".gitignore"), "docs/\n*.md\n").unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("git").args(args).output().expect("run git");
            assert!(out.status.success(), "git {args:?}: {out:?}");
        };
        let r = root.to_str().unwrap();
        run(&["init", "-q", r]);
        run(&["-C", r, "add", "a.txt", "src/main.cpp"]);
    }
}

/// Sorted lines of a text, for listings whose order is the file system's.
fn lines(v: &Value) -> Vec<String> {
    let mut l: Vec<String> = v.as_str().unwrap().lines().map(str::to_owned).collect();
    l.sort();
    l
}

fn sorted_entries(v: &Value) -> Vec<String> {
    let mut e: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.to_string())
        .collect();
    e.sort();
    e
}

#[test]
fn get_tools_lists_llama_servers_definitions() {
    let s = tools_server();
    let r = s.get("/tools");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), fixture()["tools"]);
}

#[test]
fn tool_calls_answer_as_llama_server() {
    let fx = fixture();
    let s = tools_server();
    for run in fx["runs"].as_array().unwrap() {
        let git = run["git"].as_bool().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("tree");
        build_tree(&root, &fx["tree"], git);
        let root_s = root.to_str().unwrap();
        for (i, call) in run["calls"].as_array().unwrap().iter().enumerate() {
            if call["request"] == "stream" {
                let events: Vec<Value> = s
                    .stream(
                        "/tools",
                        &json!({"tool": "exec_shell_command",
                                "params": {"command": "echo a; echo b; exit 2"}, "stream": true}),
                    )
                    .collect_all()
                    .iter()
                    .map(|e| serde_json::from_str(e).unwrap())
                    .collect();
                let text = |ev: &[Value]| -> String {
                    ev.iter().filter_map(|e| e["chunk"].as_str()).collect()
                };
                let want = call["events"].as_array().unwrap();
                assert_eq!(text(&events), text(want));
                assert_eq!(events.last(), want.last());
                continue;
            }
            let mut headers: Vec<(String, String)> = call["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            headers.push(("x-tool-cwd".into(), root_s.to_owned()));
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let body = call["request"].to_string();
            let r = s.request("POST", "/tools", Some(body.as_bytes()), &h);
            let what = format!("run git={git}, call {i}: {body}\n{}", r.body);
            assert_eq!(r.status, call["status"], "{what}");
            let compare = call["compare"].as_str().unwrap();
            if compare == "status" {
                continue;
            }
            let got: Value = serde_json::from_str(&r.body.replace(root_s, "<ROOT>"))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let mut want = call["body"].clone();
            if call["request"]["tool"] == "get_info" {
                // `uname -a` of the machine the fixture was recorded on: this one's instead.
                let uname = Command::new("uname").arg("-a").output().unwrap();
                want["os"] = String::from_utf8(uname.stdout).unwrap().trim().into();
            }
            let want = &want;
            match compare {
                "exact" => assert_eq!(&got, want, "{what}"),
                "error_prefix" => {
                    let (g, w) = (
                        got["error"].as_str().unwrap(),
                        want["error"].as_str().unwrap(),
                    );
                    let prefix = &w[..w.find(':').unwrap() + 1];
                    assert!(g.starts_with(prefix), "{what}: {g} vs {w}");
                }
                "lines" => {
                    // git lists files in its own order; the walker in the system's.
                    let listed_by_git = git && call["request"]["params"]["type"].is_null();
                    if listed_by_git {
                        assert_eq!(&got, want, "{what}");
                    } else {
                        assert_eq!(
                            lines(&got["plain_text_response"]),
                            lines(&want["plain_text_response"]),
                            "{what}"
                        );
                        if want.get("entries").is_some() {
                            assert_eq!(
                                sorted_entries(&got["entries"]),
                                sorted_entries(&want["entries"]),
                                "{what}"
                            );
                            assert_eq!(got["base"], want["base"], "{what}");
                        }
                    }
                }
                other => panic!("unknown comparison {other}"),
            }
        }
    }
}

#[test]
fn tools_are_forbidden_unless_enabled() {
    let s = TestServer::start(config());
    let want =
        json!({"error": {"message": "this feature is disabled", "type": "feature_disabled"}});
    let r = s.get("/tools");
    assert_eq!((r.status, r.json()), (403, want.clone()));
    let body = json!({"tool": "exec_shell_command", "params": {"command": "touch /tmp/x"}});
    let r = s.post("/tools", &body);
    assert_eq!((r.status, r.json()), (403, want));
}

#[test]
fn only_the_enabled_tools_are_offered() {
    let mut c = config();
    c.n_parallel = 1;
    c.tools = vec![server::AgentTool::ReadFile, server::AgentTool::GetInfo];
    let s = TestServer::start(c);
    let names: Vec<Value> = s
        .get("/tools")
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tool"].clone())
        .collect();
    assert_eq!(names, [json!("read_file"), json!("get_info")]);
    let r = s.post(
        "/tools",
        &json!({"tool": "exec_shell_command", "params": {"command": "true"}}),
    );
    let e = r.expect_error(404, "not_found_error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("exec_shell_command"),
        "{e}"
    );
    // Streaming is exec_shell_command's only; asking it of another tool is a 404 too.
    let r = s.post("/tools", &json!({"tool": "get_info", "stream": true}));
    r.expect_error(404, "not_found_error");
    let r = s.request("POST", "/tools", Some(b"{not json"), &[]);
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["type"], "invalid_request_error");
}

#[test]
fn hostile_parameters_get_errors_not_panics() {
    let s = tools_server();
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path().to_str().unwrap();
    let call = |tool: &str, params: Value| {
        let body = json!({"tool": tool, "params": params}).to_string();
        s.request(
            "POST",
            "/tools",
            Some(body.as_bytes()),
            &[("x-tool-cwd", cwd)],
        )
    };
    let long = "*a".repeat(5000);
    let r = call("file_glob_search", json!({"path": ".", "include": long}));
    assert!(
        r.json()["error"].as_str().unwrap().contains("too long"),
        "{}",
        r.body
    );
    // A pattern whose compiled form is too large is an error, not a long compilation.
    let r = call(
        "grep_search",
        json!({"path": ".", "pattern": "\\w{1000}{1000}"}),
    );
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid regex"),
        "{}",
        r.body
    );
    for (tool, params) in [
        (
            "read_file",
            json!({"path": "x", "start_line": 1e300, "end_line": -1e300}),
        ),
        (
            "exec_shell_command",
            json!({"command": "true", "timeout": 1e300, "max_output_size": 1e300}),
        ),
        (
            "file_glob_search",
            json!({"path": ".", "max_depth": -9e18, "limit": 9e18}),
        ),
        (
            "grep_search",
            json!({"path": ".", "pattern": "a", "context_lines": 9e18}),
        ),
        (
            "edit_file",
            json!({"path": "x", "edits": [{"old_text": null, "new_text": "y"}]}),
        ),
        ("write_file", json!({"path": "", "content": "x"})),
    ] {
        let r = call(tool, params.clone());
        assert!(
            matches!(r.status, 200 | 400),
            "{tool} {params}: {} {}",
            r.status,
            r.body
        );
    }
    // The server still answers.
    assert_eq!(s.get("/health").status, 200);
}

#[test]
fn a_command_past_its_timeout_is_killed() {
    let s = tools_server();
    let t0 = Instant::now();
    let r = s.post(
        "/tools",
        &json!({"tool": "exec_shell_command", "params": {"command": "echo start; sleep 30 | cat", "timeout": 1}}),
    );
    assert_eq!(
        r.json()["plain_text_response"],
        "start\n\n[exit code: 1] [exit due to timed out]"
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

/// A client that leaves a streamed command ends it (the whole process group).
#[cfg(target_os = "linux")]
#[test]
fn a_stream_whose_client_leaves_kills_its_command() {
    let s = tools_server();
    let mut st = s.stream(
        "/tools",
        &json!({"tool": "exec_shell_command", "stream": true,
                "params": {"command": "echo $$; exec sleep 30", "timeout": 60}}),
    );
    let first: Value = serde_json::from_str(&st.next_event().unwrap()).unwrap();
    let pid: u32 = first["chunk"].as_str().unwrap().trim().parse().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(st);
    let t0 = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the command outlived its client"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
