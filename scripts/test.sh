#!/usr/bin/env bash
# Sets up the environment and runs the test suite (the slow tests are
# skipped; `bash scripts/test.sh -m slow` runs only those, `-m ''` all).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
if [ $# -eq 0 ]; then set -- -m "not slow"; fi
exec .venv/bin/python -m pytest tests --durations=15 "$@"
