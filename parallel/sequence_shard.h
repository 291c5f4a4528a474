// File: parallel/sequence_shard.h
//
// How a sequence is spread over the S ranks of an SP group (architecture section 4): block-cyclic by KV block. The
// position p is kept by rank (p / block_size) % S, whether it came in a prompt or was generated, so a prefix keeps
// its layout however long the sequence grows (what the prefix cache needs: coordinator/block_manager.h). Global block
// g lives on rank g % S as that rank's local block g / S.
//   A prompt (or the part of one after a cached prefix, which is whole blocks) with at least a block for every rank
//     (RingPrefill) is prefilled by ring attention: each rank its own positions, attending to every rank's K/V of
//     the sequence so far. Causal work stays balanced: over n rounds of S blocks, rank s's share of the attention
//     differs from the mean by under 1/n.
//   A shorter one goes whole to every rank, which keeps the K/V of the positions it owns (the decode steps'
//     all-gather merge then serves its attention too).
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

// Whether `rows` prompt positions from a block boundary go by ring attention over `size` ranks: every rank owns at
// least one whole block of them.
inline bool RingPrefill(int64_t rows, int size, int block_size) {
  return size > 1 && rows >= int64_t{size} * block_size;
}

// The positions of [0, length) that SP rank `rank` owns, ascending.
std::vector<int32_t> OwnedPositions(int64_t length, int rank, int size, int block_size);

// The positions SP rank `rank` prefills of a prompt of `length` whose first `cached` positions (whole blocks) are in
// the cache already, ascending: its own of [cached, length) where they go by ring attention (RingPrefill), else all.
std::vector<int32_t> PrefillPositions(int64_t cached, int64_t length, int rank, int size, int block_size);

// The positions of image rows [first, first + count) that SP rank `rank` prefills of [cached, length)
// (PrefillPositions; `length` is where the prompt, or a chunk of it, ends), as ranges [begin, end). They are
// consecutive rows of the rank's prefill: the vision stage sends them as one message.
std::vector<std::pair<int64_t, int64_t>> PrefilledRows(int64_t cached, int64_t length, int rank, int size,
                                                       int block_size, int64_t first, int64_t count);

// At least as many positions as any rank prefills of a prompt of `length` or shorter: a ring prefill's rows.
inline int64_t LongestShard(int64_t length, int size, int block_size) {
  const int64_t blocks = (length + block_size - 1) / block_size;
  return std::min<int64_t>(length, (blocks + size - 1) / size * block_size);
}

}  // namespace ixc::parallel
