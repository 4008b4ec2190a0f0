#!/usr/bin/env bash
# Sets up the environment and runs the test suite (the slow tests are
# skipped; `bash scripts/test.sh -m slow` runs only those, `-m ''` all).
#
# Tests run in L3_TEST_WORKERS processes (default 2, this project's CI machine's
# cores; 0 runs them in this process), each test file on one worker so that its
# module fixtures are built once. The order is the files' own unless
# L3_TEST_SHUFFLE=1 (pytest-randomly: files and tests shuffled, the seed printed
# in the header; add --randomly-seed=N to rerun one order).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
if [ $# -eq 0 ]; then set -- -m "not slow"; fi
workers=${L3_TEST_WORKERS:-2}
parallel=()
if [ "$workers" != 0 ]; then parallel=(-n "$workers" --dist loadfile); fi
shuffle=(-p no:randomly)
if [ "${L3_TEST_SHUFFLE:-0}" = 1 ]; then shuffle=(); fi
exec .venv/bin/python -m pytest tests --durations=15 "${parallel[@]}" "${shuffle[@]}" "$@"
