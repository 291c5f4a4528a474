// Elementwise kernels: grid-stride loops over groups of W elements (W = 4 where the sizes and addresses allow one
// 8- or 16-byte access per group, else 1), f32 arithmetic. They are bound by memory traffic, which the wide
// accesses use 2-3 times better than one 2-byte access per thread; the launchers check sizes and return the launch
// status.
#include <cstdint>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/activations.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/grid_stride.cuh"

namespace ixc::kernels::cuda {
namespace {

// W consecutive elements in f32.
template <int W>
struct Group {
  float v[W];
};

template <int W, typename T>
__device__ inline Group<W> LoadGroup(const T* p) {
  Group<W> g;
  if constexpr (W == 4) {
    const float4 f = LoadFour(p);
    g.v[0] = f.x, g.v[1] = f.y, g.v[2] = f.z, g.v[3] = f.w;
  } else {
#pragma unroll
    for (int e = 0; e < W; ++e) g.v[e] = ToFloat(p[e]);
  }
  return g;
}

template <int W, typename T>
__device__ inline void StoreGroup(T* p, const Group<W>& g) {
  if constexpr (W == 4) {
    StoreFour(p, {g.v[0], g.v[1], g.v[2], g.v[3]});
  } else {
#pragma unroll
    for (int e = 0; e < W; ++e) p[e] = FromFloat<T>(g.v[e]);
  }
}

template <typename T, int W>
__global__ void SwiGluKernel(const T* gate, const T* up, T* out, int64_t n) {
  IXC_GRID_STRIDE(i, n / W) {
    Group<W> g = LoadGroup<W>(gate + i * W);
    const Group<W> u = LoadGroup<W>(up + i * W);
#pragma unroll
    for (int e = 0; e < W; ++e) g.v[e] = SwiGlu(g.v[e], u.v[e]);
    StoreGroup(out + i * W, g);
  }
}

// Rows over blockIdx.y (strided past 65535), column groups over blockIdx.x: no division per element.
#define IXC_ROWS_AND_GROUPS(row, c, rows, groups)                                               \
  for (int64_t row = blockIdx.y; row < (rows); row += gridDim.y)                              \
    for (int64_t c = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; c < (groups); \
         c += int64_t{gridDim.x} * blockDim.x)

// out (rows, cols) = Op(x + bias), bias (cols) f32 or null (Op: ExactGelu or QuickGelu).
template <typename T, int W, typename Op>
__global__ void ActivationKernel(const T* x, const float* bias, T* out, int64_t rows, int64_t cols) {
  IXC_ROWS_AND_GROUPS(row, c, rows, cols / W) {
    Group<W> g = LoadGroup<W>(x + row * cols + c * W);
    if (bias != nullptr) {
      const Group<W> b = LoadGroup<W>(bias + c * W);
#pragma unroll
      for (int e = 0; e < W; ++e) g.v[e] += b.v[e];
    }
#pragma unroll
    for (int e = 0; e < W; ++e) g.v[e] = Op()(g.v[e]);
    StoreGroup(out + row * cols + c * W, g);
  }
}

template <typename T, int W>
__global__ void GatherKernel(const T* table, const int32_t* ids, int64_t n, int64_t hidden, float* out) {
  IXC_ROWS_AND_GROUPS(token, c, n, hidden / W) {
    StoreGroup(out + token * hidden + c * W, LoadGroup<W>(table + int64_t{ids[token]} * hidden + c * W));
  }
}

template <typename T, int W>
__global__ void AddBiasKernel(T* y, const float* bias, int64_t rows, int64_t cols) {
  IXC_ROWS_AND_GROUPS(row, c, rows, cols / W) {
    Group<W> g = LoadGroup<W>(y + row * cols + c * W);
    const Group<W> b = LoadGroup<W>(bias + c * W);
#pragma unroll
    for (int e = 0; e < W; ++e) g.v[e] += b.v[e];
    StoreGroup(y + row * cols + c * W, g);
  }
}

dim3 RowsAndGroupsGrid(int64_t rows, int64_t groups) {
  return dim3(static_cast<unsigned>(std::min<int64_t>((groups + kGridStrideThreads - 1) / kGridStrideThreads, 1024)),
              static_cast<unsigned>(std::min<int64_t>(rows, 65535)));
}

// 4 where `count` (the elements a group must divide) is a multiple of 4 and every tensor (pointer, element bytes)
// starts on a 4-element boundary; else 1.
int GroupWidth(int64_t count, std::initializer_list<std::pair<const void*, int64_t>> tensors) {
  return count % 4 == 0 && !FirstNotFourAligned(tensors) ? 4 : 1;
}

// Calls f(std::integral_constant<int, W>) for the group width.
template <typename F>
void DispatchWidth(int width, F&& f) {
  if (width == 4) {
    f(std::integral_constant<int, 4>{});
  } else {
    f(std::integral_constant<int, 1>{});
  }
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

// Checks n and dispatches the dtype; `launch(T{}, blocks)` does the launch (blocks: one element per thread).
template <typename F>
absl::Status LaunchOver(const char* op, DType dtype, int64_t n, F&& launch) {
  IXC_RETURN_IF_ERROR(CheckSize(op, n));
  if (n == 0) return absl::OkStatus();
  IXC_RETURN_IF_ERROR(DispatchDType(dtype, [&](auto tag) { launch(tag, GridStrideBlocks(n)); }));
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

template <typename Op>
absl::Status LaunchActivation(const char* op, DType dtype, const void* x, const float* bias, void* out, int64_t rows,
                              int64_t cols, cudaStream_t stream) {
  if (rows < 0 || cols < 0) return absl::InvalidArgumentError(absl::StrCat(op, ": ", rows, " x ", cols));
  const int64_t e = DTypeSize(dtype);
  return LaunchOver(op, dtype, rows * cols, [&](auto tag, int) {
    using T = decltype(tag);
    DispatchWidth(GroupWidth(cols, {{x, e}, {out, e}, {bias, 4}}), [&](auto width) {
      constexpr int W = decltype(width)::value;
      ActivationKernel<T, W, Op><<<RowsAndGroupsGrid(rows, cols / W), kGridStrideThreads, 0, stream>>>(
          static_cast<const T*>(x), bias, static_cast<T*>(out), rows, cols);
    });
  });
}

}  // namespace

absl::Status LaunchSwiGlu(DType dtype, const void* gate, const void* up, void* out, int64_t n, cudaStream_t stream) {
  const int64_t e = DTypeSize(dtype);
  return LaunchOver("SwiGlu", dtype, n, [&](auto tag, int) {
    using T = decltype(tag);
    DispatchWidth(GroupWidth(n, {{gate, e}, {up, e}, {out, e}}), [&](auto width) {
      constexpr int W = decltype(width)::value;
      SwiGluKernel<T, W><<<GridStrideBlocks(n / W), kGridStrideThreads, 0, stream>>>(
          static_cast<const T*>(gate), static_cast<const T*>(up), static_cast<T*>(out), n);
    });
  });
}

absl::Status LaunchGelu(DType dtype, const void* x, const float* bias, void* out, int64_t rows, int64_t cols,
                        cudaStream_t stream) {
  return LaunchActivation<ExactGelu>("Gelu", dtype, x, bias, out, rows, cols, stream);
}

absl::Status LaunchQuickGelu(DType dtype, const void* x, const float* bias, void* out, int64_t rows, int64_t cols,
                             cudaStream_t stream) {
  return LaunchActivation<QuickGelu>("QuickGelu", dtype, x, bias, out, rows, cols, stream);
}

absl::Status LaunchEmbeddingGather(const void* table, DType dtype, int64_t vocab, int64_t hidden, const int32_t* ids,
                                   const int32_t* host_ids, int64_t n, float* out, cudaStream_t stream) {
  for (int64_t t = 0; t < n; ++t) {
    if (host_ids[t] < 0 || host_ids[t] >= vocab) {
      return absl::OutOfRangeError(absl::StrCat("token id ", host_ids[t], " at position ", t,
                                                " is outside the vocabulary [0, ", vocab, ")"));
    }
  }
  return LaunchOver("EmbeddingGather", dtype, n * hidden, [&](auto tag, int) {
    using T = decltype(tag);
    DispatchWidth(GroupWidth(hidden, {{table, DTypeSize(dtype)}, {out, 4}}), [&](auto width) {
      constexpr int W = decltype(width)::value;
      GatherKernel<T, W><<<RowsAndGroupsGrid(n, hidden / W), kGridStrideThreads, 0, stream>>>(
          static_cast<const T*>(table), ids, n, hidden, out);
    });
  });
}

absl::Status LaunchAddBias(DType dtype, void* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream) {
  return LaunchOver("AddBias", dtype, rows * cols, [&](auto tag, int) {
    using T = decltype(tag);
    DispatchWidth(GroupWidth(cols, {{y, DTypeSize(dtype)}, {bias, 4}}), [&](auto width) {
      constexpr int W = decltype(width)::value;
      AddBiasKernel<T, W><<<RowsAndGroupsGrid(rows, cols / W), kGridStrideThreads, 0, stream>>>(static_cast<T*>(y),
                                                                                                bias, rows, cols);
    });
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
