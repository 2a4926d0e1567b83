#!/usr/bin/env bash
# Prints the path of a Python interpreter with the pinned API clients of
# scripts/test-clients-requirements.txt installed. The venv is made once and cached outside git
# (${XDG_CACHE_HOME:-~/.cache}/hearth/venv-clients-<hash of the requirements>).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
req="$here/test-clients-requirements.txt"
hash="$(sha256sum "$req" | cut -c1-12)"
venv="${XDG_CACHE_HOME:-$HOME/.cache}/hearth/venv-clients-$hash"
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin/python"
