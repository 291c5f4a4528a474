// File: kernels/cuda/convert.cuh
//
// Storage types of the CUDA kernels (f32, bf16, f16; arithmetic always in f32), their conversions (one element, or
// four at a time with the alignment check that needs), and DispatchDType, which turns a runtime DType into a template argument:
//   IXC_RETURN_IF_ERROR(DispatchDType(dtype, [&](auto tag) { Kernel<decltype(tag)><<<...>>>(...); }));
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "core/status_macros.h"
#include "kernels/cuda/cuda_check.h"

namespace ixc::kernels::cuda {

template <typename T>
__device__ inline float ToFloat(T value);
template <>
__device__ inline float ToFloat<float>(float value) { return value; }
template <>
__device__ inline float ToFloat<__nv_bfloat16>(__nv_bfloat16 value) { return __bfloat162float(value); }
template <>
__device__ inline float ToFloat<__half>(__half value) { return __half2float(value); }

template <typename T>
__device__ inline T FromFloat(float value);
template <>
__device__ inline float FromFloat<float>(float value) { return value; }
template <>
__device__ inline __nv_bfloat16 FromFloat<__nv_bfloat16>(float value) { return __float2bfloat16_rn(value); }
template <>
__device__ inline __half FromFloat<__half>(float value) { return __float2half_rn(value); }

// Four consecutive elements as f32, and back: one 16-byte (f32) or 8-byte (16-bit) access, `p` aligned to it.
template <typename T>
__device__ inline float4 LoadFour(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return *reinterpret_cast<const float4*>(p);
  } else {
    const uint2 raw = *reinterpret_cast<const uint2*>(p);
    const T* e = reinterpret_cast<const T*>(&raw);
    return {ToFloat(e[0]), ToFloat(e[1]), ToFloat(e[2]), ToFloat(e[3])};
  }
}
template <typename T>
__device__ inline void StoreFour(T* p, float4 v) {
  if constexpr (std::is_same_v<T, float>) {
    *reinterpret_cast<float4*>(p) = v;
  } else {
    uint2 raw;
    T* e = reinterpret_cast<T*>(&raw);
    e[0] = FromFloat<T>(v.x);
    e[1] = FromFloat<T>(v.y);
    e[2] = FromFloat<T>(v.z);
    e[3] = FromFloat<T>(v.w);
    *reinterpret_cast<uint2*>(p) = raw;
  }
}

// LoadFour / StoreFour need each tensor (pointer, element bytes) to start on a 4-element boundary: the first that
// does not, or nothing.
inline std::optional<std::pair<const void*, int64_t>> FirstNotFourAligned(
    std::initializer_list<std::pair<const void*, int64_t>> tensors) {
  for (const auto& tensor : tensors) {
    if (reinterpret_cast<uintptr_t>(tensor.first) % (4 * tensor.second) != 0) return tensor;
  }
  return std::nullopt;
}

// Calls f(T{}) with the storage type of `dtype`.
template <typename F>
absl::Status DispatchDType(DType dtype, F&& f) {
  switch (dtype) {
    case DType::kF32:
      f(float{});
      return absl::OkStatus();
    case DType::kBF16:
      f(__nv_bfloat16{});
      return absl::OkStatus();
    case DType::kF16:
      f(__half{});
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError("unknown dtype");
}

// The same for the 16-bit types alone (tensor-core kernels); f32 is an InvalidArgument naming `op`.
template <typename F>
absl::Status DispatchHalfDType(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::kBF16:
      f(__nv_bfloat16{});
      return absl::OkStatus();
    case DType::kF16:
      f(__half{});
      return absl::OkStatus();
    case DType::kF32:
      break;
  }
  return absl::InvalidArgumentError(std::string(op) + " takes bf16 or f16 tensors, not f32");
}

// A GEMM kernel's types: 16-bit inputs T, outputs T or f32 (Gemm::Linear has refused any other pair). `launch(T{},
// Out{})` launches and returns its cudaError_t, which comes back as a Status.
template <typename F>
absl::Status DispatchLinearTypes(DType in, DType out, const char* op, F&& launch) {
  cudaError_t launched = cudaSuccess;
  IXC_RETURN_IF_ERROR(DispatchHalfDType(in, op, [&](auto tag) {
    using T = decltype(tag);
    launched = out == DType::kF32 ? launch(T{}, float{}) : launch(T{}, T{});
  }));
  IXC_CUDA_RETURN_IF_ERROR(launched);
  return absl::OkStatus();
}

}  // namespace ixc::kernels::cuda
