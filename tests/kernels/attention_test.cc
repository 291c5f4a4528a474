// CPU paged attention against the reference: GQA group sizes 1, 2, 3 and 4, block sizes that do and do not divide the
// sequence, a shuffled block table, a chunk of queries starting mid-sequence (chunked prefill / decode), head dims of
// one to 17 vectors of 8 (the vectorized path) and one that is not a multiple of 8 (the plain loops), and keys over
// several softmax spans (kSpanKeys), with blocks that do not divide a span and one block larger than a span.
#include <algorithm>
#include <numeric>

#include "kernels/ops.h"
#include "tests/test_util.h"

namespace ixc::kernels {
namespace {

using ixc::testing::AllClose;
using ixc::testing::RandomFloats;

struct Case {
  int heads, kv_heads, head_dim, block_size, past, tokens;
};

class PagedAttentionTest : public ::testing::TestWithParam<Case> {};

TEST_P(PagedAttentionTest, MatchesReference) {
  const Case c = GetParam();
  const int total = c.past + c.tokens;
  const int blocks = (total + c.block_size - 1) / c.block_size + 3;  // spare blocks the table never names
  std::vector<int32_t> table(blocks);
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), std::mt19937(7));
  const int64_t pool_size = static_cast<int64_t>(blocks) * c.block_size * c.kv_heads * c.head_dim;
  const auto k_pool = RandomFloats(pool_size, 1), v_pool = RandomFloats(pool_size, 2);
  const auto q = RandomFloats(static_cast<int64_t>(c.tokens) * c.heads * c.head_dim, 3);
  std::vector<int32_t> positions(c.tokens);
  std::iota(positions.begin(), positions.end(), c.past);
  const PagedKv kv{k_pool.data(), v_pool.data(), table.data(), c.block_size, c.kv_heads, c.head_dim};
  const AttentionShape shape{c.tokens, c.heads, 1.f / std::sqrt(static_cast<float>(c.head_dim))};
  std::vector<float> expected(q.size()), actual(q.size());
  std::vector<float> expected_lse(c.tokens * c.heads), actual_lse(c.tokens * c.heads);
  reference::PagedAttention(q.data(), positions.data(), kv, shape, expected.data(), expected_lse.data());
  PagedAttention(q.data(), positions.data(), kv, shape, actual.data(), actual_lse.data());
  EXPECT_TRUE(AllClose(actual, expected, {2e-6f, 1e-5f}));
  EXPECT_TRUE(AllClose(actual_lse, expected_lse, {2e-6f, 1e-5f}));
}

INSTANTIATE_TEST_SUITE_P(Shapes, PagedAttentionTest,
                         ::testing::Values(Case{4, 4, 16, 16, 0, 1}, Case{4, 2, 32, 16, 0, 37},
                                           Case{8, 2, 64, 8, 50, 19}, Case{12, 3, 128, 32, 100, 1},
                                           Case{6, 6, 8, 5, 3, 23}, Case{4, 1, 64, 16, 257, 3},
                                           Case{4, 2, 12, 16, 20, 5}, Case{6, 2, 136, 16, 41, 2},
                                           Case{8, 2, 32, 5, 600, 7}, Case{4, 2, 16, 512, 700, 2}));

TEST(PagedAttentionReferenceTest, SingleKeyReturnsItsValue) {
  // With one key the softmax weight is 1: the output is that key's value and lse is the scaled score.
  const std::vector<float> k = {1.f, 2.f}, v = {5.f, -3.f}, q = {0.5f, 0.25f};
  const int32_t table = 0, position = 0;
  const PagedKv kv{k.data(), v.data(), &table, 1, 1, 2};
  std::vector<float> out(2);
  float lse = 0;
  reference::PagedAttention(q.data(), &position, kv, {1, 1, 2.f}, out.data(), &lse);
  EXPECT_EQ(out, v);
  EXPECT_FLOAT_EQ(lse, 2.f * (0.5f + 0.5f));
}

}  // namespace
}  // namespace ixc::kernels

namespace ixc::kernels {
namespace {

// Splitting a sequence's keys across shards (as sequence parallelism does) and merging the per-shard results by
// log-sum-exp gives attention over all keys.
TEST(MergeAttentionTest, ShardedKeysMergeToTheWhole) {
  const int heads = 4, kv_heads = 2, d = 16, total = 41, block = 4;
  const int64_t row = static_cast<int64_t>(kv_heads) * d;
  const auto k_all = ixc::testing::RandomFloats(total * row, 11), v_all = ixc::testing::RandomFloats(total * row, 12);
  std::vector<int32_t> q_positions = {0, 3, 17, 40};  // includes a query with only one visible key
  const auto q = ixc::testing::RandomFloats(q_positions.size() * heads * d, 13);
  const AttentionShape shape{static_cast<int>(q_positions.size()), heads, 0.25f};
  // Whole: keys 0..total-1 in one contiguous "pool".
  std::vector<int32_t> whole_table((total + block - 1) / block);
  std::iota(whole_table.begin(), whole_table.end(), 0);
  std::vector<float> k_pool(whole_table.size() * block * row), v_pool(k_pool.size());
  std::copy(k_all.begin(), k_all.end(), k_pool.begin());
  std::copy(v_all.begin(), v_all.end(), v_pool.begin());
  std::vector<float> expected(q.size()), expected_lse(q_positions.size() * heads);
  reference::PagedAttention(q.data(), q_positions.data(), {k_pool.data(), v_pool.data(), whole_table.data(), block,
                                                           kv_heads, d}, shape, expected.data(), expected_lse.data());
  // Three shards by block, round-robin: shard s holds the keys of blocks s, s + 3, ...
  std::vector<float> merged(q.size(), 0.f), merged_lse(q_positions.size() * heads, -INFINITY);
  for (int s = 0; s < 3; ++s) {
    std::vector<int32_t> positions;
    std::vector<float> ks, vs;
    for (int j = 0; j < total; ++j) {
      if ((j / block) % 3 != s) continue;
      positions.push_back(j);
      ks.insert(ks.end(), k_all.begin() + j * row, k_all.begin() + (j + 1) * row);
      vs.insert(vs.end(), v_all.begin() + j * row, v_all.begin() + (j + 1) * row);
    }
    const int32_t one_block = 0;
    const PagedKv shard{ks.data(), vs.data(), &one_block, static_cast<int>(positions.size()), kv_heads, d,
                        positions.data(), static_cast<int64_t>(positions.size())};
    std::vector<float> part(q.size()), part_lse(merged_lse.size()), ref_part(q.size()), ref_lse(merged_lse.size());
    PagedAttention(q.data(), q_positions.data(), shard, shape, part.data(), part_lse.data());
    reference::PagedAttention(q.data(), q_positions.data(), shard, shape, ref_part.data(), ref_lse.data());
    EXPECT_TRUE(ixc::testing::AllClose(part, ref_part, {2e-6f, 1e-5f}));
    for (size_t i = 0; i < ref_lse.size(); ++i) EXPECT_EQ(std::isinf(part_lse[i]), std::isinf(ref_lse[i]));
    std::vector<float> ref_merged = merged, ref_merged_lse = merged_lse;
    MergeAttention(merged.data(), merged_lse.data(), part.data(), part_lse.data(), q_positions.size(), heads, d);
    reference::MergeAttention(ref_merged.data(), ref_merged_lse.data(), part.data(), part_lse.data(),
                              q_positions.size(), heads, d);
    EXPECT_TRUE(ixc::testing::AllClose(merged, ref_merged, {1e-6f, 1e-6f}));
  }
  EXPECT_TRUE(ixc::testing::AllClose(merged, expected, {2e-6f, 1e-5f}));
  EXPECT_TRUE(ixc::testing::AllClose(merged_lse, expected_lse, {2e-6f, 1e-5f}));
}

}  // namespace
}  // namespace ixc::kernels
