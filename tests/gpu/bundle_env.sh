# Sourced by tests/gpu/run.sh and tests/gpu/profile_decode_step.sh on the GPU machine: unpacks .gpu-bin/bundle.tar.xz
# (made by tests/gpu/build.sh) and points the loader at our bundled libraries, then at the machine's CUDA 13
# libraries (cuBLASLt, NCCL): the toolkit's, or PyTorch's wheels'.
[ -f .gpu-bin/bundle.tar.xz ] || { echo "no .gpu-bin/bundle.tar.xz: run tests/gpu/build.sh (and carry .gpu-bin)"; exit 1; }
tar -xJf .gpu-bin/bundle.tar.xz -C .gpu-bin
cuda_libs=$(find /usr/local/cuda*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu \
  $(python3 -c 'import nvidia, os; print(nvidia.__path__[0])' 2>/dev/null) \
  \( -name 'libcublasLt.so.13*' -o -name 'libnccl.so.2*' \) -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)
export LD_LIBRARY_PATH=$PWD/.gpu-bin/lib${cuda_libs:+:$cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export IXC_GOLDEN_MODELS=$PWD/.gpu-bin/models
