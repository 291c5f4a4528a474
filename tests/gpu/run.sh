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
# The experimental kernels, chosen by the environment (kernels/cuda/device.h): the wgmma flash kernel
# (flash_wgmma.h), the tensor-core decode attention kernel (attention.h, DecodeMmaSelected) and the few-rows GEMM
# (gemm_few_rows.h). The tests that reach them and their benchmarks, again with all three chosen.
experimental=(IXC_FLASH_WGMMA=1 IXC_DECODE_MMA=1 IXC_GEMM_MMA=1)
for test in attention gemm model parallel vision; do
  run_test "${experimental[@]}" timeout 120 ".gpu-bin/${test}_cuda_test"
done
echo "== ${experimental[*]}: kernels_cuda_bench flash, decode and gemm; model_cuda_bench 32768 prefill and decode"
for mode in flash decode gemm; do
  env "${experimental[@]}" timeout 60 .gpu-bin/kernels_cuda_bench $mode || failures=$((failures + 1))
done
env "${experimental[@]}" timeout 90 .gpu-bin/model_cuda_bench 32768 prefill || failures=$((failures + 1))
env "${experimental[@]}" timeout 90 .gpu-bin/model_cuda_bench 32768 decode || failures=$((failures + 1))
echo "gpu run: $failures failing binaries"
exit $((failures > 0))
