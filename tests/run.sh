#!/usr/bin/env bash
# Builds the `cpu` preset and runs every test (the README's test command; CI runs it through .ci/run).
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
cmake --preset cpu
cmake --build --preset cpu
ctest --preset cpu
