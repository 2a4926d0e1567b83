#!/usr/bin/env bash
# llama.cpp's mat-vec GB/s for weight types (scripts/bench_ggml_matvec.c), beside hearth's
# kernel benchmark. Usage: scripts/bench_ggml_matvec.sh [TYPE...]   (default: Q4_K MXFP4 and
# the IQ lattice types); LLAMA_BUILD_DIR overrides /work/llama-build.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${LLAMA_BUILD_DIR:-/work/llama-build}"
src_root="${LLAMA_SRC:-$(dirname "$build")/llama-src}"
src="$src_root/llama_cpp_python-0.3.36/vendor/llama.cpp"
if [ ! -f "$build/bin/libggml-cpu.so" ] || [ ! -f "$src/ggml/include/ggml-cpu.h" ]; then
  echo "no llama.cpp build in $build (run scripts/build-llama-cpp.sh $build)" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -std=c11 -O2 -o "$tmp/bench" scripts/bench_ggml_matvec.c -I"$src/ggml/include" \
  -L"$build/bin" -lggml-cpu -lggml-base -Wl,-rpath,"$build/bin" -lm
if [ $# -eq 0 ]; then set -- q4_K mxfp4 iq2_xxs iq2_xs iq2_s iq3_xxs iq3_s iq1_s iq1_m; fi
"$tmp/bench" "$@"
