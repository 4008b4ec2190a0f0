#!/usr/bin/env bash
# Creates .venv (if missing) and installs the pinned CPU dependencies and l3.
# Idempotent: re-running only installs what changed. L3_REQUIREMENTS picks the
# requirements file (requirements-gpu.txt on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
REQ=${L3_REQUIREMENTS:-requirements.txt}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.l3-installed
want="$(cat "$REQ" setup.py | sha1sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$REQ"
  .venv/bin/python -m pip install --quiet --no-deps -e .
  echo "$want" > "$stamp"
fi
