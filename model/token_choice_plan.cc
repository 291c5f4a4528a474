#include "model/token_choice_plan.h"

#include <random>

#include "absl/strings/str_cat.h"
#include "kernels/sampling_rules.h"
#include "model/generation.h"

namespace ixc::model {

absl::StatusOr<TokenChoicePlan> PlanTokenChoices(std::span<const TokenChoice* const> choices, int64_t vocab) {
  TokenChoicePlan plan;
  for (size_t r = 0; r < choices.size(); ++r) {
    const TokenChoice& choice = *choices[r];
    const kernels::SamplingParams& params = choice.params;
    if (!(params.top_p > 0.f && params.top_p <= 1.f) || params.top_k < 0 || !(params.repetition_penalty > 0.f)) {
      return absl::InvalidArgumentError(absl::StrCat("token choice of row ", r, ": top_p ", params.top_p, ", top_k ",
                                                     params.top_k, ", repetition_penalty ", params.repetition_penalty));
    }
    const bool greedy = kernels::IsGreedy(params);
    if (params.repetition_penalty != 1.f) {
      const std::vector<int32_t> ids = kernels::PenalizedIds(choice.previous, vocab);  // as ApplyRepetitionPenalty
      plan.penalized.insert(plan.penalized.end(), ids.begin(), ids.end());
    }
    plan.offsets.push_back(static_cast<int32_t>(plan.penalized.size()));
    plan.penalties.push_back(params.repetition_penalty);
    plan.temperatures.push_back(greedy ? 1.f : params.temperature);
    plan.adjusts |= params.repetition_penalty != 1.f || plan.temperatures.back() != 1.f;
    if (!greedy) {
      std::mt19937_64 rng = TokenRng(choice.seed, choice.index);
      plan.draws.push_back({static_cast<int32_t>(r), params.top_k < vocab ? params.top_k : 0, params.top_p,
                            std::uniform_real_distribution<double>(0.0, 1.0)(rng)});  // DrawFromAscending's draw
    }
  }
  return plan;
}

}  // namespace ixc::model
