#!/usr/bin/env bash
# On the GPU machine (JAX and/or PyTorch, no TensorFlow, no network), from a
# copy of this repository that carries benchmarks/device/wheels/:
#   bash benchmarks/device/run.sh [OUT_DIR]
# Installs keras offline into its own folder (SITE, put first on PYTHONPATH;
# the machine's Python and its JAX / PyTorch are left untouched), then times
# the paper network (bench_model.py) within BUDGET seconds (default 240; the
# whole script stays under 5 minutes). PYTHON: the interpreter with JAX or
# PyTorch (default python3; Python >= 3.11, as keras 3.15 needs). BENCH_ARGS:
# more bench_model.py flags (e.g. "--preset=small" for a dry run on a CPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-${OUT:-/tmp/l3-bench}}"
BUDGET="${BUDGET:-240}"
PY="${PYTHON:-python3}"
SITE="${SITE:-/tmp/l3-bench-site}"
WHEELS=benchmarks/device/wheels
mkdir -p "$OUT"
"$PY" -m pip install -q --no-index --no-deps --upgrade --target "$SITE" --find-links "$WHEELS" \
  -r benchmarks/device/requirements.txt
if ! "$PY" -c "import ml_dtypes" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --target "$SITE" --find-links "$WHEELS" ml-dtypes==0.5.4
fi
export PYTHONPATH="$SITE:$PWD"
"$PY" - <<'PY'
import importlib.util, sys
have = [b for b in ("jax", "torch", "tensorflow") if importlib.util.find_spec(b)]
print("python", sys.version.split()[0], "| backends found:", ", ".join(have) or "none")
if not {"jax", "torch"} & set(have):
    sys.exit("neither JAX nor PyTorch is installed here")
PY
BACKENDS="$("$PY" -c 'import importlib.util as u; print(",".join(b for b in ("jax","torch") if u.find_spec(b)))')"
timeout $((BUDGET + 60)) "$PY" benchmarks/bench_model.py --backends="$BACKENDS" \
  --dtypes=bf16,float32 --batch_sizes=16,64,256 --min_seconds=1 --time_budget_s="$BUDGET" \
  --output_json="$OUT/bench_model.json" ${BENCH_ARGS:-} | tee "$OUT/bench_model.txt"
