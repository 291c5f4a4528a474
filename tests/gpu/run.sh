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
# A test binary (prefixed by any VAR=value settings): a failure, a crash or a skip counts.
run_test() {
  echo "== $*"
  env "$@" --gtest_brief=1 >/tmp/gpu_test.log 2>&1
  local rc=$?
  cat /tmp/gpu_test.log
  if [ $rc -ne 0 ] || grep -q "SKIPPED" /tmp/gpu_test.log; then failures=$((failures + 1)); fi
}
for test in .gpu-bin/*_cuda_test; do
  [ -x "$test" ] && run_test timeout 120 "$test"
done
for bench in .gpu-bin/*_cuda_bench; do
  [ -x "$bench" ] || continue
  echo "== $bench"
  timeout 150 "$bench" || failures=$((failures + 1))
done
# The experimental wgmma flash kernel (kernels/cuda/flash_wgmma.h): the tests that reach flash attention, and the
# flash benchmark, again with it chosen.
for test in attention model parallel vision; do
  run_test IXC_FLASH_WGMMA=1 timeout 120 ".gpu-bin/${test}_cuda_test"
done
echo "== IXC_FLASH_WGMMA=1 kernels_cuda_bench flash, model_cuda_bench 32768 prefill"
IXC_FLASH_WGMMA=1 timeout 60 .gpu-bin/kernels_cuda_bench flash || failures=$((failures + 1))
IXC_FLASH_WGMMA=1 timeout 90 .gpu-bin/model_cuda_bench 32768 prefill || failures=$((failures + 1))
echo "gpu run: $failures failing binaries"
exit $((failures > 0))
