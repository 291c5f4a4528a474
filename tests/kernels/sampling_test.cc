// Sampling: the CPU path draws the same token as the reference for the same seed; greedy, repetition penalty,
// top-k and top-p follow Hugging Face's rules (checked on hand-made logits).
#include <cmath>
#include <limits>
#include <map>

#include "kernels/cpu/exp8.h"
#include "kernels/ops.h"
#include "tests/test_util.h"

namespace ixc::kernels {
namespace {

using ixc::testing::RandomFloats;

// The log-softmax's sum of exponentials (beam search) against libm's, summed in double: lengths with and without a
// tail of fewer than 8, values far below the shift (0 then), the real vocabulary's length.
TEST(SumExpShiftedTest, MatchesLibm) {
  for (int64_t n : {0, 1, 7, 8, 33, 1000, 92544}) {
    std::vector<float> x = RandomFloats(n, 300 + n, 20.f);
    if (n > 3) x[2] = -std::numeric_limits<float>::infinity();
    if (n > 4) x[3] = -200.f;
    const float shift = n == 0 ? 0.f : *std::max_element(x.begin(), x.end());
    double expected = 0;
    for (float v : x) expected += std::exp(static_cast<double>(v) - shift);
    EXPECT_NEAR(SumExpShifted(x.data(), n, shift), expected, 1e-6 * expected + 1e-30) << n;
  }
  alignas(32) float edges[8] = {0.f, -1.f, -87.f, -88.f, -1e30f, -std::numeric_limits<float>::infinity(), -0.5f,
                                -10.f};
  alignas(32) float out[8];
  _mm256_store_ps(out, Exp8(_mm256_load_ps(edges)));
  for (int i = 0; i < 8; ++i) {
    const float expected = edges[i] < -87.33654f ? 0.f : std::exp(edges[i]);
    EXPECT_NEAR(out[i], expected, 3e-7f * expected) << edges[i];
  }
}

TEST(SamplingTest, CpuDrawsWhatReferenceDraws) {
  const std::vector<SamplingParams> settings = {
      {1.f, 0, 1.f, 1.f}, {0.7f, 40, 1.f, 1.f}, {1.f, 0, 0.8f, 1.005f}, {1.3f, 50, 0.9f, 3.f}, {0.f, 0, 1.f, 1.2f}};
  for (const SamplingParams& params : settings) {
    for (uint64_t seed = 0; seed < 20; ++seed) {
      auto logits = RandomFloats(1000, 100 + seed, 3.f);
      auto copy = logits;
      const std::vector<int32_t> previous = {5, 17, 17, 999};
      std::mt19937_64 rng_a(seed), rng_b(seed);
      EXPECT_EQ(SampleToken(logits.data(), 1000, params, previous, rng_a),
                reference::SampleToken(copy.data(), 1000, params, previous, rng_b))
          << "seed " << seed << " temperature " << params.temperature;
    }
  }
}

TEST(SamplingTest, GreedyTakesFirstMaximum) {
  std::vector<float> logits = {0.f, 3.f, 3.f, -1.f};
  std::mt19937_64 rng(0);
  EXPECT_EQ(SampleToken(logits.data(), 4, {}, {}, rng), 1);
}

// The vectorized argmax against std::max_element: ties (values drawn from a few levels), lengths around the vector
// width, the maximum at either end, all equal, and infinities.
TEST(SamplingTest, FirstArgMaxMatchesReference) {
  std::mt19937_64 rng(7);
  for (int64_t n : {1, 2, 15, 16, 17, 31, 64, 1000, 92544}) {
    for (int trial = 0; trial < 4; ++trial) {
      std::vector<float> x(n);
      for (float& v : x) v = static_cast<float>(rng() % 5) - 2.f;  // few levels: many ties
      if (trial == 1) x.back() = 10.f;
      if (trial == 2) std::fill(x.begin(), x.end(), -std::numeric_limits<float>::infinity());
      if (trial == 3) x[n / 2] = std::numeric_limits<float>::infinity();
      EXPECT_EQ(FirstArgMax(x.data(), n), reference::FirstArgMax(x.data(), n)) << "n " << n << " trial " << trial;
    }
  }
}

TEST(SamplingTest, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  // Token 0 (2.0 -> 1.0) and token 1 (-0.5 -> -1.0) are penalised by 2; token 2 (1.5) now wins greedy.
  std::vector<float> logits = {2.f, -0.5f, 1.5f};
  std::mt19937_64 rng(0);
  EXPECT_EQ(reference::SampleToken(logits.data(), 3, {0.f, 0, 1.f, 2.f}, {0, 1, 0}, rng), 2);
  EXPECT_EQ(logits[0], 1.f);
  EXPECT_EQ(logits[1], -1.f);
}

TEST(SamplingTest, TopKAndTopPKeepOnlyAllowedTokens) {
  // Probabilities (T=1) about 0.64, 0.24, 0.09, 0.03: top-p 0.8 keeps ids 0 and 1 only (HF drops tokens whose
  // ascending cumulative probability is <= 0.2); top-k 1 is greedy.
  const std::vector<float> base = {4.f, 3.f, 2.f, 0.9f};
  std::map<int32_t, int> counts;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    auto logits = base;
    std::mt19937_64 rng(seed);
    counts[SampleToken(logits.data(), 4, {1.f, 0, 0.8f, 1.f}, {}, rng)]++;
  }
  EXPECT_EQ(counts.size(), 2u);
  EXPECT_GT(counts[0], counts[1]);
  counts.clear();
  for (uint64_t seed = 0; seed < 400; ++seed) {
    auto logits = base;
    std::mt19937_64 rng(seed);
    counts[SampleToken(logits.data(), 4, {1.f, 3, 1.f, 1.f}, {}, rng)]++;
  }
  EXPECT_EQ(counts.size(), 3u);
  EXPECT_EQ(counts.count(3), 0u);
}

TEST(SamplingTest, SameSeedSameTokens) {
  auto a = RandomFloats(500, 1), b = a;
  std::mt19937_64 rng_a(42), rng_b(42);
  EXPECT_EQ(SampleToken(a.data(), 500, {1.f, 0, 1.f, 1.f}, {}, rng_a),
            SampleToken(b.data(), 500, {1.f, 0, 1.f, 1.f}, {}, rng_b));
}

}  // namespace
}  // namespace ixc::kernels
