// CPU sampling: the reference's rules, but the top-k candidates are found by selection (nth_element) instead of a
// sort of the whole vocabulary; only the survivors are sorted.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "kernels/cpu/max_of.h"
#include "kernels/ops.h"
#include "kernels/sampling_rules.h"

namespace ixc::kernels {

// Two vector passes, the maximum and then its first position: std::max_element's one pass of dependent compares took
// 316 us on the demo model's 92,544 logits, this 11 us (a throwaway timing loop); 16 sequences' greedy choices had
// been 7% of their decode step.
int64_t FirstArgMax(const float* x, int64_t n) {
  const float best = MaxOf(x, n);
  const __m256 wanted = _mm256_set1_ps(best);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const int equal = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), wanted, _CMP_EQ_OQ));
    if (equal != 0) return i + __builtin_ctz(equal);
  }
  for (; i < n; ++i) {
    if (x[i] == best) return i;
  }
  return std::max_element(x, x + n) - x;  // NaNs: max_element's own rule
}

int32_t SampleToken(float* logits, int64_t vocab, const SamplingParams& params, const std::vector<int32_t>& previous,
                    std::mt19937_64& rng) {
  ApplyRepetitionPenalty(logits, vocab, params.repetition_penalty, previous);
  if (IsGreedy(params)) return static_cast<int32_t>(FirstArgMax(logits, vocab));

  for (int64_t i = 0; i < vocab; ++i) logits[i] /= params.temperature;
  std::vector<int32_t> candidates(vocab);
  std::iota(candidates.begin(), candidates.end(), 0);
  auto ascending = [&](int32_t a, int32_t b) { return logits[a] != logits[b] ? logits[a] < logits[b] : a < b; };
  if (params.top_k > 0 && params.top_k < vocab) {
    // The k-th largest logit; HF keeps every token at least that large, ties included.
    auto kth = candidates.begin() + (vocab - params.top_k);
    std::nth_element(candidates.begin(), kth, candidates.end(), ascending);
    const float kth_largest = logits[*kth];
    std::vector<int32_t> kept;
    for (int64_t id = 0; id < vocab; ++id) {
      if (logits[id] >= kth_largest) kept.push_back(static_cast<int32_t>(id));
    }
    candidates = std::move(kept);
  }
  std::sort(candidates.begin(), candidates.end(), ascending);
  return DrawFromAscending(logits, candidates, params.top_p, rng);
}

}  // namespace ixc::kernels
