#!/usr/bin/env bash
# The IQ4_NL fixture (crates/engine/tests/fixtures/smollm3-iq4_nl/): the tiny smollm3's f16
# file (tests/fixtures/smollm3, from gen.sh) quantized to IQ4_NL by llama-quantize, and
# llama.cpp's logits at every position of 24 tokens (one batch, 1 thread) — its repacked
# iq4_nl_8x8 kernels for the matrices of a multiple of 8 rows, vec_dot for the others. Needs a
# llama.cpp build (scripts/build-llama-cpp.sh) and the torch venv (numpy). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${LLAMA_BUILD:-/work/llama-build}"
venv="${HEARTH_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/venv-torch}"
logits=$(scripts/llama-logits.sh "$build")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=crates/engine/tests/fixtures/smollm3-iq4_nl
ids=1,20,3,40,50,6,70,80,9,100,11,120,13,140,15,160,17,180,19,200,21,220,23,240
gunzip -c crates/engine/tests/fixtures/smollm3/model-f16.gguf.gz > "$work/f16.gguf"
LD_LIBRARY_PATH="$build/bin" "$build/bin/llama-quantize" "$work/f16.gguf" "$work/model.gguf" IQ4_NL 1 > /dev/null
"$logits" "$work/model.gguf" "ids:$ids" "$work/logits.f32" 1 > /dev/null
mkdir -p "$out"
gzip -9 -n -c "$work/model.gguf" > "$out/model.gguf.gz"
"$venv/bin/python" - "$work/logits.f32" "$ids" "$out/reference.json" <<'PY'
import json, sys
import numpy as np
sys.path.insert(0, "scripts/tiny-models")
from gen import fnv_rows, top
ids = [int(x) for x in sys.argv[2].split(",")]
a = np.fromfile(sys.argv[1], dtype="<f4").reshape(len(ids), -1)
ref = {"made_by": "scripts/tiny-models/gen-iq4nl.sh", "ids": ids,
       "fnv1a64_per_position": fnv_rows(a), "top20_per_position": [top(r, 20) for r in a]}
open(sys.argv[3], "w").write(json.dumps(ref, indent=1))
PY
