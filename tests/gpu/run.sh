#!/usr/bin/env bash
# Runs every GPU test and benchmark bundled in .gpu-bin (made by tests/gpu/build.sh), then the tests and benchmarks
# that reach the experimental kernels again with those chosen, meant to fit 5 minutes. On a machine with a GPU a skipped
# test is a failure: it means the GPU was not usable.
#   bash tests/gpu/run.sh [all|default|experimental]    (default: all; one pass alone where time is short)
#   IXC_EXPERIMENTAL=IXC_DECODE_MMA=1 bash tests/gpu/run.sh experimental    (one experimental kernel alone)
set -uo pipefail
cd "$(dirname "$0")/../.."
pass=${1:-all}
case "$pass" in
  all | default | experimental) ;;
  *)
    echo "usage: $0 [all|default|experimental]" >&2
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
if [ "$pass" != experimental ]; then
  for test in .gpu-bin/*_cuda_test; do
    [ -x "$test" ] && run_test timeout 120 "$test"
  done
  for bench in .gpu-bin/*_cuda_bench; do
    [ -x "$bench" ] || continue
    echo "== $bench (at ${SECONDS} s)"
    timeout 150 "$bench" || failures=$((failures + 1))
  done
fi
# The experimental kernels, chosen by the environment (kernels/cuda/device.h): the wgmma flash kernel
# (flash_wgmma.h), the tensor-core decode attention kernel (attention.h, DecodeMmaSelected) and the few-rows GEMM
# (gemm_few_rows.h). The tests that reach them and their benchmarks, again with all three chosen, or with those
# IXC_EXPERIMENTAL lists (e.g. IXC_EXPERIMENTAL=IXC_GEMM_MMA=1, to tell which kernel a failure comes from).
if [ "$pass" != default ]; then
  read -r -a experimental <<<"${IXC_EXPERIMENTAL:-IXC_FLASH_WGMMA=1 IXC_DECODE_MMA=1 IXC_GEMM_MMA=1}"
  for test in attention gemm generate model parallel vision; do
    run_test "${experimental[@]}" timeout 120 ".gpu-bin/${test}_cuda_test"
  done
  echo "== ${experimental[*]}: kernels_cuda_bench flash, decode and gemm; model_cuda_bench 32768 prefill and decode (at ${SECONDS} s)"
  for mode in flash decode gemm; do
    env "${experimental[@]}" timeout 60 .gpu-bin/kernels_cuda_bench $mode || failures=$((failures + 1))
  done
  env "${experimental[@]}" timeout 90 .gpu-bin/model_cuda_bench 32768 prefill || failures=$((failures + 1))
  env "${experimental[@]}" timeout 90 .gpu-bin/model_cuda_bench 32768 decode || failures=$((failures + 1))
fi
echo "gpu run: $failures failing binaries, ${SECONDS} s"
exit $((failures > 0))
