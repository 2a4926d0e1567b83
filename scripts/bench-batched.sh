#!/usr/bin/env bash
# `hearth batched-bench` beside llama.cpp's `llama-batched-bench` (issue 10), alternating, same
# files, same threads, `-npp 128 -ntg 128 -npl 1,2,4,8`; prints every round's S_TG, the medians,
# the ratios to llama.cpp, and hearth's own S_TG at the largest npl over npl 1.
#
#   scripts/bench-batched.sh [-r ROUNDS] [-t THREADS] [MODEL.gguf ...]
#
# LLAMA_BUILD (default /work/llama-build) holds llama-batched-bench (scripts/build-llama-cpp.sh);
# run with `-fa off`, as hearth's attention is llama.cpp's non-flash path. Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3
threads=2
models=()
while [ $# -gt 0 ]; do
  case "$1" in
    -r) rounds=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    *) models+=("$1"); shift ;;
  esac
done
build="${LLAMA_BUILD:-/work/llama-build}"
if [ ${#models[@]} -eq 0 ]; then
  dir=$(scripts/fetch-models.sh)
  models=("$dir/SmolLM2-135M-Instruct.Q4_1.gguf" "$dir/gemma-3-270m-q4_k_m.gguf")
fi
cargo build --release -p cli --quiet
args=(-npp 128 -ntg 128 -npl 1,2,4,8 -t "$threads" -c 2048)
out=$(mktemp -d)
for r in $(seq 1 "$rounds"); do
  for i in "${!models[@]}"; do
    m=${models[$i]}
    echo "round $r: $(basename "$m") (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    target/release/hearth batched-bench -m "$m" "${args[@]}" -o json 2>/dev/null \
      | grep '^{' > "$out/hearth-$i-$r.jsonl"
    LD_LIBRARY_PATH="$build/bin" "$build/bin/llama-batched-bench" -m "$m" "${args[@]}" -fa off \
      --output-format jsonl 2>/dev/null | grep '^{' > "$out/llama-$i-$r.jsonl"
  done
done
python3 - "$out" "$rounds" "${models[@]}" <<'PY'
import json, os, statistics, sys
out, rounds, models = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for i, m in enumerate(models):
    s = {}
    for r in range(1, rounds + 1):
        for who in ["hearth", "llama"]:
            for line in open(f"{out}/{who}-{i}-{r}.jsonl"):
                j = json.loads(line)
                s.setdefault((who, j["pl"]), []).append((j["speed_tg"], j["speed_pp"]))
    print(f"\n{os.path.basename(m)}, {rounds} rounds: S_TG t/s per round (median), S_PP median")
    pls = sorted({pl for (_, pl) in s})
    for pl in pls:
        h = [x[0] for x in s[("hearth", pl)]]
        l = [x[0] for x in s[("llama", pl)]]
        hp = statistics.median(x[1] for x in s[("hearth", pl)])
        lp = statistics.median(x[1] for x in s[("llama", pl)])
        print(f"  B={pl}: hearth " + " ".join(f"{x:7.1f}" for x in h)
              + f" ({statistics.median(h):7.1f})  llama.cpp " + " ".join(f"{x:7.1f}" for x in l)
              + f" ({statistics.median(l):7.1f})  ratio {statistics.median(h) / statistics.median(l):.2f}×"
              + f"  S_PP {hp:.0f} vs {lp:.0f}")
    h1 = statistics.median(x[0] for x in s[("hearth", pls[0])])
    hn = statistics.median(x[0] for x in s[("hearth", pls[-1])])
    print(f"  hearth S_TG at B={pls[-1]} over B={pls[0]}: {hn / h1:.2f}×")
PY
