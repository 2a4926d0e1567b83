#!/usr/bin/env bash
# Regenerates crates/engine/tests/fixtures/samplers/llama_cpp.json: llama.cpp's own samplers
# (`llama_sampler_*`, `common_sampler_init`) run on fixed logits, seeds and histories.
#
#   scripts/gen_sampler_fixtures.sh [LLAMA_BUILD_DIR]     # default /work/llama-build
#
# Needs a build from scripts/build-llama-cpp.sh (libllama and llama-common) and the SmolLM2
# test model (scripts/fetch-models.sh). Not run by CI; the fixture is committed.
set -euo pipefail
cd "$(dirname "$0")/.."

build="${1:-/work/llama-build}"
src_root="${LLAMA_SRC:-$(dirname "$build")/llama-src}"
src="$src_root/llama_cpp_python-0.3.36/vendor/llama.cpp"
if [ ! -f "$build/bin/libllama.so" ] || [ ! -f "$src/include/llama.h" ]; then
  echo "no llama.cpp build in $build (run scripts/build-llama-cpp.sh $build)" >&2
  exit 1
fi
common_lib=$(find "$build" -name 'libllama-common.*' \( -name '*.a' -o -name '*.so' \) | head -n1)
common_base=$(find "$build" -name 'libllama-common-base.a' | head -n1)
if [ -z "$common_lib" ]; then
  echo "no libllama-common in $build (build the llama-server target)" >&2
  exit 1
fi
models=$(scripts/fetch-models.sh | tail -n1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
g++ -std=c++17 -O2 -o "$tmp/gen" scripts/gen_sampler_fixtures.cpp \
  -I"$src/include" -I"$src/ggml/include" -I"$src/common" -I"$src/vendor" \
  "$common_lib" "$common_base" \
  $(find "$build" -name 'libcpp-httplib.a' | head -n1) \
  -L"$build/bin" -lllama -lggml -lggml-base -Wl,-rpath,"$build/bin" -lpthread
out=crates/engine/tests/fixtures/samplers/llama_cpp.json
"$tmp/gen" "$models/SmolLM2-135M-Instruct.Q4_1.gguf" > "$out.part"
mv "$out.part" "$out"
echo "wrote $out ($(wc -c < "$out") bytes)" >&2
