// Elementwise kernels: one thread per output element (SwiGLU, embedding gather) or per rotated pair (RoPE), grid-
// stride loops, f32 arithmetic. They are bound by memory traffic; the launchers check sizes and return the launch
// status.
#include <cuda_bf16.h>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"

namespace ixc::kernels::cuda {
namespace {

constexpr int kThreads = 256;

int Blocks(int64_t n) { return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)); }

__global__ void SwiGluKernel(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.f + expf(-g)) * up[i];
  }
}

// One thread per (token, head, i < half): the pair (i, i + half) turns by position * inv_freq[i].
__global__ void RopeKernel(float* x, const int32_t* positions, int64_t tokens, int heads, int head_dim, float base,
                           float position_scale) {
  const int half = head_dim / 2;
  const int64_t pairs = tokens * heads * half;
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < pairs; p += int64_t{gridDim.x} * blockDim.x) {
    const int i = static_cast<int>(p % half);
    const int64_t row = p / half;  // token * heads + head
    const int64_t token = row / heads;
    const float inv_freq = 1.f / powf(base, static_cast<float>(2 * i) / static_cast<float>(head_dim));
    const float angle = static_cast<float>(positions[token]) * position_scale * inv_freq;
    float s, c;
    sincosf(angle, &s, &c);
    float* v = x + row * head_dim;
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}

template <typename T>
__global__ void GatherKernel(const T* table, const int32_t* ids, int64_t n, int64_t hidden, float* out) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < n * hidden;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t token = e / hidden, c = e % hidden;
    out[e] = ToFloat(table[int64_t{ids[token]} * hidden + c]);
  }
}

}  // namespace

absl::Status LaunchSwiGlu(const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream) {
  if (n < 0) return absl::InvalidArgumentError("SwiGlu: negative size");
  if (n == 0) return absl::OkStatus();
  SwiGluKernel<<<Blocks(n), kThreads, 0, stream>>>(gate, up, out, n);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

absl::Status LaunchApplyRope(float* x, const int32_t* positions, int64_t tokens, int heads, const RopeParams& rope,
                             cudaStream_t stream) {
  if (tokens < 0 || heads <= 0 || rope.head_dim <= 0 || rope.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("ApplyRope: tokens ", tokens, ", heads ", heads, ", head_dim ",
                                                   rope.head_dim, " (head_dim must be even)"));
  }
  if (tokens == 0) return absl::OkStatus();
  RopeKernel<<<Blocks(tokens * heads * (rope.head_dim / 2)), kThreads, 0, stream>>>(
      x, positions, tokens, heads, rope.head_dim, rope.base, rope.position_scale);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

absl::Status LaunchEmbeddingGather(const void* table, DType dtype, int64_t vocab, int64_t hidden, const int32_t* ids,
                                   const int32_t* host_ids, int64_t n, float* out, cudaStream_t stream) {
  for (int64_t t = 0; t < n; ++t) {
    if (host_ids[t] < 0 || host_ids[t] >= vocab) {
      return absl::OutOfRangeError(absl::StrCat("token id ", host_ids[t], " at position ", t,
                                                " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  if (n == 0) return absl::OkStatus();
  switch (dtype) {
    case DType::kF32:
      GatherKernel<float><<<Blocks(n * hidden), kThreads, 0, stream>>>(static_cast<const float*>(table), ids, n,
                                                                        hidden, out);
      break;
    case DType::kBF16:
      GatherKernel<__nv_bfloat16><<<Blocks(n * hidden), kThreads, 0, stream>>>(
          static_cast<const __nv_bfloat16*>(table), ids, n, hidden, out);
      break;
    case DType::kF16:
      return absl::UnimplementedError("EmbeddingGather: f16 tables are not built yet");
  }
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace ixc::kernels::cuda
