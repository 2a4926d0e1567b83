#!/usr/bin/env python3
"""Records llama-server's answers to its built-in agent tools (`--tools all`) as the fixture
`crates/server/tests/fixtures/agent_tools.json`, which the server crate's tests replay against
`hearth serve`.

    scripts/gen_agent_tools_fixture.py [LLAMA_SERVER_BIN] [MODEL.gguf]

Two small trees (one a git work tree with a .gitignore) are built in a temporary folder from
the TREE below, llama-server is started on a free loopback port, and every call of CALLS is made
with `x-tool-cwd` naming the tree; the fixture holds the trees, GET /tools and each call with
its status and body, the temporary folder written as <ROOT>. Only the standard library is used.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(REPO, "crates/server/tests/fixtures/agent_tools.json")

BIG = "".join(f"line {i:05d} of a file larger than sixteen kilobytes\n" for i in range(1, 601))

# The tree every call runs in: path -> text (latin-1 escapes give raw bytes).
TREE = {
    "a.txt": "alpha\nbeta\ngamma\nBeta again\n",
    "crlf.txt": "one\r\ntwo\r\n",
    "nolf.txt": "first\nlast without newline",
    "big.txt": BIG,
    "long.txt": "x" * 20000 + "\nshort\n",
    "latin1.txt": "caf\xe9\n",
    "src/main.cpp": "int main() {\n  return 0; // TODO\n}\n",
    "src/util/helper.cpp": "// helper\nint helper() { return 1; }\n",
    "src/util/notes.md": "# notes\nTODO: more\n",
    "build/out.txt": "built artifact TODO\n",
    "node_modules/pkg/index.js": "TODO\n",
    "docs/readme.md": "docs (a+b)*c [x]\n",
    "quotes.txt": "say \u201chello\u201d  \nkeep\u00a0this\n",
}

# (tool, params, extra headers, how to compare): "exact" bodies, "lines" (the text's lines
# and the entries as sets: directory order is the system's), "error_prefix" (only the error
# text's start: regex engines word their errors differently), "status" (only the status).
CALLS = [
    ("read_file", {"path": "a.txt"}, {}, "exact"),
    ("read_file", {"path": "a.txt", "start_line": 2, "end_line": 3}, {}, "exact"),
    ("read_file", {"path": "a.txt", "append_loc": True, "start_line": 3}, {}, "exact"),
    ("read_file", {"path": "a.txt", "start_line": "x", "end_line": 2.7}, {}, "exact"),
    ("read_file", {"path": "a.txt", "end_line": -5}, {}, "exact"),
    ("read_file", {"path": "crlf.txt"}, {}, "exact"),
    ("read_file", {"path": "nolf.txt"}, {}, "exact"),
    ("read_file", {"path": "latin1.txt"}, {}, "exact"),
    ("read_file", {"path": "big.txt"}, {}, "exact"),
    ("read_file", {"path": "big.txt", "start_line": 100, "end_line": 103, "append_loc": True}, {}, "exact"),
    ("read_file", {"path": "big.txt", "start_line": 2, "end_line": 100000}, {}, "exact"),
    ("read_file", {"path": "long.txt", "end_line": 5}, {}, "exact"),
    ("read_file", {"path": "./src/../a.txt"}, {}, "exact"),
    ("read_file", {"path": "missing.txt"}, {}, "exact"),
    ("read_file", {"path": "src"}, {}, "exact"),
    ("read_file", {"path": "a.txt"}, {"x-resp-type": "base64"}, "exact"),
    ("read_file", {}, {}, "exact"),
    ("read_file", {"path": 5}, {}, "exact"),
    ("read_file", {"path": None}, {}, "exact"),
    ("read_file", ["a.txt"], {}, "exact"),
    ("read_file", {"path": "a.txt", "cwd": "/definitely/not/here"}, {}, "exact"),
    ("file_glob_search", {"path": "."}, {}, "lines"),
    ("file_glob_search", {"path": ".", "include": "*.cpp"}, {}, "lines"),
    ("file_glob_search", {"path": ".", "include": "src/*.cpp"}, {}, "lines"),
    ("file_glob_search", {"path": ".", "include": "**/util/*"}, {}, "lines"),
    ("file_glob_search", {"path": ".", "exclude": "*.txt"}, {}, "lines"),
    ("file_glob_search", {"path": ".", "type": "dir"}, {}, "lines"),
    ("file_glob_search", {"path": ".", "type": "all", "include": "*util*"}, {}, "lines"),
    ("file_glob_search", {"path": ".", "max_depth": 1, "include": "*.md"}, {}, "lines"),
    ("file_glob_search", {"path": ".", "max_depth": 2, "type": "all"}, {}, "lines"),
    ("file_glob_search", {"path": "src", "include": "[hm]*.cpp"}, {}, "lines"),
    ("file_glob_search", {"path": "src", "limit": 500}, {}, "lines"),
    ("file_glob_search", {"path": ".", "limit": 0}, {}, "exact"),
    ("file_glob_search", {"path": ".", "type": "bogus"}, {}, "exact"),
    ("file_glob_search", {"path": "missing"}, {}, "exact"),
    ("file_glob_search", {"path": "a.txt"}, {}, "exact"),
    ("grep_search", {"path": ".", "pattern": "TODO"}, {}, "lines"),
    ("grep_search", {"path": ".", "pattern": "beta", "ignore_case": True, "return_line_numbers": True}, {}, "lines"),
    ("grep_search", {"path": "a.txt", "pattern": "^gam", "context_lines": 1}, {}, "exact"),
    ("grep_search", {"path": "a.txt", "pattern": "a$", "context_lines": 5}, {}, "exact"),
    ("grep_search", {"path": ".", "pattern": "(a+b)*c [x]", "literal": True}, {}, "exact"),
    ("grep_search", {"path": ".", "pattern": "TODO", "include": "*.cpp", "return_line_numbers": True}, {}, "lines"),
    ("grep_search", {"path": ".", "pattern": "TODO", "exclude": "src/**"}, {}, "lines"),
    ("grep_search", {"path": ".", "pattern": "line 0"}, {}, "exact"),
    ("grep_search", {"path": ".", "pattern": "("}, {}, "error_prefix"),
    ("grep_search", {"path": "missing", "pattern": "a"}, {}, "exact"),
    ("grep_search", {"path": "."}, {}, "exact"),
    ("exec_shell_command", {"command": "echo hi; echo err >&2; exit 3"}, {}, "exact"),
    ("exec_shell_command", {"command": "cat a.txt | wc -l"}, {}, "exact"),
    ("exec_shell_command", {"command": "seq 1 1000", "max_output_size": 10}, {}, "exact"),
    ("exec_shell_command", {"command": "printf abc", "max_output_size": -1}, {}, "exact"),
    ("exec_shell_command", {"command": "printf abc", "max_output_size": 0}, {}, "exact"),
    ("exec_shell_command", {"command": "sleep 5", "timeout": 1}, {}, "exact"),
    ("exec_shell_command", {"command": "pwd"}, {}, "exact"),
    ("exec_shell_command", {"command": 7}, {}, "exact"),
    ("write_file", {"path": "new/dir/w.txt", "content": "one\ntwo \u201cq\u201d\nthree\n"}, {}, "exact"),
    ("read_file", {"path": "new/dir/w.txt"}, {}, "exact"),
    ("write_file", {"path": "src", "content": "x"}, {}, "exact"),
    ("write_file", {"path": "w2.txt", "content": 5}, {}, "exact"),
    ("edit_file", {"path": "new/dir/w.txt", "edits": [{"old_text": "one", "new_text": "ONE"}, {"old_text": "three\n", "new_text": "three\nfour\n"}]}, {}, "exact"),
    ("read_file", {"path": "new/dir/w.txt"}, {}, "exact"),
    ("edit_file", {"path": "new/dir/w.txt", "edits": [{"old_text": "two \"q\"", "new_text": "TWO"}]}, {}, "exact"),
    ("read_file", {"path": "new/dir/w.txt"}, {}, "exact"),
    ("edit_file", {"path": "quotes.txt", "edits": [{"old_text": "say \"hello\"", "new_text": "say bye"}]}, {}, "exact"),
    ("read_file", {"path": "quotes.txt"}, {}, "exact"),
    ("edit_file", {"path": "a.txt", "edits": [{"old_text": "eta", "new_text": "x"}]}, {}, "exact"),
    ("edit_file", {"path": "a.txt", "edits": [{"old_text": "alpha\nbeta", "new_text": "x"}, {"old_text": "beta", "new_text": "y"}]}, {}, "exact"),
    ("edit_file", {"path": "a.txt", "edits": [{"old_text": "delta", "new_text": "x"}]}, {}, "exact"),
    ("edit_file", {"path": "a.txt", "edits": [{"old_text": "alpha", "new_text": "alpha"}]}, {}, "exact"),
    ("edit_file", {"path": "a.txt", "edits": [{"old_text": "", "new_text": "x"}]}, {}, "exact"),
    ("edit_file", {"path": "a.txt", "edits": []}, {}, "exact"),
    ("edit_file", {"path": "a.txt", "edits": {"old_text": "a"}}, {}, "exact"),
    ("edit_file", {"path": "a.txt", "edits": [{"old_text": "alpha"}]}, {}, "exact"),
    ("edit_file", {"path": "a.txt", "edits": [3]}, {}, "exact"),
    ("edit_file", {"path": "missing.txt", "edits": [{"old_text": "a", "new_text": "b"}]}, {}, "exact"),
    ("get_info", {}, {}, "exact"),
    ("get_info", None, {}, "exact"),
    ("no_such_tool", {}, {}, "status"),
    ("exec_shell_command", {"command": "echo hi"}, {"x-tool-runtime": "fake:does-not-exist"}, "exact"),
    ("exec_shell_command", {"command": "echo hi"}, {"x-tool-runtime": "ssh:-oProxyCommand=touch /tmp/pwned"}, "exact"),
    ("exec_shell_command", {"command": "echo hi"}, {"x-tool-runtime": "docker-container:--privileged"}, "exact"),
]


def build_tree(root, git):
    for rel, text in TREE.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(text.encode("latin-1") if rel == "latin1.txt" else text.encode("utf-8"))
    if git:
        with open(os.path.join(root, ".gitignore"), "w") as f:
            f.write("docs/\n*.md\n")
        subprocess.run(["git", "init", "-q", root], check=True)
        subprocess.run(["git", "-C", root, "add", "a.txt", "src/main.cpp"], check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None, headers=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def main():
    bin_path = sys.argv[1] if len(sys.argv) > 1 else "/work/llama-build/bin/llama-server"
    model = sys.argv[2] if len(sys.argv) > 2 else os.path.expanduser(
        "~/.cache/hearth/test-models/SmolLM2-135M-Instruct.Q4_1.gguf")
    port = free_port()
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.dirname(bin_path))
    proc = subprocess.Popen(
        [bin_path, "-m", model, "-t", "1", "-c", "256", "-np", "1", "--port", str(port), "--tools", "all"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        for _ in range(200):
            try:
                if request(port, "GET", "/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        status, tools = request(port, "GET", "/tools")
        assert status == 200, tools
        fixture = {"tree": TREE, "tools": json.loads(tools), "runs": []}
        for git in (False, True):
            tmp = tempfile.mkdtemp(prefix="agent-tools-")
            root = os.path.join(tmp, "tree")
            try:
                build_tree(root, git)
                calls = []
                for tool, params, headers, compare in CALLS:
                    body = {"tool": tool}
                    if params is not None:
                        body["params"] = params
                    status, text = request(port, "POST", "/tools", body, dict(headers, **{"x-tool-cwd": root}))
                    calls.append({
                        "request": body,
                        "headers": headers,
                        "compare": compare,
                        "status": status,
                        "body": json.loads(text.replace(root, "<ROOT>")),
                    })
                # A streamed command: the events, each a JSON object.
                status, text = request(port, "POST", "/tools", {
                    "tool": "exec_shell_command", "params": {"command": "echo a; echo b; exit 2"},
                    "stream": True}, {"x-tool-cwd": root})
                events = [json.loads(l[len("data: "):]) for l in text.split("\n") if l.startswith("data: ")]
                calls.append({"request": "stream", "status": status, "events": events})
                fixture["runs"].append({"git": git, "calls": calls})
            finally:
                shutil.rmtree(tmp)
    finally:
        proc.terminate()
        proc.wait()
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
