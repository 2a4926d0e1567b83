#!/usr/bin/env bash
# pp512/tg128 at 2 threads (`hearth bench`, 3 repetitions) for SmolLM2-135M-Instruct Q4_1
# requantized to each TYPE (--allow-requantize), for docs/quantization.md.
#
#   scripts/quant-bench.sh [OUT_DIR]     # one llama-bench markdown table per type on stdout
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
hearth=${HEARTH:-$root/target/debug/hearth}
out=${1:-/tmp/quant-bench}
models=${HEARTH_TEST_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/test-models}
src=$models/SmolLM2-135M-Instruct.Q4_1.gguf
types=${TYPES:-"Q8_0 Q6_K Q5_K_M Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 IQ4_NL IQ4_XS Q3_K_M Q3_K_S Q2_K"}
mkdir -p "$out"
for t in $types; do
  f=$out/$t.gguf
  "$hearth" quantize --allow-requantize "$src" "$f" "$t" 2 >/dev/null 2>&1
  echo "## $t"
  "$hearth" bench -m "$f" -p 512 -n 128 -t 2 -r 3 --no-cold-load 2>/dev/null
  rm -f "$f"
done
