#include "coordinator/block_manager.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace ixc::coordinator {

BlockManager::BlockManager(int sp, int block_size, int blocks_per_rank, bool prefix_caching)
    : sp_(sp), block_size_(block_size), blocks_per_rank_(blocks_per_rank), prefix_caching_(prefix_caching), pools_(sp) {
  for (Pool& pool : pools_) {
    pool.references.assign(blocks_per_rank, 0);
    pool.key.assign(blocks_per_rank, std::nullopt);
    pool.evictable_at.assign(blocks_per_rank, pool.evictable.end());
    for (int32_t block = blocks_per_rank - 1; block >= 0; --block) pool.free.push_back(block);  // low ids first
  }
}

int64_t BlockManager::CachedPrefix(const std::vector<ContentKey>& keys, int64_t length) const {
  if (!prefix_caching_ || length < 1) return 0;
  const int64_t most = std::min<int64_t>(static_cast<int64_t>(keys.size()), (length - 1) / block_size_);
  int64_t blocks = 0;
  while (blocks < most && pools_[RankOf(blocks)].cached.contains(keys[blocks])) ++blocks;
  return blocks * block_size_;
}

bool BlockManager::CanAllocate(const std::vector<ContentKey>& keys, int64_t cached, int64_t length) const {
  std::vector<int> needed(sp_, 0);
  for (int64_t g = 0; g < Blocks(length); ++g) {
    const Pool& pool = pools_[RankOf(g)];
    // A cached block nobody uses leaves the evictable pool when this sequence takes it.
    const bool reused = g < cached / block_size_;
    if (!reused || pool.references[pool.cached.at(keys[g])] == 0) ++needed[RankOf(g)];
  }
  for (int s = 0; s < sp_; ++s) {
    if (needed[s] > available_blocks(s)) return false;
  }
  return true;
}

void BlockManager::Reference(Pool& pool, int32_t block) {
  if (pool.references[block]++ == 0 && pool.key[block].has_value()) {
    pool.evictable.erase(pool.evictable_at[block]);
    pool.evictable_at[block] = pool.evictable.end();
  }
}

int32_t BlockManager::Take(int sp_rank) {
  Pool& pool = pools_[sp_rank];
  int32_t block;
  if (!pool.free.empty()) {
    block = pool.free.back();
    pool.free.pop_back();
  } else {  // the least recently used cached block (CanAllocate / CanAppend said one is there)
    block = pool.evictable.front();
    pool.evictable.pop_front();
    pool.evictable_at[block] = pool.evictable.end();
    pool.cached.erase(*pool.key[block]);
    pool.key[block].reset();
    ++evictions_;
  }
  pool.references[block] = 1;
  return block;
}

void BlockManager::Allocate(uint64_t id, const std::vector<ContentKey>& keys, int64_t cached, int64_t length) {
  Sequence& sequence = sequences_[id];
  sequence.table.clear();
  const int64_t reused = cached / block_size_;
  // The cached blocks first, so that taking new blocks cannot evict them.
  for (int64_t g = 0; g < reused; ++g) {
    Pool& pool = pools_[RankOf(g)];
    const int32_t block = pool.cached.at(keys[g]);
    Reference(pool, block);
    sequence.table.push_back(block);
  }
  for (int64_t g = reused; g < Blocks(length); ++g) sequence.table.push_back(Take(RankOf(g)));
  sequence.registered = reused;
}

bool BlockManager::CanAppend(uint64_t id, int64_t position) const {
  const int64_t g = position / block_size_;
  return g < static_cast<int64_t>(sequences_.at(id).table.size()) || available_blocks(RankOf(g)) > 0;
}

std::optional<int32_t> BlockManager::Append(uint64_t id, int64_t position) {
  Sequence& sequence = sequences_.at(id);
  const int64_t g = position / block_size_;
  if (g < static_cast<int64_t>(sequence.table.size())) return std::nullopt;
  sequence.table.push_back(Take(RankOf(g)));
  return sequence.table.back();
}

void BlockManager::Computed(uint64_t id, const std::vector<ContentKey>& keys, int64_t computed) {
  if (!prefix_caching_) return;
  Sequence& sequence = sequences_.at(id);
  const int64_t whole = std::min<int64_t>({static_cast<int64_t>(keys.size()), computed / block_size_,
                                          static_cast<int64_t>(sequence.table.size())});
  for (int64_t g = sequence.registered; g < whole; ++g) {
    Pool& pool = pools_[RankOf(g)];
    const int32_t block = sequence.table[g];
    if (pool.key[block].has_value() || pool.cached.contains(keys[g])) continue;
    pool.cached[keys[g]] = block;
    pool.key[block] = keys[g];
  }
  sequence.registered = std::max(sequence.registered, whole);
}

bool BlockManager::CanFork(int64_t length) const {
  return length % block_size_ == 0 || available_blocks(RankOf(length / block_size_)) > 0;
}

std::optional<std::pair<int64_t, int32_t>> BlockManager::Fork(uint64_t parent, uint64_t child, int64_t length) {
  const Sequence& from = sequences_.at(parent);
  Sequence& to = sequences_[child];
  const int64_t whole = length / block_size_;
  for (int64_t g = 0; g < whole; ++g) {
    Reference(pools_[RankOf(g)], from.table[g]);
    to.table.push_back(from.table[g]);
  }
  to.registered = std::min(from.registered, whole);
  if (length % block_size_ == 0) return std::nullopt;
  to.table.push_back(Take(RankOf(whole)));
  return std::make_pair(whole, to.table.back());
}

void BlockManager::Free(uint64_t id) {
  auto it = sequences_.find(id);
  if (it == sequences_.end()) return;
  const std::vector<int32_t>& table = it->second.table;
  // The last blocks first: they join the cache as its least recently used, and are evicted before the prefix.
  for (int64_t g = static_cast<int64_t>(table.size()) - 1; g >= 0; --g) {
    Pool& pool = pools_[RankOf(g)];
    const int32_t block = table[g];
    if (pool.references[block] <= 0) {  // a bookkeeping bug: better to stop than to hand a block out twice
      std::fprintf(stderr, "BlockManager: block %d of SP rank %d freed more often than taken\n", block, RankOf(g));
      std::abort();
    }
    if (--pool.references[block] > 0) continue;
    if (pool.key[block].has_value()) {
      pool.evictable_at[block] = pool.evictable.insert(pool.evictable.end(), block);
    } else {
      pool.free.push_back(block);
    }
  }
  sequences_.erase(it);
}

int BlockManager::available_blocks(int sp_rank) const {
  const Pool& pool = pools_[sp_rank];
  return static_cast<int>(pool.free.size() + pool.evictable.size());
}

int64_t BlockManager::cached_blocks() const {
  int64_t blocks = 0;
  for (const Pool& pool : pools_) blocks += static_cast<int64_t>(pool.cached.size());
  return blocks;
}

double BlockManager::usage() const {
  int64_t used = 0;
  for (int s = 0; s < sp_; ++s) used += used_blocks(s);
  return blocks_per_rank_ == 0 ? 0.0 : static_cast<double>(used) / (static_cast<double>(blocks_per_rank_) * sp_);
}

bool BlockManager::idle() const {
  for (const Pool& pool : pools_) {
    if (std::any_of(pool.references.begin(), pool.references.end(), [](int r) { return r != 0; })) return false;
    if (static_cast<int>(pool.free.size() + pool.evictable.size()) != blocks_per_rank_) return false;
  }
  return sequences_.empty();
}

}  // namespace ixc::coordinator
