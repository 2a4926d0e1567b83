#!/usr/bin/env bash
# Runs llama.cpp's own server test suite (tools/server/tests of the llama-cpp-python 0.3.36 sdist)
# against `hearth serve`, with SmolLM2 in place of the suite's Hub models.
#
#   scripts/llama-server-tests.sh [pytest args…]   (without test files: the files of issue 11)
#
# The sdist and a venv with the suite's requirements are fetched once from PyPI and cached in
# ${XDG_CACHE_HOME:-~/.cache}/hearth/. LLAMA_SERVER_BIN_PATH may name another server binary
# (llama-server itself) to compare.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/hearth"
version=0.3.36
suite="$cache/llama-server-tests-$version"
if [ ! -f "$suite/.complete" ]; then
  tmp="$(mktemp -d)"
  # The sdist from PyPI's simple index, checked against its sha256 (pip download would build
  # it to read its metadata).
  python3 - "$version" "$tmp/sdist.tar.gz" <<'PY'
import hashlib, re, sys, urllib.request
version, dest = sys.argv[1], sys.argv[2]
index = urllib.request.urlopen("https://pypi.org/simple/llama-cpp-python/").read().decode()
name = f"llama_cpp_python-{version}.tar.gz"
url = next(u for u in re.findall(r'href="([^"]+)"', index) if name + "#sha256=" in u)
data = urllib.request.urlopen(url).read()
if hashlib.sha256(data).hexdigest() != url.rsplit("#sha256=", 1)[1]:
    sys.exit(f"{name}: sha256 mismatch")
open(dest, "wb").write(data)
PY
  tar -xzf "$tmp/sdist.tar.gz" -C "$tmp"
  rm -rf "$suite"
  cp -r "$tmp/llama_cpp_python-$version/vendor/llama.cpp/tools/server/tests" "$suite"
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
  wrapper="$cache/hearth-as-llama-server"
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
