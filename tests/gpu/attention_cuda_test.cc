// CUDA attention against the reference ops: the fused RoPE + KV store against ApplyRope and the packing of spec 1.3,
// flash prefill and split-KV decode against PagedAttention (outputs and log-sum-exp), the merge against
// MergeAttention. Every head dim the kernels are built for, grouped-query layouts, block tables out of order, query
// counts that are not multiples of the tiles. Skipped without a GPU.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "kernels/cuda/attention.h"
#include "kernels/ops.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/test_util.h"

namespace ixc::kernels::cuda {
namespace {

using ixc::testing::AllClose;
using ixc::testing::CudaTest;
using ixc::testing::DeviceBuffer;
using ixc::testing::RandomTyped;
using ixc::testing::Tolerance;
using ixc::testing::Widen;

constexpr int kBlockSize = 16;

// A sequence's keys and values in a paged pool, its blocks in shuffled order; the same values in f32 and 16-bit.
struct PagedSequence {
  PagedSequence(DType dtype, int64_t keys, int kv_heads, int head_dim, uint64_t seed)
      : blocks((keys + kBlockSize - 1) / kBlockSize + 3) {
    const int64_t pool = blocks * kBlockSize * kv_heads * head_dim;
    k = RandomTyped(dtype, pool, seed);
    v = RandomTyped(dtype, pool, seed + 1);
    table.resize((keys + kBlockSize - 1) / kBlockSize);
    std::vector<int32_t> order(blocks);
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), std::mt19937(seed));
    std::copy_n(order.begin(), table.size(), table.begin());
    view = {k.as_f32.data(), v.as_f32.data(), table.data(), kBlockSize, kv_heads, head_dim, nullptr, keys};
  }
  int64_t blocks;
  ixc::testing::TypedData k, v;
  std::vector<int32_t> table;
  PagedKv view;
};

// Attention outputs are averages of 16-bit values with 16-bit probabilities: errors of a few 2^-8.
Tolerance OutTolerance(DType dtype) {
  return dtype == DType::kBF16 ? Tolerance{2e-2f, 2e-2f} : Tolerance{4e-3f, 4e-3f};
}

struct Layout {
  int heads, kv_heads, head_dim;
};
const Layout kLayouts[] = {{4, 2, 16}, {8, 2, 32}, {6, 2, 64}, {32, 8, 128}, {8, 8, 128}};

TEST_F(CudaTest, FlashAttentionMatchesPagedAttention) {
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Layout& layout : kLayouts) {
      for (auto [past, tokens] : {std::pair<int64_t, int64_t>{0, 1}, {0, 37}, {0, 200}, {70, 131}, {5, 64}, {0, 300}}) {
        const int64_t keys = past + tokens;
        PagedSequence seq(dtype, keys, layout.kv_heads, layout.head_dim, 11 + tokens);
        auto q = RandomTyped(dtype, tokens * layout.heads * layout.head_dim, 3 + past);
        std::vector<int32_t> positions(tokens);
        std::iota(positions.begin(), positions.end(), static_cast<int32_t>(past));
        const float scale = 1.f / std::sqrt(static_cast<float>(layout.head_dim));
        std::vector<float> expected(q.as_f32.size()), expected_lse(tokens * layout.heads);
        reference::PagedAttention(q.as_f32.data(), positions.data(), seq.view,
                                  {static_cast<int>(tokens), layout.heads, scale}, expected.data(),
                                  expected_lse.data());

        DeviceBuffer<uint8_t> d_q(q.bytes), d_k(seq.k.bytes), d_v(seq.v.bytes), d_out(q.bytes.size());
        DeviceBuffer<int32_t> d_positions(positions), d_table(seq.table);
        DeviceBuffer<float> d_lse(expected_lse.size(), NAN);
        const DeviceKvPools pools{d_k.data, d_v.data, dtype, kBlockSize, layout.kv_heads, layout.head_dim};
        ASSERT_TRUE(LaunchFlashAttention(d_q.data, d_positions.data, tokens, layout.heads, pools, d_table.data, keys,
                                         positions.back(), scale, d_out.data, d_lse.data, nullptr)
                        .ok());
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::string where = std::string(DTypeName(dtype)) + " heads " + std::to_string(layout.heads) + "/" +
                                  std::to_string(layout.kv_heads) + " d " + std::to_string(layout.head_dim) + " past " +
                                  std::to_string(past) + " tokens " + std::to_string(tokens);
        EXPECT_TRUE(AllClose(Widen(dtype, d_out.Read()), expected, OutTolerance(dtype))) << where;
        EXPECT_TRUE(AllClose(d_lse.Read(), expected_lse, {2e-3f, 1e-3f})) << where;
      }
    }
  }
}

TEST_F(CudaTest, BatchedFlashAttentionMatchesEachSequence) {
  // Three sequences of the same length in one pool, each with its own blocks (out of order), in one launch; the
  // vision tower's crops go this way (every query seeing all keys), the causal case here covers both.
  const int sequences = 3;
  const int64_t tokens = 70, blocks_per_sequence = (tokens + kBlockSize - 1) / kBlockSize;
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Layout& layout : {Layout{16, 16, 64}, Layout{32, 8, 128}}) {
      PagedSequence pool(dtype, sequences * blocks_per_sequence * kBlockSize, layout.kv_heads, layout.head_dim, 31);
      const int64_t stride = tokens * layout.heads * layout.head_dim;
      auto q = RandomTyped(dtype, sequences * stride, 32);
      std::vector<int32_t> positions(tokens);
      std::iota(positions.begin(), positions.end(), 0);
      const float scale = 1.f / std::sqrt(static_cast<float>(layout.head_dim));
      std::vector<float> expected(q.as_f32.size()), expected_lse(sequences * tokens * layout.heads);
      for (int s = 0; s < sequences; ++s) {
        PagedKv view = pool.view;
        view.block_table = pool.table.data() + s * blocks_per_sequence;
        view.num_keys = tokens;
        reference::PagedAttention(q.as_f32.data() + s * stride, positions.data(), view,
                                  {static_cast<int>(tokens), layout.heads, scale}, expected.data() + s * stride,
                                  expected_lse.data() + s * tokens * layout.heads);
      }
      DeviceBuffer<uint8_t> d_q(q.bytes), d_k(pool.k.bytes), d_v(pool.v.bytes), d_out(q.bytes.size());
      DeviceBuffer<int32_t> d_positions(positions), d_tables(pool.table);
      DeviceBuffer<float> d_lse(expected_lse.size(), NAN);
      const DeviceKvPools pools{d_k.data, d_v.data, dtype, kBlockSize, layout.kv_heads, layout.head_dim};
      ASSERT_TRUE(LaunchBatchedFlashAttention(d_q.data, d_positions.data, tokens, sequences, layout.heads, pools,
                                              d_tables.data, blocks_per_sequence, tokens, tokens - 1, scale, d_out.data,
                                              d_lse.data, nullptr)
                      .ok());
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::string where = std::string(DTypeName(dtype)) + " d " + std::to_string(layout.head_dim);
      EXPECT_TRUE(AllClose(Widen(dtype, d_out.Read()), expected, OutTolerance(dtype))) << where;
      EXPECT_TRUE(AllClose(d_lse.Read(), expected_lse, {2e-3f, 1e-3f})) << where;
    }
  }
}

TEST_F(CudaTest, PagedDecodeAttentionMatchesPagedAttentionAcrossSequences) {
  int num_sms = 0;
  ASSERT_EQ(cudaDeviceGetAttribute(&num_sms, cudaDevAttrMultiProcessorCount, 0), cudaSuccess);
  // The decode kernel's register tiles are sized for 2, 4 or 8 query heads per KV head: every size, each full.
  const Layout layouts[] = {{4, 2, 16}, {8, 2, 32}, {6, 2, 64}, {32, 8, 128}, {8, 8, 128}, {16, 2, 64}, {8, 1, 128}};
  // Long contexts split the keys over blocks merged by a second kernel (or by the last block of each row and KV head,
  // FewerDecodeKernelsRequested); up to 32 keys take one block per head.
  const std::vector<int64_t> long_lengths = {1, 300, 5000}, short_lengths = {1, 9, 30};
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    for (const Layout& layout : layouts) {
      for (const std::vector<int64_t>& lengths : {long_lengths, short_lengths}) {
        // Three sequences in one pool: rows of each see a prefix of its keys (decode rows see all of them).
        int64_t total_keys = 0;  // whole blocks per sequence
        for (int64_t length : lengths) total_keys += (length + kBlockSize - 1) / kBlockSize * kBlockSize;
        PagedSequence pool(dtype, total_keys, layout.kv_heads, layout.head_dim, 21);
        std::vector<int32_t> tables, offsets, visible;
        std::vector<std::pair<int, int32_t>> rows;  // (sequence, position)
        int64_t block = 0;
        std::vector<int64_t> first_block;
        for (int64_t length : lengths) {
          first_block.push_back(block);
          block += (length + kBlockSize - 1) / kBlockSize;
        }
        for (int s = 0; s < 3; ++s) {
          for (int32_t position : {static_cast<int32_t>(lengths[s] - 1), static_cast<int32_t>(lengths[s] / 2)}) {
            rows.emplace_back(s, position);
          }
        }
        for (auto [s, position] : rows) {
          offsets.push_back(static_cast<int32_t>(first_block[s]));
          visible.push_back(position + 1);
        }
        tables = pool.table;
        const int64_t n = static_cast<int64_t>(rows.size());
        auto q = RandomTyped(dtype, n * layout.heads * layout.head_dim, 5);
        const float scale = 1.f / std::sqrt(static_cast<float>(layout.head_dim));
        std::vector<float> expected(q.as_f32.size()), expected_lse(n * layout.heads);
        for (int64_t r = 0; r < n; ++r) {
          PagedKv view = pool.view;
          view.block_table = pool.table.data() + offsets[r];
          view.num_keys = lengths[rows[r].first];
          const int64_t stride = layout.heads * layout.head_dim;
          reference::PagedAttention(q.as_f32.data() + r * stride, &rows[r].second, view, {1, layout.heads, scale},
                                    expected.data() + r * stride, expected_lse.data() + r * layout.heads);
        }
        DeviceBuffer<uint8_t> d_q(q.bytes), d_k(pool.k.bytes), d_v(pool.v.bytes), d_out(q.bytes.size());
        DeviceBuffer<int32_t> d_tables(tables), d_offsets(offsets), d_visible(visible);
        DeviceBuffer<float> d_lse(expected_lse.size(), NAN);
        const int64_t workspace_floats = DecodeWorkspaceFloats(n, layout.heads, layout.head_dim);
        DeviceBuffer<float> d_workspace(workspace_floats);
        const DeviceKvPools pools{d_k.data, d_v.data, dtype, kBlockSize, layout.kv_heads, layout.head_dim};
        const DecodeRows decode{d_tables.data, d_offsets.data, d_visible.data, n, lengths.back()};
        const std::string where = std::string(DTypeName(dtype)) + " heads " + std::to_string(layout.heads) + "/" +
                                  std::to_string(layout.kv_heads) + " d " + std::to_string(layout.head_dim) +
                                  " longest " + std::to_string(lengths.back());
        // The scalar kernel keeps probabilities in f32, so only the 16-bit output rounding remains; the tensor-core
        // one rounds them to 16 bits, as flash prefill does.
        const Tolerance tolerance =
            DecodeMmaSelected(layout.head_dim) ? OutTolerance(dtype) : Tolerance{4e-3f, 8e-3f};
        // Three times on one workspace, with all rows, all but the last, all again: where the last block merges
        // the splits, each launch must leave its counters as it found them, whatever its row count.
        for (const int64_t launch_rows : {n, n - 1, n}) {
          ASSERT_EQ(cudaMemset(d_out.data, 0, d_out.size), cudaSuccess);
          DecodeRows some = decode;
          some.rows = launch_rows;
          ASSERT_TRUE(LaunchPagedDecodeAttention(d_q.data, layout.heads, pools, some, scale, d_out.data, d_lse.data,
                                                 d_workspace.data, workspace_floats, num_sms, nullptr)
                          .ok());
          ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
          const int64_t values = launch_rows * layout.heads * layout.head_dim, lses = launch_rows * layout.heads;
          const std::vector<float> out = Widen(dtype, d_out.Read()), lse = d_lse.Read();
          EXPECT_TRUE(AllClose(std::vector<float>(out.begin(), out.begin() + values),
                               std::vector<float>(expected.begin(), expected.begin() + values), tolerance))
              << where << ", " << launch_rows << " rows";
          EXPECT_TRUE(AllClose(std::vector<float>(lse.begin(), lse.begin() + lses),
                               std::vector<float>(expected_lse.begin(), expected_lse.begin() + lses), {1e-3f, 1e-4f}))
              << where << ", " << launch_rows << " rows";
        }
      }
    }
  }
}

TEST_F(CudaTest, RopeAndStoreKvMatchesUnpackAndApplyRope) {
  const DType dtype = DType::kBF16;
  struct Case {
    int kv_heads, group, d;
    int64_t tokens;
  };
  // The model's grouping at head dim 128, as a few decode tokens (each row split over blocks) and as a prompt (a
  // row per block); a split whose last block holds fewer heads; a head dim whose halves start on an odd element
  // (one pair index per lane); and a long prompt at a small size (70000 tokens, angles past 200000 rad).
  for (const Case& c :
       {Case{2, 4, 128, 13}, Case{8, 4, 128, 300}, Case{3, 1, 64, 7}, Case{2, 3, 18, 260}, Case{1, 1, 16, 70000}}) {
    const int kv_heads = c.kv_heads, group = c.group, d = c.d, heads = kv_heads * group;
    const int64_t tokens = c.tokens;
    auto qkv = RandomTyped(dtype, tokens * kv_heads * (group + 2) * d, 8);
    std::vector<int32_t> positions(tokens), slots(tokens);
    for (int64_t t = 0; t < tokens; ++t) {
      positions[t] = static_cast<int32_t>(4000 + 3 * t);
      slots[t] = t == 5 ? -1 : static_cast<int32_t>(tokens + 27 - t);  // token 5 is not stored (another SP rank's)
    }
    const RopeParams rope{d, 1e6f, 1.f};
    // Reference: unpack per KV group (q x group, k, v), rotate q and k.
    std::vector<float> q(tokens * heads * d), k(tokens * kv_heads * d), v(tokens * kv_heads * d);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int g = 0; g < kv_heads; ++g) {
        const float* block = qkv.as_f32.data() + (t * kv_heads + g) * (group + 2) * d;
        std::copy_n(block, group * d, q.data() + (t * heads + g * group) * d);
        std::copy_n(block + group * d, d, k.data() + (t * kv_heads + g) * d);
        std::copy_n(block + (group + 1) * d, d, v.data() + (t * kv_heads + g) * d);
      }
    }
    reference::ApplyRope(q.data(), positions.data(), tokens, heads, rope);
    reference::ApplyRope(k.data(), positions.data(), tokens, kv_heads, rope);

    const int64_t pool_values = (tokens + 28) * kv_heads * d;
    DeviceBuffer<uint8_t> d_qkv(qkv.bytes), d_q(q.size() * 2), d_k(pool_values * 2), d_v(pool_values * 2);
    DeviceBuffer<int32_t> d_positions(positions), d_slots(slots);
    const DeviceKvPools pools{d_k.data, d_v.data, dtype, kBlockSize, kv_heads, d};
    ASSERT_TRUE(
        LaunchRopeAndStoreKv(d_qkv.data, d_positions.data, d_slots.data, tokens, group, rope, d_q.data, pools, nullptr)
            .ok());
    // Angles up to ~200000 rad: a last-bit difference in inv_freq moves them by up to ~2e-2, then bf16 rounding.
    EXPECT_TRUE(AllClose(Widen(dtype, d_q.Read()), q, {4e-2f, 1e-2f})) << tokens << " tokens";
    const auto k_pool = Widen(dtype, d_k.Read()), v_pool = Widen(dtype, d_v.Read());
    for (int64_t t = 0; t < tokens; ++t) {
      if (slots[t] < 0) continue;
      const int64_t row = kv_heads * d;
      std::vector<float> k_got(k_pool.begin() + slots[t] * row, k_pool.begin() + (slots[t] + 1) * row);
      std::vector<float> v_got(v_pool.begin() + slots[t] * row, v_pool.begin() + (slots[t] + 1) * row);
      ASSERT_TRUE(AllClose(k_got, std::vector<float>(k.begin() + t * row, k.begin() + (t + 1) * row), {4e-2f, 1e-2f}))
          << t;
      ASSERT_EQ(v_got, std::vector<float>(v.begin() + t * row, v.begin() + (t + 1) * row)) << t;
    }
  }
}

TEST_F(CudaTest, MergeAttentionMatchesReference) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (auto [heads, d] : {std::pair{4, 64}, std::pair{32, 128}, std::pair{3, 20}}) {
      const int64_t rows = 9;
      auto out_a = RandomTyped(dtype, rows * heads * d, 1), out_b = RandomTyped(dtype, rows * heads * d, 2);
      auto lse_a = ixc::testing::RandomFloats(rows * heads, 3, 4.f),
           lse_b = ixc::testing::RandomFloats(rows * heads, 4, 4.f);
      lse_a[0] = -INFINITY;             // one side saw no key
      lse_a[1] = lse_b[1] = -INFINITY;  // neither did
      lse_b[2] = -INFINITY;             // the other side saw none
      std::vector<float> expected(out_a.as_f32), expected_lse(lse_a);
      reference::MergeAttention(expected.data(), expected_lse.data(), out_b.as_f32.data(), lse_b.data(), rows, heads,
                                d);
      DeviceBuffer<uint8_t> d_a(out_a.bytes), d_b(out_b.bytes);
      DeviceBuffer<float> d_lse_a(lse_a), d_lse_b(lse_b);
      ASSERT_TRUE(
          LaunchMergeAttention(dtype, d_a.data, d_lse_a.data, d_b.data, d_lse_b.data, rows, heads, d, nullptr).ok());
      const std::string where = std::string(DTypeName(dtype)) + " heads " + std::to_string(heads) + " d " +
                                std::to_string(d);
      const ixc::testing::Tolerance tolerance =
          dtype == DType::kF32 ? ixc::testing::Tolerance{1e-5f, 1e-5f} : OutTolerance(dtype);
      EXPECT_TRUE(AllClose(Widen(dtype, d_a.Read()), expected, tolerance)) << where;
      const auto lse = d_lse_a.Read();
      EXPECT_TRUE(std::isinf(lse[1]) && lse[1] < 0) << where;
      std::vector<float> finite(lse.begin() + 2, lse.end());
      std::vector<float> finite_expected(expected_lse.begin() + 2, expected_lse.end());
      EXPECT_TRUE(AllClose(finite, finite_expected, {1e-5f, 1e-5f})) << where;
    }
  }
}

}  // namespace
}  // namespace ixc::kernels::cuda
