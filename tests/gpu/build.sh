#!/usr/bin/env bash
# Builds the GPU test and benchmark binaries here (the `cuda` preset; nvcc needs no GPU) and packs them, with the
# shared libraries they need beyond glibc, the CUDA driver and the CUDA toolkit's own libraries (cuBLASLt alone is
# 500 MB; the GPU machine has CUDA 13 and run.sh finds them there) and the golden checkpoints model_cuda_test and
# vision_cuda_test run on, into .gpu-bin/bundle.tar.xz (xz keeps it under the device call's 64 MiB). Then, on the GPU machine:
# bash tests/gpu/run.sh (carry .gpu-bin), which unpacks it.
#   bash tests/gpu/build.sh [binary...]    (e.g. parallel_cuda_test: those alone, for a quick rerun beside another bundle)
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake --preset cuda >/dev/null
cmake --build --preset cuda
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/lib"
wanted=" $* "
for binary in build/cuda/tests/*_cuda_test build/cuda/bench/*_cuda_bench; do
  [ -x "$binary" ] || continue
  [ $# -eq 0 ] || [[ "$wanted" == *" $(basename "$binary") "* ]] || continue
  cp "$binary" "$stage/"
  strip --strip-unneeded "$stage/$(basename "$binary")"
  # Everything ldd resolves, except glibc's own libraries, the driver and the CUDA toolkit's, travels beside them.
  ldd "$binary" | awk '/=> \// {print $3}' |
    grep -vE '/(libc|libm|libdl|librt|libpthread|ld-linux[^/]*|libcuda|libcublas|libcublasLt|libnccl)\.so' |
    while read -r lib; do cp -nL "$lib" "$stage/lib/"; done
done
# The golden language-model checkpoints and two multimodal ones, the second with the ViT's real head dim (rebuilt
# from their seeds).
python3 tests/make_golden_models.py "$stage/all-models" >/dev/null
mkdir -p "$stage/models"
find "$stage/all-models" -mindepth 1 -maxdepth 1 \
  \( ! -name 'multimodal_*' -o -name multimodal_one_image -o -name multimodal_vit_d64_one_image \) \
  -exec mv {} "$stage/models/" \;
rm -rf "$stage/all-models"
rm -rf .gpu-bin && mkdir -p .gpu-bin
# One dictionary larger than the stage: every test binary holds the same kernels (the static CUDA library), which xz
# then stores once (29 MB instead of 50; the bundle and the working tree travel within a device call's 64 MiB).
XZ_OPT="-9 -T1 --lzma2=preset=9,dict=192MiB" tar -cJf .gpu-bin/bundle.tar.xz -C "$stage" .
ls "$stage" "$stage/lib"
du -sh "$stage" .gpu-bin/bundle.tar.xz
