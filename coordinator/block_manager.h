// File: coordinator/block_manager.h
//
// The coordinator's picture of the paged KV cache across the SP ranks (every TP rank of an SP column holds the same
// blocks, for its own heads): how many blocks each sequence holds on each SP rank, mirroring exactly what the
// workers' caches allocate (parallel/sequence_shard.h): a zig-zag shard of the prompt (of a prompt too short for
// one, the positions each rank owns as it owns generated tokens), then each generated token on its round-robin owner.
// Admission and preemption decide on these counts.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

namespace ixc::coordinator {

class BlockManager {
 public:
  BlockManager(int sp, int block_size, int blocks_per_rank);

  // Whether a prefill of `length` tokens fits now.
  bool CanPrefill(int64_t length) const;
  void Prefill(uint64_t id, int64_t length);
  // Whether appending the token at `position` to sequence `id` fits now (it may need a new block on its owner).
  bool CanAppend(uint64_t id, int64_t position) const;
  void Append(uint64_t id, int64_t position);
  void Free(uint64_t id);

  int free_blocks(int sp_rank) const { return free_[sp_rank]; }
  double usage() const;  // used / total over all SP ranks, 0..1

 private:
  static int64_t Blocks(int64_t tokens, int block_size) { return (tokens + block_size - 1) / block_size; }
  std::vector<int64_t> PrefillLengths(int64_t length) const;

  int sp_;
  int block_size_;
  int blocks_per_rank_;
  std::vector<int> free_;                            // per SP rank
  std::map<uint64_t, std::vector<int64_t>> local_;  // tokens each SP rank holds, per sequence
};

}  // namespace ixc::coordinator
