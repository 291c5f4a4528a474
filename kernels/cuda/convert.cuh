// File: kernels/cuda/convert.cuh
//
// f32 <-> storage dtype conversions shared by the CUDA kernels (f32 and bf16 storage, f32 arithmetic).
#pragma once

#include <cuda_bf16.h>

namespace ixc::kernels::cuda {

template <typename T>
__device__ inline float ToFloat(T value);
template <>
__device__ inline float ToFloat<float>(float value) { return value; }
template <>
__device__ inline float ToFloat<__nv_bfloat16>(__nv_bfloat16 value) { return __bfloat162float(value); }

template <typename T>
__device__ inline T FromFloat(float value);
template <>
__device__ inline float FromFloat<float>(float value) { return value; }
template <>
__device__ inline __nv_bfloat16 FromFloat<__nv_bfloat16>(float value) { return __float2bfloat16_rn(value); }

}  // namespace ixc::kernels::cuda
