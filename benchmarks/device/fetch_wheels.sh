#!/usr/bin/env bash
# Run on a machine with package-index access, from anywhere: downloads the
# wheels that run.sh installs offline into benchmarks/device/wheels/ (~30 MB;
# binary wheels for CPython 3.11-3.13 on x86-64 Linux, so the GPU machine's
# Python version need not be known in advance).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
DEST="${1:-$HERE/wheels}"
PY="${PYTHON:-python3}"
mkdir -p "$DEST"
# exact pins; ml-dtypes as the fallback for a machine without JAX
grep -E '==' "$HERE/requirements.txt" > "$DEST/.pins.txt"
echo "ml-dtypes==0.5.4" >> "$DEST/.pins.txt"  # installed only where missing
for version in 3.11 3.12 3.13; do  # keras 3.15 needs Python >= 3.11
  "$PY" -m pip download -q --no-deps --only-binary=:all: --dest "$DEST" \
    --python-version "$version" --implementation cp --abi "cp${version/./}" --abi abi3 --abi none \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -r "$DEST/.pins.txt"
done
rm "$DEST/.pins.txt"
du -sh "$DEST"
ls "$DEST"
