// File: parallel/sequence_shard.h
//
// How a sequence is spread over the S ranks of an SP group (architecture section 4):
//   the prompt: cut into 2S chunks, rank s prefills chunks s and 2S-1-s (zig-zag: every rank gets an equal share of
//     the causal attention work) by ring attention; a prompt too short for a token in every chunk (under 2S) goes
//     whole to every rank instead, each keeping the K/V of the positions DecodeOwner gives it (the decode steps'
//     all-gather merge then serves its attention too);
//   generated tokens: the token at position p is kept by rank (p / block_size) % S (round-robin by KV block).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace ixc::parallel {

// The prompt positions of SP rank `rank`'s zig-zag shard, ascending.
std::vector<int32_t> ZigZagPositions(int64_t length, int rank, int size);

// Whether a prompt of `length` is prefilled by ring attention over `size` ranks: every zig-zag chunk holds a token.
inline bool RingPrefill(int64_t length, int size) { return size > 1 && length >= 2 * int64_t{size}; }

// The positions SP rank `rank` prefills, ascending: its zig-zag shard where RingPrefill, else every position.
std::vector<int32_t> PrefillPositions(int64_t length, int rank, int size);

// How many prompt positions SP rank `rank` keeps the K/V of: its zig-zag shard where RingPrefill, else those
// DecodeOwner gives it.
int64_t PrefillKeptPositions(int64_t length, int rank, int size, int block_size);

// The rows of [first, first + count) that SP rank `rank` prefills in a prompt of `length`: at most two ranges
// [begin, end), one per zig-zag chunk (all of them where not RingPrefill). The vision stage sends an image's
// embeddings only to the ranks that prefill them.
std::vector<std::pair<int64_t, int64_t>> OwnedRows(int64_t length, int rank, int size, int64_t first, int64_t count);

// At least as many positions as any rank's zig-zag shard holds of a prompt of `length` or shorter (a ring
// prefill's rows): two chunks of at most ceil(length / 2S) each.
inline int64_t LongestShard(int64_t length, int size) { return 2 * ((length + 2 * size - 1) / (2 * size)); }

inline int DecodeOwner(int64_t position, int block_size, int size) {
  return static_cast<int>((position / block_size) % size);
}

}  // namespace ixc::parallel
