#!/usr/bin/env python3
"""Records llama-server's `/infill` answers as the fixture
`crates/server/tests/fixtures/infill.json`, which the server crate's tests replay against
`hearth serve`.

    PYTHONPATH=<llama.cpp>/gguf-py python scripts/gen_infill_fixture.py LLAMA_SERVER_BIN SMOLLM2.gguf

SmolLM2 has no fill-in-the-middle tokens, so the model is SmolLM2 with four unused special
tokens renamed (`FIM_RENAMES`, the same edit the test makes with hearth's GGUF writer):
llama.cpp then finds `<fim_prefix>`, `<fim_suffix>`, `<fim_middle>` and `<|file_sep|>` by
their text, and SmolLM2's own `<reponame>` is the repo token. llama-server runs it with the
flags of `SERVER_ARGS` (as the test's hearth server), greedy, and every request of `CASES` is
recorded with its status and answer; the unedited model's refusal and one case with
`--spm-infill` too; and, for Ollama's `/api/generate` with a `suffix`, llama-server's
`/completion` of the same text laid out between the FIM tokens (SmolLM2 adds no BOS).
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import gguf
from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
OUT = os.path.join(REPO, "crates/server/tests/fixtures/infill.json")

# token id -> new text (SmolLM2's <gh_stars>, <issue_start>, <issue_comment>, <file_sep>)
FIM_RENAMES = {7: "<fim_prefix>", 8: "<fim_suffix>", 9: "<fim_middle>", 5: "<|file_sep|>"}
SERVER_ARGS = ["-c", "2048", "-np", "2", "-t", "1", "-b", "256", "--temp", "0", "--seed", "1"]

PREFIX = '#include <cstdio>\n#include "llama.h"\n\nint main() {\n'
LONG_PREFIX = "".join(f"    int v{i} = {i} * {i};\n" for i in range(60)) + PREFIX
LONG_EXTRA = [
    {"filename": f"src/file{i}.c", "text": "".join(f"int f{i}_{j}(void) {{ return {j}; }}\n" for j in range(25))}
    for i in range(6)
]
CASES = [
    {"input_prefix": PREFIX, "prompt": "    int n_threads = llama_", "input_suffix": "}\n", "n_predict": 16},
    {"input_extra": [{"filename": "llama.h", "text": "LLAMA_API int32_t llama_n_threads();\n"}],
     "input_prefix": PREFIX, "prompt": "    int n_threads = llama_", "input_suffix": "}\n", "n_predict": 16},
    # no file name: "tmp"; no prompt
    {"input_extra": [{"text": "def add(a, b):\n    return a + b\n"}],
     "input_prefix": "def main():\n    x = ", "input_suffix": "\n    print(x)\n", "n_predict": 12},
    # the prefix longer than 3/4 of a batch keeps its end; the suffix its start
    {"input_prefix": LONG_PREFIX, "prompt": "    return ", "input_suffix": "}\n" * 80, "n_predict": 8},
    # more extra context than the slot leaves keeps its end
    {"input_extra": LONG_EXTRA, "input_prefix": PREFIX, "input_suffix": "}\n", "n_predict": 8},
    # token ids mixed into the prefix
    {"input_prefix": ["int x = ", 33, ";\n"], "input_suffix": "", "n_predict": 6},
    # streamed
    {"input_prefix": PREFIX, "prompt": "    int n_threads = llama_", "input_suffix": "}\n", "n_predict": 16,
     "stream": True},
]
# Ollama's /api/generate with a suffix, as its code-model templates lay it out
# (<PRE>prompt<SUF>suffix<MID>): llama-server's /completion given that layout as token ids.
OLLAMA_INSERT = [
    {"prompt": "def main():\n    x = ", "suffix": "\n    print(x)\n", "num_predict": 12},
    {"prompt": "int add(int a, int b) {\n    return ", "suffix": ";\n}\n", "num_predict": 8},
]
BAD_EXTRA = [{}, {"filename": "ok"}, {"filename": 123}, {"filename": 123, "text": "abc"},
             {"filename": 123, "text": 456}]


def edit(src, dst):
    reader = gguf.GGUFReader(src)
    tokens = list(reader.get_field("tokenizer.ggml.tokens").contents())
    for i, t in FIM_RENAMES.items():
        tokens[i] = t
    arch = reader.get_field("general.architecture").contents()
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    details = MetadataDetails(gguf.GGUFValueType.ARRAY, tokens, sub_type=gguf.GGUFValueType.STRING)
    copy_with_new_metadata(reader, writer, {"tokenizer.ggml.tokens": details}, [])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def serve(binary, model, extra_args=()):
    port = free_port()
    p = subprocess.Popen([binary, "-m", model, "--port", str(port), "--host", "127.0.0.1", *SERVER_ARGS,
                          *extra_args],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return p, port
        except Exception:
            time.sleep(0.1)
    p.kill()
    raise SystemExit("llama-server did not start")


def answer(status, text, stream):
    if stream:
        events = [json.loads(l[6:]) for l in text.splitlines() if l.startswith("data: ")]
        return {"status": status, "content": "".join(e.get("content", "") for e in events),
                "last": {k: events[-1].get(k) for k in ("stop", "stop_type", "tokens_evaluated",
                                                          "tokens_predicted")}}
    body = json.loads(text)
    if status != 200:
        return {"status": status, "error": body.get("error")}
    return {"status": status, **{k: body.get(k) for k in ("content", "prompt", "tokens_evaluated",
                                                          "tokens_predicted", "stop_type")}}


def main():
    binary, model = sys.argv[1], sys.argv[2]
    fixture = {"generator": "scripts/gen_infill_fixture.py", "fim_renames": FIM_RENAMES,
               "server_args": SERVER_ARGS, "cases": [], "bad_extra": []}
    p, port = serve(binary, model)
    try:
        s, t = post(port, "/infill", CASES[0])
        fixture["unsupported"] = answer(s, t, False)
    finally:
        p.kill()
    with tempfile.TemporaryDirectory() as tmp:
        edited = os.path.join(tmp, "smollm2-fim.gguf")
        edit(model, edited)
        p, port = serve(binary, edited)
        try:
            for case in CASES:
                s, t = post(port, "/infill", case)
                fixture["cases"].append({"request": case, "answer": answer(s, t, case.get("stream", False))})
            fixture["ollama_insert"] = []
            for case in OLLAMA_INSERT:
                ids = [7, case["prompt"], 8, case["suffix"], 9]
                s, t = post(port, "/completion", {"prompt": ids, "n_predict": case["num_predict"]})
                fixture["ollama_insert"].append({"request": case, "answer": answer(s, t, False)})
            for extra in BAD_EXTRA:
                s, t = post(port, "/infill", {**CASES[0], "input_extra": [extra]})
                fixture["bad_extra"].append({"input_extra": extra, "answer": answer(s, t, False)})
        finally:
            p.kill()
        # --spm-infill: the suffix before the prefix
        p, port = serve(binary, edited, ["--spm-infill"])
        try:
            s, t = post(port, "/infill", CASES[1])
            fixture["spm_case"] = {"request": CASES[1], "answer": answer(s, t, False)}
        finally:
            p.kill()
    with open(OUT, "w") as f:
        json.dump(fixture, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
