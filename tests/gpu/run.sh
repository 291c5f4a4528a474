#!/usr/bin/env bash
# Runs every GPU test and benchmark bundled in .gpu-bin (made by tests/gpu/build.sh), in well under 5 minutes.
# On a machine with a GPU a skipped test is a failure: it means the GPU was not usable.
#   bash tests/gpu/run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
[ -f .gpu-bin/bundle.tar.xz ] || { echo "no .gpu-bin/bundle.tar.xz: run tests/gpu/build.sh (and carry .gpu-bin)"; exit 1; }
tar -xJf .gpu-bin/bundle.tar.xz -C .gpu-bin
# Our bundled libraries, then the machine's CUDA 13 libraries (cuBLASLt, NCCL): the toolkit's, or PyTorch's wheels'.
cuda_libs=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu \
  $(python3 -c 'import nvidia, os; print(nvidia.__path__[0])' 2>/dev/null) \
  \( -name 'libcublasLt.so.13*' -o -name 'libnccl.so.2*' \) -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)
export LD_LIBRARY_PATH=$PWD/.gpu-bin/lib${cuda_libs:+:$cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
echo "libraries: $LD_LIBRARY_PATH"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: no GPU visible"
export IXC_GOLDEN_MODELS=$PWD/.gpu-bin/models
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
