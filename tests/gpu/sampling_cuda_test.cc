// GPU token choice against kernels::reference::SampleToken: argmax with ties, and top-k / top-p draws with the
// uniform the reference draws from the same generator. Skipped without a GPU.
#include "kernels/cuda/sampling.h"

#include <random>

#include "kernels/ops.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/test_util.h"

namespace ixc::kernels::cuda {
namespace {

using ixc::testing::CudaTest;
using ixc::testing::DeviceBuffer;
using ixc::testing::RandomFloats;

TEST_F(CudaTest, ArgmaxTakesTheLowestIdOfTies) {
  const int64_t vocab = 92544;
  std::vector<float> logits = RandomFloats(3 * vocab, 1);
  logits[vocab + 777] = logits[vocab + 90000] = 100.f;  // row 1: a tie
  logits[2 * vocab + vocab - 1] = 50.f;                 // row 2: the last id
  DeviceBuffer<float> d_logits(logits);
  DeviceBuffer<int32_t> d_ids(3);
  ASSERT_TRUE(LaunchArgmax(d_logits.data, 3, vocab, d_ids.data, nullptr).ok());
  const auto ids = d_ids.Read();
  for (int r = 0; r < 3; ++r) {
    const float* row = logits.data() + r * vocab;
    EXPECT_EQ(ids[r], std::max_element(row, row + vocab) - row) << r;
  }
  EXPECT_EQ(ids[1], 777);
}

TEST_F(CudaTest, TopKTopPDrawsWhatTheReferenceDraws) {
  const int64_t vocab = 92544;
  int checked = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    SamplingParams params;
    params.temperature = 0.7f;
    params.top_k = seed % 4 == 0 ? 0 : static_cast<int>(1 + seed * 37 % 200);
    params.top_p = seed % 3 == 0 ? 1.f : 0.5f + 0.01f * static_cast<float>(seed);
    std::vector<float> logits = RandomFloats(vocab, 100 + seed, 3.f);
    for (int i = 0; i < 50; ++i) logits[i * 997] = 6.f;  // ties at the top
    std::vector<float> scratch = logits;
    std::mt19937_64 rng(seed), draw_rng(seed);
    const int32_t expected = reference::SampleToken(scratch.data(), vocab, params, {}, rng);
    // The reference's one draw, the same way (DrawFromAscending).
    const double uniform = std::uniform_real_distribution<double>(0.0, 1.0)(draw_rng);
    std::vector<float> tempered = logits;
    for (float& v : tempered) v /= params.temperature;
    DeviceBuffer<float> d_logits(tempered);
    DeviceBuffer<int32_t> d_id(1, -1);
    ASSERT_TRUE(LaunchTopKTopPSample(d_logits.data, vocab, params.top_k, params.top_p, uniform, d_id.data, nullptr)
                    .ok());
    EXPECT_EQ(d_id.Read()[0], expected) << "seed " << seed << " top_k " << params.top_k << " top_p " << params.top_p;
    ++checked;
  }
  EXPECT_EQ(checked, 40);
}

TEST_F(CudaTest, SamplingRejectsBadArguments) {
  EXPECT_EQ(LaunchTopKTopPSample(nullptr, 10, 0, 0.f, 0.5f, nullptr, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LaunchTopKTopPSample(nullptr, 10, 0, 0.9f, 1.f, nullptr, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(LaunchArgmax(nullptr, 1, 0, nullptr, nullptr).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ixc::kernels::cuda
