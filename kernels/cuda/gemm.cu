// cuBLASLt is column-major; a row-major (m, n) output is its (n, m) column-major transpose, so each call computes
// out^T (n, m) = w (n, k) . x^T (k, m): A = w read transposed (stored as column-major (k, n)), B = x (column-major
// (k, m)), C = D = out (column-major (n, m)).
#include <cublasLt.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/activations.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/warp_sum.cuh"

namespace ixc::kernels::cuda {
namespace {

absl::Status LtStatus(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  // The status names live in libcublas, which we do not link: the number is in cublas_api.h.
  return absl::InternalError(absl::StrCat(what, " failed: cublasStatus_t ", static_cast<int>(status)));
}

#define IXC_LT_RETURN_IF_ERROR(expr)                                    \
  do {                                                                  \
    if (absl::Status s_ = LtStatus((expr), #expr); !s_.ok()) return s_; \
  } while (false)

cudaDataType_t CudaType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return CUDA_R_32F;
    case DType::kBF16:
      return CUDA_R_16BF;
    case DType::kF16:
      return CUDA_R_16F;
  }
  return CUDA_R_32F;
}

cublasLtHandle_t Handle(void* handle) { return static_cast<cublasLtHandle_t>(handle); }

// Few rows (decode): the GEMM is a pass over the weights, which cuBLASLt streams at 35-60% of HBM bandwidth at the
// model's shapes (measured on an H200). Here one warp per output feature reads its weight row in 16-byte pieces,
// eight in flight per lane, against the x rows (which stay in L1/L2), and reduces by shuffles. A block is eight
// features and the grid covers all of them, so the hardware hands the next block to whichever multiprocessor
// finishes first (no tail of warps with an extra feature).
constexpr int kSmallM = 2;  // at 8 rows cuBLASLt was faster (H200: 1.0-1.9 vs 1.3-3.9 TB/s)
constexpr int kSmallThreads = 256;
constexpr int kSmallFeatures = kSmallThreads / 32;  // per block
constexpr int kSmallLoads = 8;                      // 16-byte weight loads in flight per lane

constexpr int64_t kNormedRowsBytes = 48 << 10;  // RmsNormInput's rows in shared memory, without opting in to more

// Where the kernel does the RMSNorm of its rows (RmsNormInput): rows (M, k) = weight * (residual * inv_rms) rounded
// to T, as AddRmsNormKernel (kernels/cuda/norm.cu) writes them, into shared memory; the first block also stores
// them to norm.normed. Every thread of the block must call it.
template <typename T, int M>
__device__ void RmsNormRowsToShared(const RmsNormInput& norm, int64_t k, T* rows) {
  __shared__ float partial[kSmallFeatures][M];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t quads = k / 4;
  float inv_rms[M];
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float sum_sq = 0.f;
    for (int64_t i = threadIdx.x; i < quads; i += kSmallThreads) {
      const float4 v = LoadFour(norm.residual + m * k + 4 * i);
      sum_sq += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    sum_sq = WarpSum(sum_sq);
    if (lane == 0) partial[warp][m] = sum_sq;
  }
  __syncthreads();
#pragma unroll
  for (int m = 0; m < M; ++m) {
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < kSmallFeatures; ++w) total += partial[w][m];
    inv_rms[m] = rsqrtf(total / static_cast<float>(k) + norm.eps);
  }
  T* normed = blockIdx.x == 0 ? static_cast<T*>(norm.normed) : nullptr;
#pragma unroll
  for (int m = 0; m < M; ++m) {
    for (int64_t i = threadIdx.x; i < quads; i += kSmallThreads) {
      const float4 v = LoadFour(norm.residual + m * k + 4 * i), w = LoadFour(norm.weight + 4 * i);
      const float r = inv_rms[m];
      const float4 out = {w.x * (v.x * r), w.y * (v.y * r), w.z * (v.z * r), w.w * (v.w * r)};
      StoreFour(rows + m * k + 4 * i, out);
      if (normed != nullptr) StoreFour(normed + m * k + 4 * i, out);
    }
  }
  __syncthreads();
}

// acc[r][m] = x[m] . w_rows[r] over the whole row, in every lane: the warp's lanes split the row in 16-byte pieces.
// The first weights are requested before waiting for the kernel that wrote x (LaunchAfterPrior).
template <typename T, int M, int kRows>
__device__ void DotWeightRows(const T* x, const T* const (&w_rows)[kRows], int64_t k, float (&acc)[kRows][M]) {
  constexpr int kUnroll = kSmallLoads / kRows;
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.f;
  }
  auto accumulate = [&](const uint4& w8, int r, int64_t c) {
    const T* wv = reinterpret_cast<const T*>(&w8);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const uint4 x8 = *reinterpret_cast<const uint4*>(x + m * k + c);
      const T* xv = reinterpret_cast<const T*>(&x8);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[r][m] += ToFloat(wv[e]) * ToFloat(xv[e]);
    }
  };
  int64_t c = lane * 8;
  bool waited = false;
  for (; c + (kUnroll - 1) * 256 < k; c += kUnroll * 256) {
    uint4 w8[kRows][kUnroll];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) w8[r][u] = __ldg(reinterpret_cast<const uint4*>(w_rows[r] + c + u * 256));
    }
    if (!waited) {
      WaitForPriorKernel();
      waited = true;
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) accumulate(w8[r][u], r, c + u * 256);
    }
  }
  if (!waited) WaitForPriorKernel();
  for (; c < k; c += 256) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) accumulate(__ldg(reinterpret_cast<const uint4*>(w_rows[r] + c)), r, c);
  }
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = WarpSum(acc[r][m]);
  }
}

// acc[r][m] for this warp's feature: x . its weight rows, or with kNorm the RMSNorm of norm's rows . them. With the
// norm every warp of the block takes part in it, so a warp past the last feature reads that feature's weights and
// its caller stores nothing.
template <typename T, int M, int kRows, bool kNorm>
__device__ void FeatureDots(const T* x, const T* const (&weights)[kRows], const RmsNormInput& norm, int64_t feature,
                            int64_t n, int64_t k, float (&acc)[kRows][M]) {
  const int64_t row = min(feature, n - 1);
  const T* rows[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) rows[r] = weights[r] + row * k;
  if constexpr (kNorm) {
    // The first round of weights DotWeightRows would request before the wait, asked of L2 instead (a 128-byte line
    // per lane and row), as the norm must wait first and holds block barriers.
    constexpr int kFirstRoundBytes = kSmallLoads / kRows * 256 * sizeof(T);
    const int lane = threadIdx.x % 32;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if ((lane + 1) * 128 <= kFirstRoundBytes && (lane + 1) * 128 <= k * static_cast<int64_t>(sizeof(T))) {
        asm volatile("prefetch.global.L2 [%0];" ::"l"(reinterpret_cast<const char*>(rows[r]) + lane * 128));
      }
    }
    extern __shared__ __align__(16) unsigned char normed_rows[];  // (M, k) T
    T* x_rows = reinterpret_cast<T*>(normed_rows);
    WaitForPriorKernel();
    RmsNormRowsToShared<T, M>(norm, k, x_rows);
    DotWeightRows<T, M, kRows>(x_rows, rows, k, acc);  // its own wait has nothing left to wait for
  } else {
    DotWeightRows<T, M, kRows>(x, rows, k, acc);
  }
}

// A second product over the same rows in the same launch (Gemm::LinearWithLowRank): the features past the first
// product's are its, written in T without accumulation.
template <typename T>
struct SecondProduct {
  const T* w = nullptr;  // (n, k)
  T* out = nullptr;      // (M, n)
  int64_t n = 0;         // 0: none
};

template <typename T, typename Out, int M, bool kNorm>
__global__ void __launch_bounds__(kSmallThreads)
    SmallMLinearKernel(const T* x, const T* w, Out* out, int64_t n, int64_t k, bool accumulate, SecondProduct<T> second,
                       RmsNormInput norm) {
  AllowNextKernel();
  const int64_t feature = int64_t{blockIdx.x} * kSmallFeatures + threadIdx.x / 32, total = n + second.n;
  if (!kNorm && feature >= total) return;
  const bool in_second = second.n > 0 && feature >= n;
  const T* const weights[1] = {in_second ? second.w : w};
  const int64_t local = in_second ? feature - n : feature;
  float acc[1][M];
  FeatureDots<T, M, 1, kNorm>(x, weights, norm, local, in_second ? second.n : n, k, acc);
  if (feature < total && threadIdx.x % 32 == 0) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (in_second) {
        second.out[m * second.n + local] = FromFloat<T>(acc[0][m]);
      } else {
        Out* y = out + m * n + feature;
        *y = FromFloat<Out>(acc[0][m] + (accumulate ? ToFloat(*y) : 0.f));
      }
    }
  }
}

// The feed-forward's gate and up rows of one feature read together, and SwiGLU applied to the two products rounded
// to T, as separate Linear calls and LaunchSwiGlu would.
template <typename T, int M, bool kNorm>
__global__ void __launch_bounds__(kSmallThreads)
    SmallMSwiGluKernel(const T* x, const T* w_gate, const T* w_up, T* out, int64_t n, int64_t k, RmsNormInput norm) {
  AllowNextKernel();
  const int64_t feature = int64_t{blockIdx.x} * kSmallFeatures + threadIdx.x / 32;
  if (!kNorm && feature >= n) return;
  const T* const weights[2] = {w_gate, w_up};
  float acc[2][M];
  FeatureDots<T, M, 2, kNorm>(x, weights, norm, feature, n, k, acc);
  if (feature < n && threadIdx.x % 32 == 0) {
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float gate = ToFloat(FromFloat<T>(acc[0][m])), up = ToFloat(FromFloat<T>(acc[1][m]));
      out[m * n + feature] = FromFloat<T>(SwiGlu(gate, up));
    }
  }
}

// A LoRA's B product onto a base product, rounded as a Linear accumulating into it rounds; a row without the LoRA
// (`takes` false) keeps the base, as the unfused path's zeroed A product leaves it.
template <typename T>
__device__ T OntoBase(float product, T base, bool takes) {
  return takes ? FromFloat<T>(product + ToFloat(base)) : base;
}

// Gemm::LowRankSwiGlu: a warp per feature reads its rows of both B's, each against its own A products (the dot
// products as SmallMLinearKernel takes them, so the sums are the same bits), adds them to the base products where
// the row takes the LoRA, rounds as the accumulating Linear would, and applies SwiGLU as LaunchSwiGlu does.
template <typename T, int M>
__global__ void __launch_bounds__(kSmallThreads)
    SmallMLowRankSwiGluKernel(const T* gate, const T* up, const T* a_gate, const T* a_up, const T* b_gate,
                              const T* b_up, const uint8_t* mask, T* out, int64_t n, int64_t rank) {
  AllowNextKernel();
  const int64_t feature = int64_t{blockIdx.x} * kSmallFeatures + threadIdx.x / 32;
  if (feature >= n) return;
  const T* const gate_row[1] = {b_gate + feature * rank};
  const T* const up_row[1] = {b_up + feature * rank};
  float gate_lora[1][M], up_lora[1][M];
  DotWeightRows<T, M, 1>(a_gate, gate_row, rank, gate_lora);  // waits for the kernel that wrote the A products
  DotWeightRows<T, M, 1>(a_up, up_row, rank, up_lora);
  if (threadIdx.x % 32 != 0) return;
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const int64_t i = m * n + feature;
    const bool takes = mask == nullptr || mask[m] != 0;
    const T g = OntoBase(gate_lora[0][m], gate[i], takes), u = OntoBase(up_lora[0][m], up[i], takes);
    out[i] = FromFloat<T>(SwiGlu(ToFloat(g), ToFloat(u)));
  }
}

unsigned SmallMBlocks(int64_t n) { return static_cast<unsigned>((n + kSmallFeatures - 1) / kSmallFeatures); }

// Where the qkv pass's products go (QkvRopeArgs), per row, and what they add onto.
struct QkvPlacement {
  const int32_t* positions;  // (M) device
  const int32_t* slots;      // (M) device
  float base[kSmallM], position_scale[kSmallM];
  int kv_heads, group, head_dim;
  const void* products = nullptr;  // QkvRopeArgs::base: (M, n) T, or null
  const uint8_t* mask = nullptr;   // QkvRopeArgs::mask
};

// A warp per pair (i, i + half) of a packed head: both weight rows read together (as the SwiGLU pass reads gate and
// up), the products rounded to T as the qkv rows would hold them, then what RopeStoreKernel does with them.
template <typename T, int M, bool kNorm>
__global__ void __launch_bounds__(kSmallThreads)
    SmallMQkvRopeKernel(const T* x, const T* w, int64_t k, QkvPlacement place, T* q, T* k_pool, T* v_pool,
                        RmsNormInput norm) {
  AllowNextKernel();
  const int half = place.head_dim / 2, per_kv = place.group + 2;
  const int64_t pairs = int64_t{place.kv_heads} * per_kv * half;
  const int64_t pair = int64_t{blockIdx.x} * kSmallFeatures + threadIdx.x / 32;
  if (!kNorm && pair >= pairs) return;
  const int64_t valid_pair = min(pair, pairs - 1);
  const int p = static_cast<int>(valid_pair / half), i = static_cast<int>(valid_pair % half);
  const T* const weights[2] = {w, w + int64_t{half} * k};  // feature p * head_dim + i, and i + half
  float acc[2][M];
  FeatureDots<T, M, 2, kNorm>(x, weights, norm, int64_t{p} * place.head_dim + i, 2 * pairs, k, acc);
  if (pair >= pairs || threadIdx.x % 32 != 0) return;
  const int kv_head = p / per_kv, r = p - kv_head * per_kv;
  const int64_t feature = int64_t{p} * place.head_dim + i, n = 2 * pairs;
#pragma unroll
  for (int m = 0; m < M; ++m) {
    T a = FromFloat<T>(acc[0][m]), b = FromFloat<T>(acc[1][m]);
    if (place.products != nullptr) {  // a LoRA's B product onto the base products, rounded as Linear's accumulate
      const T* row = static_cast<const T*>(place.products) + m * n + feature;
      const bool takes = place.mask == nullptr || place.mask[m] != 0;
      a = OntoBase(acc[0][m], row[0], takes);
      b = OntoBase(acc[1][m], row[half], takes);
    }
    const int64_t slot = place.slots[m];
    const int64_t cache_offset = (slot * place.kv_heads + kv_head) * place.head_dim;
    if (r == place.group + 1) {  // V: stored as it is
      if (slot >= 0) {
        v_pool[cache_offset + i] = a;
        v_pool[cache_offset + i + half] = b;
      }
      continue;
    }
    float sin, cos;
    RopeAngle(static_cast<float>(place.positions[m]) * place.position_scale[m], i, place.head_dim, place.base[m], &sin,
              &cos);
    RotatePair(a, b, cos, sin);
    if (r < place.group) {
      T* dst = q + ((int64_t{m} * place.kv_heads + kv_head) * place.group + r) * place.head_dim;
      dst[i] = a;
      dst[i + half] = b;
    } else if (slot >= 0) {
      k_pool[cache_offset + i] = a;
      k_pool[cache_offset + i + half] = b;
    }
  }
}

// A weight pass over `features` warps: the kernel's instance that does its rows' RMSNorm, with their shared memory,
// where `norm`, else the plain one. Each kernel takes the norm as its last parameter.
template <typename T, int M, typename... Params, typename... Args>
cudaError_t LaunchWeightPass(void (*plain)(Params...), void (*normed)(Params...), const RmsNormInput* norm,
                             int64_t features, int64_t k, bool programmatic, cudaStream_t stream, Args&&... args) {
  return LaunchAfterPriorWithSmem(programmatic, norm != nullptr ? normed : plain, SmallMBlocks(features), kSmallThreads,
                                  norm != nullptr ? static_cast<size_t>(M * k) * sizeof(T) : 0, stream,
                                  std::forward<Args>(args)..., norm != nullptr ? *norm : RmsNormInput{});
}

template <typename T, typename Out, int M>
cudaError_t LaunchSmallM(const LinearArgs& args, const LowRankArgs* second, bool programmatic, cudaStream_t stream) {
  SecondProduct<T> product;
  if (second != nullptr) product = {static_cast<const T*>(second->w), static_cast<T*>(second->out), second->n};
  return LaunchWeightPass<T, M>(SmallMLinearKernel<T, Out, M, false>, SmallMLinearKernel<T, Out, M, true>, args.norm,
                                args.n + product.n, args.k, programmatic, stream, static_cast<const T*>(args.x),
                                static_cast<const T*>(args.w), static_cast<Out*>(args.out), args.n, args.k,
                                args.accumulate, product);
}

// `launch` given the row count, 1 or 2 (kSmallM), as a compile-time constant: each count is a kernel of its own.
template <typename Launch>
cudaError_t ForSmallRows(int64_t m, Launch&& launch) {
  return m == 1 ? launch(std::integral_constant<int, 1>{}) : launch(std::integral_constant<int, 2>{});
}

template <typename T, typename Out>
cudaError_t DispatchSmallM(const LinearArgs& args, const LowRankArgs* second, bool programmatic, cudaStream_t stream) {
  return ForSmallRows(args.m, [&](auto rows) {
    return LaunchSmallM<T, Out, decltype(rows)::value>(args, second, programmatic, stream);
  });
}

absl::Status SmallMLinear(const LinearArgs& args, const LowRankArgs* second, bool programmatic, cudaStream_t stream) {
  return DispatchLinearTypes(args.in, args.out_dtype, "Linear", [&](auto in, auto out) {
    return DispatchSmallM<decltype(in), decltype(out)>(args, second, programmatic, stream);
  });
}

}  // namespace

bool Gemm::StreamsWeights(int64_t m, int64_t k) { return m >= 1 && m <= kSmallM && k % 8 == 0; }

bool Gemm::NormsInPass(int64_t m, int64_t k) { return StreamsWeights(m, k) && m * k * 2 <= kNormedRowsBytes; }

namespace {

// args.bias added to args.out in a pass of its own, where cuBLASLt's epilogue did not take it.
absl::Status AddBiasPass(const LinearArgs& args, cudaStream_t stream) {
  if (args.bias == nullptr) return absl::OkStatus();
  return LaunchAddBias(args.out_dtype, args.out, args.bias, args.m, args.n, stream);
}

absl::Status CheckNormInPass(const char* op, const RmsNormInput* norm, int64_t m, int64_t k) {
  if (norm == nullptr || Gemm::NormsInPass(m, k)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(op, ": the RMSNorm is done in the weight pass for 1-", kSmallM,
                                                 " rows of k a multiple of 8 up to ", kNormedRowsBytes / 2 / kSmallM,
                                                 ", not ", m, " x ", k));
}

}  // namespace

absl::Status Gemm::SwiGluLinear(const SwiGluArgs& args, cudaStream_t stream) {
  if (!StreamsWeights(args.m, args.k) || args.n <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("SwiGluLinear: m ", args.m, ", n ", args.n, ", k ", args.k,
                                                   " (built for 1-", kSmallM, " rows and k a multiple of 8)"));
  }
  IXC_RETURN_IF_ERROR(CheckNormInPass("SwiGluLinear", args.norm, args.m, args.k));
  cudaError_t launched = cudaSuccess;
  IXC_RETURN_IF_ERROR(DispatchHalfDType(args.dtype, "SwiGluLinear", [&](auto tag) {
    using T = decltype(tag);
    auto launch = [&](auto rows) {
      constexpr int M = decltype(rows)::value;
      return LaunchWeightPass<T, M>(SmallMSwiGluKernel<T, M, false>, SmallMSwiGluKernel<T, M, true>, args.norm, args.n,
                                    args.k, dependent_launch_, stream, static_cast<const T*>(args.x),
                                    static_cast<const T*>(args.w_gate), static_cast<const T*>(args.w_up),
                                    static_cast<T*>(args.out), args.n, args.k);
    };
    launched = ForSmallRows(args.m, launch);
  }));
  IXC_CUDA_RETURN_IF_ERROR(launched);
  return absl::OkStatus();
}

absl::Status Gemm::LowRankSwiGlu(const LowRankSwiGluArgs& args, cudaStream_t stream) {
  if (!StreamsWeights(args.m, args.rank) || args.n <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("LowRankSwiGlu: m ", args.m, ", n ", args.n, ", rank ", args.rank,
                                                   " (built for 1-", kSmallM, " rows and a rank a multiple of 8)"));
  }
  cudaError_t launched = cudaSuccess;
  IXC_RETURN_IF_ERROR(DispatchHalfDType(args.dtype, "LowRankSwiGlu", [&](auto tag) {
    using T = decltype(tag);
    auto launch = [&](auto rows) {
      constexpr int M = decltype(rows)::value;
      return LaunchAfterPrior(dependent_launch_, SmallMLowRankSwiGluKernel<T, M>, SmallMBlocks(args.n), kSmallThreads,
                              stream, static_cast<const T*>(args.gate), static_cast<const T*>(args.up),
                              static_cast<const T*>(args.a_gate), static_cast<const T*>(args.a_up),
                              static_cast<const T*>(args.b_gate), static_cast<const T*>(args.b_up), args.mask,
                              static_cast<T*>(args.out), args.n, args.rank);
    };
    launched = ForSmallRows(args.m, launch);
  }));
  IXC_CUDA_RETURN_IF_ERROR(launched);
  return absl::OkStatus();
}

absl::Status Gemm::QkvRopeLinear(const QkvRopeArgs& args, cudaStream_t stream) {
  const DeviceKvPools& pools = args.pools;
  if (!StreamsWeights(args.m, args.k) || (args.norm != nullptr && !NormsInPass(args.m, args.k)) || args.group <= 0 ||
      pools.kv_heads <= 0 || pools.head_dim <= 0 || pools.head_dim % 2 != 0 ||
      args.rope[0].head_dim != pools.head_dim || (args.m == 2 && args.rope[1].head_dim != pools.head_dim)) {
    return absl::InvalidArgumentError(absl::StrCat("QkvRopeLinear: m ", args.m, ", k ", args.k, ", group ", args.group,
                                                   ", kv_heads ", pools.kv_heads, ", head_dim ", pools.head_dim,
                                                   " (built for 1-", kSmallM, " rows, k a multiple of 8, up to ",
                                                   kNormedRowsBytes / 2 / kSmallM, " with the norm, even head dims)"));
  }
  QkvPlacement place{args.positions, args.slots,     {},        {},       pools.kv_heads,
                     args.group,     pools.head_dim, args.base, args.mask};
  for (int64_t r = 0; r < args.m; ++r) {
    place.base[r] = args.rope[r].base;
    place.position_scale[r] = args.rope[r].position_scale;
  }
  const int64_t pairs = int64_t{pools.kv_heads} * (args.group + 2) * (pools.head_dim / 2);
  cudaError_t launched = cudaSuccess;
  IXC_RETURN_IF_ERROR(DispatchHalfDType(pools.dtype, "QkvRopeLinear", [&](auto tag) {
    using T = decltype(tag);
    auto launch = [&](auto rows) {
      constexpr int M = decltype(rows)::value;
      return LaunchWeightPass<T, M>(SmallMQkvRopeKernel<T, M, false>, SmallMQkvRopeKernel<T, M, true>, args.norm, pairs,
                                    args.k, dependent_launch_, stream, static_cast<const T*>(args.x),
                                    static_cast<const T*>(args.w), args.k, place, static_cast<T*>(args.q),
                                    static_cast<T*>(pools.k), static_cast<T*>(pools.v));
    };
    launched = ForSmallRows(args.m, launch);
  }));
  IXC_CUDA_RETURN_IF_ERROR(launched);
  return absl::OkStatus();
}

namespace {

// Tuning (GemmTuningRequested): plans of kTunedMinRows-kTunedMaxRows rows take the fastest of the heuristic's first
// kTuneCandidates algorithms, by the median of kTuneRuns runs each from HBM. Larger plans keep the heuristic's first
// choice: it reached 70-81% of bf16 peak at the model's shapes, and prefill chunks of many sizes would each pay for
// the timing.
constexpr int64_t kTunedMinRows = kSmallM + 1;
constexpr int64_t kTunedMaxRows = 256;
constexpr int kTuneCandidates = 16;
constexpr int kTuneRuns = 5;

// Split-K variants of the heuristic's first kSplitKBases candidates join them: a few rows of a 4096-wide layer make
// only 32-48 output tiles for 132 multiprocessors, too few to stream the weights at full bandwidth (cuBLASLt's first
// choice read wo and wqkv at 39-45% of HBM on the H200, the 14336- and 92544-wide layers at 60-80%); splitting k
// gives each tile several blocks.
constexpr int kSplitKBases = 4;
constexpr uint32_t kSplitKs[] = {2, 3, 4, 6, 8, 12, 16};
constexpr int64_t kMinSplitDepth = 256;  // of k per split

bool SameAlgo(const cublasLtMatmulAlgo_t& a, const cublasLtMatmulAlgo_t& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

// Whether `stream` is being captured into a CUDA graph (or cannot be asked, which is treated alike: nothing may be
// timed on it then).
bool Capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  return cudaStreamIsCapturing(stream, &status) != cudaSuccess || status != cudaStreamCaptureStatusNone;
}

}  // namespace

bool GemmTuningRequested() {
  static const bool requested = KernelFlagSet("IXC_GEMM_TUNE");
  return requested;
}

struct Gemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  std::vector<cublasLtMatmulAlgo_t> candidates;  // the heuristic's, best first, where the plan is tuned
  bool bias_in_epilogue = false;                 // else the bias is a pass of its own after the GEMM
  ~Plan() {
    if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
    if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
    if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
    if (desc != nullptr) cublasLtMatmulDescDestroy(desc);
  }
};

absl::StatusOr<std::unique_ptr<Gemm>> Gemm::Create(int64_t workspace_bytes, bool tune) {
  std::unique_ptr<Gemm> gemm(new Gemm());
  cublasLtHandle_t handle = nullptr;
  IXC_LT_RETURN_IF_ERROR(cublasLtCreate(&handle));
  gemm->handle_ = handle;
  IXC_CUDA_RETURN_IF_ERROR(cudaMalloc(&gemm->workspace_, workspace_bytes));
  gemm->workspace_bytes_ = workspace_bytes;
  gemm->dependent_launch_ = DependentLaunchSupported();
  if (tune) {
    int device = 0, l2_bytes = 0;
    IXC_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
    IXC_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&l2_bytes, cudaDevAttrL2CacheSize, device));
    gemm->tune_scratch_bytes_ = std::max<int64_t>(2 * int64_t{l2_bytes}, 32 << 20);
    IXC_CUDA_RETURN_IF_ERROR(cudaMalloc(&gemm->tune_scratch_, gemm->tune_scratch_bytes_));
  }
  return gemm;
}

Gemm::~Gemm() {
  plans_.clear();
  if (tune_scratch_ != nullptr) cudaFree(tune_scratch_);
  if (workspace_ != nullptr) cudaFree(workspace_);
  if (handle_ != nullptr) cublasLtDestroy(Handle(handle_));
}

bool Gemm::Tunes(const LinearArgs& args) const {
  return tune_scratch_ != nullptr && args.m >= kTunedMinRows && args.m <= kTunedMaxRows &&
         args.m * args.n * DTypeSize(args.out_dtype) <= tune_scratch_bytes_;
}

absl::StatusOr<Gemm::Plan*> Gemm::PlanFor(const LinearArgs& args, cudaStream_t stream) {
  const Key key{args.m, args.n, args.k, args.in, args.out_dtype, args.accumulate, args.bias != nullptr};
  if (auto it = plans_.find(key); it != plans_.end()) return it->second.get();
  auto plan = std::make_unique<Plan>();
  IXC_LT_RETURN_IF_ERROR(cublasLtMatmulDescCreate(&plan->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t transpose = CUBLAS_OP_T, keep = CUBLAS_OP_N;
  IXC_LT_RETURN_IF_ERROR(
      cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSA, &transpose, sizeof(transpose)));
  IXC_LT_RETURN_IF_ERROR(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof(keep)));
  const cudaDataType_t in = CudaType(args.in), out = CudaType(args.out_dtype);
  IXC_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->a, in, args.k, args.n, args.k));
  IXC_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->b, in, args.k, args.m, args.k));
  IXC_LT_RETURN_IF_ERROR(cublasLtMatrixLayoutCreate(&plan->c, out, args.n, args.m, args.n));

  cublasLtMatmulPreference_t preference = nullptr;
  IXC_LT_RETURN_IF_ERROR(cublasLtMatmulPreferenceCreate(&preference));
  const uint64_t workspace = workspace_bytes_;
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                       sizeof(workspace));
  const int wanted = Tunes(args) ? kTuneCandidates : 1;
  std::vector<cublasLtMatmulHeuristicResult_t> results(wanted);
  int found = 0;
  auto ask = [&] {
    return cublasLtMatmulAlgoGetHeuristic(Handle(handle_), plan->desc, plan->a, plan->b, plan->c, plan->c, preference,
                                          wanted, results.data(), &found);
  };
  // An f32 output takes the bias in the epilogue (cuBLASLt's bias has the output's type; the biases here are f32).
  // The bias pointer is set before asking, as the heuristic reads its alignment from it.
  cublasStatus_t status = CUBLAS_STATUS_NOT_SUPPORTED;
  if (args.bias != nullptr && args.out_dtype == DType::kF32) {
    const cublasLtEpilogue_t bias = CUBLASLT_EPILOGUE_BIAS;
    const void* pointer = args.bias;
    if (cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &bias, sizeof(bias)) ==
            CUBLAS_STATUS_SUCCESS &&
        cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &pointer, sizeof(pointer)) ==
            CUBLAS_STATUS_SUCCESS) {
      status = ask();
      plan->bias_in_epilogue = status == CUBLAS_STATUS_SUCCESS && found > 0;
    }
    if (!plan->bias_in_epilogue) {  // none offered: the plain GEMM, then the bias pass
      const cublasLtEpilogue_t none = CUBLASLT_EPILOGUE_DEFAULT;
      IXC_LT_RETURN_IF_ERROR(
          cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &none, sizeof(none)));
    }
  }
  if (!plan->bias_in_epilogue) status = ask();
  cublasLtMatmulPreferenceDestroy(preference);
  IXC_LT_RETURN_IF_ERROR(status);
  if (found == 0) {
    return absl::UnimplementedError(absl::StrCat("cuBLASLt has no algorithm for ", args.m, "x", args.n, "x", args.k,
                                                 " ", DTypeName(args.in), " -> ", DTypeName(args.out_dtype)));
  }
  plan->algo = results[0].algo;
  Plan* raw = plan.get();
  plans_.emplace(key, std::move(plan));
  if (wanted > 1) {
    for (int i = 0; i < found; ++i) raw->candidates.push_back(results[i].algo);
    AddSplitKCandidates(*raw, args, std::min(found, kSplitKBases));
    if (Capturing(stream)) {
      deferred_.emplace_back(raw, args);  // nothing may run on the stream outside the graph now
    } else {
      IXC_RETURN_IF_ERROR(Tune(*raw, args, stream).status());
    }
  }
  return raw;
}

void Gemm::AddSplitKCandidates(Plan& plan, const LinearArgs& args, int bases) {
  for (int i = 0; i < bases; ++i) {
    const cublasLtMatmulAlgo_t base = plan.candidates[i];
    int32_t split_k_support = 0;
    uint32_t schemes = 0;
    size_t written = 0;
    if (cublasLtMatmulAlgoCapGetAttribute(&base, CUBLASLT_ALGO_CAP_SPLITK_SUPPORT, &split_k_support,
                                          sizeof(split_k_support), &written) != CUBLAS_STATUS_SUCCESS ||
        split_k_support == 0 ||
        cublasLtMatmulAlgoCapGetAttribute(&base, CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK, &schemes, sizeof(schemes),
                                          &written) != CUBLAS_STATUS_SUCCESS) {
      continue;
    }
    // The partial sums are added in f32: in the workspace, or in place where the output is f32 itself (a 16-bit
    // output reduced in its own type would lose precision).
    uint32_t scheme = CUBLASLT_REDUCTION_SCHEME_NONE;
    if (schemes & CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE) {
      scheme = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    } else if (args.out_dtype == DType::kF32 && (schemes & CUBLASLT_REDUCTION_SCHEME_INPLACE)) {
      scheme = CUBLASLT_REDUCTION_SCHEME_INPLACE;
    } else {
      continue;
    }
    for (uint32_t splits : kSplitKs) {
      if (args.k / splits < kMinSplitDepth) break;
      cublasLtMatmulAlgo_t variant = base;
      cublasLtMatmulHeuristicResult_t checked{};
      if (cublasLtMatmulAlgoConfigSetAttribute(&variant, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splits, sizeof(splits)) ==
              CUBLAS_STATUS_SUCCESS &&
          cublasLtMatmulAlgoConfigSetAttribute(&variant, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme,
                                               sizeof(scheme)) == CUBLAS_STATUS_SUCCESS &&
          cublasLtMatmulAlgoCheck(Handle(handle_), plan.desc, plan.a, plan.b, plan.c, plan.c, &variant, &checked) ==
              CUBLAS_STATUS_SUCCESS &&
          checked.workspaceSize <= static_cast<size_t>(workspace_bytes_)) {
        plan.candidates.push_back(variant);
      }
    }
  }
}

absl::Status Gemm::LinearWithCandidate(const LinearArgs& args, int candidate, cudaStream_t stream) {
  if (StreamsWeights(args.m, args.k) || !Tunes(args)) {
    return absl::InvalidArgumentError(absl::StrCat("LinearWithCandidate: ", args.m, " rows are not tuned"));
  }
  IXC_ASSIGN_OR_RETURN(const Plan* plan, PlanFor(args, stream));
  if (candidate < 0 || candidate >= static_cast<int>(plan->candidates.size())) {
    return absl::OutOfRangeError(
        absl::StrCat("LinearWithCandidate: candidate ", candidate, " of ", plan->candidates.size()));
  }
  return RunWithBias(*plan, &plan->candidates[candidate], args, stream);
}

absl::StatusOr<int> Gemm::Candidates(const LinearArgs& args, cudaStream_t stream) {
  if (StreamsWeights(args.m, args.k) || !Tunes(args)) return 0;
  IXC_ASSIGN_OR_RETURN(const Plan* plan, PlanFor(args, stream));
  return static_cast<int>(plan->candidates.size());
}

absl::Status Gemm::RunWithBias(const Plan& plan, const void* algo, const LinearArgs& args, cudaStream_t stream) {
  IXC_RETURN_IF_ERROR(Run(plan, algo, args, args.out, stream));
  return plan.bias_in_epilogue ? absl::OkStatus() : AddBiasPass(args, stream);
}

absl::Status Gemm::Run(const Plan& plan, const void* algo, const LinearArgs& args, void* out, cudaStream_t stream) {
  if (plan.bias_in_epilogue) {
    const void* pointer = args.bias;
    IXC_LT_RETURN_IF_ERROR(
        cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &pointer, sizeof(pointer)));
  }
  const float alpha = 1.f, beta = args.accumulate ? 1.f : 0.f;
  IXC_LT_RETURN_IF_ERROR(cublasLtMatmul(Handle(handle_), plan.desc, &alpha, args.w, plan.a, args.x, plan.b, &beta, out,
                                        plan.c, out, plan.c, static_cast<const cublasLtMatmulAlgo_t*>(algo), workspace_,
                                        workspace_bytes_, stream));
  return absl::OkStatus();
}

absl::StatusOr<bool> Gemm::Tune(Plan& plan, const LinearArgs& args, cudaStream_t stream) {
  cudaEvent_t start = nullptr, stop = nullptr;
  IXC_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  IXC_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  // The median of kTuneRuns runs of `algo`, each from HBM: writing the whole scratch (twice the L2) first evicts the
  // inputs, as the decode weights are not in L2 in a model step.
  auto median_ms = [&](const cublasLtMatmulAlgo_t& algo) -> absl::StatusOr<float> {
    std::vector<float> ms(kTuneRuns);
    for (float& run_ms : ms) {
      IXC_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(tune_scratch_, 0, tune_scratch_bytes_, stream));
      IXC_CUDA_RETURN_IF_ERROR(cudaEventRecord(start, stream));
      IXC_RETURN_IF_ERROR(Run(plan, &algo, args, tune_scratch_, stream));
      IXC_CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, stream));
      IXC_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
      IXC_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&run_ms, start, stop));
    }
    std::nth_element(ms.begin(), ms.begin() + kTuneRuns / 2, ms.end());
    return ms[kTuneRuns / 2];
  };
  const cublasLtMatmulAlgo_t chosen = plan.algo;
  float best_ms = std::numeric_limits<float>::infinity();
  absl::Status status;
  for (const cublasLtMatmulAlgo_t& algo : plan.candidates) {
    if (!Run(plan, &algo, args, tune_scratch_, stream).ok()) continue;  // one the heuristic offered but cannot run
    absl::StatusOr<float> ms = median_ms(algo);
    if (!ms.ok()) {
      status = ms.status();
      break;
    }
    if (*ms < best_ms) {
      best_ms = *ms;
      plan.algo = algo;
    }
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  IXC_RETURN_IF_ERROR(status);
  ++tuned_plans_;
  return !SameAlgo(plan.algo, chosen);
}

absl::StatusOr<bool> Gemm::TuneDeferred(cudaStream_t stream) {
  std::vector<std::pair<Plan*, LinearArgs>> deferred = std::move(deferred_);
  deferred_.clear();
  bool changed = false;
  for (auto& [plan, args] : deferred) {
    IXC_ASSIGN_OR_RETURN(const bool this_changed, Tune(*plan, args, stream));
    changed = changed || this_changed;
  }
  return changed;
}

absl::Status Gemm::CheckLinear(const LinearArgs& args) {
  if (args.m < 0 || args.n <= 0 || args.k <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("Linear: m ", args.m, ", n ", args.n, ", k ", args.k));
  }
  if (args.in == DType::kF32 || (args.out_dtype != DType::kF32 && args.out_dtype != args.in)) {
    return absl::InvalidArgumentError(absl::StrCat("Linear: inputs must be bf16 or f16 and the output the same or f32, "
                                                   "got ", DTypeName(args.in), " -> ", DTypeName(args.out_dtype)));
  }
  return CheckNormInPass("Linear", args.norm, args.m, args.k);
}

absl::Status Gemm::Linear(const LinearArgs& args, cudaStream_t stream) {
  IXC_RETURN_IF_ERROR(CheckLinear(args));
  if (args.m == 0) return absl::OkStatus();
  if (StreamsWeights(args.m, args.k)) {
    IXC_RETURN_IF_ERROR(SmallMLinear(args, nullptr, dependent_launch_, stream));
    return AddBiasPass(args, stream);
  }
  IXC_ASSIGN_OR_RETURN(const Plan* plan, PlanFor(args, stream));
  return RunWithBias(*plan, &plan->algo, args, stream);
}

absl::Status Gemm::LinearWithLowRank(const LinearArgs& args, const LowRankArgs& low_rank, cudaStream_t stream) {
  if (!StreamsWeights(args.m, args.k) || low_rank.n <= 0) {  // two passes
    IXC_RETURN_IF_ERROR(Linear(args, stream));
    return Linear({args.x, low_rank.w, low_rank.out, args.m, low_rank.n, args.k, args.in, args.in,
                   /*accumulate=*/false, nullptr, args.norm},
                  stream);
  }
  IXC_RETURN_IF_ERROR(CheckLinear(args));
  IXC_RETURN_IF_ERROR(SmallMLinear(args, &low_rank, dependent_launch_, stream));
  return AddBiasPass(args, stream);
}

}  // namespace ixc::kernels::cuda
