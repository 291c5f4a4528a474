// CPU paged attention against the reference: GQA group sizes 1, 2 and 4, block sizes that do and do not divide the
// sequence, a shuffled block table, and a chunk of queries starting mid-sequence (chunked prefill / decode).
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
                                           Case{6, 6, 8, 5, 3, 23}, Case{4, 1, 64, 16, 257, 3}));

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
