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
# Chunks of 160 tokens, four as four sequences of one call of 640, which llama.cpp cuts into
# micro-batches of 4 × 128 and 4 × 32 tokens; the fifth chunk alone.
run -m "$model" -f perplexity/gpl-3.txt -c 160 -b 640 --chunks 5 -t 1 -fa off \
  -o imatrix/smollm2-c160-b640.gguf > /dev/null 2>&1
# Chunks of 70 in calls of 32: the third call of each chunk has 6 tokens, fewer than the
# 16 rows llama.cpp's collector takes, so 64 of every 70 tokens are counted.
run -m "$model" -f perplexity/gpl-3.txt -c 70 -b 32 --chunks 2 -t 1 -fa off \
  -o imatrix/smollm2-c70-b32.gguf > /dev/null 2>&1
# The tiny qwen3moe (tests/fixtures/qwen3moe, q8_0): per-expert sums and counts of
# MUL_MAT_ID, chunks of 64 on the first 6000 bytes of the text.
head -c 6000 perplexity/gpl-3.txt > imatrix/.text.txt
# mixtures of experts: qwen3moe; qwen2moe (shared experts and their gate); Gemma 4's 26B-A4B
# layer (a fused gate_up per expert)
for m in qwen3moe:qwen3moe/model-q8_0.gguf.gz qwen2moe:qwen2moe/model-q8_0.gguf.gz \
  gemma4-moe:gemma4-moe/gemma4-q8_0.gguf.gz; do
  gzip -dc "${m#*:}" > imatrix/.model.gguf
  run -m imatrix/.model.gguf -f imatrix/.text.txt -c 64 -b 64 --chunks 4 -t 1 -fa off \
    -o "imatrix/${m%%:*}-c64.gguf" > /dev/null 2>&1
done
rm -f imatrix/.model.gguf imatrix/.text.txt
# llama.cpp's logger is asynchronous and often loses lines at exit (it prints whole lines): take
# the first run whose rows number the tensors and layers its headers announce.
stats() {
  run -m "$model" --show-statistics --in-file imatrix/smollm2-c160-b640.gguf \
    -lv 4 --no-log-prefix --no-log-timestamps 2>&1 | cat
}
complete() {
  local n_t n_l rows
  n_t=$(grep -oP '\(\K[0-9]+(?= tensors\))' <<< "$1") || return 1
  n_l=$(grep -oP '\(\K[0-9]+(?= layers\))' <<< "$1") || return 1
  rows=$(grep -cP '^ *(-|[0-9]+)\t' <<< "$1")
  [ "$rows" -eq $((n_t + n_l)) ]
}
found=""
for _ in $(seq 30); do
  cur=$(stats)
  if complete "$cur"; then
    found=1
    break
  fi
done
[ -n "$found" ] || { echo "llama-imatrix --show-statistics never printed a whole table" >&2; exit 1; }
stats_file=imatrix/smollm2-c160-b640.stats.txt
# $(...) dropped the trailing newlines: the table ends with one empty line.
printf '%s\n\n' "$cur" > "$stats_file"
ls -l imatrix >&2
