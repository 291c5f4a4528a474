#include "parallel/sequence_shard.h"

namespace ixc::parallel {

std::vector<int32_t> ZigZagPositions(int64_t length, int rank, int size) {
  std::vector<int32_t> positions;
  auto bound = [&](int chunk) { return length * chunk / (2 * size); };
  for (int chunk : {rank, 2 * size - 1 - rank}) {
    for (int64_t p = bound(chunk); p < bound(chunk + 1); ++p) positions.push_back(static_cast<int32_t>(p));
  }
  return positions;
}

}  // namespace ixc::parallel
