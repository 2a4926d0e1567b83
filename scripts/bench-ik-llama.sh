#!/usr/bin/env bash
# hearth beside ik_llama.cpp's llama-bench (issue 16), alternating, same files, same threads:
# each round runs `hearth bench` in llama.cpp's order, `hearth bench --arithmetic fast`, then
# ik_llama.cpp on its defaults; prints every round, the medians, the ratios, and hearth's
# physical view (bytes read per token against the streaming-read bandwidth of the same run).
#
#   scripts/bench-ik-llama.sh [-r ROUNDS] [-t THREADS] [MODEL.gguf ...]
#
# IK_BENCH: ik_llama.cpp's llama-bench (default /work/ik-build/build/bin/llama-bench; build it
# with ../shared/bench/build-ik-llama.sh from a snapshot of ikawrakow/ik_llama.cpp). Models
# default to the two test models, plus the synthetic MoE of scripts/bench-moe.sh when it exists.
# Not run by CI.
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
ik="${IK_BENCH:-/work/ik-build/build/bin/llama-bench}"
if [ ! -x "$ik" ]; then
  echo "ik_llama.cpp's llama-bench not found at $ik (set IK_BENCH)" >&2
  exit 1
fi
if [ ${#models[@]} -eq 0 ]; then
  dir=$(scripts/fetch-models.sh)
  models=("$dir/SmolLM2-135M-Instruct.Q4_1.gguf" "$dir/gemma-3-270m-q4_k_m.gguf")
  moe="${TMPDIR:-/tmp}/hearth-synth-qwen3moe-q4_k_m.gguf"
  [ -f "$moe" ] && models+=("$moe")
fi
cargo build --release -p cli --quiet
out=$(mktemp -d)
for r in $(seq 1 "$rounds"); do
  for i in "${!models[@]}"; do
    m=${models[$i]}
    echo "round $r: $(basename "$m") (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    target/release/hearth bench -m "$m" -p 512 -n 128 -t "$threads" -r 3 --no-cold-load \
      -o json > "$out/hearth-$i-$r.json"
    target/release/hearth bench -m "$m" -p 512 -n 128 -t "$threads" -r 3 --no-cold-load \
      --arithmetic fast -o json > "$out/fast-$i-$r.json"
    LD_LIBRARY_PATH="$(dirname "$ik")" "$ik" -m "$m" -p 512 -n 128 -t "$threads" -r 3 -o json \
      > "$out/ik-$i-$r.json" 2>/dev/null
  done
done
python3 - "$out" "$rounds" "${models[@]}" <<'PY'
import json, os, statistics, sys
out, rounds, models = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
who = {"hearth": "hearth (llama order)", "fast": "hearth --arithmetic fast", "ik": "ik_llama.cpp"}
for i, m in enumerate(models):
    res, phys = {}, []
    for r in range(1, rounds + 1):
        for w in who:
            for t in json.load(open(f"{out}/{w}-{i}-{r}.json")):
                test = f"pp{t['n_prompt']}" if t["n_prompt"] else f"tg{t['n_gen']}"
                res.setdefault((w, test), []).append(t["avg_ts"])
                if w == "hearth" and test.startswith("tg") and t.get("read_bandwidth_bps"):
                    phys.append((t["avg_ts"], t["bytes_per_token"], t["read_bandwidth_bps"]))
    print(f"\n{os.path.basename(m)}, {rounds} rounds (t/s per round; median):")
    for test in ["pp512", "tg128"]:
        ik = statistics.median(res[("ik", test)])
        for w, name in who.items():
            v = res[(w, test)]
            line = f"  {test} {name:26} " + " ".join(f"{x:8.1f}" for x in v)
            line += f"   median {statistics.median(v):8.1f}"
            if w != "ik":
                line += f"   {statistics.median(v) / ik:.2f}× ik_llama.cpp"
            print(line)
    if phys:
        ts, b, bw = sorted(phys)[len(phys) // 2]
        print(f"  physical view (median hearth tg round): {b / 1e6:.1f} MB per token × {ts:.1f} t/s"
              f" = {ts * b / 1e9:.1f} GB/s, {100 * ts * b / bw:.0f} % of the streaming read of a"
              f" buffer that size ({bw / 1e9:.1f} GB/s)")
PY
