// The CUDA launchers' refusals: each checks its arguments on the host and answers bad ones with an error naming the
// problem, before the device is touched, so these run on machines without a GPU (CI) as well as with one. What a
// refusal protects is a kernel reading out of bounds, misaligned or past what it was built for. Also the host-side
// arithmetic of a launch (decode attention's splits and workspace, which rows the weight passes take).
#include <gtest/gtest.h>

#include <string>

#include "kernels/cuda/attention.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/vision.h"

namespace ixc::kernels::cuda {
namespace {

// An InvalidArgument (or the given code) whose message contains `words`.
void ExpectRefused(const absl::Status& status, const std::string& words,
                   absl::StatusCode code = absl::StatusCode::kInvalidArgument) {
  EXPECT_EQ(status.code(), code) << status;
  EXPECT_NE(status.message().find(words), std::string::npos) << status;
}

// Launches of any row count on one workspace (a model's decode runs) keep the split counters where no launch writes a
// partial result, and stay inside the workspace.
TEST(LaunchArgumentsTest, DecodeWorkspaceKeepsItsCountersApart) {
  for (const int heads : {4, 32}) {
    for (const int head_dim : {64, 128}) {
      for (const int64_t sized_for : {1, 2, 7, 64}) {
        const int64_t floats = DecodeWorkspaceFloats(sized_for, heads, head_dim);
        const DecodeWorkspaceLayout largest = LayOutDecodeWorkspace(floats, sized_for, heads, head_dim);
        EXPECT_LE(largest.end, floats) << sized_for << " rows";
        for (int64_t rows = 1; rows <= sized_for; ++rows) {
          const DecodeWorkspaceLayout layout = LayOutDecodeWorkspace(floats, rows, heads, head_dim);
          EXPECT_EQ(layout.counters, 0);
          EXPECT_EQ(layout.partial_out, largest.partial_out) << rows << " of " << sized_for << " rows";
          EXPECT_GE(layout.partial_out, rows * heads) << "counters (one per row and KV head) overlap the partials";
          EXPECT_EQ(layout.partial_out % 4, 0);
          EXPECT_LE(layout.end, floats);
        }
      }
    }
  }
}

// One wave of blocks, never a few more: (splits x rows x KV heads) blocks fit `blocks_per_sm` x SMs places where one
// split per (row, KV head) does; no more splits than the keys have pieces of min_keys.
TEST(LaunchArgumentsTest, DecodeSplitsFillOneWave) {
  constexpr int kSms = 132, kPerSm = 3, kMinKeys = 64;
  EXPECT_EQ(DecodeSplits(1, 8, 32768, kSms, kPerSm, kMinKeys), 49);  // 392 of 396 places (50 would make 400)
  EXPECT_EQ(DecodeSplits(1, 8, 1000, kSms, kPerSm, kMinKeys), 16);   // 1000 keys make 16 pieces of 64 (the last short)
  EXPECT_EQ(DecodeSplits(64, 8, 32768, kSms, kPerSm, kMinKeys), 1);  // 512 blocks already: more than a wave
  EXPECT_EQ(DecodeSplits(1, 1, 1 << 20, kSms, kPerSm, kMinKeys), 128);  // at most 128
  for (int64_t rows : {1, 2, 3, 4, 7, 16, 33}) {
    for (int kv_heads : {1, 2, 8}) {
      for (int64_t visible : {1, 63, 64, 4096, 98304}) {
        const int splits = DecodeSplits(rows, kv_heads, visible, kSms, kPerSm, kMinKeys);
        EXPECT_GE(splits, 1);
        if (rows * kv_heads <= kSms * kPerSm) {
          EXPECT_LE(splits * rows * kv_heads, kSms * kPerSm) << rows;
        }
        if (splits > 1) {
          EXPECT_LE(splits, (visible + kMinKeys - 1) / kMinKeys) << rows << " " << visible;
        }
      }
    }
  }
}

TEST(LaunchArgumentsTest, NormsRefuseWidthsAndMisalignedRows) {
  ExpectRefused(LaunchRmsNorm(DType::kF32, nullptr, nullptr, nullptr, 2, 30, 1e-5f, nullptr), "RmsNorm");
  ExpectRefused(LaunchAddRmsNorm(nullptr, nullptr, nullptr, nullptr, DType::kBF16, nullptr, -1, 64, 1e-5f, nullptr),
                "AddRmsNorm");
  ExpectRefused(LaunchLayerNorm(DType::kF32, nullptr, nullptr, nullptr, DType::kF32, nullptr, 2, 30, 1e-5f, nullptr),
                "LayerNorm");
  // Rows start four elements apart; a tensor that does not is refused rather than read misaligned (only the
  // addresses are looked at).
  alignas(16) float buffer[64] = {};
  ExpectRefused(LaunchRmsNorm(DType::kF32, buffer, buffer + 1, buffer, 1, 8, 1e-5f, nullptr), "aligned");
}

TEST(LaunchArgumentsTest, AttentionRefusesShapesItWasNotBuiltFor) {
  constexpr int kBlockSize = 16;
  const DeviceKvPools head_dim_96{nullptr, nullptr, DType::kBF16, kBlockSize, 2, 96};
  ExpectRefused(
      LaunchFlashAttention(nullptr, nullptr, 4, 4, head_dim_96, nullptr, 4, 3, 1.f, nullptr, nullptr, nullptr),
      "head_dim 96");
  const DeviceKvPools f32_pools{nullptr, nullptr, DType::kF32, kBlockSize, 2, 64};
  ExpectRefused(LaunchFlashAttention(nullptr, nullptr, 4, 4, f32_pools, nullptr, 4, 3, 1.f, nullptr, nullptr, nullptr),
                "bf16 or f16");
  const DeviceKvPools pools{nullptr, nullptr, DType::kBF16, kBlockSize, 2, 64};
  ExpectRefused(LaunchFlashAttention(nullptr, nullptr, 4, 3, pools, nullptr, 4, 3, 1.f, nullptr, nullptr, nullptr),
                "heads 3, kv_heads 2");
  ExpectRefused(LaunchBatchedFlashAttention(nullptr, nullptr, 4, 70000, 4, pools, nullptr, 1, 4, 3, 1.f, nullptr,
                                            nullptr, nullptr),
                "sequences 70000");
  // 16 query heads per KV head; then a workspace too small for the split.
  const DeviceKvPools grouped_pools{nullptr, nullptr, DType::kBF16, kBlockSize, 2, 64};
  ExpectRefused(
      LaunchPagedDecodeAttention(nullptr, 32, grouped_pools, {}, 1.f, nullptr, nullptr, nullptr, 0, 132, nullptr),
      "16 query heads per KV head");
  DecodeRows rows;
  rows.rows = 2;
  rows.max_visible = 100;
  ExpectRefused(LaunchPagedDecodeAttention(nullptr, 4, pools, rows, 1.f, nullptr, nullptr, nullptr,
                                           DecodeWorkspaceFloats(2, 4, 64) - 1, 132, nullptr),
                "workspace");
  // The merge reads head dims four at a time.
  ExpectRefused(LaunchMergeAttention(DType::kBF16, nullptr, nullptr, nullptr, nullptr, 1, 1, 6, nullptr),
                "a multiple of 4");
  const RopeParams rope{64, 10000.f, 1.f};
  const DeviceKvPools head_dim_128{nullptr, nullptr, DType::kBF16, kBlockSize, 2, 128};
  ExpectRefused(LaunchRopeAndStoreKv(nullptr, nullptr, nullptr, 4, 2, rope, nullptr, head_dim_128, nullptr),
                "vs pools' 128");
}

// The decode rows the weight-streaming kernel takes (1-2, k a multiple of 8), and those whose RMSNorm it can also do
// (the rows in its 48 KB of shared memory): the 7B's hidden 4096 for both rows, not the 14336-wide w2 input.
TEST(LaunchArgumentsTest, WeightPassesTakeDecodeRows) {
  EXPECT_TRUE(Gemm::StreamsWeights(1, 4096));
  EXPECT_TRUE(Gemm::StreamsWeights(2, 14336));
  EXPECT_FALSE(Gemm::StreamsWeights(3, 4096));
  EXPECT_FALSE(Gemm::StreamsWeights(1, 4100));
  EXPECT_TRUE(Gemm::NormsInPass(2, 4096));
  EXPECT_TRUE(Gemm::NormsInPass(1, 14336));
  EXPECT_FALSE(Gemm::NormsInPass(2, 14336));
  EXPECT_FALSE(Gemm::NormsInPass(3, 64));
}

TEST(LaunchArgumentsTest, ElementwiseAndVisionRefuseSizes) {
  ExpectRefused(LaunchSwiGlu(DType::kBF16, nullptr, nullptr, nullptr, -1, nullptr), "negative size");
  ExpectRefused(LaunchGelu(DType::kBF16, nullptr, nullptr, nullptr, -1, 4096, nullptr), "Gelu: -1 x 4096");
  ExpectRefused(LaunchQuickGelu(DType::kBF16, nullptr, nullptr, nullptr, 3, -2, nullptr), "QuickGelu: 3 x -2");
  // Token ids are checked against the vocabulary on the host, before the gather reads the table.
  const int32_t ids[] = {3, 12};
  ExpectRefused(LaunchEmbeddingGather(nullptr, DType::kBF16, 10, 8, nullptr, ids, 2, nullptr, nullptr),
                "token id 12 at position 1", absl::StatusCode::kOutOfRange);
  ExpectRefused(LaunchPatchColumns(nullptr, 1, 560, 15, DType::kBF16, nullptr, 3 * 15 * 15, nullptr), "patch 15");
  ExpectRefused(LaunchVitEmbeddings(nullptr, nullptr, nullptr, 1, 1600, 0, nullptr, nullptr), "hidden 0");
  ExpectRefused(
      LaunchAssembleImageTokens(nullptr, 10, nullptr, nullptr, nullptr, DType::kBF16, nullptr, -1, 8, nullptr),
      "-1 tokens");
}

TEST(LaunchArgumentsTest, SamplingRefusesParametersOutOfRange) {
  ExpectRefused(LaunchTopKTopPSample(nullptr, 10, 0, 0.f, 0.5f, nullptr, nullptr), "top_p 0");
  ExpectRefused(LaunchTopKTopPSample(nullptr, 10, 0, 0.9f, 1.f, nullptr, nullptr), "uniform 1");
  ExpectRefused(LaunchArgmax(nullptr, 1, 0, nullptr, nullptr), "vocab 0");
  ExpectRefused(LaunchPenaltyAndTemperature(nullptr, 70000, 10, nullptr, nullptr, nullptr, nullptr, nullptr),
                "rows 70000");
  ExpectRefused(LaunchTopKTopPSampleRows(nullptr, 0, nullptr, 1, nullptr, nullptr), "vocab 0");
  ExpectRefused(CheckSampledRow({0, -1, 1.f, 0.0}), "top_k -1");
}

}  // namespace
}  // namespace ixc::kernels::cuda
