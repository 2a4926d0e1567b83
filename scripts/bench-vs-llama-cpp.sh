#!/usr/bin/env bash
# hearth beside llama.cpp, alternating, on the test models (or the GGUF files given):
#
#   scripts/bench-vs-llama-cpp.sh [-r ROUNDS] [-t 1,2] [MODEL.gguf ...]
#
# Needs llama-cpp-python (pip install llama-cpp-python==0.3.36, which builds llama.cpp for this
# CPU); prints the ratio table that docs/benchmarks.md records.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import llama_cpp" 2>/dev/null; then
  echo "llama-cpp-python is not installed, so llama.cpp cannot be measured here." >&2
  echo "Install it with: pip install llama-cpp-python==0.3.36 (builds llama.cpp, 15-30 min on 2 cores)" >&2
  exit 1
fi

args=()
models=()
while [ $# -gt 0 ]; do
  case "$1" in
    -r|-t|-p|-n|--reps) args+=("$1" "$2"); shift 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
if [ ${#models[@]} -eq 0 ]; then
  dir=$(scripts/fetch-models.sh)
  models=("$dir/SmolLM2-135M-Instruct.Q4_1.gguf" "$dir/gemma-3-270m-q4_k_m.gguf")
fi

cargo build --release -p cli --quiet
python3 scripts/bench_vs_llama_cpp.py "${args[@]}" "${models[@]}"
