// GPU token choice against kernels::reference::SampleToken: argmax with ties, and top-k / top-p draws with the
// uniform the reference draws from the same generator, alone and several rows per launch; the repetition penalty
// and temperature against the host's. Skipped without a GPU.
#include "kernels/cuda/sampling.h"

#include <random>

#include "kernels/ops.h"
#include "kernels/sampling_rules.h"
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
  // Top-k off (the whole vocabulary), k of 1-200 (the kept tokens sorted in shared memory), and from seed 40 on k =
  // 10 with 2000 tokens tied at the top (more kept than that path holds: the radix passes over the vocabulary).
  for (uint64_t seed = 0; seed < 44; ++seed) {
    SamplingParams params;
    params.temperature = 0.7f;
    params.top_k = seed >= 40 ? 10 : seed % 4 == 0 ? 0 : static_cast<int>(1 + seed * 37 % 200);
    params.top_p = seed % 3 == 0 ? 1.f : 0.5f + 0.01f * static_cast<float>(seed);
    std::vector<float> logits = RandomFloats(vocab, 100 + seed, 3.f);
    const int ties = seed >= 40 ? 2000 : 50;
    for (int i = 0; i < ties; ++i) logits[i * 37] = 6.f;  // ties at the top
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
  EXPECT_EQ(checked, 44);
}

// The penalty on listed ids, then the temperature, as SampleToken applies them: bit for bit (IEEE division).
TEST_F(CudaTest, PenaltyAndTemperatureMatchTheHost) {
  const int64_t vocab = 5003, rows = 3;
  std::vector<float> logits = RandomFloats(rows * vocab, 7, 4.f);
  const std::vector<int32_t> offsets = {0, 3, 3, 5};       // row 1: no penalty
  const std::vector<int32_t> ids = {0, 17, vocab - 1, 9, 4000};
  const std::vector<float> penalties = {1.3f, 1.f, 0.8f};
  const std::vector<float> temperatures = {1.f, 0.7f, 1.9f};  // row 0: the argmax's rows keep 1
  std::vector<float> expected = logits;
  for (int64_t r = 0; r < rows; ++r) {
    float* row = expected.data() + r * vocab;
    ApplyRepetitionPenalty(row, vocab, penalties[r],
                           std::vector<int32_t>(ids.begin() + offsets[r], ids.begin() + offsets[r + 1]));
    if (temperatures[r] != 1.f) {
      for (int64_t i = 0; i < vocab; ++i) row[i] /= temperatures[r];
    }
  }
  DeviceBuffer<float> d_logits(logits), d_penalties(penalties), d_temperatures(temperatures);
  DeviceBuffer<int32_t> d_offsets(offsets), d_ids(ids);
  ASSERT_TRUE(LaunchPenaltyAndTemperature(d_logits.data, rows, vocab, d_offsets.data, d_ids.data, d_penalties.data,
                                          d_temperatures.data, nullptr)
                  .ok());
  EXPECT_EQ(d_logits.Read(), expected);
}

// Several rows drawn in one launch: each row's token is the single-row kernel's (and so the reference's).
TEST_F(CudaTest, TopKTopPRowsDrawEachRowAsAlone) {
  const int64_t vocab = 92544, rows = 5;
  std::vector<float> logits = RandomFloats(rows * vocab, 11, 3.f);
  const std::vector<SampledRow> drawn = {{0, 40, 0.9f, 0.25}, {2, 0, 0.6f, 0.999}, {3, 1, 1.f, 0.5},
                                         {4, 0, 1.f, 0.0}};  // row 1 is left to the argmax
  DeviceBuffer<float> d_logits(logits);
  DeviceBuffer<int32_t> d_ids(rows, -1), d_alone(1, -1);
  DeviceBuffer<SampledRow> d_rows(drawn);
  ASSERT_TRUE(LaunchTopKTopPSampleRows(d_logits.data, vocab, d_rows.data, drawn.size(), d_ids.data, nullptr).ok());
  const auto ids = d_ids.Read();
  EXPECT_EQ(ids[1], -1);
  for (const SampledRow& row : drawn) {
    ASSERT_TRUE(LaunchTopKTopPSample(d_logits.data + row.row * vocab, vocab, row.top_k, row.top_p, row.uniform,
                                     d_alone.data, nullptr)
                    .ok());
    EXPECT_EQ(ids[row.row], d_alone.Read()[0]) << "row " << row.row;
  }
  EXPECT_FALSE(CheckSampledRow({0, -1, 1.f, 0.5}).ok());
  EXPECT_FALSE(CheckSampledRow({0, 0, 1.f, 1.0}).ok());
  EXPECT_TRUE(CheckSampledRow({0, 0, 1.f, 0.0}).ok());
}

}  // namespace
}  // namespace ixc::kernels::cuda
