#!/usr/bin/env bash
# Builds scripts/llama-tokenize-ref.cpp against a scripts/build-llama-cpp.sh build and writes
# llama.cpp's tokenization (add_special, parse_special) and detokenization of every text of a
# conformance vocabulary's .inp file as JSON:
#
#   scripts/llama-tokenize-ref.sh gemma-4 [TEXTS.inp] > tests/fixtures/vocab/gemma-4-detok.json
#
# The vocabulary (and by default the .inp) come from the llama-cpp-python 0.3.36 sdist's
# llama.cpp models/; the Gemma 4 fixtures use both its .inp and gemma-4-extra.inp (special
# tokens, long newline runs).
# Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
name="$1"
build="${LLAMA_BUILD:-/work/llama-build}"
src="$(dirname "$build")/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp"
out="$build/bin/llama-tokenize-ref"
if [ ! -x "$out" ] || [ scripts/llama-tokenize-ref.cpp -nt "$out" ]; then
  g++ -std=c++17 -O2 -o "$out" scripts/llama-tokenize-ref.cpp \
    -I"$src/include" -I"$src/ggml/include" \
    -L"$build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$build/bin" -lpthread
fi
"$out" "$src/models/ggml-vocab-$name.gguf" "${2:-$src/models/ggml-vocab-$name.gguf.inp}" 2>/dev/null
