// The GPU language model's scratch arithmetic (model/cuda/scratch_plan.h), on the host: the limits are what half the
// reserve holds, a call within them fits it, and the figures the documentation gives for the 7B hold (12K rows of a
// prompt in the default 4 GiB, 1.4K of them with logits; about 7 GiB more for the ring prefill of a 96K-token prompt
// over 2 SP ranks). Needs no GPU: runs in CI.
#include "model/cuda/scratch_plan.h"

#include <gtest/gtest.h>

#include <numeric>

namespace ixc::model {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

// The rows' share of the scratch: every buffer but the decode workspace (a fixed size).
int64_t RowBytes(const ScratchPlan& plan, int64_t rows, int64_t logit_rows) {
  std::array<int64_t, ScratchPlan::kBuffers> sizes = plan.Sizes(rows, logit_rows);
  sizes.back() = 0;
  return std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
}

ScratchPlan SevenB(int tp_size) {
  LlmConfig shard = Ixc25SevenBConfig();
  shard.num_heads /= tp_size;
  shard.num_kv_heads /= tp_size;
  shard.intermediate_size /= tp_size;
  shard.vocab_size /= tp_size;
  return {shard, DType::kBF16, tp_size, /*max_lora_rank=*/512};  // the write mode's sft and dpo LoRAs stacked
}

TEST(ScratchPlanTest, LimitsAreWhatHalfTheReserveHolds) {
  for (int tp_size : {1, 2}) {
    const ScratchPlan plan = SevenB(tp_size);
    for (int64_t reserve : {kGiB, 4 * kGiB, 16 * kGiB}) {
      SCOPED_TRACE(::testing::Message() << "TP " << tp_size << ", reserve " << (reserve >> 20) << " MiB");
      const CallLimits limits = plan.Limits(reserve);
      ASSERT_LE(limits.logit_rows, limits.rows);
      // A scratch grown to both limits (a long prompt's rows, an all-logits call's logit rows) fits half the
      // reserve, and leaves less than a row of each unused.
      const int64_t both = RowBytes(plan, limits.rows, limits.logit_rows), budget = reserve / 2;
      EXPECT_LE(both, budget);
      EXPECT_GT(both + RowBytes(plan, 1, 0) + RowBytes(plan, 1, 1), budget);
      // The allocation itself: the rows' share, the decode workspace and at most 255 bytes of padding a buffer.
      const int64_t bytes = plan.Bytes(limits.rows, limits.logit_rows);
      const int64_t workspace = plan.DecodeWorkspaceFloats(limits.rows) * 4;
      EXPECT_GE(bytes, both + workspace);
      EXPECT_LE(bytes, both + workspace + 255 * ScratchPlan::kBuffers);
    }
  }
  const CallLimits seven_b = SevenB(1).Limits(4 * kGiB);
  EXPECT_EQ(seven_b.rows / 1024, 12) << seven_b.rows;
  EXPECT_EQ(seven_b.logit_rows / 100, 14) << seven_b.logit_rows;
}

// However small the flag's reserve, the pool leaves room for a call at the smallest limits (as Limits promises).
TEST(ScratchPlanTest, ReserveHoldsACallAtTheSmallestLimits) {
  const ScratchPlan plan = SevenB(1);
  const CallLimits smallest = plan.Limits(0);
  EXPECT_EQ(smallest.rows, ScratchPlan::kMinCallRows);
  EXPECT_EQ(smallest.logit_rows, ScratchPlan::kMinCallLogitRows);
  const int64_t floor = plan.ReserveBytes(0, 0);
  EXPECT_EQ(floor, 2 * plan.Bytes(smallest.rows, smallest.logit_rows));
  EXPECT_EQ(plan.ReserveBytes(floor / 2, 0), floor);
  EXPECT_EQ(plan.ReserveBytes(4 * kGiB, 0), 4 * kGiB);  // the default is well above it (556 MiB for the 7B)
  EXPECT_LT(floor, kGiB);
}

TEST(ScratchPlanTest, ReserveHoldsTheLongestRingShard) {
  const ScratchPlan plan = SevenB(1);
  EXPECT_EQ(plan.ReserveBytes(4 * kGiB, 0), 4 * kGiB);    // no ring prefills
  EXPECT_EQ(plan.ReserveBytes(4 * kGiB, 100), 4 * kGiB);  // a short shard fits the reserve as it is
  // 96K tokens over 2 ranks: the call's scratch and the ring's buffers, beside half the flag's reserve.
  const int64_t rows = 49152, reserve = plan.ReserveBytes(4 * kGiB, rows);
  EXPECT_GE(reserve - 2 * kGiB, plan.Bytes(rows, 1) + 2 * 2 * rows * 8 * 128 * 2);
  EXPECT_NEAR(static_cast<double>(reserve - 2 * kGiB) / kGiB, 6.7, 0.1);
  // A larger flag than the ring needs stays as it is.
  EXPECT_EQ(plan.ReserveBytes(32 * kGiB, rows), 32 * kGiB);
}

// Input rows kept on the device (the NCCL handoff's image prompts) come on top of whatever else the reserve holds.
TEST(ScratchPlanTest, ReserveAddsTheInputRowsKeptOnTheDevice) {
  const ScratchPlan plan = SevenB(1);
  const int64_t rows = 98303, input_bytes = rows * 4096 * 4;  // the default --max-context's longest prompt
  EXPECT_EQ(plan.ReserveBytes(4 * kGiB, 0, rows), 4 * kGiB + input_bytes);
  EXPECT_EQ(plan.ReserveBytes(4 * kGiB, 49152, rows), plan.ReserveBytes(4 * kGiB, 49152) + input_bytes);
  EXPECT_NEAR(static_cast<double>(input_bytes) / kGiB, 1.5, 0.01);
}

}  // namespace
}  // namespace ixc::model
