#!/usr/bin/env bash
# The Q4_K_M mixture-of-experts fixture (crates/engine/tests/fixtures/qwen3moe-q4_k_m/): a
# 2-layer synthetic qwen3moe written by our GGUF writer (crates/engine/examples/synth_moe.rs:
# 8 experts, 3 per token, Q4_K with Q6_K for layer 1's attn_v and ffn_down_exps, as
# llama-quantize's Q4_K_M picks), and llama.cpp's logits at every position of 24 tokens (one
# batch, 1 thread). Needs the torch venv (gguf-py) and a llama.cpp build, as gen.sh. Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${LLAMA_BUILD:-/work/llama-build}"
src_root="${LLAMA_SRC:-$(dirname "$build")/llama-src}"
llama="$src_root/llama_cpp_python-0.3.36/vendor/llama.cpp"
venv="${HEARTH_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/venv-torch}"
logits=$(scripts/llama-logits.sh "$build")
work=$(mktemp -d)
out=crates/engine/tests/fixtures/qwen3moe-q4_k_m
ids=1,20,3,40,50,6,70,80,9,100,11,120,13,140,15,160,17,180,19,200,21,220,23,240
PYTHONPATH="$llama/gguf-py" "$venv/bin/python" scripts/tiny-models/spm_vocab.py "$work/tok.gguf"
cargo run --release -q -p engine --example synth_moe -- "$work/tok.gguf" "$work/model.gguf" 2 256 8 3 256
"$logits" "$work/model.gguf" "ids:$ids" "$work/logits.f32" 1 > /dev/null
mkdir -p "$out"
gzip -9 -c "$work/model.gguf" > "$out/model.gguf.gz"
"$venv/bin/python" - "$work/logits.f32" "$ids" "$out/reference.json" <<'PY'
import json, sys
import numpy as np
sys.path.insert(0, "scripts/tiny-models")
from gen import fnv_rows, top
ids = [int(x) for x in sys.argv[2].split(",")]
a = np.fromfile(sys.argv[1], dtype="<f4").reshape(len(ids), -1)
ref = {"made_by": "scripts/tiny-models/gen-q4km.sh", "ids": ids,
       "fnv1a64_per_position": fnv_rows(a), "top20_per_position": [top(r, 20) for r in a]}
open(sys.argv[3], "w").write(json.dumps(ref, indent=1))
PY
rm -rf "$work"
