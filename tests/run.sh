#!/usr/bin/env bash
# Builds the `cpu` preset and runs every test (the README's test command; CI runs it through .ci/run), then the same
# suite built by the `asan` preset, under AddressSanitizer and UndefinedBehaviorSanitizer (leak checks off: Open MPI
# and OpenMP leave allocations at exit). Where nvcc is installed it also builds the `cuda` preset and runs the GPU
# tests, which skip, with the reason, without a GPU.
#   bash tests/run.sh [--no-sanitizers]    (--no-sanitizers: the plain suite alone, in half the time)
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
cmake --preset cpu
cmake --build --preset cpu
ctest --preset cpu
if [ "${1:-}" != --no-sanitizers ]; then
  cmake --preset asan
  cmake --build --preset asan
  ctest --preset asan
fi
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  cmake --preset cuda
  cmake --build --preset cuda
  ctest --preset cuda -L cuda --no-tests=error
fi
