#!/usr/bin/env bash
# A Python venv with huggingface_hub, for the tests that check hearth and Python share one
# Hugging Face cache. Created once under ${XDG_CACHE_HOME:-~/.cache}/hearth/venv-hf; prints the
# venv's python on its last line.
set -euo pipefail
venv="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/venv-hf"
version=2.4.0
if ! "$venv/bin/python" -c "import huggingface_hub as h; assert h.__version__ == '$version'" 2>/dev/null; then
  echo "creating $venv (huggingface_hub==$version)..." >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "huggingface_hub==$version" >&2
fi
echo "$venv/bin/python"
