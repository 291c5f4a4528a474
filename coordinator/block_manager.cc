#include "coordinator/block_manager.h"

#include "parallel/sequence_shard.h"

namespace ixc::coordinator {

BlockManager::BlockManager(int sp, int block_size, int blocks_per_rank)
    : sp_(sp), block_size_(block_size), blocks_per_rank_(blocks_per_rank), free_(sp, blocks_per_rank) {}

std::vector<int64_t> BlockManager::PrefillLengths(int64_t length) const {
  std::vector<int64_t> lengths(sp_);
  for (int s = 0; s < sp_; ++s) {
    lengths[s] = parallel::PrefillKeptPositions(length, s, sp_, block_size_);
  }
  return lengths;
}

bool BlockManager::CanPrefill(int64_t length) const {
  const std::vector<int64_t> lengths = PrefillLengths(length);
  for (int s = 0; s < sp_; ++s) {
    if (Blocks(lengths[s], block_size_) > free_[s]) return false;
  }
  return true;
}

void BlockManager::Prefill(uint64_t id, int64_t length) {
  std::vector<int64_t> lengths = PrefillLengths(length);
  for (int s = 0; s < sp_; ++s) free_[s] -= static_cast<int>(Blocks(lengths[s], block_size_));
  local_[id] = std::move(lengths);
}

bool BlockManager::CanAppend(uint64_t id, int64_t position) const {
  const int owner = sp_ == 1 ? 0 : parallel::DecodeOwner(position, block_size_, sp_);
  const int64_t held = local_.at(id)[owner];
  return held % block_size_ != 0 || free_[owner] > 0;
}

void BlockManager::Append(uint64_t id, int64_t position) {
  const int owner = sp_ == 1 ? 0 : parallel::DecodeOwner(position, block_size_, sp_);
  int64_t& held = local_.at(id)[owner];
  if (held % block_size_ == 0) --free_[owner];
  ++held;
}

void BlockManager::Free(uint64_t id) {
  auto it = local_.find(id);
  if (it == local_.end()) return;
  for (int s = 0; s < sp_; ++s) free_[s] += static_cast<int>(Blocks(it->second[s], block_size_));
  local_.erase(it);
}

double BlockManager::usage() const {
  int64_t free = 0;
  for (int f : free_) free += f;
  return 1.0 - static_cast<double>(free) / (static_cast<double>(blocks_per_rank_) * sp_);
}

}  // namespace ixc::coordinator
