#!/usr/bin/env bash
# Regenerates crates/kernels/tests/fixtures/ggml-iq-quant: ggml_quantize_chunk's output for the
# IQ lattice types on a few rows (see scripts/gen_ggml_iq_quant_fixtures.c), from llama.cpp's
# ggml library.
#
#   scripts/gen_ggml_iq_quant_fixtures.sh [LLAMA_BUILD_DIR]     # default /work/llama-build
#
# Needs a build from scripts/build-llama-cpp.sh. Not run by CI; the fixtures are committed.
set -euo pipefail
cd "$(dirname "$0")/.."

build="${1:-/work/llama-build}"
src_root="${LLAMA_SRC:-$(dirname "$build")/llama-src}"
src="$src_root/llama_cpp_python-0.3.36/vendor/llama.cpp"
if [ ! -f "$build/bin/libggml-base.so" ] || [ ! -f "$src/ggml/include/ggml.h" ]; then
  echo "no llama.cpp build in $build (run scripts/build-llama-cpp.sh $build)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -O2 -o "$tmp/gen" scripts/gen_ggml_iq_quant_fixtures.c -I"$src/ggml/include" \
  -L"$build/bin" -lggml-base -Wl,-rpath,"$build/bin" -lm
out=crates/kernels/tests/fixtures/ggml-iq-quant
mkdir -p "$out"
"$tmp/gen" "$out"
echo "wrote $(ls "$out" | wc -l) files to $out" >&2
