#!/usr/bin/env bash
# Mixture-of-experts speed: a real-shaped synthetic qwen3moe (crates/engine/examples/synth_moe.rs,
# written by our GGUF writer, Q4_K_M mix) under `hearth bench` and llama.cpp's `llama-bench`,
# alternating, same file, same threads; prints each round and the medians.
#
#   scripts/bench-moe.sh [ROUNDS] [THREADS]        # default 3 rounds, 2 threads
#
# LLAMA_BUILD (default /work/llama-build) holds llama-bench; MOE_MODEL the model file (made
# if missing, ~1.2 GB; the tokenizer comes from the tiny qwen3moe fixture). Not run by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
threads="${2:-2}"
build="${LLAMA_BUILD:-/work/llama-build}"
model="${MOE_MODEL:-${TMPDIR:-/tmp}/hearth-synth-qwen3moe-q4_k_m.gguf}"
cargo build --release -p cli -p engine --example synth_moe --quiet
if [ ! -f "$model" ]; then
  tok="${TMPDIR:-/tmp}/hearth-qwen3moe-tokenizer.gguf"
  gunzip -c crates/engine/tests/fixtures/qwen3moe/model-q8_0.gguf.gz > "$tok"
  target/release/examples/synth_moe "$tok" "$model"
fi
out=$(mktemp -d)
for r in $(seq 1 "$rounds"); do
  target/release/hearth bench -m "$model" -p 512 -n 128 -t "$threads" -r 3 -o json > "$out/hearth-$r.json"
  LD_LIBRARY_PATH="$build/bin" "$build/bin/llama-bench" -m "$model" -p 512 -n 128 -t "$threads" \
    -r 3 -fa 0 -o json > "$out/llama-$r.json" 2>/dev/null
  echo "round $r done" >&2
done
python3 - "$out" "$rounds" <<'EOF'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
res = {"hearth": {}, "llama.cpp": {}}
for r in range(1, rounds + 1):
    for who, f in [("hearth", f"{out}/hearth-{r}.json"), ("llama.cpp", f"{out}/llama-{r}.json")]:
        for t in json.load(open(f)):
            test = f"pp{t['n_prompt']}" if t["n_prompt"] else f"tg{t['n_gen']}"
            res[who].setdefault(test, []).append(t["avg_ts"])
            print(f"round {r} {who:9} {test}: {t['avg_ts']:.2f} t/s")
for test in ["pp512", "tg128"]:
    h = statistics.median(res["hearth"][test])
    l = statistics.median(res["llama.cpp"][test])
    print(f"{test}: hearth {h:.2f} t/s, llama.cpp {l:.2f} t/s, ratio {h / l:.2f}")
EOF
