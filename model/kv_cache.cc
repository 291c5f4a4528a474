#include "model/kv_cache.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace ixc::model {

KvCache::KvCache(const LlmConfig& config, int block_size, int num_blocks)
    : KvCache(config, block_size, num_blocks, /*host_pools=*/true) {}

KvCache KvCache::BlocksOnly(const LlmConfig& config, int block_size, int num_blocks) {
  return KvCache(config, block_size, num_blocks, /*host_pools=*/false);
}

KvCache::KvCache(const LlmConfig& config, int block_size, int num_blocks, bool host_pools)
    : block_size_(block_size),
      num_blocks_(num_blocks),
      kv_heads_(config.num_kv_heads),
      head_dim_(config.head_dim),
      block_floats_(static_cast<int64_t>(block_size) * config.num_kv_heads * config.head_dim),
      k_(config.num_layers),
      v_(config.num_layers),
      references_(num_blocks, 0) {
  for (int l = 0; l < config.num_layers && host_pools; ++l) {
    k_[l].resize(block_floats_ * num_blocks);
    v_[l].resize(block_floats_ * num_blocks);
  }
  // Hand out low block ids first.
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

int64_t KvCache::bytes() const {
  const bool host_pools = !k_.empty() && !k_[0].empty();
  return host_pools ? 2 * static_cast<int64_t>(k_.size()) * block_floats_ * num_blocks_ * 4 : 0;
}

absl::Status KvCache::Reserve(SequenceKv& seq, int64_t tokens) {
  const int64_t needed = (tokens + block_size_ - 1) / block_size_ - static_cast<int64_t>(seq.block_table.size());
  if (needed <= 0) return absl::OkStatus();
  if (assigned_) {
    return absl::FailedPreconditionError(absl::StrCat("the block table handed to this cache holds ",
                                                      seq.block_table.size(), " blocks of ", block_size_, "; ", tokens,
                                                      " tokens need ", needed, " more"));
  }
  if (needed > static_cast<int64_t>(free_.size())) {
    return absl::ResourceExhaustedError(absl::StrCat("KV cache full: ", tokens, " tokens need ", needed,
                                                     " more blocks of ", block_size_, ", ", free_.size(), " of ",
                                                     num_blocks_, " are free"));
  }
  for (int64_t i = 0; i < needed; ++i) {
    seq.block_table.push_back(free_.back());
    references_[free_.back()] = 1;
    free_.pop_back();
  }
  return absl::OkStatus();
}

absl::StatusOr<BlockCopy> KvCache::Fork(const SequenceKv& parent, SequenceKv& child, int32_t copy_to) {
  const int64_t used = (parent.length + block_size_ - 1) / block_size_;  // blocks holding the parent's K/V
  if (!child.block_table.empty() || used > static_cast<int64_t>(parent.block_table.size())) {
    return absl::FailedPreconditionError("a fork needs an empty child and a parent whose blocks hold its K/V");
  }
  BlockCopy copy;
  if (parent.length % block_size_ != 0) {
    copy.from = parent.block_table[used - 1];
    if (!assigned_) {
      if (free_.empty()) {
        return absl::ResourceExhaustedError(absl::StrCat("KV cache full: a fork needs a block of ", block_size_,
                                                         " and none of ", num_blocks_, " is free"));
      }
      copy_to = free_.back();
      free_.pop_back();
      references_[copy_to] = 1;
    } else if (copy_to < 0 || copy_to >= num_blocks_) {
      return absl::InvalidArgumentError(
          absl::StrCat("a fork's copy of a partly filled block needs a block of this pool of ", num_blocks_, ", not ",
                       copy_to));
    }
    copy.to = copy_to;
  }
  child.block_table.assign(parent.block_table.begin(), parent.block_table.begin() + used);
  if (copy.to >= 0) child.block_table.back() = copy.to;
  child.length = parent.length;
  child.positions = parent.positions;
  for (int64_t i = 0; i < used && !assigned_; ++i) {
    if (child.block_table[i] != copy.to) ++references_[child.block_table[i]];
  }
  const bool host_pools = !k_.empty() && !k_[0].empty();
  for (size_t l = 0; l < k_.size() && host_pools && copy.to >= 0; ++l) {
    std::copy_n(k_[l].data() + copy.from * block_floats_, block_floats_, k_[l].data() + copy.to * block_floats_);
    std::copy_n(v_[l].data() + copy.from * block_floats_, block_floats_, v_[l].data() + copy.to * block_floats_);
  }
  return copy;
}

absl::Status KvCache::Assign(SequenceKv& seq, std::span<const int32_t> blocks) const {
  for (int32_t block : blocks) {
    if (block < 0 || block >= num_blocks_) {
      return absl::InvalidArgumentError(absl::StrCat("KV block ", block, " is outside this pool of ", num_blocks_));
    }
  }
  seq.block_table.insert(seq.block_table.end(), blocks.begin(), blocks.end());
  return absl::OkStatus();
}

void KvCache::Release(SequenceKv& seq) {
  for (auto it = seq.block_table.rbegin(); it != seq.block_table.rend() && !assigned_; ++it) {
    if (--references_[*it] == 0) free_.push_back(*it);
  }
  seq.block_table.clear();
  seq.length = 0;
  seq.positions.clear();
}

float* KvCache::KeySlot(int layer, const SequenceKv& seq, int64_t t) {
  return k_[layer].data() + seq.block_table[t / block_size_] * block_floats_ +
         (t % block_size_) * kv_heads_ * head_dim_;
}

float* KvCache::ValueSlot(int layer, const SequenceKv& seq, int64_t t) {
  return v_[layer].data() + seq.block_table[t / block_size_] * block_floats_ +
         (t % block_size_) * kv_heads_ * head_dim_;
}

kernels::PagedKv KvCache::View(int layer, const SequenceKv& seq) const {
  // Never null key positions (which PagedKv reads as keys at every position up to the query's): an SP rank may
  // hold none of a sequence's keys yet, and an empty vector's data() may be null.
  static constexpr int32_t kNoPositions[1] = {0};
  return {k_[layer].data(),
          v_[layer].data(),
          seq.block_table.data(),
          block_size_,
          kv_heads_,
          head_dim_,
          seq.positions.empty() ? kNoPositions : seq.positions.data(),
          seq.length};
}

}  // namespace ixc::model
