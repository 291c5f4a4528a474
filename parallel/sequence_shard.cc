#include "parallel/sequence_shard.h"

#include <algorithm>

namespace ixc::parallel {

std::vector<int32_t> ZigZagPositions(int64_t length, int rank, int size) {
  std::vector<int32_t> positions;
  auto bound = [&](int chunk) { return length * chunk / (2 * size); };
  for (int chunk : {rank, 2 * size - 1 - rank}) {
    for (int64_t p = bound(chunk); p < bound(chunk + 1); ++p) positions.push_back(static_cast<int32_t>(p));
  }
  return positions;
}

std::vector<std::pair<int64_t, int64_t>> OwnedRows(int64_t length, int rank, int size, int64_t first, int64_t count) {
  std::vector<std::pair<int64_t, int64_t>> ranges;
  auto bound = [&](int chunk) { return length * chunk / (2 * size); };
  for (int chunk : {rank, 2 * size - 1 - rank}) {
    const int64_t begin = std::max(first, bound(chunk)), end = std::min(first + count, bound(chunk + 1));
    if (begin < end) ranges.emplace_back(begin, end);
  }
  return ranges;
}

}  // namespace ixc::parallel
