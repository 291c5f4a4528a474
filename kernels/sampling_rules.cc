#include "kernels/sampling_rules.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace ixc::kernels {

std::vector<int32_t> PenalizedIds(std::span<const int32_t> previous, int64_t vocab) {
  std::vector<int32_t> ids;
  std::unordered_set<int32_t> seen;
  for (int32_t id : previous) {
    if (id >= 0 && id < vocab && seen.insert(id).second) ids.push_back(id);
  }
  return ids;
}

void ApplyRepetitionPenalty(float* logits, int64_t vocab, float penalty, const std::vector<int32_t>& previous) {
  if (penalty == 1.f) return;
  for (int32_t id : PenalizedIds(previous, vocab)) {
    logits[id] = logits[id] < 0.f ? logits[id] * penalty : logits[id] / penalty;
  }
}

int32_t DrawFromAscending(const float* logits, const std::vector<int32_t>& ascending, float top_p,
                          std::mt19937_64& rng) {
  const float max_logit = logits[ascending.back()];
  std::vector<double> weights(ascending.size());
  double total = 0.0;
  for (size_t i = 0; i < ascending.size(); ++i) {
    weights[i] = std::exp(static_cast<double>(logits[ascending[i]] - max_logit));
    total += weights[i];
  }
  size_t first_kept = 0;
  if (top_p < 1.f) {
    double cumulative = 0.0;
    while (first_kept + 1 < ascending.size()) {
      cumulative += weights[first_kept] / total;
      if (cumulative > 1.0 - top_p) break;
      ++first_kept;
    }
  }
  std::vector<std::pair<int32_t, double>> kept;
  double kept_total = 0.0;
  for (size_t i = first_kept; i < ascending.size(); ++i) {
    kept.emplace_back(ascending[i], weights[i]);
    kept_total += weights[i];
  }
  std::sort(kept.begin(), kept.end());
  const double target = std::uniform_real_distribution<double>(0.0, 1.0)(rng) * kept_total;
  double cumulative = 0.0;
  for (const auto& [id, weight] : kept) {
    cumulative += weight;
    if (cumulative > target) return id;
  }
  return kept.back().first;
}

}  // namespace ixc::kernels
