#include "parallel/sequence_shard.h"

#include <algorithm>
#include <numeric>

namespace ixc::parallel {

std::vector<int32_t> OwnedPositions(int64_t length, int rank, int size, int block_size) {
  std::vector<int32_t> positions;
  for (int64_t block = rank; block * block_size < length; block += size) {
    for (int64_t p = block * block_size; p < std::min(length, (block + 1) * block_size); ++p) {
      positions.push_back(static_cast<int32_t>(p));
    }
  }
  return positions;
}

std::vector<int32_t> PrefillPositions(int64_t cached, int64_t length, int rank, int size, int block_size) {
  if (RingPrefill(length - cached, size, block_size)) {
    std::vector<int32_t> positions = OwnedPositions(length, rank, size, block_size);
    positions.erase(positions.begin(), std::lower_bound(positions.begin(), positions.end(), cached));
    return positions;
  }
  std::vector<int32_t> positions(std::max<int64_t>(0, length - cached));
  std::iota(positions.begin(), positions.end(), static_cast<int32_t>(cached));
  return positions;
}

std::vector<std::pair<int64_t, int64_t>> PrefilledRows(int64_t cached, int64_t length, int rank, int size,
                                                       int block_size, int64_t first, int64_t count) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  const int64_t begin = std::max(first, cached), end = std::min(first + count, length);
  if (begin >= end) return ranges;
  if (!RingPrefill(length - cached, size, block_size)) {
    ranges.emplace_back(begin, end);
    return ranges;
  }
  for (int64_t block = begin / block_size; block * block_size < end; ++block) {
    if (KvOwner(block * block_size, block_size, size) != rank) continue;
    const int64_t from = std::max(begin, block * block_size), to = std::min(end, (block + 1) * block_size);
    if (!ranges.empty() && ranges.back().second == from) {
      ranges.back().second = to;
    } else {
      ranges.emplace_back(from, to);
    }
  }
  return ranges;
}

}  // namespace ixc::parallel
