#!/usr/bin/env bash
# Build llama.cpp's reference tools (CPU only) from the source shipped in the
# llama-cpp-python==0.3.36 sdist on PyPI, outside git:
#
#   scripts/build-llama-cpp.sh [BUILD_DIR]      # default /work/llama-build
#
# Downloads only from PyPI (pip download), so it works where GitHub is unreachable. Benchmarks
# (docs/benchmarks.md), scripts/gen_sampler_fixtures.sh and conformance runs use the result:
#   BUILD_DIR/bin/{llama-server,llama-batched-bench,llama-bench,llama-cli,llama-completion}
#   BUILD_DIR/bin/libllama.so, libggml*.so; headers in SRC/include and SRC/ggml/include.
# The ISA flags are fixed rather than GGML_NATIVE: AMX is off because the native build on the
# development VM (which has AMX) crashes on any multi-token prompt (see docs/benchmarks.md).
# Takes 20-40 minutes on 2 cores; runs under `nice` with JOBS (default 2) jobs. Never run by CI.
set -euo pipefail

build="${1:-/work/llama-build}"
src_root="${LLAMA_SRC:-$(dirname "$build")/llama-src}"
version=0.3.36
jobs="${JOBS:-2}"

if ! command -v cmake >/dev/null; then
  echo "cmake not found; installing it with pip..." >&2
  python3 -m pip install --quiet --disable-pip-version-check cmake >&2
fi

src="$src_root/llama_cpp_python-$version/vendor/llama.cpp"
if [ ! -f "$src/CMakeLists.txt" ]; then
  mkdir -p "$src_root"
  python3 -m pip download --quiet --no-deps --no-binary :all: --disable-pip-version-check \
    -d "$src_root" "llama-cpp-python==$version" >&2
  tar -xzf "$src_root/llama_cpp_python-$version.tar.gz" -C "$src_root"
fi

cmake -S "$src" -B "$build" \
  -DCMAKE_BUILD_TYPE=Release \
  -DGGML_NATIVE=OFF \
  -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX_VNNI=ON \
  -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF >&2

nice -n 10 cmake --build "$build" -j "$jobs" \
  --target llama llama-server llama-batched-bench llama-bench llama-cli llama-completion >&2

echo "$build/bin"
