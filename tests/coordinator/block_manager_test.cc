// The coordinator's KV blocks and the prefix cache over them (coordinator/block_manager.h): global block g on SP
// rank g % S; whole blocks computed are registered under their keys and shared by later sequences; references keep a
// block in use; unused cached blocks are evicted least recently used first, and only when an allocation needs them.
#include "coordinator/block_manager.h"

#include <gtest/gtest.h>

namespace ixc::coordinator {
namespace {

// Chained keys of `blocks` blocks, distinct per `seed`.
std::vector<ContentKey> Keys(int blocks, int seed) {
  std::vector<ContentKey> keys;
  for (int g = 0; g < blocks; ++g) keys.push_back({static_cast<uint64_t>(seed), static_cast<uint64_t>(g + 1)});
  return keys;
}

TEST(BlockManagerTest, BlocksGoRoundTheSpRanksAndComeBack) {
  BlockManager blocks(/*sp=*/2, /*block_size=*/4, /*blocks_per_rank=*/8, /*prefix_caching=*/false);
  const std::vector<ContentKey> keys = Keys(5, 1);
  EXPECT_EQ(blocks.CachedPrefix(keys, 20), 0);  // no caching
  ASSERT_TRUE(blocks.CanAllocate(keys, 0, 20));
  blocks.Allocate(1, keys, 0, 20);  // 5 blocks: g 0, 2, 4 on rank 0, g 1, 3 on rank 1
  EXPECT_EQ(blocks.used_blocks(0), 3);
  EXPECT_EQ(blocks.used_blocks(1), 2);
  EXPECT_EQ(blocks.Table(1), (std::vector<int32_t>{0, 0, 1, 1, 2}));  // each rank's lowest ids first
  // Position 20 opens global block 5, on rank 1; 21 fits in it.
  ASSERT_TRUE(blocks.CanAppend(1, 20));
  EXPECT_EQ(blocks.Append(1, 20), std::optional<int32_t>(2));
  EXPECT_EQ(blocks.Append(1, 21), std::nullopt);
  EXPECT_EQ(blocks.used_blocks(1), 3);
  blocks.Computed(1, keys, 22);  // no caching: nothing registered
  EXPECT_EQ(blocks.cached_blocks(), 0);
  blocks.Free(1);
  EXPECT_TRUE(blocks.idle());
  EXPECT_EQ(blocks.usage(), 0.0);
}

// Beam search: a fork shares the parent's whole blocks and takes a block of its own, on the partly filled block's SP
// rank, for a copy of it; a full last block needs none. Every block comes back once both have ended.
TEST(BlockManagerTest, AForkSharesWholeBlocksAndCopiesThePartlyFilledOne) {
  BlockManager blocks(/*sp=*/2, /*block_size=*/4, /*blocks_per_rank=*/8, /*prefix_caching=*/false);
  blocks.Allocate(1, {}, 0, 10);  // g 0, 2 on rank 0, g 1 on rank 1: ids 0, 0, 1
  ASSERT_TRUE(blocks.CanFork(10));
  const auto copy = blocks.Fork(1, 2, 10);  // positions 8, 9 of g 2 (rank 0) are written: a copy
  ASSERT_TRUE(copy.has_value());
  EXPECT_EQ(copy->first, 2);
  EXPECT_EQ(copy->second, 2) << "rank 0's next free block";
  EXPECT_EQ(blocks.Table(2), (std::vector<int32_t>{0, 0, 2}));
  EXPECT_EQ(blocks.used_blocks(0), 3);
  EXPECT_EQ(blocks.used_blocks(1), 1) << "g 1 is shared";
  EXPECT_EQ(blocks.Fork(2, 3, 8), std::nullopt) << "8 positions fill two blocks: nothing to copy";
  EXPECT_EQ(blocks.Table(3), (std::vector<int32_t>{0, 0}));
  blocks.Free(1);
  blocks.Free(2);
  EXPECT_EQ(blocks.used_blocks(0), 1);
  blocks.Free(3);
  EXPECT_TRUE(blocks.idle());
  // No free block on the partly filled block's rank: no fork.
  BlockManager full(/*sp=*/1, /*block_size=*/4, /*blocks_per_rank=*/2, /*prefix_caching=*/false);
  full.Allocate(1, {}, 0, 6);
  EXPECT_FALSE(full.CanFork(6));
  EXPECT_TRUE(full.CanFork(8));
}

TEST(BlockManagerTest, APrefixComputedOnceIsSharedBlockByBlock) {
  BlockManager blocks(/*sp=*/2, /*block_size=*/4, /*blocks_per_rank=*/8, /*prefix_caching=*/true);
  const std::vector<ContentKey> first = Keys(4, 1);
  blocks.Allocate(1, first, 0, 17);  // 5 blocks, 4 whole
  EXPECT_EQ(blocks.CachedPrefix(first, 17), 0);  // registered only once computed
  blocks.Computed(1, first, 17);
  EXPECT_EQ(blocks.cached_blocks(), 4);
  // A sequence sharing the first 3 blocks: 12 positions cached, a 4th key of its own.
  std::vector<ContentKey> second = Keys(3, 1);
  second.push_back({2, 4});
  EXPECT_EQ(blocks.CachedPrefix(second, 30), 12);
  // Never the last position: a prompt of exactly 16 cached positions computes its last block again.
  EXPECT_EQ(blocks.CachedPrefix(first, 16), 12);
  EXPECT_EQ(blocks.CachedPrefix(first, 17), 16);
  ASSERT_TRUE(blocks.CanAllocate(second, 12, 30));
  blocks.Allocate(2, second, 12, 30);
  for (int g = 0; g < 3; ++g) EXPECT_EQ(blocks.Table(2)[g], blocks.Table(1)[g]) << "block " << g;
  EXPECT_NE(blocks.Table(2)[3], blocks.Table(1)[3]);
  // The first holds g 0, 2, 4 on rank 0 and g 1, 3 on rank 1; the second adds g 4, 6 and g 3, 5, 7 of its own.
  EXPECT_EQ(blocks.used_blocks(0), 3 + 2);
  EXPECT_EQ(blocks.used_blocks(1), 2 + 3);
  // The first ends: the shared blocks stay in use by the second; its own go to the cache or the free pool.
  blocks.Free(1);
  EXPECT_EQ(blocks.used_blocks(0), 4);
  EXPECT_EQ(blocks.CachedPrefix(first, 17), 16);  // still cached, unused
  blocks.Free(2);
  EXPECT_TRUE(blocks.idle());
  EXPECT_EQ(blocks.cached_blocks(), 4);  // the second computed nothing registered
}

TEST(BlockManagerTest, UnusedCachedBlocksAreEvictedLeastRecentlyUsedFirstAndOnlyForRoom) {
  BlockManager blocks(/*sp=*/1, /*block_size=*/2, /*blocks_per_rank=*/6, /*prefix_caching=*/true);
  const std::vector<ContentKey> a = Keys(2, 1), b = Keys(2, 2);
  blocks.Allocate(1, a, 0, 5);  // 3 blocks
  blocks.Computed(1, a, 4);
  blocks.Free(1);
  blocks.Allocate(2, b, 0, 5);
  blocks.Computed(2, b, 4);
  blocks.Free(2);
  EXPECT_EQ(blocks.cached_blocks(), 4);
  EXPECT_EQ(blocks.available_blocks(0), 6);  // cached and unused counts as room
  // A hit on `a` makes it the most recent; a sequence needing 3 fresh blocks takes the 2 free ones, then evicts the
  // least recently used: `b`'s tail block.
  blocks.Allocate(3, a, 4, 5);
  blocks.Free(3);
  const std::vector<ContentKey> c = Keys(3, 3);
  ASSERT_TRUE(blocks.CanAllocate(c, 0, 6));
  blocks.Allocate(4, c, 0, 6);
  EXPECT_EQ(blocks.CachedPrefix(b, 5), 2);  // its head only
  EXPECT_EQ(blocks.evictions(), 1);
  EXPECT_EQ(blocks.CachedPrefix(a, 5), 4);
  // `a` taken again and a block more: `b`'s head goes. Then nothing is free or unused, and blocks in use stay.
  ASSERT_TRUE(blocks.CanAllocate(a, 4, 5));
  blocks.Allocate(5, a, 4, 5);
  EXPECT_EQ(blocks.CachedPrefix(b, 5), 0);
  EXPECT_EQ(blocks.available_blocks(0), 0);
  EXPECT_FALSE(blocks.CanAllocate(Keys(1, 4), 0, 4));
  EXPECT_FALSE(blocks.CanAppend(5, 6));  // position 6 opens a block: none
  EXPECT_TRUE(blocks.CanAppend(5, 5));   // position 5 is in its last block
  blocks.Free(4);
  EXPECT_TRUE(blocks.CanAppend(5, 6));
  blocks.Free(5);
  EXPECT_TRUE(blocks.idle());
  EXPECT_EQ(blocks.CachedPrefix(a, 5), 4);
}

TEST(BlockManagerTest, TakingCachedBlocksThatNobodyUsesCountsAgainstTheRoom) {
  BlockManager blocks(/*sp=*/1, /*block_size=*/2, /*blocks_per_rank=*/3, /*prefix_caching=*/true);
  const std::vector<ContentKey> a = Keys(2, 1);
  blocks.Allocate(1, a, 0, 4);
  blocks.Computed(1, a, 4);
  blocks.Free(1);
  // 2 cached unused + 1 free: a sequence reusing both and needing 2 more does not fit; needing 1 does.
  EXPECT_FALSE(blocks.CanAllocate(a, 4, 8));
  EXPECT_TRUE(blocks.CanAllocate(a, 4, 6));
  blocks.Allocate(2, a, 4, 6);
  EXPECT_EQ(blocks.used_blocks(0), 3);
  blocks.Free(2);
  EXPECT_TRUE(blocks.idle());
}

TEST(BlockManagerTest, ADuplicateBlockStaysPrivateAndIsFreedOnce) {
  BlockManager blocks(/*sp=*/2, /*block_size=*/2, /*blocks_per_rank=*/4, /*prefix_caching=*/true);
  const std::vector<ContentKey> a = Keys(2, 1);
  // Two sequences computing the same prefix in the same step: the first registers, the second's stay private.
  blocks.Allocate(1, a, 0, 5);
  blocks.Allocate(2, a, 0, 5);
  blocks.Computed(1, a, 4);
  blocks.Computed(2, a, 4);
  EXPECT_EQ(blocks.cached_blocks(), 2);
  blocks.Free(2);
  EXPECT_EQ(blocks.available_blocks(0), 4 - 2);  // its private blocks went back free, the first's are in use
  blocks.Free(1);
  EXPECT_TRUE(blocks.idle());
  EXPECT_EQ(blocks.available_blocks(0), 4);
  EXPECT_EQ(blocks.available_blocks(1), 4);
}

}  // namespace
}  // namespace ixc::coordinator
