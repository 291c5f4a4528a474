// File: parallel/sequence_shard.h
//
// How a sequence is spread over the S ranks of an SP group (architecture section 4): block-cyclic by KV block. The
// position p is kept by rank (p / block_size) % S, whether it came in the prompt or was generated, so a prefix keeps
// its layout however long the sequence grows (what the prefix cache needs: coordinator/prefix_cache.h). Global block
// g lives on rank g % S as that rank's local block g / S.
//   A prompt prefilled from its start with at least a block for every rank (RingPrefill) is prefilled by ring
//     attention: each rank its own positions. Causal work stays balanced: over a prompt of n rounds of S blocks, rank
//     s's share of the attention differs from the mean by under 1/n.
//   A shorter prompt, or the part of one after a cached prefix, goes whole to every rank, which keeps the K/V of the
//     positions it owns (the decode steps' all-gather merge then serves its attention too).
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace ixc::parallel {

// The SP rank that keeps the K/V of `position`.
inline int KvOwner(int64_t position, int block_size, int size) {
  return static_cast<int>((position / block_size) % size);
}

// Whether a prompt of `length` prefilled from position 0 goes by ring attention over `size` ranks: every rank owns
// at least one whole block of it.
inline bool RingPrefill(int64_t length, int size, int block_size) {
  return size > 1 && length >= int64_t{size} * block_size;
}

// The positions of [0, length) that SP rank `rank` owns, ascending.
std::vector<int32_t> OwnedPositions(int64_t length, int rank, int size, int block_size);

// The positions SP rank `rank` prefills of a prompt of `length` whose first `cached` positions are in the cache
// already, ascending: its own where the prompt goes by ring attention (cached == 0 and RingPrefill), else all of
// [cached, length).
std::vector<int32_t> PrefillPositions(int64_t cached, int64_t length, int rank, int size, int block_size);

// The positions of image rows [first, first + count) that SP rank `rank` prefills (PrefillPositions), as ranges
// [begin, end). They are consecutive rows of the rank's prefill: the vision stage sends them as one message.
std::vector<std::pair<int64_t, int64_t>> PrefilledRows(int64_t cached, int64_t length, int rank, int size,
                                                       int block_size, int64_t first, int64_t count);

// At least as many positions as any rank prefills of a prompt of `length` or shorter: a ring prefill's rows.
inline int64_t LongestShard(int64_t length, int size, int block_size) {
  const int64_t blocks = (length + block_size - 1) / block_size;
  return std::min<int64_t>(length, (blocks + size - 1) / size * block_size);
}

}  // namespace ixc::parallel
