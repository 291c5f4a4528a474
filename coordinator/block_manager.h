// File: coordinator/block_manager.h
//
// The KV blocks of every SP rank, and the prefix cache over them (the coordinator hands out the block ids; the
// workers' caches take the tables it sends, model/kv_cache.h). A sequence is a list of global blocks; global block g
// (positions [g B, (g + 1) B)) lives on SP rank g % S (parallel/sequence_shard.h). Every TP rank of an SP rank holds
// the same block ids, for its own heads.
//
// Prefix caching (vLLM's automatic prefix caching, by block): a whole block whose K/V is computed is registered under
// its key (coordinator/prefix_keys.h: the chain of everything that determines its K/V). A new sequence takes the
// longest run of leading blocks whose keys are registered, and computes only the rest. Blocks are reference-counted:
// a sequence's end drops its references; a registered block nobody references stays cached, and is evicted, least
// recently used first, only when an allocation needs room. A block in use is never evicted.
//   BlockManager blocks(/*sp=*/2, /*block_size=*/16, /*blocks_per_rank=*/1024, /*prefix_caching=*/true);
//   const int64_t cached = blocks.CachedPrefix(keys, length);
//   if (blocks.CanAllocate(keys, cached, length)) blocks.Allocate(id, keys, cached, length);
//   ... step ...   blocks.Computed(id, keys, computed_positions);
//   blocks.Free(id);
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "core/content_hash.h"

namespace ixc::coordinator {

class BlockManager {
 public:
  BlockManager(int sp, int block_size, int blocks_per_rank, bool prefix_caching);

  // How many leading positions of a sequence of `length` positions, with `keys` the keys of its whole blocks, are
  // cached now: whole blocks, and never the last position (its logits are wanted). 0 without prefix caching.
  int64_t CachedPrefix(const std::vector<ContentKey>& keys, int64_t length) const;
  // Whether a sequence of `length` whose first `cached` positions are cached (CachedPrefix) fits now.
  bool CanAllocate(const std::vector<ContentKey>& keys, int64_t cached, int64_t length) const;
  // Takes the cached blocks and new ones for the rest; the sequence's table is Table(id).
  void Allocate(uint64_t id, const std::vector<ContentKey>& keys, int64_t cached, int64_t length);
  // Whether sequence `id` can take the token at `position` now (it may need a new block on its owner).
  bool CanAppend(uint64_t id, int64_t position) const;
  // Appends that token; returns the new block's id where it needed one.
  std::optional<int32_t> Append(uint64_t id, int64_t position);
  // The first `computed` positions of sequence `id` hold their K/V: its whole blocks among them are registered under
  // `keys` (a key without an entry in `keys` is not cached: its K/V may not be reused). A key registered already
  // (another sequence computed the same block) keeps its block; this one stays private.
  void Computed(uint64_t id, const std::vector<ContentKey>& keys, int64_t computed);
  // Beam search: sequence `child` starts as a copy of `parent`'s first `length` positions. It shares their whole
  // blocks; a partly filled last block cannot be shared (both would write its free slots), so the child gets a block
  // of its own on that block's SP rank for a copy: returned as (global block, block id), nullopt where none is
  // needed. CanFork: whether that block is there now.
  bool CanFork(int64_t length) const;
  std::optional<std::pair<int64_t, int32_t>> Fork(uint64_t parent, uint64_t child, int64_t length);
  // Drops the sequence's references: its blocks go back to the free pool, or, registered, to the cache.
  void Free(uint64_t id);

  // The block id of each of the sequence's global blocks (on SP rank g % S).
  const std::vector<int32_t>& Table(uint64_t id) const { return sequences_.at(id).table; }
  // Blocks an allocation on `sp_rank` can take: free ones and cached ones that nobody uses.
  int available_blocks(int sp_rank) const;
  // Blocks referenced by a sequence on `sp_rank`.
  int used_blocks(int sp_rank) const { return blocks_per_rank_ - available_blocks(sp_rank); }
  // Blocks held by the prefix cache (registered) on every SP rank.
  int64_t cached_blocks() const;
  int64_t evictions() const { return evictions_; }  // cached blocks evicted for room, so far
  double usage() const;  // used / total over all SP ranks, 0..1
  // Whether nothing is referenced (every block free or cached): what every sequence's end must leave.
  bool idle() const;
  bool prefix_caching() const { return prefix_caching_; }
  int block_size() const { return block_size_; }

 private:
  struct Pool {
    std::vector<int> references;                            // by block
    std::vector<std::optional<ContentKey>> key;             // by block: registered under
    std::vector<int32_t> free;                              // unreferenced, unregistered
    std::list<int32_t> evictable;                           // unreferenced, registered; least recently used first
    std::vector<std::list<int32_t>::iterator> evictable_at;  // by block, where it is in `evictable`
    absl::flat_hash_map<ContentKey, int32_t> cached;        // key -> block
  };
  struct Sequence {
    std::vector<int32_t> table;  // by global block
    int64_t registered = 0;      // leading global blocks registered or taken from the cache
  };

  int RankOf(int64_t global_block) const { return static_cast<int>(global_block % sp_); }
  int64_t Blocks(int64_t positions) const { return (positions + block_size_ - 1) / block_size_; }
  int32_t Take(int sp_rank);
  void Reference(Pool& pool, int32_t block);

  int sp_;
  int block_size_;
  int blocks_per_rank_;
  bool prefix_caching_;
  std::vector<Pool> pools_;  // by SP rank
  std::map<uint64_t, Sequence> sequences_;
  int64_t evictions_ = 0;
};

}  // namespace ixc::coordinator
