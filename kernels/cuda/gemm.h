// File: kernels/cuda/gemm.h
//
// The GPU's linear layers through cuBLASLt: out (m, n) = x (m, k) . w (n, k)^T (+ out when accumulating), x and w
// bf16 or f16 (the same), out bf16, f16 or f32, accumulation in f32. The algorithm for each shape is chosen by
// cuBLASLt's heuristic the first time the shape is seen and cached; all calls share one workspace. The LoRA low-rank
// products are GEMMs like any other (k or n = the rank). One or two rows (decode) with k a multiple of 8 run on a
// weight-streaming kernel of our own instead, which reads the weights faster than cuBLASLt does at those sizes; it
// also gives the feed-forward's gate and up products with SwiGLU applied in one pass (SwiGluLinear). (A tensor-core
// kernel of our own for 3-64 rows ran slower than cuBLASLt on the H200 at every 7B shape and was removed.)
//
//   IXC_ASSIGN_OR_RETURN(auto gemm, Gemm::Create(/*workspace_bytes=*/32 << 20));
//   IXC_RETURN_IF_ERROR(gemm->Linear({x, w, out, m, n, k, DType::kBF16, DType::kF32}, stream));
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "absl/status/statusor.h"
#include "core/dtype.h"

namespace ixc::kernels::cuda {

struct LinearArgs {
  const void* x = nullptr;  // (m, k) row-major, device
  const void* w = nullptr;  // (n, k) row-major, device: the checkpoint's (out_features, in_features)
  void* out = nullptr;      // (m, n) row-major, device
  int64_t m = 0, n = 0, k = 0;
  DType in = DType::kBF16;  // x and w
  DType out_dtype = DType::kBF16;
  bool accumulate = false;  // out += x . w^T
};

// The feed-forward's first half for decode rows: out = silu(x . w_gate^T) * (x . w_up^T), each product rounded to
// `dtype` first, as two Linear calls and LaunchSwiGlu give, in one pass that reads both weights together.
struct SwiGluArgs {
  const void* x = nullptr;       // (m, k)
  const void* w_gate = nullptr;  // (n, k)
  const void* w_up = nullptr;    // (n, k)
  void* out = nullptr;           // (m, n)
  int64_t m = 0, n = 0, k = 0;
  DType dtype = DType::kBF16;  // everything
};

class Gemm {
 public:
  static absl::StatusOr<std::unique_ptr<Gemm>> Create(int64_t workspace_bytes = 32 << 20);
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  absl::Status Linear(const LinearArgs& args, cudaStream_t stream);
  // Only where StreamsWeights(m, k): the decode shapes.
  absl::Status SwiGluLinear(const SwiGluArgs& args, cudaStream_t stream);
  // Whether m rows of k inputs go through the weight-streaming kernel rather than cuBLASLt.
  static bool StreamsWeights(int64_t m, int64_t k);

  int64_t cached_algorithms() const { return static_cast<int64_t>(plans_.size()); }

 private:
  struct Plan;
  using Key = std::tuple<int64_t, int64_t, int64_t, DType, DType, bool>;  // m, n, k, in, out, accumulate
  Gemm() = default;
  absl::StatusOr<const Plan*> PlanFor(const LinearArgs& args);

  void* handle_ = nullptr;  // cublasLtHandle_t
  void* workspace_ = nullptr;
  int64_t workspace_bytes_ = 0;
  // sm_90 and later: the weight-streaming kernels start while the kernel before them finishes (dependent_launch.cuh).
  bool dependent_launch_ = false;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace ixc::kernels::cuda
