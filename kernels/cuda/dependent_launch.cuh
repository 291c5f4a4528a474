// File: kernels/cuda/dependent_launch.cuh
//
// Programmatic dependent launch (sm_90 and later): a kernel launched with LaunchAfterPrior may start while the
// kernel before it on the stream is still finishing, do the work that reads nothing that kernel writes (a GEMV
// streams its first weights), and call WaitForPriorKernel before it reads that kernel's results. A kernel that calls
// AllowNextKernel early lets such a successor start as soon as all its blocks are running. Both calls do nothing on
// older GPUs, or when the kernel was launched the ordinary way. A kernel that only wants its launch and block start
// hidden behind its predecessor's tail (the decode step's norms, RoPE and attention between the GEMVs) calls
// WaitForPriorKernel first of all, before any access to global memory.
#pragma once

#include <cuda_runtime.h>

#include <utility>

namespace ixc::kernels::cuda {

__device__ inline void WaitForPriorKernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ inline void AllowNextKernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n");
#endif
}

// Whether this process's device runs programmatic dependent launches (sm_90 and later); asked once, as a process
// drives one device.
inline bool DependentLaunchSupported() {
  static const bool supported = [] {
    int device = 0, major = 0;
    return cudaGetDevice(&device) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess && major >= 9;
  }();
  return supported;
}

// `kernel`<<<grid, block, smem_bytes, stream>>>(args...), allowed to overlap the previous kernel where
// `programmatic` (the device is sm_90 or later); the kernel must call WaitForPriorKernel before it touches what that
// kernel writes.
template <typename... Params, typename... Args>
cudaError_t LaunchAfterPriorWithSmem(bool programmatic, void (*kernel)(Params...), dim3 grid, dim3 block,
                                     size_t smem_bytes, cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem_bytes;
  config.stream = stream;
  cudaLaunchAttribute attribute = {};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  if (programmatic) {
    config.attrs = &attribute;
    config.numAttrs = 1;
  }
  return cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...);
}

// The same without dynamic shared memory.
template <typename... Params, typename... Args>
cudaError_t LaunchAfterPrior(bool programmatic, void (*kernel)(Params...), dim3 grid, dim3 block, cudaStream_t stream,
                             Args&&... args) {
  return LaunchAfterPriorWithSmem(programmatic, kernel, grid, block, 0, stream, std::forward<Args>(args)...);
}

}  // namespace ixc::kernels::cuda
