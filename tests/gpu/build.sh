#!/usr/bin/env bash
# Builds the GPU test and benchmark binaries here (the `cuda` preset; nvcc needs no GPU) and bundles them into
# .gpu-bin/ with the shared libraries they need beyond glibc, the CUDA driver and the CUDA toolkit's own libraries
# (cuBLASLt alone is 500 MB; the GPU machine has CUDA 13 and run.sh finds them there), so that the GPU machine,
# which has none of our Debian packages, can run them. Then, on the GPU machine: bash tests/gpu/run.sh (carry .gpu-bin).
#   bash tests/gpu/build.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake --preset cuda >/dev/null
cmake --build --preset cuda
rm -rf .gpu-bin && mkdir -p .gpu-bin/lib
for binary in build/cuda/tests/*_cuda_test build/cuda/bench/*_cuda_bench; do
  [ -x "$binary" ] || continue
  cp "$binary" .gpu-bin/
  # Everything ldd resolves, except glibc's own libraries and the driver, travels beside the binaries.
  ldd "$binary" | awk '/=> \// {print $3}' | grep -vE '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libcuda|libcublas|libcublasLt|libnccl)\.so' |
    while read -r lib; do cp -nL "$lib" .gpu-bin/lib/; done
done
# The golden checkpoints cuda_model_test runs on (a few MB; rebuilt from their seeds).
python3 tests/make_golden_models.py .gpu-bin/models >/dev/null
ls .gpu-bin .gpu-bin/lib
du -sh .gpu-bin
