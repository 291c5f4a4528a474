#!/usr/bin/env bash
# Runs every GPU test and benchmark bundled in .gpu-bin (made by tests/gpu/build.sh), then the tests and benchmarks
# that reach the attention kernels again with the fallback kernels chosen (IXC_FALLBACK_KERNELS=1), and again with
# the experimental choices (IXC_FLASH_PIPELINED=1, kernels/cuda/flash_wgmma.h; IXC_GEMM_TUNE=1, kernels/cuda/gemm.h;
# IXC_FEWER_DECODE_KERNELS=1, kernels/cuda/device.h; not yet run on a GPU, so off by default), meant to fit 5
# minutes. On a machine with a GPU a skipped test is a failure: it means the GPU was not usable.
#   bash tests/gpu/run.sh [all|default|fallback|experimental]    (default: all; one pass alone where time is short)
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
pass=${1:-all}
case "$pass" in
  all | default | fallback | experimental) ;;
  *)
    echo "usage: $0 [all|default|fallback|experimental]" >&2
    exit 2
    ;;
esac
source tests/gpu/bundle_env.sh
echo "libraries: $LD_LIBRARY_PATH"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: no GPU visible"
failures=0
# A test binary (prefixed by any VAR=value settings): a failure, a crash or a skip counts.
run_test() {
  echo "== $* (at ${SECONDS} s)"
  env "$@" --gtest_brief=1 >/tmp/gpu_test.log 2>&1
  local rc=$?
  cat /tmp/gpu_test.log
  if [ $rc -ne 0 ] || grep -q "SKIPPED" /tmp/gpu_test.log; then failures=$((failures + 1)); fi
}
if [ "$pass" = all ] || [ "$pass" = default ]; then
  for test in .gpu-bin/*_cuda_test; do
    [ -x "$test" ] && run_test timeout 120 "$test"
  done
  for bench in .gpu-bin/*_cuda_bench; do
    [ -x "$bench" ] || continue
    echo "== $bench (at ${SECONDS} s)"
    timeout 150 "$bench" || failures=$((failures + 1))
  done
fi
# The tests that reach the attention kernels and the GEMMs with other kernels chosen by the environment (VAR=1 ...);
# rerun_with adds the attention, prefill and decode benchmarks.
tests_with() {
  for test in attention gemm generate model parallel vision; do
    run_test "$@" timeout 120 ".gpu-bin/${test}_cuda_test"
  done
}
rerun_with() {
  tests_with "$@"
  echo "== $*: kernels_cuda_bench flash and decode; model_cuda_bench 32768 (at ${SECONDS} s)"
  for mode in flash decode; do
    env "$@" timeout 60 .gpu-bin/kernels_cuda_bench $mode || failures=$((failures + 1))
  done
  env "$@" timeout 150 .gpu-bin/model_cuda_bench 32768 || failures=$((failures + 1))
}
# The kernels that the wgmma flash and tensor-core decode kernels replace where those cannot run (other GPUs, other
# head dims; kernels/cuda/device.h), chosen everywhere.
if [ "$pass" = all ] || [ "$pass" = fallback ]; then rerun_with IXC_FALLBACK_KERNELS=1; fi
# The experimental choices, each seen in its own line of model_cuda_bench: the software-pipelined flash kernel
# (kernels/cuda/flash_wgmma.h; the 32K prefill), cuBLASLt plans of 3-256 rows chosen by timing (kernels/cuda/gemm.h;
# the batch-32 decode step) and fewer kernels in a decode step (kernels/cuda/device.h; batch-1 decode, and the decode
# attention figures of kernels_cuda_bench).
# Where a test fails with all three, the tests again with each alone say which one it is.
if [ "$pass" = all ] || [ "$pass" = experimental ]; then
  before=$failures
  rerun_with IXC_FLASH_PIPELINED=1 IXC_GEMM_TUNE=1 IXC_FEWER_DECODE_KERNELS=1
  if [ "$failures" -gt "$before" ]; then
    for flag in IXC_FLASH_PIPELINED IXC_GEMM_TUNE IXC_FEWER_DECODE_KERNELS; do tests_with "$flag=1"; done
  fi
fi
echo "gpu run: $failures failing binaries, ${SECONDS} s"
exit $((failures > 0))
