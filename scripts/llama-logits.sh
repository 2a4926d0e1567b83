#!/usr/bin/env bash
# Builds scripts/llama-logits.cpp (llama.cpp's logits at every position of a prompt) against a
# scripts/build-llama-cpp.sh build and prints the binary's path:
#
#   bin=$(scripts/llama-logits.sh [LLAMA_BUILD_DIR])     # default /work/llama-build
#   "$bin" model.gguf "Hello world" out.f32 1
#
# Used by the fixture generators of tiny random models; not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-/work/llama-build}"
src_root="${LLAMA_SRC:-$(dirname "$build")/llama-src}"
src="$src_root/llama_cpp_python-0.3.36/vendor/llama.cpp"
if [ ! -f "$build/bin/libllama.so" ] || [ ! -f "$src/include/llama.h" ]; then
  echo "no llama.cpp build in $build (run scripts/build-llama-cpp.sh $build)" >&2
  exit 1
fi
out="$build/bin/llama-logits"
if [ ! -x "$out" ] || [ scripts/llama-logits.cpp -nt "$out" ]; then
  g++ -std=c++17 -O2 -o "$out" scripts/llama-logits.cpp \
    -I"$src/include" -I"$src/ggml/include" \
    -L"$build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$build/bin" -lpthread
fi
echo "$out"
