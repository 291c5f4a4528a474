// CPU LayerNorm, GELU, quick_gelu, bidirectional attention and the image-token assembly against the reference, on
// awkward shapes.
#include <cmath>

#include "kernels/ops.h"
#include "tests/test_util.h"

namespace ixc::kernels {
namespace {

using ixc::testing::AllClose;
using ixc::testing::RandomFloats;

TEST(LayerNormTest, MatchesReference) {
  for (auto [rows, hidden] : {std::pair<int64_t, int64_t>{1, 1024}, {19, 500}, {37, 33}}) {
    const auto x = RandomFloats(rows * hidden, 1, 3.f), w = RandomFloats(hidden, 2), b = RandomFloats(hidden, 3);
    std::vector<float> expected(x.size()), actual(x.size());
    reference::LayerNorm(x.data(), w.data(), b.data(), expected.data(), rows, hidden, 1e-5f);
    LayerNorm(x.data(), w.data(), b.data(), actual.data(), rows, hidden, 1e-5f);
    EXPECT_TRUE(AllClose(actual, expected, {1e-5f, 1e-5f}));
  }
  // Unit weight, zero bias: each row has mean 0 and (biased) variance 1 up to eps.
  std::vector<float> x = {1.f, 2.f, 3.f, 4.f}, one(4, 1.f), zero(4, 0.f), out(4);
  reference::LayerNorm(x.data(), one.data(), zero.data(), out.data(), 1, 4, 0.f);
  EXPECT_NEAR(out[0], -1.5f / std::sqrt(1.25f), 1e-6);
}

TEST(ActivationTest, GeluAndQuickGeluMatchReferenceAndFormula) {
  const auto x = RandomFloats(20011, 4, 3.f);
  std::vector<float> expected(x.size()), actual(x.size());
  reference::Gelu(x.data(), expected.data(), x.size());
  Gelu(x.data(), actual.data(), x.size());
  EXPECT_TRUE(AllClose(actual, expected, {1e-6f, 1e-6f}));
  EXPECT_NEAR(expected[0], 0.5 * x[0] * (1 + std::erf(x[0] / std::sqrt(2.0))), 1e-6);
  reference::QuickGelu(x.data(), expected.data(), x.size());
  QuickGelu(x.data(), actual.data(), x.size());
  EXPECT_TRUE(AllClose(actual, expected, {1e-6f, 1e-6f}));
  EXPECT_NEAR(expected[1], x[1] / (1 + std::exp(-1.702 * x[1])), 1e-6);
}

TEST(SelfAttentionTest, MatchesReference) {
  for (auto [tokens, heads, d] : {std::tuple{1, 1, 8}, std::tuple{17, 2, 16}, std::tuple{65, 3, 32}}) {
    const int64_t n = static_cast<int64_t>(tokens) * heads * d;
    const auto q = RandomFloats(n, 5), k = RandomFloats(n, 6), v = RandomFloats(n, 7);
    std::vector<float> expected(n), actual(n);
    const float scale = 1.f / std::sqrt(static_cast<float>(d));
    reference::SelfAttention(q.data(), k.data(), v.data(), expected.data(), tokens, heads, d, scale);
    SelfAttention(q.data(), k.data(), v.data(), actual.data(), tokens, heads, d, scale);
    EXPECT_TRUE(AllClose(actual, expected, {2e-6f, 1e-5f})) << tokens << " tokens";
  }
}

TEST(AssembleImageTokensTest, MatchesReference) {
  const int64_t hidden = 12, feature_rows = 50, tokens = 37;
  const auto features = RandomFloats(feature_rows * hidden, 8), sub = RandomFloats(4 * hidden, 9),
             global = RandomFloats(4 * hidden, 10);
  std::vector<int32_t> sources(tokens * 4);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t q = 0; q < 4; ++q) {
      sources[t * 4 + q] = t % 7 == 6   ? kSubSeparatorSource
                           : t == 10    ? kGlobalSeparatorSource
                                        : static_cast<int32_t>((t * 13 + q * 5) % feature_rows);
    }
  }
  std::vector<float> expected(tokens * 4 * hidden), actual(expected.size());
  reference::AssembleImageTokens(features.data(), sources.data(), sub.data(), global.data(), expected.data(), tokens,
                                 hidden);
  AssembleImageTokens(features.data(), sources.data(), sub.data(), global.data(), actual.data(), tokens, hidden);
  EXPECT_EQ(actual, expected);
  // Row 6 is the sub separator whole, row 10 the global one, row 0 quarter 1 feature row 5.
  EXPECT_EQ(std::vector<float>(expected.begin() + 6 * 4 * hidden, expected.begin() + 7 * 4 * hidden), sub);
  EXPECT_EQ(std::vector<float>(expected.begin() + 10 * 4 * hidden, expected.begin() + 11 * 4 * hidden), global);
  EXPECT_EQ(expected[1 * hidden + 3], features[5 * hidden + 3]);
}

}  // namespace
}  // namespace ixc::kernels
