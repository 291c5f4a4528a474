// CPU Linear and LowRankAdd against the reference, for every weight dtype and awkward shapes.
// To add a case: extend kShapes; each (M, N, K) runs for f32, bf16 and f16 weights.
#include <tuple>
#include <utility>
#include <vector>

#include "kernels/cpu/blas_kernels.h"
#include "kernels/cpu/gemv.h"
#include "kernels/ops.h"
#include "tests/test_util.h"

namespace ixc::kernels {
namespace {

using ixc::testing::AllClose;
using ixc::testing::RandomFloats;
using ixc::testing::RandomTyped;

struct GemmShape {
  int64_t m, n, k;
};
constexpr GemmShape kShapes[] = {{1, 1, 1},   {1, 67, 33},  {3, 129, 70},  {4, 200, 264},
                                 {5, 130, 7}, {19, 257, 99}, {64, 384, 256}, {99, 1000, 111}};

class LinearTest : public ::testing::TestWithParam<std::tuple<DType, GemmShape, bool>> {};

using LinearFn = void (*)(const float* x, TensorView w, float* out, int64_t m, bool accumulate);

// `linear` against the reference on seeded random weights, input and prior output.
::testing::AssertionResult MatchesReference(LinearFn linear, DType dtype, const GemmShape& shape, bool accumulate) {
  auto weights = RandomTyped(dtype, shape.n * shape.k, /*seed=*/1);
  const TensorView w(weights.bytes.data(), dtype, {shape.n, shape.k});
  const std::vector<float> x = RandomFloats(shape.m * shape.k, /*seed=*/2);
  std::vector<float> expected = RandomFloats(shape.m * shape.n, /*seed=*/3);
  std::vector<float> actual = expected;
  reference::Linear(x.data(), w, expected.data(), shape.m, accumulate);
  linear(x.data(), w, actual.data(), shape.m, accumulate);
  // Sums of K products in another order: error grows like sqrt(K) * eps * |terms|.
  return AllClose(actual, expected, {1e-4f * std::sqrt(static_cast<float>(shape.k)), 1e-5f});
}

TEST_P(LinearTest, MatchesReference) {
  const auto [dtype, shape, accumulate] = GetParam();
  EXPECT_TRUE(MatchesReference(Linear, dtype, shape, accumulate));
}

INSTANTIATE_TEST_SUITE_P(Shapes, LinearTest,
                         ::testing::Combine(::testing::Values(DType::kF32, DType::kBF16, DType::kF16),
                                            ::testing::ValuesIn(kShapes), ::testing::Bool()));

// Linear calls one GEMV variant, the one this CPU runs best: each variant this CPU can run is checked here, so the
// AVX2 one is tested on machines with AVX-512 too. Shapes with whole chunks (2 x 16 values per row for AVX-512),
// their tails, a last block of fewer than 4 weight rows, and decode batches up to kGemvRows (passes of 4, 2 and 1).
TEST(GemvTest, EveryVariantThisCpuRunsMatchesReference) {
  std::vector<std::pair<const char*, LinearFn>> variants = {{"avx2", GemvAvx2}};
  if (__builtin_cpu_supports("avx512f")) variants.emplace_back("avx512", GemvAvx512);
  const GemmShape shapes[] = {{1, 67, 33},  {3, 129, 70}, {4, 202, 264},       {2, 9, 768},
                              {1, 5, 31},   {7, 66, 96},  {17, 131, 64}, {kGemvRows, 37, 130}};
  for (const auto& [name, gemv] : variants) {
    for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (const GemmShape& shape : shapes) {
        for (bool accumulate : {false, true}) {
          EXPECT_TRUE(MatchesReference(gemv, dtype, shape, accumulate))
              << name << " " << DTypeName(dtype) << " " << shape.m << "x" << shape.n << "x" << shape.k;
        }
      }
    }
  }
}

TEST(LowRankAddTest, MaskedRowsOnlyMatchReference) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const int64_t m = 23, k = 70, rank = 8, n = 45;
    auto a_data = RandomTyped(dtype, rank * k, 4);
    auto b_data = RandomTyped(dtype, n * rank, 5);
    const TensorView a(a_data.bytes.data(), dtype, {rank, k});
    const TensorView b(b_data.bytes.data(), dtype, {n, rank});
    const std::vector<float> x = RandomFloats(m * k, 6);
    std::vector<uint8_t> mask(m);
    for (int64_t i = 0; i < m; ++i) mask[i] = (i % 3 == 1 || i > 18);
    const std::vector<float> before = RandomFloats(m * n, 7);
    for (const uint8_t* row_mask : {static_cast<const uint8_t*>(nullptr), static_cast<const uint8_t*>(mask.data())}) {
      std::vector<float> expected = before, actual = before;
      reference::LowRankAdd(x.data(), a, b, row_mask, expected.data(), m);
      LowRankAdd(x.data(), a, b, row_mask, actual.data(), m);
      EXPECT_TRUE(AllClose(actual, expected, {1e-4f, 1e-5f}));
      if (row_mask != nullptr) {
        for (int64_t i = 0; i < m; ++i) {
          if (mask[i]) continue;
          for (int64_t c = 0; c < n; ++c) ASSERT_EQ(actual[i * n + c], before[i * n + c]) << "unmasked row " << i;
        }
      }
    }
  }
}

TEST(BlasKernelsTest, OnlyThePrescottFallbackIsReplacedByWhatTheCpuRuns) {
  EXPECT_EQ(BetterBlasCore("Prescott", /*avx512f=*/true, /*avx2=*/true), "SkylakeX");
  EXPECT_EQ(BetterBlasCore("Prescott", false, true), "Haswell");
  EXPECT_EQ(BetterBlasCore("Prescott", false, false), std::nullopt);  // an old CPU: Prescott's kernels are right
  EXPECT_EQ(BetterBlasCore("SkylakeX", true, true), std::nullopt);    // OpenBLAS knew the CPU
  EXPECT_EQ(BetterBlasCore("Zen", false, true), std::nullopt);
}

TEST(LinearReferenceTest, SmallProductByHand) {
  // (2, 3) . (2, 3)^T: each output is a dot product we can check by hand.
  float w_values[] = {1, 2, 3, -1, 0, 1};
  const TensorView w(w_values, DType::kF32, {2, 3});
  const float x[] = {1, 1, 1, 2, 0, -1};
  float out[4];
  reference::Linear(x, w, out, 2, /*accumulate=*/false);
  EXPECT_EQ(out[0], 6.f);
  EXPECT_EQ(out[1], 0.f);
  EXPECT_EQ(out[2], -1.f);
  EXPECT_EQ(out[3], -3.f);
}

}  // namespace
}  // namespace ixc::kernels
