#!/usr/bin/env bash
# Builds the `cpu` preset and runs every test (the README's test command; CI runs it through .ci/run). Where nvcc
# is installed it also builds the `cuda` preset and runs the GPU tests, which skip, with the reason, without a GPU.
#   bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
cmake --preset cpu
cmake --build --preset cpu
ctest --preset cpu
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  cmake --preset cuda
  cmake --build --preset cuda
  ctest --preset cuda -L cuda --no-tests=error
fi
