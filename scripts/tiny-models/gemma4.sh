#!/usr/bin/env bash
# Regenerates the tiny Gemma 4 fixtures: a random transformers checkpoint with a cut-down real
# Gemma 4 tokenizer, converted by llama.cpp's own convert_hf_to_gguf.py, with llama.cpp's and
# transformers' logits at every position of one prompt. See scripts/tiny-models/gemma4.py.
#
#   scripts/tiny-models/gemma4.sh [dense|moe] [LLAMA_BUILD_DIR]
#
# dense (default): the E-model-like fixture, f32/f16/q8_0, in crates/engine/tests/fixtures/gemma4/;
# moe: the 26B-A4B-like fixture (experts beside the dense MLP), f32/q8_0 and llama-quantize's
# Q4_K_M, with llama-completion's greedy text, in crates/engine/tests/fixtures/gemma4-moe/.
#
# Needs the venv with torch and transformers (~/.cache/hearth/venv-torch) and a llama.cpp build
# (scripts/build-llama-cpp.sh). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
variant="${1:-dense}"
build="${2:-/work/llama-build}"
case "$variant" in
  dense) dest=crates/engine/tests/fixtures/gemma4 ;;
  moe) dest=crates/engine/tests/fixtures/gemma4-moe ;;
  *) echo "variant must be dense or moe" >&2; exit 2 ;;
esac
venv="${HEARTH_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/venv-torch}"
LLAMA_LOGITS="$(scripts/llama-logits.sh "$build")"
export LLAMA_LOGITS
export LLAMA_VENDOR="$(dirname "$build")/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp"
work="${GEMMA4_WORK:-$(mktemp -d)}"
[ -n "${GEMMA4_WORK:-}" ] || trap 'rm -rf "$work"' EXIT
"$venv/bin/python" scripts/tiny-models/gemma4.py "$work" "$variant"
mkdir -p "$dest"
rm -f "$dest"/*
for f in "$work"/gemma4-*.gguf; do gzip -9 -n -c "$f" > "$dest/$(basename "$f").gz"; done
for f in "$work"/*.f32; do gzip -9 -n -c "$f" > "$dest/$(basename "$f").gz"; done
cp "$work/reference.json" "$dest/"
cp "$work/checkpoint/chat_template.jinja" "$dest/"
ls -la "$dest"
