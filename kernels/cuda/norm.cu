// Row normalizations, one thread block per row. Each thread accumulates a strided slice of the row in f32; a warp
// shuffle reduction and one shared-memory step give the row's sums; then every thread writes its slice. The row is
// read twice (statistics, then output); at model widths (<= 16 KiB per row) the second read hits L1/L2.
#include "absl/strings/str_cat.h"
#include "kernels/cuda/convert.cuh"
#include "core/status_macros.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/norm.h"

namespace ixc::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// The sum of `value` over the block; every thread gets it. `scratch` holds kThreads / 32 floats.
__device__ float BlockSum(float value, float* scratch) {
  for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(0xffffffff, value, offset);
  __syncthreads();  // scratch may still be read by an earlier call
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = value;
  __syncthreads();
  float total = 0.f;
  for (int w = 0; w < kThreads / 32; ++w) total += scratch[w];
  return total;
}

template <typename T>
__global__ void RmsNormKernel(T* out, const T* x, const float* weight, int64_t hidden, float eps) {
  __shared__ float scratch[kThreads / 32];
  const int64_t row = blockIdx.x;
  const T* in = x + row * hidden;
  float sum_sq = 0.f;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    const float v = ToFloat(in[c]);
    sum_sq += v * v;
  }
  const float inv_rms = rsqrtf(BlockSum(sum_sq, scratch) / static_cast<float>(hidden) + eps);
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    // As the reference: normalize, round to the activation dtype, then multiply by the weight.
    const float normalized = ToFloat(FromFloat<T>(ToFloat(in[c]) * inv_rms));
    out[row * hidden + c] = FromFloat<T>(weight[c] * normalized);
  }
}

template <typename T>
__global__ void AddRmsNormKernel(float* residual, const float* delta, const float* bias, const float* weight, T* out,
                                 int64_t hidden, float eps) {
  __shared__ float scratch[kThreads / 32];
  const int64_t row = blockIdx.x;
  float* x = residual + row * hidden;
  float sum_sq = 0.f;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    float v = x[c];
    if (delta != nullptr) v += delta[row * hidden + c];
    if (bias != nullptr) v += bias[c];
    x[c] = v;
    sum_sq += v * v;
  }
  const float inv_rms = rsqrtf(BlockSum(sum_sq, scratch) / static_cast<float>(hidden) + eps);
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    out[row * hidden + c] = FromFloat<T>(weight[c] * (x[c] * inv_rms));
  }
}

template <typename T, typename Out>
__global__ void LayerNormKernel(const T* x, const float* weight, const float* bias, Out* out, int64_t hidden,
                                float eps) {
  __shared__ float scratch[kThreads / 32];
  const int64_t row = blockIdx.x;
  const T* in = x + row * hidden;
  float sum = 0.f;
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) sum += ToFloat(in[c]);
  const float mean = BlockSum(sum, scratch) / static_cast<float>(hidden);
  float sum_sq = 0.f;  // second pass around the mean: no cancellation
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    const float v = ToFloat(in[c]) - mean;
    sum_sq += v * v;
  }
  const float inv_std = rsqrtf(BlockSum(sum_sq, scratch) / static_cast<float>(hidden) + eps);
  for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) {
    out[row * hidden + c] = FromFloat<Out>((ToFloat(in[c]) - mean) * inv_std * weight[c] + bias[c]);
  }
}

absl::Status CheckRows(const char* op, int64_t rows, int64_t hidden) {
  if (rows < 0 || hidden <= 0 || hidden % 4 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": rows ", rows, ", hidden ", hidden, " (hidden must be a positive multiple of 4)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LaunchRmsNorm(DType dtype, void* out, const void* x, const float* weight, int64_t rows, int64_t hidden,
                           float eps, cudaStream_t stream) {
  IXC_RETURN_IF_ERROR(CheckRows("RmsNorm", rows, hidden));
  if (rows == 0) return absl::OkStatus();
  IXC_RETURN_IF_ERROR(DispatchDType(dtype, [&](auto tag) {
    using T = decltype(tag);
    RmsNormKernel<T><<<rows, kThreads, 0, stream>>>(static_cast<T*>(out), static_cast<const T*>(x), weight, hidden,
                                                    eps);
  }));
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

absl::Status LaunchAddRmsNorm(float* residual, const float* delta, const float* bias, const float* weight,
                              DType out_dtype, void* out, int64_t rows, int64_t hidden, float eps,
                              cudaStream_t stream) {
  IXC_RETURN_IF_ERROR(CheckRows("AddRmsNorm", rows, hidden));
  if (rows == 0) return absl::OkStatus();
  IXC_RETURN_IF_ERROR(DispatchDType(out_dtype, [&](auto tag) {
    using T = decltype(tag);
    AddRmsNormKernel<T><<<rows, kThreads, 0, stream>>>(residual, delta, bias, weight, static_cast<T*>(out), hidden,
                                                       eps);
  }));
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

absl::Status LaunchLayerNorm(DType dtype, const void* x, const float* weight, const float* bias, DType out_dtype,
                             void* out, int64_t rows, int64_t hidden, float eps, cudaStream_t stream) {
  IXC_RETURN_IF_ERROR(CheckRows("LayerNorm", rows, hidden));
  if (rows == 0) return absl::OkStatus();
  absl::Status status;
  IXC_RETURN_IF_ERROR(DispatchDType(dtype, [&](auto in_tag) {
    using T = decltype(in_tag);
    status.Update(DispatchDType(out_dtype, [&](auto out_tag) {
      using Out = decltype(out_tag);
      LayerNormKernel<T, Out><<<rows, kThreads, 0, stream>>>(static_cast<const T*>(x), weight, bias,
                                                             static_cast<Out*>(out), hidden, eps);
    }));
  }));
  IXC_RETURN_IF_ERROR(status);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace ixc::kernels::cuda
