#include "model/sp_attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/status_macros.h"

namespace ixc::model {
namespace {

// A K/V block as it travels: [count, positions (count), k (count, kv_heads, d), v (count, kv_heads, d)], floats,
// gathered from a rank's paged cache. Positions are below 2^24, so they travel exactly as f32.
std::vector<float> PackBlock(const kernels::PagedKv& local, int64_t capacity) {
  const int64_t row = static_cast<int64_t>(local.kv_heads) * local.head_dim, count = local.num_keys;
  std::vector<float> block(1 + capacity + 2 * capacity * row, 0.f);
  block[0] = static_cast<float>(count);
  for (int64_t i = 0; i < count; ++i) {
    block[1 + i] = static_cast<float>(local.key_positions[i]);
    const int64_t slot = (static_cast<int64_t>(local.block_table[i / local.block_size]) * local.block_size +
                          i % local.block_size) * row;
    std::copy_n(local.k_pool + slot, row, block.begin() + 1 + capacity + i * row);
    std::copy_n(local.v_pool + slot, row, block.begin() + 1 + capacity + capacity * row + i * row);
  }
  return block;
}

// Attends q to a packed block, merging into (out, lse).
void AttendToBlock(const float* q, std::span<const int32_t> q_positions, const std::vector<float>& block,
                   int64_t capacity, int kv_heads, int head_dim, const kernels::AttentionShape& shape, float* out,
                   float* lse, bool first) {
  const int64_t count = static_cast<int64_t>(block[0]), row = static_cast<int64_t>(kv_heads) * head_dim;
  std::vector<int32_t> key_positions(count);
  for (int64_t i = 0; i < count; ++i) key_positions[i] = static_cast<int32_t>(block[1 + i]);
  const int32_t single_block = 0;
  const kernels::PagedKv kv{block.data() + 1 + capacity, block.data() + 1 + capacity + capacity * row, &single_block,
                            static_cast<int>(std::max<int64_t>(count, 1)), kv_heads, head_dim,
                            key_positions.data(), count};
  if (first) {
    kernels::PagedAttention(q, q_positions.data(), kv, shape, out, lse);
    return;
  }
  std::vector<float> part(static_cast<size_t>(shape.tokens) * shape.heads * head_dim);
  std::vector<float> part_lse(static_cast<size_t>(shape.tokens) * shape.heads);
  kernels::PagedAttention(q, q_positions.data(), kv, shape, part.data(), part_lse.data());
  kernels::MergeAttention(out, lse, part.data(), part_lse.data(), shape.tokens, shape.heads, head_dim);
}

}  // namespace

absl::Status RingAttention(const float* q, std::span<const int32_t> positions, const kernels::PagedKv& local,
                           const kernels::AttentionShape& shape, parallel::DeviceComm& comm, float* out) {
  const parallel::Group group = parallel::Group::kSequence;
  const int size = comm.GroupSize(group), rank = comm.GroupRank(group);
  const int kv_heads = local.kv_heads, head_dim = local.head_dim;
  // Every block is sent at the largest shard's size, so each transfer has a known length.
  std::vector<float> sizes(size);
  const float mine = static_cast<float>(local.num_keys);
  IXC_RETURN_IF_ERROR(comm.AllGather(&mine, 1, sizes.data(), group));
  const int64_t capacity = static_cast<int64_t>(*std::max_element(sizes.begin(), sizes.end()));

  std::vector<float> current = PackBlock(local, capacity), next(current.size());
  std::vector<float> lse(static_cast<size_t>(shape.tokens) * shape.heads);
  for (int step = 0; step < size; ++step) {
    // Send the block in hand to the next rank and take the previous rank's, while attending to the one in hand.
    const bool more = step + 1 < size;
    if (more) {
      IXC_RETURN_IF_ERROR(comm.StartSendRecv(current.data(), current.size(), (rank + 1) % size, next.data(),
                                             next.size(), (rank + size - 1) % size, group));
    }
    AttendToBlock(q, positions, current, capacity, kv_heads, head_dim, shape, out, lse.data(), step == 0);
    if (more) {
      IXC_RETURN_IF_ERROR(comm.Wait());
      current.swap(next);
    }
  }
  return absl::OkStatus();
}

absl::Status GatherMergeAttention(const float* q, std::span<const int32_t> positions, const kernels::PagedKv& local,
                                  const kernels::AttentionShape& shape, parallel::DeviceComm& comm, float* out) {
  const parallel::Group group = parallel::Group::kSequence;
  const int size = comm.GroupSize(group);
  const int64_t rows = static_cast<int64_t>(shape.tokens) * shape.heads, d = local.head_dim;
  // One message per rank: [out (rows * d), lse (rows)].
  std::vector<float> mine(rows * (d + 1)), all(size * mine.size());
  kernels::PagedAttention(q, positions.data(), local, shape, mine.data(), mine.data() + rows * d);
  IXC_RETURN_IF_ERROR(comm.AllGather(mine.data(), mine.size(), all.data(), group));
  std::copy_n(all.data(), rows * d, out);
  std::vector<float> lse(all.begin() + rows * d, all.begin() + rows * (d + 1));
  for (int r = 1; r < size; ++r) {
    const float* part = all.data() + r * mine.size();
    kernels::MergeAttention(out, lse.data(), part, part + rows * d, shape.tokens, shape.heads, static_cast<int>(d));
  }
  return absl::OkStatus();
}

}  // namespace ixc::model
