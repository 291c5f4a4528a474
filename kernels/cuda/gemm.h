// File: kernels/cuda/gemm.h
//
// The GPU's linear layers through cuBLASLt: out (m, n) = x (m, k) . w (n, k)^T (+ out when accumulating) (+ an f32
// bias, in cuBLASLt's epilogue where out is f32, else a pass of its own), x and w bf16 or f16 (the same), out bf16,
// f16 or f32, accumulation in f32. The algorithm for each shape is chosen the first time the shape is seen and
// cached: cuBLASLt's heuristic's first choice, or, with tuning (GemmTuningRequested), for 3-256 rows (decode batches,
// where that choice read the weights at 39-60% of HBM bandwidth on the H200) the fastest of its first 16 candidates
// and split-K variants of its first 4, timed on the call's own inputs. All calls share one workspace. The LoRA low-rank
// products are GEMMs like any other (k or n = the rank). One or two rows (decode) with k a multiple of 8 run on a
// weight-streaming kernel of our own instead, which reads the weights faster than cuBLASLt does at those sizes; it also
// gives the feed-forward's gate and up products with SwiGLU applied in one pass (SwiGluLinear), and in a LoRA mode
// their B products with SwiGLU (LowRankSwiGlu). (A tensor-core kernel of our own for 3-64 rows ran slower than
// cuBLASLt on the H200 at every 7B shape and was removed.)
//
//   IXC_ASSIGN_OR_RETURN(auto gemm, Gemm::Create());
//   IXC_RETURN_IF_ERROR(gemm->Linear({x, w, out, m, n, k, DType::kBF16, DType::kF32}, stream));
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "core/dtype.h"
#include "kernels/cuda/attention.h"

namespace ixc::kernels::cuda {

// The RMSNorm before a decode weight pass, done by that pass (the rows then are not read from x): every block
// computes rows (m, k) = weight * (residual * rsqrt(mean(residual^2) + eps)) in the GEMM dtype, as
// LaunchAddRmsNorm (no delta) writes them, into its shared memory from the f32 residual rows (1-2 rows, from L2),
// and the first block also stores them to `normed` for the products that read them after (the LoRA terms). It saves
// the norm's kernel, on the decode step's chain of dependent kernels, twice a layer. Only where NormsInPass(m, k).
struct RmsNormInput {
  const float* residual = nullptr;  // (m, k) f32
  const float* weight = nullptr;    // (k) f32
  float eps = 0;
  void* normed = nullptr;  // (m, k) in the GEMM dtype
};

struct LinearArgs {
  const void* x = nullptr;  // (m, k) row-major, device
  const void* w = nullptr;  // (n, k) row-major, device: the checkpoint's (out_features, in_features)
  void* out = nullptr;      // (m, n) row-major, device
  int64_t m = 0, n = 0, k = 0;
  DType in = DType::kBF16;  // x and w
  DType out_dtype = DType::kBF16;
  bool accumulate = false;  // out += x . w^T
  const float* bias = nullptr;  // (n) f32, added to every row; in cuBLASLt's epilogue where out is f32
  const RmsNormInput* norm = nullptr;  // the rows instead of x, where NormsInPass(m, k)
};

// A second product over LinearArgs's rows: out (m, n) = x . w (n, k)^T in the input dtype, no accumulation (a
// LoRA's A product beside its base weight's).
struct LowRankArgs {
  const void* w = nullptr;  // (n, k)
  void* out = nullptr;      // (m, n)
  int64_t n = 0;
};

// The feed-forward's first half for decode rows: out = silu(x . w_gate^T) * (x . w_up^T), each product rounded to
// `dtype` first, as two Linear calls and LaunchSwiGlu give, in one pass that reads both weights together.
struct SwiGluArgs {
  const void* x = nullptr;       // (m, k)
  const void* w_gate = nullptr;  // (n, k)
  const void* w_up = nullptr;    // (n, k)
  void* out = nullptr;           // (m, n)
  int64_t m = 0, n = 0, k = 0;
  DType dtype = DType::kBF16;          // everything
  const RmsNormInput* norm = nullptr;  // the rows instead of x, where NormsInPass(m, k)
};

// The feed-forward's first half of a LoRA mode for decode rows, once LinearWithLowRank has given gate and up each
// its base product (gate, up) and its LoRA's A product (a_gate, a_up): out = silu(gate + a_gate . b_gate^T) *
// (up + a_up . b_up^T) on the rows `mask` selects (null: every row; elsewhere the base products alone), each sum
// rounded to `dtype` first, in one pass over both B's: what LaunchZeroRows on the A products, two accumulating Linear
// calls and LaunchSwiGlu give, bit for bit. out may be gate.
struct LowRankSwiGluArgs {
  const void* gate = nullptr;     // (m, n)
  const void* up = nullptr;       // (m, n)
  const void* a_gate = nullptr;   // (m, rank)
  const void* a_up = nullptr;     // (m, rank)
  const void* b_gate = nullptr;   // (n, rank)
  const void* b_up = nullptr;     // (n, rank)
  const uint8_t* mask = nullptr;  // (m) device, or null
  void* out = nullptr;            // (m, n)
  int64_t m = 0, n = 0, rank = 0;
  DType dtype = DType::kBF16;  // everything
};

// Whether IXC_GEMM_TUNE=1 is set (read once per process): Gemm::Create's default for `tune`. Experimental, not yet
// run on a GPU, so off by default; tests/gpu/run.sh's experimental pass sets it.
bool GemmTuningRequested();

// Decode's qkv weight pass with RoPE and the KV store done as its products come out, for 1-2 rows (NormsInPass):
// what Linear into the packed qkv rows and then LaunchRopeAndStoreKv give, bit for bit, without the qkv rows in
// between or the kernel that reads them. A warp computes the pair (i, i + half) of one packed head, rounds both
// products to the dtype and rotates them (q and k heads) or not (v); q goes to `q`, k and v to their cache slots.
struct QkvRopeArgs {
  const void* x = nullptr;  // (m, k), unless norm
  const void* w = nullptr;  // (kv_heads * (group + 2) * head_dim, k): the packed wqkv (spec 1.3)
  int64_t m = 0, k = 0;
  int group = 0;                       // query heads per KV head
  const int32_t* positions = nullptr;  // (m) device
  const int32_t* slots = nullptr;      // (m) device; negative: not stored
  RopeParams rope[2];                  // row r's (head_dim = pools.head_dim)
  void* q = nullptr;                   // (m, kv_heads * group, head_dim)
  DeviceKvPools pools;                 // dtype: everything's
  const RmsNormInput* norm = nullptr;  // the rows instead of x
  // Set: the pass is a LoRA's B product (x its A product, w its B, k its rank) added onto these base products of
  // the qkv weight, as a Linear accumulating into them would (rows `mask` leaves out keep the base alone).
  const void* base = nullptr;     // (m, kv_heads * (group + 2) * head_dim)
  const uint8_t* mask = nullptr;  // (m) device, or null: every row
};

class Gemm {
 public:
  // With `tune`, a scratch of twice the L2 size (at least 32 MiB) is held for timing: the candidates' outputs, and
  // the writes that empty the L2 of the inputs before each timed run.
  static constexpr int64_t kDefaultWorkspaceBytes = 32 << 20;
  static absl::StatusOr<std::unique_ptr<Gemm>> Create(int64_t workspace_bytes = kDefaultWorkspaceBytes,
                                                      bool tune = GemmTuningRequested());
  ~Gemm();
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;

  absl::Status Linear(const LinearArgs& args, cudaStream_t stream);
  // Linear and the product `low_rank` over the same rows (and RMSNorm, where args.norm): in one weight pass where
  // StreamsWeights(m, k) (decode: a LoRA's A beside its base weight, one kernel fewer), else as two Linear calls.
  absl::Status LinearWithLowRank(const LinearArgs& args, const LowRankArgs& low_rank, cudaStream_t stream);
  // Only where StreamsWeights(m, k): the decode shapes.
  absl::Status SwiGluLinear(const SwiGluArgs& args, cudaStream_t stream);
  // Only where StreamsWeights(m, k) (with a norm: NormsInPass(m, k)).
  absl::Status QkvRopeLinear(const QkvRopeArgs& args, cudaStream_t stream);
  // Only where StreamsWeights(m, rank).
  absl::Status LowRankSwiGlu(const LowRankSwiGluArgs& args, cudaStream_t stream);
  // Whether m rows of k inputs go through the weight-streaming kernel rather than cuBLASLt.
  static bool StreamsWeights(int64_t m, int64_t k);
  // Whether that kernel can also do the rows' RMSNorm (RmsNormInput): they fit its shared memory.
  static bool NormsInPass(int64_t m, int64_t k);

  // Plans first seen while `stream` was being captured into a CUDA graph could not be timed then; this times them
  // now (with the inputs of the captured calls, which must still be valid) and says whether any chose another
  // algorithm than the one captured, in which case the caller captures its graph again.
  absl::StatusOr<bool> TuneDeferred(cudaStream_t stream);

  // The candidates a tuned plan chose from (0 for shapes that are not tuned), and Linear with the `candidate`-th of
  // them rather than the fastest: for tests, which hold each to the reference, and benchmarks.
  absl::StatusOr<int> Candidates(const LinearArgs& args, cudaStream_t stream);
  absl::Status LinearWithCandidate(const LinearArgs& args, int candidate, cudaStream_t stream);

  int64_t cached_algorithms() const { return static_cast<int64_t>(plans_.size()); }
  int64_t tuned_algorithms() const { return tuned_plans_; }

 private:
  struct Plan;
  // m, n, k, in, out, accumulate, bias
  using Key = std::tuple<int64_t, int64_t, int64_t, DType, DType, bool, bool>;
  Gemm() = default;
  absl::StatusOr<Plan*> PlanFor(const LinearArgs& args, cudaStream_t stream);
  bool Tunes(const LinearArgs& args) const;
  // Split-K variants of plan.candidates[0, bases) that cuBLASLt accepts, appended to them.
  void AddSplitKCandidates(Plan& plan, const LinearArgs& args, int bases);
  // Keeps the fastest of plan.candidates on args's inputs (the output goes to tune_scratch_); whether it changed.
  absl::StatusOr<bool> Tune(Plan& plan, const LinearArgs& args, cudaStream_t stream);
  // The checks every Linear passes: sizes, dtypes, a norm only where the pass can do it.
  static absl::Status CheckLinear(const LinearArgs& args);
  // Run into args.out, then the bias pass where the plan's epilogue does not add args.bias.
  absl::Status RunWithBias(const Plan& plan, const void* algo, const LinearArgs& args, cudaStream_t stream);
  // One cublasLtMatmul of `plan` with `algo` (a cublasLtMatmulAlgo_t) into `out`.
  absl::Status Run(const Plan& plan, const void* algo, const LinearArgs& args, void* out, cudaStream_t stream);

  void* handle_ = nullptr;  // cublasLtHandle_t
  void* workspace_ = nullptr;
  int64_t workspace_bytes_ = 0;
  // sm_90 and later: the weight-streaming kernels start while the kernel before them finishes (dependent_launch.cuh).
  bool dependent_launch_ = false;
  std::map<Key, std::unique_ptr<Plan>> plans_;
  void* tune_scratch_ = nullptr;  // null where tuning is off
  int64_t tune_scratch_bytes_ = 0;
  int64_t tuned_plans_ = 0;
  std::vector<std::pair<Plan*, LinearArgs>> deferred_;  // planned during a capture, to be timed
};

}  // namespace ixc::kernels::cuda
