#!/usr/bin/env bash
# Runs every GPU test and benchmark bundled in .gpu-bin (made by tests/gpu/build.sh), in well under 5 minutes.
# On a machine with a GPU a skipped test is a failure: it means the GPU was not usable.
#   bash tests/gpu/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/gpu/bundle_env.sh
echo "libraries: $LD_LIBRARY_PATH"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: no GPU visible"
failures=0
for test in .gpu-bin/*_cuda_test; do
  [ -x "$test" ] || continue
  echo "== $test"
  timeout 120 "$test" --gtest_brief=1 >/tmp/gpu_test.log 2>&1
  rc=$?
  cat /tmp/gpu_test.log
  if [ $rc -ne 0 ] || grep -q "SKIPPED" /tmp/gpu_test.log; then failures=$((failures + 1)); fi
done
for bench in .gpu-bin/*_cuda_bench; do
  [ -x "$bench" ] || continue
  echo "== $bench"
  timeout 150 "$bench" || failures=$((failures + 1))
done
echo "gpu run: $failures failing binaries"
exit $((failures > 0))
