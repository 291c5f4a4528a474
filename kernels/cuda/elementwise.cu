// Elementwise kernels: one thread per element, grid-stride loops, f32 arithmetic. They are bound by memory traffic;
// the launchers check sizes and return the launch status.
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/grid_stride.cuh"

namespace ixc::kernels::cuda {
namespace {

template <typename T>
__global__ void SwiGluKernel(const T* gate, const T* up, T* out, int64_t n) {
  IXC_GRID_STRIDE(i, n) {
    const float g = ToFloat(gate[i]);
    out[i] = FromFloat<T>(g / (1.f + expf(-g)) * ToFloat(up[i]));
  }
}

template <typename T>
__global__ void GeluKernel(const T* x, T* out, int64_t n) {
  IXC_GRID_STRIDE(i, n) {
    const float v = ToFloat(x[i]);
    out[i] = FromFloat<T>(0.5f * v * (1.f + erff(v * 0.70710678118654752f)));
  }
}

template <typename T>
__global__ void QuickGeluKernel(const T* x, T* out, int64_t n) {
  IXC_GRID_STRIDE(i, n) {
    const float v = ToFloat(x[i]);
    out[i] = FromFloat<T>(v / (1.f + expf(-1.702f * v)));
  }
}

template <typename T>
__global__ void GatherKernel(const T* table, const int32_t* ids, int64_t n, int64_t hidden, float* out) {
  IXC_GRID_STRIDE(e, n * hidden) {
    const int64_t token = e / hidden, c = e % hidden;
    out[e] = ToFloat(table[int64_t{ids[token]} * hidden + c]);
  }
}

template <typename T>
__global__ void AddBiasKernel(T* y, const float* bias, int64_t rows, int64_t cols) {
  IXC_GRID_STRIDE(e, rows * cols) { y[e] = FromFloat<T>(ToFloat(y[e]) + bias[e % cols]); }
}

template <typename T>
__global__ void ZeroRowsKernel(T* y, const uint8_t* mask, int64_t rows, int64_t cols) {
  IXC_GRID_STRIDE(e, rows * cols) {
    if (mask[e / cols] == 0) y[e] = FromFloat<T>(0.f);
  }
}

template <typename T>
__global__ void FillUniformKernel(T* x, int64_t n, uint64_t seed, float scale) {
  IXC_GRID_STRIDE(i, n) {
    uint64_t h = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(i);  // splitmix64
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
    h ^= h >> 31;
    const float unit = static_cast<float>(h >> 40) * (1.f / 16777216.f);  // [0, 1)
    x[i] = FromFloat<T>((2.f * unit - 1.f) * scale);
  }
}

absl::Status CheckSize(const char* op, int64_t n) {
  if (n < 0) return absl::InvalidArgumentError(absl::StrCat(op, ": negative size ", n));
  return absl::OkStatus();
}

// Launches Kernel<T> over n elements for the dtype; `launch(T{}, blocks)` does the launch.
template <typename F>
absl::Status LaunchOver(const char* op, DType dtype, int64_t n, F&& launch) {
  IXC_RETURN_IF_ERROR(CheckSize(op, n));
  if (n == 0) return absl::OkStatus();
  IXC_RETURN_IF_ERROR(DispatchDType(dtype, [&](auto tag) { launch(tag, GridStrideBlocks(n)); }));
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace

absl::Status LaunchSwiGlu(DType dtype, const void* gate, const void* up, void* out, int64_t n, cudaStream_t stream) {
  return LaunchOver("SwiGlu", dtype, n, [&](auto tag, int blocks) {
    using T = decltype(tag);
    SwiGluKernel<T><<<blocks, kGridStrideThreads, 0, stream>>>(static_cast<const T*>(gate), static_cast<const T*>(up),
                                                     static_cast<T*>(out), n);
  });
}

absl::Status LaunchGelu(DType dtype, const void* x, void* out, int64_t n, cudaStream_t stream) {
  return LaunchOver("Gelu", dtype, n, [&](auto tag, int blocks) {
    using T = decltype(tag);
    GeluKernel<T><<<blocks, kGridStrideThreads, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(out), n);
  });
}

absl::Status LaunchQuickGelu(DType dtype, const void* x, void* out, int64_t n, cudaStream_t stream) {
  return LaunchOver("QuickGelu", dtype, n, [&](auto tag, int blocks) {
    using T = decltype(tag);
    QuickGeluKernel<T><<<blocks, kGridStrideThreads, 0, stream>>>(static_cast<const T*>(x), static_cast<T*>(out), n);
  });
}

absl::Status LaunchEmbeddingGather(const void* table, DType dtype, int64_t vocab, int64_t hidden, const int32_t* ids,
                                   const int32_t* host_ids, int64_t n, float* out, cudaStream_t stream) {
  for (int64_t t = 0; t < n; ++t) {
    if (host_ids[t] < 0 || host_ids[t] >= vocab) {
      return absl::OutOfRangeError(absl::StrCat("token id ", host_ids[t], " at position ", t,
                                                " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  return LaunchOver("EmbeddingGather", dtype, n * hidden, [&](auto tag, int blocks) {
    using T = decltype(tag);
    GatherKernel<T><<<blocks, kGridStrideThreads, 0, stream>>>(static_cast<const T*>(table), ids, n, hidden, out);
  });
}

absl::Status LaunchAddBias(DType dtype, void* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  return LaunchOver("AddBias", dtype, rows * cols, [&](auto tag, int blocks) {
    using T = decltype(tag);
    AddBiasKernel<T><<<blocks, kGridStrideThreads, 0, stream>>>(static_cast<T*>(y), bias, rows, cols);
  });
}

absl::Status LaunchZeroRows(DType dtype, void* y, const uint8_t* mask, int64_t rows, int64_t cols,
                            cudaStream_t stream) {
  return LaunchOver("ZeroRows", dtype, rows * cols, [&](auto tag, int blocks) {
    using T = decltype(tag);
    ZeroRowsKernel<T><<<blocks, kGridStrideThreads, 0, stream>>>(static_cast<T*>(y), mask, rows, cols);
  });
}

absl::Status LaunchFillUniform(DType dtype, void* x, int64_t n, uint64_t seed, float scale, cudaStream_t stream) {
  return LaunchOver("FillUniform", dtype, n, [&](auto tag, int blocks) {
    using T = decltype(tag);
    FillUniformKernel<T><<<blocks, kGridStrideThreads, 0, stream>>>(static_cast<T*>(x), n, seed, scale);
  });
}

}  // namespace ixc::kernels::cuda
