// The chunk budget's cost model (coordinator/chunk_cost.h) against sums written out position by position.
#include "coordinator/chunk_cost.h"

#include <gtest/gtest.h>

namespace ixc::coordinator {
namespace {

// count + each position's keys (q + 1) / keys_per_token, summed one position at a time.
double CostByHand(int64_t first, int64_t count, int64_t keys_per_token) {
  double cost = 0;
  for (int64_t q = first; q < first + count; ++q) cost += 1.0 + static_cast<double>(q + 1) / keys_per_token;
  return cost;
}

TEST(ChunkCostTest, CountsPositionsAndTheKeysTheyRead) {
  for (int64_t first : {0, 1, 17, 4096}) {
    for (int64_t count : {1, 2, 255}) {
      EXPECT_NEAR(ChunkCost(first, count, 344), CostByHand(first, count, 344), 1e-6) << first << " " << count;
    }
  }
  EXPECT_EQ(ChunkCost(4096, 255, 0), 255);  // positions only
}

TEST(ChunkCostTest, ChunkWithinIsTheLongestThatFits) {
  for (double budget : {0.5, 1.0, 2.0, 256.0, 1000.0}) {
    for (int64_t first : {0, 100, 16000}) {
      const int64_t n = ChunkWithin(budget, first, 344);
      EXPECT_LE(ChunkCost(first, n, 344), budget);
      EXPECT_GT(ChunkCost(first, n + 1, 344), budget) << budget << " " << first;
    }
  }
  EXPECT_EQ(ChunkWithin(256, 16000, 0), 256);
  EXPECT_EQ(ChunkWithin(-3, 0, 0), 0);
  // Late in a long prompt a budget buys fewer positions: at 16K keys a position costs 1 + 16001 / 344 = 47.5.
  EXPECT_EQ(ChunkWithin(1024, 0, 344), 562);
  EXPECT_EQ(ChunkWithin(1024, 16000, 344), 21);
}

TEST(ChunkCostTest, DefaultsFollowTheModelsShape) {
  model::LlmConfig demo;  // the demo preset: hidden 256, heads 8 / 2 of 32, intermediate 704
  demo.hidden_size = 256;
  demo.num_heads = 8;
  demo.num_kv_heads = 2;
  demo.head_dim = 32;
  demo.intermediate_size = 704;
  EXPECT_EQ(DefaultKeysPerToken(demo, /*gpu=*/true), (384 + 256 + 3 * 704) / 2);
  EXPECT_EQ(DefaultKeysPerToken(demo, /*gpu=*/false), (384 + 256 + 3 * 704) / 2 / 4);
}

}  // namespace
}  // namespace ixc::coordinator
