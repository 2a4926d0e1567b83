#!/usr/bin/env bash
# Regenerates crates/server/tests/fixtures/llama_server_probs.jsonl: llama-server's answers to
# requests for token probabilities on SmolLM2 (`completion_probabilities`, OpenAI `logprobs`),
# plus, per case, the log-probabilities llama.cpp computes for the same tokens when it
# evaluates prompt and answer as one batch (scripts/llama-logits.sh), the arithmetic
# `hearth serve` follows for every token.
#
#   scripts/gen_server_probs_fixture.sh [LLAMA_BUILD_DIR]     # default /work/llama-build
#
# Needs a build from scripts/build-llama-cpp.sh. Not run by CI; the fixture is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-/work/llama-build}"
logits_bin=$(scripts/llama-logits.sh "$build")
model="$(scripts/fetch-models.sh | tail -n1)/SmolLM2-135M-Instruct.Q4_1.gguf"
port=$((20000 + RANDOM % 20000))
LD_LIBRARY_PATH="$build/bin" "$build/bin/llama-server" -m "$model" --port "$port" \
  -t 1 -c 1024 -np 1 -fa off >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  curl -sf "localhost:$port/health" >/dev/null && break
  sleep 0.5
done
python3 scripts/gen_server_probs_fixture.py "http://localhost:$port" "$logits_bin" "$model" \
  > crates/server/tests/fixtures/llama_server_probs.jsonl
