#!/usr/bin/env bash
# Regenerates crates/engine/tests/fixtures/grammars/llama_cpp.json: what llama.cpp itself
# (llama-completion, greedy, SmolLM2) generates under each grammar of that folder (copied from
# llama.cpp's grammars/) and under a few JSON schemas. hearth's logits are llama.cpp's, so under
# the same constraint greedy decoding must give the same text.
#
#   scripts/gen_grammar_fixtures.sh [LLAMA_BUILD_DIR]     # default /work/llama-build
#
# Needs llama-completion from scripts/build-llama-cpp.sh and the SmolLM2 test model
# (scripts/fetch-models.sh). Not run by CI; the fixture is committed.
set -euo pipefail
cd "$(dirname "$0")/.."

build="${1:-/work/llama-build}"
model="${HEARTH_TEST_MODELS:-$HOME/.cache/hearth/test-models}/SmolLM2-135M-Instruct.Q4_1.gguf"
dir=crates/engine/tests/fixtures/grammars
export LD_LIBRARY_PATH="$build/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

python3 - "$build/bin/llama-completion" "$model" "$dir" <<'PY'
import json, subprocess, sys
exe, model, d = sys.argv[1:]
person = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 20},
    "age": {"type": "integer", "minimum": 18, "maximum": 99},
    "pet": {"enum": ["cat", "dog", "fish"]},
    "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 16},
                "minItems": 1, "maxItems": 3}},
    "required": ["name", "age", "pet", "hobbies"], "additionalProperties": False}
cases = [
    ("json", {"gbnf": "json.gbnf"}, "Write a JSON object describing a cat:", 60),
    ("json_arr", {"gbnf": "json_arr.gbnf"}, "A JSON list of three fruits:", 40),
    ("list", {"gbnf": "list.gbnf"}, "A shopping list:", 40),
    ("arithmetic", {"gbnf": "arithmetic.gbnf"}, "Compute 12 times 7:", 24),
    ("chess", {"gbnf": "chess.gbnf"}, "The best chess opening moves are", 32),
    ("english", {"gbnf": "english.gbnf"}, "Tell me about the sea.", 32),
    ("japanese", {"gbnf": "japanese.gbnf"}, "Japan:", 24),
    ("c", {"gbnf": "c.gbnf"}, "/* add two numbers */\n", 48),
    ("person", {"json_schema": person}, "A person, as JSON:", 80),
]
out = []
for name, g, prompt, n in cases:
    args = [exe, "-m", model, "-p", prompt, "-n", str(n), "--temp", "0", "-t", "1",
            "-no-cnv", "--no-warmup", "-c", "512", "-fa", "off"]
    if "gbnf" in g:
        args += ["--grammar-file", f"{d}/{g['gbnf']}"]
    else:
        args += ["--json-schema", json.dumps(g["json_schema"])]
    r = subprocess.run(args, capture_output=True, check=True)
    raw = r.stdout
    assert raw.startswith(prompt.encode()), (name, raw)
    # llama-completion prints the prompt, the pieces' raw bytes (so a cut may end inside a
    # UTF-8 character), " [end of text]\n" at end-of-generation, then "\n\n".
    raw = raw[len(prompt.encode()):]
    assert raw.endswith(b"\n\n"), (name, raw)
    raw = raw[:-2]
    eog = raw.endswith(b" [end of text]\n")
    if eog:
        raw = raw[: -len(b" [end of text]\n")]
    out.append({"name": name, **g, "prompt": prompt, "n_predict": n, "eog": eog,
                "text": raw.decode(errors="replace"), "hex": raw.hex()})
    print(name, eog, raw, file=sys.stderr)
with open(f"{d}/llama_cpp.json", "w") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
    f.write("\n")
PY
