// cuBLASLt linear layers against reference::Linear: bf16 and f16 inputs, f32 and 16-bit outputs, accumulation, a
// bias (in cuBLASLt's epilogue or a pass of its own), awkward shapes (one row, odd sizes, LoRA ranks), the plan
// cache, plans tuned by timing (eagerly, and after a CUDA graph capture), and the decode weight passes that do their
// rows' RMSNorm. Skipped without a GPU.
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/ops.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/test_util.h"

namespace ixc::kernels::cuda {
namespace {

using ixc::testing::AllClose;
using ixc::testing::CudaTest;
using ixc::testing::DeviceBuffer;
using ixc::testing::RandomTyped;
using ixc::testing::Widen;

struct Shape {
  int64_t m, n, k;
};

// out (m, n) = x . w^T (+ previous) (+ bias) on the host, the inputs on the GPU, and whether the GPU's output matches.
struct LinearCase {
  LinearCase(DType in, DType out, Shape s, bool accumulate, bool with_bias)
      : in(in),
        out(out),
        s(s),
        accumulate(accumulate),
        x(RandomTyped(in, s.m * s.k, 1)),
        w(RandomTyped(in, s.n * s.k, 2, 0.05f)),
        previous(RandomTyped(out, s.m * s.n, 3)),
        bias(ixc::testing::RandomFloats(s.n, 4)),
        d_x(x.bytes),
        d_w(w.bytes),
        d_out(previous.bytes),
        d_bias(bias),
        with_bias(with_bias) {
    expected = previous.as_f32;
    reference::Linear(x.as_f32.data(), TensorView(w.bytes.data(), in, {s.n, s.k}), expected.data(), s.m, accumulate);
    if (with_bias) {
      for (int64_t i = 0; i < s.m * s.n; ++i) expected[i] += bias[i % s.n];
    }
  }
  LinearArgs args() const {
    return {d_x.data, d_w.data, d_out.data, s.m, s.n, s.k, in, out, accumulate, with_bias ? d_bias.data : nullptr};
  }
  // The output matches within the dtype's rounding: exact products, f32 sums in another order (~sqrt(k) 2^-24
  // relative); a 16-bit output adds its rounding.
  ::testing::AssertionResult Matches() const {
    const ixc::testing::Tolerance tolerance =
        out == DType::kF32 ? ixc::testing::Tolerance{2e-4f, 1e-4f} : ixc::testing::Tolerance{2e-2f, 1e-2f};
    if (AllClose(Widen(out, d_out.Read()), expected, tolerance)) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << DTypeName(in) << "->" << DTypeName(out) << " " << s.m << "x" << s.n << "x"
                                         << s.k << (accumulate ? " accumulate" : "") << (with_bias ? " bias" : "");
  }

  DType in, out;
  Shape s;
  bool accumulate;
  ixc::testing::TypedData x, w, previous;
  std::vector<float> bias, expected;
  DeviceBuffer<uint8_t> d_x, d_w, d_out;
  DeviceBuffer<float> d_bias;
  bool with_bias;
};

TEST_F(CudaTest, LinearMatchesReference) {
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  for (DType in : {DType::kBF16, DType::kF16}) {
    for (DType out : {DType::kF32, in}) {
      // One and two rows stream the weights (k a multiple of 2048 and not); the others go through cuBLASLt: odd row
      // and feature counts, k not a multiple of 16, the decode batch sizes 8-64 at the model's k.
      for (Shape s :
           {Shape{1, 4096, 512}, Shape{2, 333, 4104}, Shape{1, 77, 14336}, Shape{2, 40, 2}, Shape{7, 300, 136},
            Shape{129, 512, 1024}, Shape{33, 16, 768}, Shape{65, 1000, 8}, Shape{3, 77, 4128}, Shape{8, 1040, 4096},
            Shape{16, 256, 14336}, Shape{24, 520, 96}, Shape{64, 1000, 2048}}) {
        for (bool accumulate : {false, true}) {
          LinearCase c(in, out, s, accumulate, /*with_bias=*/false);
          ASSERT_TRUE((*gemm)->Linear(c.args(), nullptr).ok());
          EXPECT_TRUE(c.Matches());
        }
      }
    }
  }
  // One plan per (shape, types, accumulate), chosen once.
  const int64_t plans = (*gemm)->cached_algorithms();
  DeviceBuffer<uint8_t> x(7 * 136 * 2), w(300 * 136 * 2), out(7 * 300 * 4);
  ASSERT_TRUE((*gemm)->Linear({x.data, w.data, out.data, 7, 300, 136, DType::kBF16, DType::kF32}, nullptr).ok());
  EXPECT_EQ((*gemm)->cached_algorithms(), plans);
}

TEST_F(CudaTest, LinearAddsTheBias) {
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  for (DType out : {DType::kF32, DType::kBF16}) {  // in the epilogue, and a pass after the GEMM
    for (Shape s : {Shape{1, 4096, 512}, Shape{7, 300, 136}, Shape{129, 1024, 1024}}) {
      for (bool accumulate : {false, true}) {
        LinearCase c(DType::kBF16, out, s, accumulate, /*with_bias=*/true);
        ASSERT_TRUE((*gemm)->Linear(c.args(), nullptr).ok());
        EXPECT_TRUE(c.Matches());
      }
    }
  }
}

TEST_F(CudaTest, TunedLinearMatchesReference) {
  auto gemm = Gemm::Create(Gemm::kDefaultWorkspaceBytes, /*tune=*/true);
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  // The decode batches are tuned (3-256 rows); a prefill's rows keep the heuristic's choice.
  int64_t tuned = 0;
  for (Shape s : {Shape{3, 77, 4128}, Shape{8, 1040, 4096}, Shape{64, 1000, 2048}, Shape{256, 512, 1024},
                  Shape{257, 512, 1024}}) {
    for (DType out : {DType::kF32, DType::kBF16}) {
      LinearCase c(DType::kBF16, out, s, /*accumulate=*/out == DType::kF32, /*with_bias=*/out == DType::kF32);
      ASSERT_TRUE((*gemm)->Linear(c.args(), nullptr).ok());
      EXPECT_TRUE(c.Matches());
      if (s.m <= 256) ++tuned;
      EXPECT_EQ((*gemm)->tuned_algorithms(), tuned) << s.m << " rows";
    }
  }
  // Every candidate the tuning chooses from (the heuristic's and their split-K variants) gives the product.
  for (Shape s : {Shape{8, 1040, 4096}, Shape{64, 1000, 2048}}) {
    for (DType out : {DType::kF32, DType::kBF16}) {
      LinearCase c(DType::kBF16, out, s, /*accumulate=*/out == DType::kF32, /*with_bias=*/true);
      const absl::StatusOr<int> candidates = (*gemm)->Candidates(c.args(), nullptr);
      ASSERT_TRUE(candidates.ok()) << candidates.status();
      EXPECT_GT(*candidates, 1) << s.m << " rows";
      for (int i = 0; i < *candidates; ++i) {
        ASSERT_EQ(cudaMemcpy(c.d_out.data, c.previous.bytes.data(), c.previous.bytes.size(), cudaMemcpyHostToDevice),
                  cudaSuccess);  // what it accumulates onto
        ASSERT_TRUE((*gemm)->LinearWithCandidate(c.args(), i, nullptr).ok()) << "candidate " << i;
        EXPECT_TRUE(c.Matches()) << "candidate " << i << " of " << *candidates;
      }
    }
  }
  // Nothing was deferred: every plan was timed when it was made.
  const absl::StatusOr<bool> deferred = (*gemm)->TuneDeferred(nullptr);
  ASSERT_TRUE(deferred.ok()) << deferred.status();
  EXPECT_FALSE(*deferred);
}

// A plan first seen inside a CUDA graph capture is captured with the heuristic's choice and timed after it.
TEST_F(CudaTest, TuningWaitsForTheEndOfAGraphCapture) {
  auto gemm = Gemm::Create(Gemm::kDefaultWorkspaceBytes, /*tune=*/true);
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  LinearCase c(DType::kBF16, DType::kF32, Shape{16, 2048, 4096}, /*accumulate=*/false, /*with_bias=*/false);
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  const absl::Status captured = (*gemm)->Linear(c.args(), stream);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_TRUE(captured.ok()) << captured;
  EXPECT_EQ((*gemm)->tuned_algorithms(), 0);
  const absl::StatusOr<bool> retuned = (*gemm)->TuneDeferred(stream);
  ASSERT_TRUE(retuned.ok()) << retuned.status();
  EXPECT_EQ((*gemm)->tuned_algorithms(), 1);

  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaMemset(c.d_out.data, 0, c.d_out.size), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_TRUE(c.Matches()) << "the captured graph";
  ASSERT_EQ(cudaMemset(c.d_out.data, 0, c.d_out.size), cudaSuccess);
  ASSERT_TRUE((*gemm)->Linear(c.args(), stream).ok());  // the tuned choice
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_TRUE(c.Matches()) << "after tuning";
  EXPECT_EQ((*gemm)->tuned_algorithms(), 1);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

TEST_F(CudaTest, SwiGluLinearMatchesTwoLinearsAndSwiGlu) {
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (Shape s : {Shape{1, 1000, 4096}, Shape{2, 77, 4104}, Shape{1, 3, 8}}) {
      auto x = RandomTyped(dtype, s.m * s.k, 4), gate = RandomTyped(dtype, s.n * s.k, 5, 0.05f);
      auto up = RandomTyped(dtype, s.n * s.k, 6, 0.05f);
      // The reference rounds each product to the dtype before SwiGLU, as the unfused GPU path does.
      std::vector<float> gate_out(s.m * s.n), up_out(s.m * s.n), expected(s.m * s.n);
      reference::Linear(x.as_f32.data(), TensorView(gate.bytes.data(), dtype, {s.n, s.k}), gate_out.data(), s.m, false);
      reference::Linear(x.as_f32.data(), TensorView(up.bytes.data(), dtype, {s.n, s.k}), up_out.data(), s.m, false);
      for (std::vector<float>* product : {&gate_out, &up_out}) {
        for (float& v : *product) v = dtype == DType::kBF16 ? Bf16ToF32(F32ToBf16(v)) : F16ToF32(F32ToF16(v));
      }
      reference::SwiGlu(gate_out.data(), up_out.data(), expected.data(), s.m * s.n);
      DeviceBuffer<uint8_t> d_x(x.bytes), d_gate(gate.bytes), d_up(up.bytes), d_out(s.m * s.n * DTypeSize(dtype));
      ASSERT_TRUE(
          (*gemm)->SwiGluLinear({d_x.data, d_gate.data, d_up.data, d_out.data, s.m, s.n, s.k, dtype}, nullptr).ok());
      // A product that rounds the other way near a 16-bit boundary moves the output by one of its ulps.
      EXPECT_TRUE(AllClose(Widen(dtype, d_out.Read()), expected, {2e-2f, 1e-2f}))
          << DTypeName(dtype) << " " << s.m << "x" << s.n << "x" << s.k;
    }
  }
  // Shapes outside the weight-streaming kernel are refused, not computed wrong.
  EXPECT_EQ((*gemm)->SwiGluLinear({nullptr, nullptr, nullptr, nullptr, 3, 8, 64, DType::kBF16}, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->SwiGluLinear({nullptr, nullptr, nullptr, nullptr, 1, 8, 60, DType::kBF16}, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

// The decode weight passes that do their rows' RMSNorm (RmsNormInput) against reference::RmsNorm (rounded to the
// dtype, as LaunchAddRmsNorm writes it) and then Linear or the SwiGLU pair; the normed rows written out too.
TEST_F(CudaTest, WeightPassesDoTheirRowsRmsNorm) {
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  const float eps = 1e-5f;
  // k past one round of loads and not (136), n not a multiple of a block's 8 features.
  for (Shape s : {Shape{1, 1000, 4096}, Shape{2, 77, 4104}, Shape{1, 13, 136}, Shape{2, 300, 4096}}) {
    const DType dtype = DType::kBF16;
    const std::vector<float> residual = ixc::testing::RandomFloats(s.m * s.k, 7, 3.f);
    const std::vector<float> norm_weight = ixc::testing::RandomFloats(s.k, 8);
    std::vector<float> normed(s.m * s.k);
    reference::RmsNorm(residual.data(), norm_weight.data(), normed.data(), s.m, s.k, eps);
    for (float& v : normed) v = Bf16ToF32(F32ToBf16(v));
    auto w = RandomTyped(dtype, s.n * s.k, 9, 0.05f), up = RandomTyped(dtype, s.n * s.k, 10, 0.05f);
    std::vector<float> linear(s.m * s.n), up_out(s.m * s.n), swiglu(s.m * s.n);
    reference::Linear(normed.data(), TensorView(w.bytes.data(), dtype, {s.n, s.k}), linear.data(), s.m, false);
    reference::Linear(normed.data(), TensorView(up.bytes.data(), dtype, {s.n, s.k}), up_out.data(), s.m, false);
    std::vector<float> gate_out = linear;
    for (std::vector<float>* product : {&gate_out, &up_out}) {
      for (float& v : *product) v = Bf16ToF32(F32ToBf16(v));
    }
    reference::SwiGlu(gate_out.data(), up_out.data(), swiglu.data(), s.m * s.n);

    DeviceBuffer<float> d_residual(residual), d_norm_weight(norm_weight);
    DeviceBuffer<uint8_t> d_w(w.bytes), d_up(up.bytes), d_normed(s.m * s.k * 2), d_out(s.m * s.n * 4);
    const RmsNormInput norm{d_residual.data, d_norm_weight.data, eps, d_normed.data};
    const std::string what = absl::StrCat(s.m, "x", s.n, "x", s.k);
    // The normed rows may differ by one bf16 ulp where the sum of squares, added in another order, moves one across
    // a rounding boundary; the products by what that does to them.
    ASSERT_TRUE(
        (*gemm)
            ->Linear({nullptr, d_w.data, d_out.data, s.m, s.n, s.k, dtype, DType::kF32, false, nullptr, &norm}, nullptr)
            .ok());
    EXPECT_TRUE(AllClose(Widen(DType::kF32, d_out.Read()), linear, {2e-2f, 1e-2f})) << "Linear " << what;
    EXPECT_TRUE(AllClose(Widen(dtype, d_normed.Read()), normed, {1e-2f, 1e-2f})) << "normed rows " << what;
    ASSERT_EQ(cudaMemset(d_normed.data, 0, d_normed.size), cudaSuccess);
    ASSERT_TRUE(
        (*gemm)->SwiGluLinear({nullptr, d_w.data, d_up.data, d_out.data, s.m, s.n, s.k, dtype, &norm}, nullptr).ok());
    std::vector<uint8_t> out_bytes = d_out.Read();
    out_bytes.resize(s.m * s.n * 2);  // the bf16 output at the buffer's start
    EXPECT_TRUE(AllClose(Widen(dtype, out_bytes), swiglu, {2e-2f, 1e-2f})) << "SwiGluLinear " << what;
    EXPECT_TRUE(AllClose(Widen(dtype, d_normed.Read()), normed, {1e-2f, 1e-2f})) << "normed rows " << what;
  }
  // Rows that do not fit the pass are refused, not computed wrong.
  const RmsNormInput norm{};
  EXPECT_EQ(
      (*gemm)
          ->Linear({nullptr, nullptr, nullptr, 3, 8, 64, DType::kBF16, DType::kF32, false, nullptr, &norm}, nullptr)
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      (*gemm)->SwiGluLinear({nullptr, nullptr, nullptr, nullptr, 1, 8, 1 << 20, DType::kBF16, &norm}, nullptr).code(),
      absl::StatusCode::kInvalidArgument);
}

// A LoRA's A product in the base weight's pass (decode rows) against two Linear calls: the same sums, so the same bits,
// with and without the pass's RMSNorm, for an f32 accumulated output with a bias and a 16-bit one; more rows take
// two passes.
TEST_F(CudaTest, LinearWithLowRankMatchesTwoLinears) {
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  const DType dtype = DType::kBF16;
  for (Shape s : {Shape{1, 1000, 4096}, Shape{2, 77, 136}, Shape{5, 300, 4096}}) {
    for (DType out : {DType::kF32, dtype}) {
      for (bool with_norm : {false, true}) {
        if (with_norm && !Gemm::NormsInPass(s.m, s.k)) continue;
        const int64_t rank = 24;
        auto x = RandomTyped(dtype, s.m * s.k, 21), w = RandomTyped(dtype, s.n * s.k, 22, 0.05f);
        auto a = RandomTyped(dtype, rank * s.k, 23, 0.05f), previous = RandomTyped(out, s.m * s.n, 24);
        const std::vector<float> residual = ixc::testing::RandomFloats(s.m * s.k, 25, 3.f),
                                 norm_weight = ixc::testing::RandomFloats(s.k, 26),
                                 bias = ixc::testing::RandomFloats(s.n, 27);
        DeviceBuffer<uint8_t> d_x(x.bytes), d_w(w.bytes), d_a(a.bytes), d_normed(s.m * s.k * 2);
        DeviceBuffer<float> d_residual(residual), d_norm_weight(norm_weight), d_bias(bias);
        const RmsNormInput norm{d_residual.data, d_norm_weight.data, 1e-5f, d_normed.data};
        const bool accumulate = out == DType::kF32;
        const float* b = out == DType::kF32 ? d_bias.data : nullptr;
        DeviceBuffer<uint8_t> y_want(previous.bytes), low_want(s.m * rank * 2), y_got(previous.bytes),
            low_got(s.m * rank * 2);
        const RmsNormInput* n = with_norm ? &norm : nullptr;
        ASSERT_TRUE(
            (*gemm)
                ->Linear({d_x.data, d_w.data, y_want.data, s.m, s.n, s.k, dtype, out, accumulate, b, n}, nullptr)
                .ok());
        ASSERT_TRUE(
            (*gemm)
                ->Linear({d_x.data, d_a.data, low_want.data, s.m, rank, s.k, dtype, dtype, false, nullptr, n}, nullptr)
                .ok());
        ASSERT_TRUE(
            (*gemm)
                ->LinearWithLowRank({d_x.data, d_w.data, y_got.data, s.m, s.n, s.k, dtype, out, accumulate, b, n},
                                    {d_a.data, low_got.data, rank}, nullptr)
                .ok());
        const std::string what =
            absl::StrCat(s.m, "x", s.n, "x", s.k, " -> ", DTypeName(out), with_norm ? ", with the norm" : "");
        EXPECT_EQ(y_got.Read(), y_want.Read()) << "base product, " << what;
        EXPECT_EQ(low_got.Read(), low_want.Read()) << "low-rank product, " << what;
      }
    }
  }
}

// A LoRA mode's feed-forward end for decode rows (both B products, SwiGLU) against the unfused path on the GPU:
// LaunchZeroRows on the A products of the rows without the LoRA, two Linear calls accumulating into the base products,
// LaunchSwiGlu; the same sums in the same order, so the same bits, for every row, one masked out, and in place.
TEST_F(CudaTest, LowRankSwiGluMatchesTwoAccumulatingLinearsAndSwiGlu) {
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (auto [m, n, rank] : {std::tuple<int64_t, int64_t, int64_t>{1, 1000, 512}, {2, 77, 24}, {2, 300, 2056}}) {
      for (bool masked : {false, true}) {
        auto gate = RandomTyped(dtype, m * n, 31), up = RandomTyped(dtype, m * n, 32);
        auto a_gate = RandomTyped(dtype, m * rank, 33), a_up = RandomTyped(dtype, m * rank, 34);
        auto b_gate = RandomTyped(dtype, n * rank, 35, 0.05f), b_up = RandomTyped(dtype, n * rank, 36, 0.05f);
        const std::vector<uint8_t> mask = {1, 0};
        DeviceBuffer<uint8_t> d_gate(gate.bytes), d_up(up.bytes), d_a_gate(a_gate.bytes), d_a_up(a_up.bytes);
        DeviceBuffer<uint8_t> d_b_gate(b_gate.bytes), d_b_up(b_up.bytes), d_mask(mask);
        DeviceBuffer<uint8_t> want_gate(gate.bytes), want_up(up.bytes), want(gate.bytes.size()), got(gate.bytes);
        const uint8_t* rows_mask = masked ? d_mask.data : nullptr;
        if (masked) {
          for (DeviceBuffer<uint8_t>* a : {&d_a_gate, &d_a_up}) {
            ASSERT_TRUE(LaunchZeroRows(dtype, a->data, rows_mask, m, rank, nullptr).ok());
          }
        }
        ASSERT_TRUE(
            (*gemm)
                ->Linear({d_a_gate.data, d_b_gate.data, want_gate.data, m, n, rank, dtype, dtype, true}, nullptr)
                .ok());
        ASSERT_TRUE(
            (*gemm)->Linear({d_a_up.data, d_b_up.data, want_up.data, m, n, rank, dtype, dtype, true}, nullptr).ok());
        ASSERT_TRUE(LaunchSwiGlu(dtype, want_gate.data, want_up.data, want.data, m * n, nullptr).ok());
        // Fresh A products (the masked rows not zeroed: the kernel leaves those rows' LoRA out itself), out = gate.
        DeviceBuffer<uint8_t> fresh_a_gate(a_gate.bytes), fresh_a_up(a_up.bytes);
        ASSERT_TRUE((*gemm)
                        ->LowRankSwiGlu({got.data, d_up.data, fresh_a_gate.data, fresh_a_up.data, d_b_gate.data,
                                         d_b_up.data, rows_mask, got.data, m, n, rank, dtype},
                                        nullptr)
                        .ok());
        EXPECT_EQ(got.Read(), want.Read()) << DTypeName(dtype) << " " << m << "x" << n << " rank " << rank
                                           << (masked ? ", row 1 without the LoRA" : "");
      }
    }
  }
  EXPECT_EQ((*gemm)->LowRankSwiGlu({.m = 3, .n = 8, .rank = 64}, nullptr).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->LowRankSwiGlu({.m = 1, .n = 8, .rank = 60}, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

// The decode qkv pass with RoPE and the KV store against the unfused path on the GPU (Linear into the packed qkv rows,
// each op held to its reference elsewhere, then LaunchRopeAndStoreKv): the same sums in the same order and the same
// rotation, so the same bits, with and without the pass's RMSNorm, and as a LoRA's B product onto base products.
TEST_F(CudaTest, QkvRopePassMatchesLinearThenRopeAndStore) {
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  const DType dtype = DType::kBF16;
  struct Case {
    int kv_heads, group, d;
    int64_t m, k;
  };
  // The model's grouping at head dim 128 (k past one round of loads and not), one query head per KV head at 64.
  for (const Case& c : {Case{8, 4, 128, 1, 4096}, Case{2, 4, 128, 2, 136}, Case{3, 1, 64, 2, 4104}}) {
    for (bool with_norm : {false, true}) {
      const int heads = c.kv_heads * c.group;
      const int64_t n = int64_t{c.kv_heads} * (c.group + 2) * c.d, pool_values = 40 * c.kv_heads * c.d;
      auto x = RandomTyped(dtype, c.m * c.k, 11), w = RandomTyped(dtype, n * c.k, 12, 0.05f);
      const std::vector<float> residual = ixc::testing::RandomFloats(c.m * c.k, 13, 3.f);
      const std::vector<float> norm_weight = ixc::testing::RandomFloats(c.k, 14);
      // Row 1 (where there is one) at another position with another base and scale, and not stored.
      const std::vector<int32_t> positions = {5000, 123}, slots = {17, c.m == 2 ? -1 : 3};
      const RopeParams ropes[2] = {{c.d, 1e6f, 1.f}, {c.d, 5e4f, 0.5f}};
      DeviceBuffer<uint8_t> d_x(x.bytes), d_w(w.bytes), d_qkv(c.m * n * 2), d_normed(c.m * c.k * 2);
      DeviceBuffer<float> d_residual(residual), d_norm_weight(norm_weight);
      DeviceBuffer<int32_t> d_positions(positions), d_slots(slots);
      const RmsNormInput norm{d_residual.data, d_norm_weight.data, 1e-5f, d_normed.data};
      const RmsNormInput* norm_or_null = with_norm ? &norm : nullptr;
      const auto pools_random = RandomTyped(dtype, pool_values, 15);
      // Unfused: the qkv rows, then RoPE and the store, row by row (each its own RoPE parameters).
      DeviceBuffer<uint8_t> q_want(c.m * heads * c.d * 2), k_want(pools_random.bytes), v_want(pools_random.bytes);
      const DeviceKvPools want_pools{k_want.data, v_want.data, dtype, 16, c.kv_heads, c.d};
      ASSERT_TRUE(
          (*gemm)
              ->Linear({d_x.data, d_w.data, d_qkv.data, c.m, n, c.k, dtype, dtype, false, nullptr, norm_or_null},
                       nullptr)
              .ok());
      for (int64_t r = 0; r < c.m; ++r) {
        ASSERT_TRUE(LaunchRopeAndStoreKv(d_qkv.data + r * n * 2, d_positions.data + r, d_slots.data + r, 1, c.group,
                                         ropes[r], q_want.data + r * heads * c.d * 2, want_pools, nullptr)
                        .ok());
      }
      // Fused.
      DeviceBuffer<uint8_t> q_got(c.m * heads * c.d * 2), k_got(pools_random.bytes), v_got(pools_random.bytes);
      QkvRopeArgs args{d_x.data,     d_w.data,
                       c.m,          c.k,
                       c.group,      d_positions.data,
                       d_slots.data, {ropes[0], ropes[1]},
                       q_got.data,   {k_got.data, v_got.data, dtype, 16, c.kv_heads, c.d},
                       norm_or_null};
      ASSERT_TRUE((*gemm)->QkvRopeLinear(args, nullptr).ok());
      const std::string what = absl::StrCat(c.m, " rows, ", c.kv_heads, " x (", c.group, " + 2) heads of ", c.d, ", k ",
                                            c.k, with_norm ? ", with the norm" : "");
      EXPECT_EQ(q_got.Read(), q_want.Read()) << "q, " << what;
      EXPECT_EQ(k_got.Read(), k_want.Read()) << "k pool, " << what;
      EXPECT_EQ(v_got.Read(), v_want.Read()) << "v pool, " << what;
    }
  }
  // A LoRA's B product (rank 24) onto base qkv products: against LaunchZeroRows on the A product of the rows without
  // the LoRA, a Linear accumulating into the base products, then RoPE and the store.
  for (bool masked : {false, true}) {
    const int kv_heads = 2, group = 4, d = 128, heads = kv_heads * group;
    const int64_t m = 2, rank = 24, n = int64_t{kv_heads} * (group + 2) * d, pool_values = 40 * kv_heads * d;
    auto base = RandomTyped(dtype, m * n, 41), a = RandomTyped(dtype, m * rank, 42);
    auto b = RandomTyped(dtype, n * rank, 43, 0.05f);
    const auto pools_random = RandomTyped(dtype, pool_values, 44);
    const std::vector<int32_t> positions = {5000, 123}, slots = {17, 3};
    const std::vector<uint8_t> mask = {0, 1};
    const RopeParams ropes[2] = {{d, 1e6f, 1.f}, {d, 5e4f, 0.5f}};
    DeviceBuffer<uint8_t> d_base(base.bytes), d_a(a.bytes), d_b(b.bytes), d_mask(mask), want_qkv(base.bytes);
    DeviceBuffer<int32_t> d_positions(positions), d_slots(slots);
    DeviceBuffer<uint8_t> q_want(m * heads * d * 2), k_want(pools_random.bytes), v_want(pools_random.bytes);
    DeviceBuffer<uint8_t> zeroed_a(a.bytes);
    if (masked) {
      ASSERT_TRUE(LaunchZeroRows(dtype, zeroed_a.data, d_mask.data, m, rank, nullptr).ok());
    }
    ASSERT_TRUE(
        (*gemm)->Linear({zeroed_a.data, d_b.data, want_qkv.data, m, n, rank, dtype, dtype, true}, nullptr).ok());
    const DeviceKvPools want_pools{k_want.data, v_want.data, dtype, 16, kv_heads, d};
    for (int64_t r = 0; r < m; ++r) {
      ASSERT_TRUE(LaunchRopeAndStoreKv(want_qkv.data + r * n * 2, d_positions.data + r, d_slots.data + r, 1, group,
                                       ropes[r], q_want.data + r * heads * d * 2, want_pools, nullptr)
                      .ok());
    }
    DeviceBuffer<uint8_t> q_got(m * heads * d * 2), k_got(pools_random.bytes), v_got(pools_random.bytes);
    QkvRopeArgs args{d_a.data,
                     d_b.data,
                     m,
                     rank,
                     group,
                     d_positions.data,
                     d_slots.data,
                     {ropes[0], ropes[1]},
                     q_got.data,
                     {k_got.data, v_got.data, dtype, 16, kv_heads, d}};
    args.base = d_base.data;
    args.mask = masked ? d_mask.data : nullptr;
    ASSERT_TRUE((*gemm)->QkvRopeLinear(args, nullptr).ok());
    const std::string what = masked ? "LoRA B product, row 0 without it" : "LoRA B product";
    EXPECT_EQ(q_got.Read(), q_want.Read()) << "q, " << what;
    EXPECT_EQ(k_got.Read(), k_want.Read()) << "k pool, " << what;
    EXPECT_EQ(v_got.Read(), v_want.Read()) << "v pool, " << what;
  }
  // Shapes the pass was not built for are refused.
  QkvRopeArgs three_rows{};
  three_rows.m = 3;
  three_rows.k = 64;
  EXPECT_EQ((*gemm)->QkvRopeLinear(three_rows, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CudaTest, LinearRejectsF32InputsAndMixedOutputs) {
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  EXPECT_EQ((*gemm)->Linear({nullptr, nullptr, nullptr, 2, 2, 2, DType::kF32, DType::kF32}, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->Linear({nullptr, nullptr, nullptr, 2, 2, 2, DType::kBF16, DType::kF16}, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ixc::kernels::cuda
