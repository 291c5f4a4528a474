// File: kernels/cuda/async_copy.cuh
//
// cp.async (sm_80+): global -> shared copies that bypass the registers, committed in groups and waited for by count.
// The flash kernels stage their K and V tiles with them.
#pragma once

#include <cuda_runtime.h>

namespace ixc::kernels::cuda {

// 16 bytes global -> shared without a register round trip; zero-filled when !valid.
__device__ inline void CpAsync16(void* smem, const void* global, bool valid) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global), "r"(valid ? 16 : 0));
}
__device__ inline void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n"); }
template <int kPending>
__device__ inline void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

}  // namespace ixc::kernels::cuda
