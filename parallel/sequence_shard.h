// File: parallel/sequence_shard.h
//
// How a sequence is spread over the S ranks of an SP group (architecture section 4):
//   the prompt: cut into 2S chunks, rank s prefills chunks s and 2S-1-s (zig-zag: every rank gets an equal share of
//     the causal attention work);
//   generated tokens: the token at position p is kept by rank (p / block_size) % S (round-robin by KV block).
#pragma once

#include <cstdint>
#include <vector>

namespace ixc::parallel {

// The prompt positions of SP rank `rank`, ascending.
std::vector<int32_t> ZigZagPositions(int64_t length, int rank, int size);

inline int DecodeOwner(int64_t position, int block_size, int size) {
  return static_cast<int>((position / block_size) % size);
}

}  // namespace ixc::parallel
