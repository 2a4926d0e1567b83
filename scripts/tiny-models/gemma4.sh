#!/usr/bin/env bash
# Regenerates the tiny Gemma 4 fixtures (crates/engine/tests/fixtures/gemma4/): a random
# transformers checkpoint with a cut-down real Gemma 4 tokenizer, converted by llama.cpp's own
# convert_hf_to_gguf.py to f32/f16/q8_0, with llama.cpp's and transformers' logits at every
# position of one prompt. See scripts/tiny-models/gemma4.py.
#
#   scripts/tiny-models/gemma4.sh [LLAMA_BUILD_DIR]
#
# Needs the venv with torch and transformers (~/.cache/hearth/venv-torch) and a llama.cpp build
# (scripts/build-llama-cpp.sh). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${1:-/work/llama-build}"
venv="${HEARTH_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/venv-torch}"
LLAMA_LOGITS="$(scripts/llama-logits.sh "$build")"
export LLAMA_LOGITS
export LLAMA_VENDOR="$(dirname "$build")/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp"
work="${GEMMA4_WORK:-$(mktemp -d)}"
[ -n "${GEMMA4_WORK:-}" ] || trap 'rm -rf "$work"' EXIT
"$venv/bin/python" scripts/tiny-models/gemma4.py "$work"
dest=crates/engine/tests/fixtures/gemma4
mkdir -p "$dest"
rm -f "$dest"/*
for f in "$work"/gemma4-*.gguf; do gzip -9 -n -c "$f" > "$dest/$(basename "$f").gz"; done
for f in "$work"/*.f32; do gzip -9 -n -c "$f" > "$dest/$(basename "$f").gz"; done
cp "$work/reference.json" "$dest/"
cp "$work/checkpoint/chat_template.jinja" "$dest/"
ls -la "$dest"
