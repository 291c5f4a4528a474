// The coordinator's block counts per SP rank mirror what the workers' caches allocate (parallel/sequence_shard.h):
// a prompt's zig-zag shard where it is long enough for the ring, the positions each rank owns where it is not, then
// each generated token on its round-robin owner; a sequence gives its blocks back when freed.
#include "coordinator/block_manager.h"

#include <gtest/gtest.h>

namespace ixc::coordinator {
namespace {

TEST(BlockManagerTest, CountsFollowWhereTheWorkersKeepTheKv) {
  BlockManager blocks(/*sp=*/2, /*block_size=*/4, /*blocks_per_rank=*/8);
  // 20 tokens over 2 ranks: zig-zag shards of 10, 3 blocks each.
  ASSERT_TRUE(blocks.CanPrefill(20));
  blocks.Prefill(1, 20);
  EXPECT_EQ(blocks.free_blocks(0), 5);
  EXPECT_EQ(blocks.free_blocks(1), 5);
  // 3 tokens, too few for a token in each of 4 chunks: every position in block 0, which rank 0 owns.
  blocks.Prefill(2, 3);
  EXPECT_EQ(blocks.free_blocks(0), 4);
  EXPECT_EQ(blocks.free_blocks(1), 5);
  // Its position 3 still fits rank 0's block; position 4 starts block 1, rank 1's.
  blocks.Append(2, 3);
  EXPECT_EQ(blocks.free_blocks(0), 4);
  blocks.Append(2, 4);
  EXPECT_EQ(blocks.free_blocks(1), 4);
  // 40 more tokens need 5 blocks on each rank: 4 are left on each.
  EXPECT_FALSE(blocks.CanPrefill(40));
  blocks.Free(1);
  EXPECT_TRUE(blocks.CanPrefill(40));
  blocks.Free(2);
  EXPECT_EQ(blocks.free_blocks(0), 8);
  EXPECT_EQ(blocks.free_blocks(1), 8);
  EXPECT_DOUBLE_EQ(blocks.usage(), 0.0);
}

}  // namespace
}  // namespace ixc::coordinator
