// CPU RmsNorm, RoPE, SwiGLU and embedding gather against the reference, plus hand-checked values.
#include <cmath>
#include <numeric>

#include "kernels/ops.h"
#include "tests/test_util.h"

namespace ixc::kernels {
namespace {

using ixc::testing::AllClose;
using ixc::testing::RandomFloats;
using ixc::testing::RandomTyped;

TEST(RmsNormTest, MatchesReferenceOnAwkwardShapes) {
  for (auto [rows, hidden] : {std::pair<int64_t, int64_t>{1, 111}, {19, 500}, {99, 64}, {7, 4096}}) {
    const auto x = RandomFloats(rows * hidden, 1, 3.f);
    const auto weight = RandomFloats(hidden, 2);
    std::vector<float> expected(rows * hidden), actual(rows * hidden);
    reference::RmsNorm(x.data(), weight.data(), expected.data(), rows, hidden, 1e-5f);
    RmsNorm(x.data(), weight.data(), actual.data(), rows, hidden, 1e-5f);
    EXPECT_TRUE(AllClose(actual, expected, {1e-6f, 1e-5f})) << rows << "x" << hidden;
  }
}

TEST(RmsNormTest, UnitWeightGivesUnitRms) {
  std::vector<float> x = {3.f, -4.f};  // mean square 12.5
  std::vector<float> weight = {1.f, 1.f}, out(2);
  reference::RmsNorm(x.data(), weight.data(), out.data(), 1, 2, 0.f);
  EXPECT_NEAR(out[0], 3.f / std::sqrt(12.5f), 1e-6);
  EXPECT_NEAR(out[1], -4.f / std::sqrt(12.5f), 1e-6);
}

TEST(RopeTest, MatchesReferenceForPlainLinearAndNtkBases) {
  for (float base : {10000.f, 1e6f, static_cast<float>(DynamicNtkBase(1e6, 2.0, 64, 150, 64))}) {
    for (float scale : {1.f, 0.5f}) {
      const int64_t tokens = 13;
      const int heads = 3, head_dim = 64;
      std::vector<int32_t> positions(tokens);
      std::iota(positions.begin(), positions.end(), 140);
      auto expected = RandomFloats(tokens * heads * head_dim, 3);
      auto actual = expected;
      const RopeParams rope{head_dim, base, scale};
      reference::ApplyRope(expected.data(), positions.data(), tokens, heads, rope);
      ApplyRope(actual.data(), positions.data(), tokens, heads, rope);
      EXPECT_TRUE(AllClose(actual, expected, {1e-6f, 1e-6f})) << base;
    }
  }
}

TEST(RopeTest, PositionZeroIsIdentityAndPairsRotateHalf) {
  std::vector<float> x = {1.f, 2.f, 3.f, 4.f};  // one head, head_dim 4: pairs (0,2) and (1,3)
  const int32_t zero = 0;
  auto y = x;
  reference::ApplyRope(y.data(), &zero, 1, 1, {4, 10000.f, 1.f});
  EXPECT_EQ(y, x);
  const int32_t one = 1;
  reference::ApplyRope(y.data(), &one, 1, 1, {4, 10000.f, 1.f});
  // Pair (0, 2) turns by 1 radian (inv_freq 1), pair (1, 3) by 1/100 (inv_freq 10000^-0.5).
  EXPECT_NEAR(y[0], std::cos(1.f) * 1 - std::sin(1.f) * 3, 1e-6);
  EXPECT_NEAR(y[2], std::cos(1.f) * 3 + std::sin(1.f) * 1, 1e-6);
  EXPECT_NEAR(y[1], std::cos(0.01f) * 2 - std::sin(0.01f) * 4, 1e-6);
}

TEST(DynamicNtkBaseTest, UnchangedUpToMaxPositionsThenGrows) {
  EXPECT_EQ(DynamicNtkBase(1e6, 2.0, 100, 100, 128), 1e6);
  // factor 2, seq 200, max 100: base * (2*200/100 - 1)^(128/126) = 1e6 * 3^(64/63)
  EXPECT_NEAR(DynamicNtkBase(1e6, 2.0, 100, 200, 128), 1e6 * std::pow(3.0, 128.0 / 126.0), 1e-3);
}

TEST(SwiGluTest, MatchesReferenceAndFormula) {
  const auto gate = RandomFloats(10007, 4, 4.f), up = RandomFloats(10007, 5);
  std::vector<float> expected(gate.size()), actual(gate.size());
  reference::SwiGlu(gate.data(), up.data(), expected.data(), gate.size());
  SwiGlu(gate.data(), up.data(), actual.data(), gate.size());
  EXPECT_TRUE(AllClose(actual, expected, {1e-6f, 1e-6f}));
  EXPECT_NEAR(expected[0], gate[0] / (1 + std::exp(-gate[0])) * up[0], 1e-6);
}

TEST(EmbeddingGatherTest, CopiesRowsAndRejectsBadIds) {
  auto table_data = RandomTyped(DType::kBF16, 50 * 24, 6);
  const TensorView table(table_data.bytes.data(), DType::kBF16, {50, 24});
  const std::vector<int32_t> ids = {0, 49, 7, 7};
  std::vector<float> expected(ids.size() * 24), actual(ids.size() * 24);
  ASSERT_TRUE(reference::EmbeddingGather(table, ids.data(), ids.size(), expected.data()).ok());
  ASSERT_TRUE(EmbeddingGather(table, ids.data(), ids.size(), actual.data()).ok());
  EXPECT_EQ(actual, expected);
  EXPECT_EQ(actual[24], table_data.as_f32[49 * 24]);
  const std::vector<int32_t> bad = {3, 50};
  const absl::Status status = EmbeddingGather(table, bad.data(), bad.size(), actual.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(status.message().find("token id 50 at position 1"), std::string::npos) << status;
}

}  // namespace
}  // namespace ixc::kernels
