// File: model/kv_cache.h
//
// A paged KV cache: per layer, one pool of K and one of V, each (num_blocks, block_size, kv_heads, head_dim) f32.
// A sequence owns a block table; token t lives in block table[t / block_size] at slot t % block_size. Blocks are
// handed out from a free list and returned when a sequence ends, so sequences of any length share one pool without
// fragmentation (the vLLM PagedAttention scheme). In the cluster the coordinator hands out the blocks instead
// (coordinator/block_manager.h: shared prefixes share blocks), and the workers' caches take the tables it sends
// (UseAssignedBlocks, Assign). Beam search forks a sequence (Fork): the child shares the parent's whole blocks, whose
// K/V are never written again, and gets a copy of a partly filled last block.
//
//   KvCache cache(config, /*block_size=*/16, /*num_blocks=*/1024);
//   SequenceKv seq;
//   IXC_RETURN_IF_ERROR(cache.Reserve(seq, prompt_len));   // ResourceExhausted when the pool is full
//   ... forward ...
//   cache.Release(seq);
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/ops.h"
#include "model/config.h"

namespace ixc::model {

// A block's K/V to copy into another (a fork's partly filled last block); -1: nothing to copy.
struct BlockCopy {
  int32_t from = -1;
  int32_t to = -1;
};

struct SequenceKv {
  std::vector<int32_t> block_table;
  int64_t length = 0;               // tokens whose K/V are stored here
  std::vector<int32_t> positions;   // (length) their positions in the sequence, ascending; with sequence
                                    // parallelism a rank stores only its shard of the sequence
};

class KvCache {
 public:
  KvCache(const LlmConfig& config, int block_size, int num_blocks);
  // The block bookkeeping alone, for a model whose K/V live on an accelerator (KeySlot, ValueSlot, View unusable).
  static KvCache BlocksOnly(const LlmConfig& config, int block_size, int num_blocks);

  int block_size() const { return block_size_; }
  int num_blocks() const { return num_blocks_; }
  int free_blocks() const { return static_cast<int>(free_.size()); }
  int64_t bytes() const;

  // Grows `seq`'s block table to hold `tokens` tokens in all. On ResourceExhausted nothing is taken.
  absl::Status Reserve(SequenceKv& seq, int64_t tokens);
  // Drops `seq`'s reference to each of its blocks, returning those nobody else holds to the pool, and empties it
  // (with assigned blocks, only empties it).
  void Release(SequenceKv& seq);

  // Makes `child` (empty) a copy of `parent`: the blocks holding its K/V, shared, except a partly filled last block,
  // which the child gets a copy of in a block of its own: one from the free list, or, with assigned blocks, `copy_to`
  // (-1 when the parent's last block is full). Host pools copy the K/V here; the returned copy is what a device
  // holding the K/V must do itself (DeviceLanguageModel::CopyKvBlock). ResourceExhausted when no block is free.
  absl::StatusOr<BlockCopy> Fork(const SequenceKv& parent, SequenceKv& child, int32_t copy_to = -1);

  // From now on the blocks are the caller's to hand out: Reserve takes none from the free list, and fails where the
  // table is short; Release returns none to it.
  void UseAssignedBlocks() { assigned_ = true; }
  // Appends `blocks` to `seq`'s table (with UseAssignedBlocks); ids past the pool are refused.
  absl::Status Assign(SequenceKv& seq, std::span<const int32_t> blocks) const;

  // Where token `t` of `seq` keeps its K or V in `layer`: (kv_heads, head_dim).
  float* KeySlot(int layer, const SequenceKv& seq, int64_t t);
  float* ValueSlot(int layer, const SequenceKv& seq, int64_t t);
  kernels::PagedKv View(int layer, const SequenceKv& seq) const;

 private:
  KvCache(const LlmConfig& config, int block_size, int num_blocks, bool host_pools);
  int block_size_;
  int num_blocks_;
  int kv_heads_;
  int head_dim_;
  int64_t block_floats_;               // block_size * kv_heads * head_dim
  std::vector<std::vector<float>> k_;  // per layer: (num_blocks, block_size, kv_heads, head_dim)
  std::vector<std::vector<float>> v_;
  std::vector<int32_t> free_;
  std::vector<int32_t> references_;    // by block: the sequences holding it (not with assigned blocks)
  bool assigned_ = false;
};

}  // namespace ixc::model
