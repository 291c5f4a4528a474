#include "model/token_logprobs.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace ixc::model {
namespace {

constexpr float kNone = -std::numeric_limits<float>::infinity();

// The more likely first; equal logits by the smaller id, as argmax breaks ties.
bool MoreLikely(float a, int32_t a_id, float b, int32_t b_id) { return a != b ? a > b : a_id < b_id; }

// One slice's summary, as the TP ranks exchange it: max, sum of exp(logit - max), the chosen token's logit (kNone
// where another slice holds it), then top_n (logit, id) pairs, padded with (kNone, -1). Ids below 2^24 are exact.
std::vector<float> Summarize(std::span<const float> logits, int64_t offset, int32_t chosen, int top_n) {
  const int64_t size = static_cast<int64_t>(logits.size());
  std::vector<float> summary(3 + 2 * top_n, kNone);
  const float max = *std::max_element(logits.begin(), logits.end());
  double sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - max);
  summary[0] = max;
  summary[1] = static_cast<float>(sum);
  if (chosen >= offset && chosen < offset + size) summary[2] = logits[chosen - offset];
  std::vector<int32_t> order(size);
  std::iota(order.begin(), order.end(), 0);
  const int64_t kept = std::min<int64_t>(top_n, size);
  std::partial_sort(order.begin(), order.begin() + kept, order.end(),
                    [&](int32_t a, int32_t b) { return MoreLikely(logits[a], a, logits[b], b); });
  for (int64_t i = 0; i < top_n; ++i) {
    summary[3 + 2 * i + 1] = -1.f;
    if (i >= kept) continue;
    summary[3 + 2 * i] = logits[order[i]];
    summary[3 + 2 * i + 1] = static_cast<float>(offset + order[i]);
  }
  return summary;
}

}  // namespace

absl::StatusOr<TokenLogprobs> LogprobsOf(const LlmWeights& weights, std::span<const float> logits, int32_t chosen,
                                         int top_n, parallel::DeviceComm* comm) {
  const int64_t vocab = weights.config.vocab_size;
  const bool whole = static_cast<int64_t>(logits.size()) == vocab;
  if (!whole && (comm == nullptr || static_cast<int64_t>(logits.size()) != weights.shard.vocab_size)) {
    return absl::InvalidArgumentError("LogprobsOf: logits are neither whole nor this rank's vocabulary slice");
  }
  if (chosen < 0 || chosen >= vocab || top_n < 0) {
    return absl::InvalidArgumentError(absl::StrCat("LogprobsOf: token ", chosen, " or top_n ", top_n, " out of range"));
  }
  top_n = static_cast<int>(std::min<int64_t>(top_n, vocab));
  const int ranks = whole ? 1 : weights.tp.size;
  const int64_t width = 3 + 2 * top_n;
  std::vector<float> summary = Summarize(logits, whole ? 0 : int64_t{weights.tp.rank} * weights.shard.vocab_size,
                                         chosen, top_n);
  std::vector<float> all(ranks * width);
  if (whole) {
    all = std::move(summary);
  } else {
    IXC_RETURN_IF_ERROR(comm->AllGather(summary.data(), width, all.data(), parallel::Group::kTensor));
  }
  // log Z = M + log(sum over slices of sum_t * exp(max_t - M)), M the largest max.
  double max = kNone, chosen_logit = kNone;
  for (int t = 0; t < ranks; ++t) {
    max = std::max<double>(max, all[t * width]);
    chosen_logit = std::max<double>(chosen_logit, all[t * width + 2]);
  }
  double sum = 0;
  for (int t = 0; t < ranks; ++t) sum += all[t * width + 1] * std::exp(all[t * width] - max);
  const double log_z = max + std::log(sum);

  std::vector<std::pair<float, int32_t>> candidates;
  for (int t = 0; t < ranks; ++t) {
    for (int i = 0; i < top_n; ++i) {
      const float* entry = &all[t * width + 3 + 2 * i];
      if (entry[1] >= 0) candidates.push_back({entry[0], static_cast<int32_t>(entry[1])});
    }
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const auto& a, const auto& b) { return MoreLikely(a.first, a.second, b.first, b.second); });
  TokenLogprobs out;
  out.chosen = static_cast<float>(chosen_logit - log_z);
  for (int i = 0; i < top_n && i < static_cast<int>(candidates.size()); ++i) {
    out.top_ids.push_back(candidates[i].second);
    out.top_logprobs.push_back(static_cast<float>(candidates[i].first - log_z));
  }
  return out;
}

}  // namespace ixc::model
