#include "parallel/sequence_shard.h"

#include <algorithm>
#include <numeric>

namespace ixc::parallel {

std::vector<int32_t> ZigZagPositions(int64_t length, int rank, int size) {
  std::vector<int32_t> positions;
  auto bound = [&](int chunk) { return length * chunk / (2 * size); };
  for (int chunk : {rank, 2 * size - 1 - rank}) {
    for (int64_t p = bound(chunk); p < bound(chunk + 1); ++p) positions.push_back(static_cast<int32_t>(p));
  }
  return positions;
}

std::vector<int32_t> PrefillPositions(int64_t length, int rank, int size) {
  if (RingPrefill(length, size)) return ZigZagPositions(length, rank, size);
  std::vector<int32_t> positions(length);
  std::iota(positions.begin(), positions.end(), 0);
  return positions;
}

int64_t PrefillKeptPositions(int64_t length, int rank, int size, int block_size) {
  if (RingPrefill(length, size)) return static_cast<int64_t>(ZigZagPositions(length, rank, size).size());
  int64_t kept = 0;
  for (int64_t p = 0; p < length; ++p) kept += DecodeOwner(p, block_size, size) == rank;
  return kept;
}

std::vector<std::pair<int64_t, int64_t>> OwnedRows(int64_t length, int rank, int size, int64_t first, int64_t count) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  if (!RingPrefill(length, size)) {
    if (count > 0) ranges.emplace_back(first, first + count);
    return ranges;
  }
  auto bound = [&](int chunk) { return length * chunk / (2 * size); };
  for (int chunk : {rank, 2 * size - 1 - rank}) {
    const int64_t begin = std::max(first, bound(chunk)), end = std::min(first + count, bound(chunk + 1));
    if (begin < end) ranges.emplace_back(begin, end);
  }
  return ranges;
}

}  // namespace ixc::parallel
