#!/usr/bin/env bash
# Measures the table of docs/quantization.md: for each type `hearth quantize` writes, requantize
# SmolLM2-135M-Instruct Q4_1 (--allow-requantize; the largest model available here), then
# size, bits per weight, quantize time, perplexity and KL-divergence against the F16 base
# (`hearth perplexity -c 256 --chunks 8` on gpl-3.txt) and, with BENCH=1, pp512/tg128 at 2 threads.
#
#   scripts/quant-quality.sh [OUT_DIR]     # prints one TSV line per type; logs in OUT_DIR
#   IMATRIX=crates/quantize/tests/fixtures/smollm2.imatrix.gguf TYPES="Q4_K_M" scripts/quant-quality.sh
#                                          # the same with an importance matrix
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
hearth=${HEARTH:-$root/target/debug/hearth}
out=${1:-/tmp/quant-quality}
models=${HEARTH_TEST_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/test-models}
src=$models/SmolLM2-135M-Instruct.Q4_1.gguf
text=$root/crates/engine/tests/fixtures/perplexity/gpl-3.txt
types=${TYPES:-"Q8_0 Q6_K Q5_K_M Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 IQ4_NL IQ4_XS Q3_K_M Q3_K_S Q2_K Q5_K_S Q5_1 Q3_K_L"}
mkdir -p "$out"

"$hearth" quantize --allow-requantize "$src" "$out/F16.gguf" F16 2 >"$out/F16.quantize.log" 2>&1
[ -f "$out/base.kld" ] || "$hearth" perplexity -m "$out/F16.gguf" -f "$text" -c 256 -b 1024 -t 2 --chunks ${CHUNKS:-8} \
  --kl-divergence-base "$out/base.kld" >"$out/base.ppl.log" 2>&1

printf 'type\tMiB\tbpw\tquantize_s\tppl\tkld\tsame_top\n'
for t in $types; do
  f=$out/$t.gguf
  s=$(date +%s.%N)
  "$hearth" quantize --allow-requantize ${IMATRIX:+--imatrix "$IMATRIX"} "$src" "$f" "$t" 2 \
    >"$out/$t.quantize.log" 2>&1
  e=$(date +%s.%N)
  "$hearth" perplexity -m "$f" -f "$text" -c 256 -b 1024 -t 2 --chunks ${CHUNKS:-8} --kl-divergence-base "$out/base.kld" \
    --kl-divergence >"$out/$t.ppl.log" 2>&1
  size=$(grep -o 'quant size = *[0-9.]* MiB ([0-9.]* BPW)' "$out/$t.quantize.log" | tr -s ' ')
  mib=$(echo "$size" | awk '{print $4}'); bpw=$(echo "$size" | sed 's/.*(\([0-9.]*\) BPW)/\1/')
  ppl=$(grep -o 'PPL = [0-9.]* +/- [0-9.]*' "$out/$t.ppl.log" | tail -1 | sed 's/PPL = //')
  kld=$(grep -i 'Mean *KLD' "$out/$t.ppl.log" | head -1 | sed 's/.*: *//')
  top=$(grep -i 'Same top p' "$out/$t.ppl.log" | head -1 | sed 's/.*: *//')
  printf '%s\t%s\t%s\t%.2f\t%s\t%s\t%s\n' "$t" "$mib" "$bpw" "$(echo "$e - $s" | bc)" "$ppl" "$kld" "$top"
  if [ -n "${BENCH:-}" ]; then
    "$hearth" bench -m "$f" -p 512 -n 128 -t 2 >"$out/$t.bench.log" 2>&1 || true
  fi
  [ "$t" = F16 ] || [ -n "${KEEP:-}" ] || rm -f "$f"
done
