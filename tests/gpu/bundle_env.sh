# Sourced by the GPU machine's scripts (tests/gpu/run.sh, run_cluster.sh, the profilers): unpacks
# $IXC_BUNDLE_DIR/bundle.tar.xz (default .gpu-bin, made by tests/gpu/build.sh; run_cluster.sh joins build_cluster.sh's halves into .gpu-cluster-run) and
# points the loader at its libraries, then at the machine's CUDA 13 libraries (cuBLASLt, NCCL): the toolkit's, or
# PyTorch's wheels'.
bundle_dir=${IXC_BUNDLE_DIR:-.gpu-bin}
[ -f "$bundle_dir/bundle.tar.xz" ] || {
  echo "no $bundle_dir/bundle.tar.xz: run its tests/gpu/build script (and carry $bundle_dir)"
  exit 1
}
tar -xJf "$bundle_dir/bundle.tar.xz" -C "$bundle_dir"
cuda_libs=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu \
  $(python3 -c 'import nvidia, os; print(nvidia.__path__[0])' 2>/dev/null) \
  \( -name 'libcublasLt.so.13*' -o -name 'libnccl.so.2*' \) -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)
export LD_LIBRARY_PATH=$PWD/$bundle_dir/lib${cuda_libs:+:$cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [ -d "$bundle_dir/models" ]; then export IXC_GOLDEN_MODELS=$PWD/$bundle_dir/models; fi
