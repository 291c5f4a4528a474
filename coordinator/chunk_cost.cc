#include "coordinator/chunk_cost.h"

#include <algorithm>

namespace ixc::coordinator {

double ChunkCost(int64_t first, int64_t count, int64_t keys_per_token) {
  if (keys_per_token <= 0) return static_cast<double>(count);
  const double n = static_cast<double>(count);
  const double keys = n * static_cast<double>(first) + n * (n + 1) / 2;
  return n + keys / static_cast<double>(keys_per_token);
}

int64_t ChunkWithin(double budget, int64_t first, int64_t keys_per_token) {
  // ChunkCost grows with count and is at least count: search [0, budget].
  int64_t fits = 0, too_many = static_cast<int64_t>(std::max(budget, 0.0)) + 1;
  while (too_many - fits > 1) {
    const int64_t mid = fits + (too_many - fits) / 2;
    (ChunkCost(first, mid, keys_per_token) <= budget ? fits : too_many) = mid;
  }
  return fits;
}

int64_t DefaultKeysPerToken(const model::LlmConfig& config, bool gpu) {
  const int64_t by_flops =
      (int64_t{config.qkv_size()} + config.hidden_size + 3 * int64_t{config.intermediate_size}) / 2;
  return std::max<int64_t>(1, gpu ? by_flops : by_flops / 4);
}

}  // namespace ixc::coordinator
