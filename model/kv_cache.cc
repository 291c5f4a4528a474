#include "model/kv_cache.h"

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
      v_(config.num_layers) {
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
    free_.pop_back();
  }
  return absl::OkStatus();
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
  for (auto it = seq.block_table.rbegin(); it != seq.block_table.rend() && !assigned_; ++it) free_.push_back(*it);
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
