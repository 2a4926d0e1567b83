#!/usr/bin/env bash
# Regenerates crates/engine/tests/fixtures/imatrix/: llama.cpp's own `llama-imatrix` files for
# SmolLM2 on the perplexity fixture text, and its `--show-statistics` table for one of them.
#
#   scripts/gen_imatrix_fixtures.sh [LLAMA_BUILD_DIR]     # default /work/llama-build
#
# Needs llama-imatrix from scripts/build-llama-cpp.sh and the SmolLM2 test model
# (scripts/fetch-models.sh). Not run by CI; the fixtures are committed. `-fa off`: hearth
# reproduces llama.cpp's exact (non-flash) attention, so the files agree bit for bit.
set -euo pipefail
cd "$(dirname "$0")/.."

build="${1:-/work/llama-build}"
tool="$build/bin/llama-imatrix"
if [ ! -x "$tool" ]; then
  echo "no llama-imatrix in $build/bin (cmake --build $build --target llama-imatrix)" >&2
  exit 1
fi
models=$(scripts/fetch-models.sh | tail -n1)
model="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
run() { LD_LIBRARY_PATH="$build/bin" "$tool" "$@"; }

# Paths relative to the fixture folder: the file records the text's path as given.
cd crates/engine/tests/fixtures
mkdir -p imatrix
# Four chunks of 64 tokens as four sequences of one batch.
run -m "$model" -f perplexity/gpl-3.txt -c 64 -b 256 --chunks 4 -t 1 -fa off \
  -o imatrix/smollm2-c64-b256.gguf > /dev/null 2>&1
# Chunks of 70 in calls of 32: the third call of each chunk has 6 tokens, fewer than the
# 16 rows llama.cpp's collector takes, so 64 of every 70 tokens are counted.
run -m "$model" -f perplexity/gpl-3.txt -c 70 -b 32 --chunks 2 -t 1 -fa off \
  -o imatrix/smollm2-c70-b32.gguf > /dev/null 2>&1
run -m "$model" --show-statistics --in-file imatrix/smollm2-c64-b256.gguf \
  -lv 4 --no-log-prefix --no-log-timestamps > imatrix/smollm2-c64-b256.stats.txt 2>&1
ls -l imatrix >&2
