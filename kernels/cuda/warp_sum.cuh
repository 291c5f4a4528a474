// File: kernels/cuda/warp_sum.cuh
//
// The sum of a value over a warp, every lane getting it: butterfly shuffles, so every lane adds the same values in
// the same order. The norms', the weight passes', the decode combine's and the samplers' reductions share it.
#pragma once

namespace ixc::kernels::cuda {

template <typename T>
__device__ inline T WarpSum(T value) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffff, value, offset);
  return value;
}

}  // namespace ixc::kernels::cuda
