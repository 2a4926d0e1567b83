#!/usr/bin/env bash
# Runs llama.cpp's own server test suite (tools/server/tests of the llama-cpp-python 0.3.36 sdist)
# against `hearth serve`, with SmolLM2 in place of the suite's Hub models.
#
#   scripts/llama-server-tests.sh [pytest args…]   (without test files: the files of issue 11)
#
# The sdist and a venv with the suite's requirements are fetched once from PyPI and cached in
# ${XDG_CACHE_HOME:-~/.cache}/hearth/. LLAMA_SERVER_BIN_PATH may name another server binary
# (llama-server itself) to compare. The servers listen on port 8080, or $PORT.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/hearth"
version=0.3.36
tree="$cache/llama-server-tests-$version"
suite="$tree/tools/server/tests"
if [ ! -f "$suite/.complete" ]; then
  tmp="$(mktemp -d)"
  # The sdist itself (pip prepares its metadata with prebuilt build tools; nothing is built).
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
    "llama-cpp-python==$version" -d "$tmp" >&2
  # The suite reads chat templates from models/templates and media from tools/mtmd by relative
  # paths (../../../models/…): keep llama.cpp's tree around it.
  tar -xzf "$tmp/llama_cpp_python-$version.tar.gz" -C "$tmp" \
    --wildcards '*/vendor/llama.cpp/tools/server/tests/*' \
    '*/vendor/llama.cpp/models/templates/*' '*/vendor/llama.cpp/tools/mtmd/test-*'
  rm -rf "$tree"
  mv "$tmp/llama_cpp_python-$version/vendor/llama.cpp" "$tree"
  rm -rf "$tmp"
  touch "$suite/.complete"
fi
hash="$(sha256sum "$suite/requirements.txt" | cut -c1-12)"
venv="$cache/venv-llama-server-tests-$hash"
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$suite/requirements.txt" >&2
  touch "$venv/.complete"
fi
models="$("$root/scripts/fetch-models.sh")"
if [ -z "${LLAMA_SERVER_BIN_PATH:-}" ]; then
  cargo build --quiet --release -p cli --manifest-path "$root/Cargo.toml"
  # One wrapper per checkout: several worktrees may run the suite at once.
  wrapper="$cache/hearth-as-llama-server-$(printf '%s' "$root" | sha256sum | cut -c1-12)"
  printf '#!/bin/sh\nexec "%s" serve "$@"\n' "$root/target/release/hearth" > "$wrapper"
  chmod +x "$wrapper"
  export LLAMA_SERVER_BIN_PATH="$wrapper"
fi
export HEARTH_TEST_MODEL="$models/SmolLM2-135M-Instruct.Q4_1.gguf"
export PYTHONPATH="$here/llama-server-tests${PYTHONPATH:+:$PYTHONPATH}"
cd "$suite"
explicit=0
for a in "$@"; do case "$a" in *.py|*::*) explicit=1 ;; esac; done
if [ $explicit -eq 0 ]; then
  set -- "$@" unit/test_basic.py unit/test_security.py unit/test_tokenize.py unit/test_completion.py \
    unit/test_chat_completion.py unit/test_template.py unit/test_ignore_eos.py unit/test_metrics.py
fi
exec "$venv/bin/python" -m pytest -p hearth_plugin -q -p no:cacheprovider "$@"
