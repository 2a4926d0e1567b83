#!/usr/bin/env bash
# Tiny random checkpoints of the newer architectures and their references (see gen.py):
#
#   scripts/tiny-models/gen.sh qwen3moe [qwen2moe smollm3 mistral3 gpt-oss phi3]
#
# Needs the torch venv (~/.cache/hearth/venv-torch: torch, transformers, safetensors, numpy),
# the llama-cpp-python 0.3.36 sdist unpacked beside a scripts/build-llama-cpp.sh build
# (LLAMA_BUILD, default /work/llama-build; LLAMA_SRC, default its sibling llama-src), and a
# SmolLM2 tokenizer folder (TOKENIZER_DIR: tokenizer.json + tokenizer_config.json). Writes
# crates/engine/tests/fixtures/<arch>/. Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
build="${LLAMA_BUILD:-/work/llama-build}"
src_root="${LLAMA_SRC:-$(dirname "$build")/llama-src}"
llama="$src_root/llama_cpp_python-0.3.36/vendor/llama.cpp"
venv="${HEARTH_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/venv-torch}"
tokenizer="${TOKENIZER_DIR:-/work/shared/fixtures/hf/llama/hf}"
work="${WORK_DIR:-${TMPDIR:-/tmp}/hearth-tiny-models}"
logits=$(scripts/llama-logits.sh "$build")
for arch in "$@"; do
  PYTHONPATH="$llama/gguf-py" LD_LIBRARY_PATH="$build/bin" "$venv/bin/python" \
    scripts/tiny-models/gen.py "$arch" --work "$work" \
    --out "crates/engine/tests/fixtures/$arch" --tokenizer "$tokenizer" \
    --convert "$llama/convert_hf_to_gguf.py" --llama-logits "$logits"
done
