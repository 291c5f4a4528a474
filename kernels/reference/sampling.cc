// Reference sampling: Hugging Face's logits processors over the whole vocabulary with full sorts.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/ops.h"
#include "kernels/sampling_rules.h"

namespace ixc::kernels::reference {

int64_t FirstArgMax(const float* x, int64_t n) { return std::max_element(x, x + n) - x; }

int32_t SampleToken(float* logits, int64_t vocab, const SamplingParams& params, const std::vector<int32_t>& previous,
                    std::mt19937_64& rng) {
  ApplyRepetitionPenalty(logits, vocab, params.repetition_penalty, previous);
  if (IsGreedy(params)) return static_cast<int32_t>(FirstArgMax(logits, vocab));

  for (int64_t i = 0; i < vocab; ++i) logits[i] /= params.temperature;
  // Every token, ascending by (logit, id): HF's top-k and top-p both work on sorted logits.
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] != logits[b] ? logits[a] < logits[b] : a < b;
  });
  if (params.top_k > 0 && params.top_k < vocab) {
    const float kth_largest = logits[order[vocab - params.top_k]];
    std::vector<int32_t> kept;
    for (int32_t id : order) {
      if (logits[id] >= kth_largest) kept.push_back(id);
    }
    order = kept;
  }
  return DrawFromAscending(logits, order, params.top_p, rng);
}

}  // namespace ixc::kernels::reference
