// Row normalizations, one thread block per row (but LayerNorm of rows up to 1024 wide: a warp per row, below). Each
// thread accumulates a strided slice of the row in f32, four elements per access (a decode step's single row is one
// block: its loads must all be in flight at once, hence the vector accesses and __restrict__, which let the compiler
// issue a slice's loads before the first store); a warp shuffle reduction and one shared-memory step give the row's
// sums; then every thread writes its slice. The row is read twice (statistics, then output); at model widths
// (<= 16 KiB per row) the second read hits L1/L2.
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/warp_sum.cuh"

namespace ixc::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// The sum of `value` over the block; every thread gets it. `scratch` holds kThreads / 32 floats.
__device__ float BlockSum(float value, float* scratch) {
  value = WarpSum(value);
  __syncthreads();  // scratch may still be read by an earlier call
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = value;
  __syncthreads();
  float total = 0.f;
  for (int w = 0; w < kThreads / 32; ++w) total += scratch[w];
  return total;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) RmsNormKernel(T* __restrict__ out, const T* __restrict__ x,
                                                          const float* __restrict__ weight, int64_t hidden, float eps) {
  AllowNextKernel();  // the weight-streaming GEMV after this one may start its loads
  WaitForPriorKernel();
  __shared__ float scratch[kThreads / 32];
  const int64_t row = blockIdx.x, quads = hidden / 4;
  const T* in = x + row * hidden;
  float sum_sq = 0.f;
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < quads; i += kThreads) {
    const float4 v = LoadFour(in + 4 * i);
    sum_sq += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
  }
  const float inv_rms = rsqrtf(BlockSum(sum_sq, scratch) / static_cast<float>(hidden) + eps);
  // As the reference: normalize, round to the activation dtype, then multiply by the weight.
  auto scaled = [inv_rms](float value, float w) { return w * ToFloat(FromFloat<T>(value * inv_rms)); };
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < quads; i += kThreads) {
    const float4 v = LoadFour(in + 4 * i), w = LoadFour(weight + 4 * i);
    StoreFour(out + row * hidden + 4 * i, {scaled(v.x, w.x), scaled(v.y, w.y), scaled(v.z, w.z), scaled(v.w, w.w)});
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    AddRmsNormKernel(float* __restrict__ residual, const float* __restrict__ delta, const float* __restrict__ bias,
                     const float* __restrict__ weight, T* __restrict__ out, int64_t hidden, float eps) {
  AllowNextKernel();  // the weight-streaming GEMV after this one may start its loads
  WaitForPriorKernel();
  __shared__ float scratch[kThreads / 32];
  const int64_t row = blockIdx.x, quads = hidden / 4;
  float* x = residual + row * hidden;
  float sum_sq = 0.f;
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < quads; i += kThreads) {
    float4 v = LoadFour(x + 4 * i);
    if (delta != nullptr) {
      const float4 d = LoadFour(delta + row * hidden + 4 * i);
      v = {v.x + d.x, v.y + d.y, v.z + d.z, v.w + d.w};
    }
    if (bias != nullptr) {
      const float4 b = LoadFour(bias + 4 * i);
      v = {v.x + b.x, v.y + b.y, v.z + b.z, v.w + b.w};
    }
    if (delta != nullptr || bias != nullptr) StoreFour(x + 4 * i, v);  // else the residual is as it was
    sum_sq += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
  }
  const float inv_rms = rsqrtf(BlockSum(sum_sq, scratch) / static_cast<float>(hidden) + eps);
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < quads; i += kThreads) {
    const float4 v = LoadFour(x + 4 * i), w = LoadFour(weight + 4 * i);
    StoreFour(out + row * hidden + 4 * i,
              {w.x * (v.x * inv_rms), w.y * (v.y * inv_rms), w.z * (v.z * inv_rms), w.w * (v.w * inv_rms)});
  }
}

template <typename T, typename Out>
__global__ void __launch_bounds__(kThreads)
    LayerNormKernel(const T* x, const float* __restrict__ weight, const float* __restrict__ bias, Out* out,
                    int64_t hidden, float eps) {  // x and out may be one buffer (in place): not __restrict__
  __shared__ float scratch[kThreads / 32];
  const int64_t row = blockIdx.x, quads = hidden / 4;
  const T* in = x + row * hidden;
  float sum = 0.f;
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < quads; i += kThreads) {
    const float4 v = LoadFour(in + 4 * i);
    sum += v.x + v.y + v.z + v.w;
  }
  const float mean = BlockSum(sum, scratch) / static_cast<float>(hidden);
  float sum_sq = 0.f;  // second pass around the mean: no cancellation
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < quads; i += kThreads) {
    const float4 v = LoadFour(in + 4 * i);
    const float a = v.x - mean, b = v.y - mean, c = v.z - mean, d = v.w - mean;
    sum_sq += a * a + b * b + c * c + d * d;
  }
  const float inv_std = rsqrtf(BlockSum(sum_sq, scratch) / static_cast<float>(hidden) + eps);
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < quads; i += kThreads) {
    const float4 v = LoadFour(in + 4 * i), w = LoadFour(weight + 4 * i), b = LoadFour(bias + 4 * i);
    StoreFour(out + row * hidden + 4 * i, {(v.x - mean) * inv_std * w.x + b.x, (v.y - mean) * inv_std * w.y + b.y,
                                           (v.z - mean) * inv_std * w.z + b.z, (v.w - mean) * inv_std * w.w + b.w});
  }
}

// Rows of up to kWarpRowQuads x 128 elements (the ViT's 1024) take a warp each and stay in its registers: one read
// of the row, shuffle reductions and no block barrier, where the block kernel above, a block per row, spent three
// dependent passes and two barriers on 4 KB (39% of HBM on the H200 at the ViT's 41626 x 1024). The same two-pass
// statistics.
constexpr int kWarpRowQuads = 8;
constexpr int kWarpRowMaxHidden = 32 * 4 * kWarpRowQuads;

template <typename T, typename Out>
__global__ void __launch_bounds__(kThreads)
    LayerNormWarpRowKernel(const T* x, const float* __restrict__ weight, const float* __restrict__ bias, Out* out,
                           int64_t rows, int64_t hidden, float eps) {  // in place allowed: each lane reads first
  const int64_t row = blockIdx.x * int64_t{kThreads / 32} + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const int64_t quads = hidden / 4;
  const T* in = x + row * hidden;
  float4 v[kWarpRowQuads];
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < kWarpRowQuads; ++j) {
    const int64_t i = j * 32 + lane;
    v[j] = i < quads ? LoadFour(in + 4 * i) : float4{0.f, 0.f, 0.f, 0.f};
    sum += v[j].x + v[j].y + v[j].z + v[j].w;
  }
  const float mean = WarpSum(sum) / static_cast<float>(hidden);
  float sum_sq = 0.f;  // around the mean: no cancellation
#pragma unroll
  for (int j = 0; j < kWarpRowQuads; ++j) {
    if (j * 32 + lane >= quads) continue;
    const float a = v[j].x - mean, b = v[j].y - mean, c = v[j].z - mean, d = v[j].w - mean;
    sum_sq += a * a + b * b + c * c + d * d;
  }
  const float inv_std = rsqrtf(WarpSum(sum_sq) / static_cast<float>(hidden) + eps);
#pragma unroll
  for (int j = 0; j < kWarpRowQuads; ++j) {
    const int64_t i = j * 32 + lane;
    if (i >= quads) continue;
    const float4 w = LoadFour(weight + 4 * i), b = LoadFour(bias + 4 * i);
    StoreFour(out + row * hidden + 4 * i,
              {(v[j].x - mean) * inv_std * w.x + b.x, (v[j].y - mean) * inv_std * w.y + b.y,
               (v[j].z - mean) * inv_std * w.z + b.z, (v[j].w - mean) * inv_std * w.w + b.w});
  }
}

absl::Status CheckRows(const char* op, int64_t rows, int64_t hidden) {
  if (rows < 0 || hidden <= 0 || hidden % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": rows ", rows, ", hidden ", hidden, " (hidden must be a positive multiple of 4)"));
  }
  return absl::OkStatus();
}

// The kernels access four elements at a time: each tensor (pointer, element bytes) must start on such a boundary.
absl::Status CheckFourAligned(const char* op, std::initializer_list<std::pair<const void*, int64_t>> tensors) {
  if (const auto bad = FirstNotFourAligned(tensors)) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": a tensor at ",
                                                   absl::Hex(reinterpret_cast<uintptr_t>(bad->first)),
                                                   " is not aligned to 4 of its ", bad->second, "-byte elements"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LaunchRmsNorm(DType dtype, void* out, const void* x, const float* weight, int64_t rows, int64_t hidden,
                           float eps, cudaStream_t stream) {
  IXC_RETURN_IF_ERROR(CheckRows("RmsNorm", rows, hidden));
  IXC_RETURN_IF_ERROR(CheckFourAligned("RmsNorm", {{out, DTypeSize(dtype)}, {x, DTypeSize(dtype)}, {weight, 4}}));
  if (rows == 0) return absl::OkStatus();
  cudaError_t launched = cudaSuccess;
  IXC_RETURN_IF_ERROR(DispatchDType(dtype, [&](auto tag) {
    using T = decltype(tag);
    launched = LaunchAfterPrior(DependentLaunchSupported(), RmsNormKernel<T>, static_cast<unsigned>(rows), kThreads,
                                stream, static_cast<T*>(out), static_cast<const T*>(x), weight, hidden, eps);
  }));
  IXC_CUDA_RETURN_IF_ERROR(launched);
  return absl::OkStatus();
}

absl::Status LaunchAddRmsNorm(float* residual, const float* delta, const float* bias, const float* weight,
                              DType out_dtype, void* out, int64_t rows, int64_t hidden, float eps,
                              cudaStream_t stream) {
  IXC_RETURN_IF_ERROR(CheckRows("AddRmsNorm", rows, hidden));
  IXC_RETURN_IF_ERROR(
      CheckFourAligned("AddRmsNorm", {{residual, 4}, {delta, 4}, {bias, 4}, {weight, 4}, {out, DTypeSize(out_dtype)}}));
  if (rows == 0) return absl::OkStatus();
  cudaError_t launched = cudaSuccess;
  IXC_RETURN_IF_ERROR(DispatchDType(out_dtype, [&](auto tag) {
    using T = decltype(tag);
    launched = LaunchAfterPrior(DependentLaunchSupported(), AddRmsNormKernel<T>, static_cast<unsigned>(rows),
                                kThreads, stream, residual, delta, bias, weight, static_cast<T*>(out), hidden, eps);
  }));
  IXC_CUDA_RETURN_IF_ERROR(launched);
  return absl::OkStatus();
}

absl::Status LaunchLayerNorm(DType dtype, const void* x, const float* weight, const float* bias, DType out_dtype,
                             void* out, int64_t rows, int64_t hidden, float eps, cudaStream_t stream) {
  IXC_RETURN_IF_ERROR(CheckRows("LayerNorm", rows, hidden));
  IXC_RETURN_IF_ERROR(
      CheckFourAligned("LayerNorm", {{x, DTypeSize(dtype)}, {weight, 4}, {bias, 4}, {out, DTypeSize(out_dtype)}}));
  if (rows == 0) return absl::OkStatus();
  absl::Status status;
  IXC_RETURN_IF_ERROR(DispatchDType(dtype, [&](auto in_tag) {
    using T = decltype(in_tag);
    status.Update(DispatchDType(out_dtype, [&](auto out_tag) {
      using Out = decltype(out_tag);
      if (hidden <= kWarpRowMaxHidden) {
        const int64_t rows_per_block = kThreads / 32;
        LayerNormWarpRowKernel<T, Out><<<(rows + rows_per_block - 1) / rows_per_block, kThreads, 0, stream>>>(
            static_cast<const T*>(x), weight, bias, static_cast<Out*>(out), rows, hidden, eps);
      } else {
        LayerNormKernel<T, Out><<<rows, kThreads, 0, stream>>>(static_cast<const T*>(x), weight, bias,
                                                               static_cast<Out*>(out), hidden, eps);
      }
    }));
  }));
  IXC_RETURN_IF_ERROR(status);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace ixc::kernels::cuda
