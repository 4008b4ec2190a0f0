#!/usr/bin/env bash
# Sets up the environment and runs the whole chain on the bundled small
# corpus: generate videos -> build TFRecords -> train -> evaluate -> export ->
# transfer and analysis. Extra arguments go to l3-demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
exec .venv/bin/l3-demo --work_dir=demo_work "$@"
