// File: kernels/cuda/grid_stride.cuh
//
// The launch shape of the one-thread-per-element kernels: grid-stride loops over int64 indices, at most 65535
// blocks of kGridStrideThreads.
//   IXC_GRID_STRIDE(i, n) { out[i] = ...; }   ...   Kernel<<<GridStrideBlocks(n), kGridStrideThreads, 0, s>>>(...)
#pragma once

#include <algorithm>
#include <cstdint>

namespace ixc::kernels::cuda {

constexpr int kGridStrideThreads = 256;

inline int GridStrideBlocks(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kGridStrideThreads - 1) / kGridStrideThreads,
                                                                   65535)));
}

#define IXC_GRID_STRIDE(i, n) \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); i += int64_t{gridDim.x} * blockDim.x)

}  // namespace ixc::kernels::cuda
