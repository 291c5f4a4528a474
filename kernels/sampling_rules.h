// File: kernels/sampling_rules.h
//
// The parts of token sampling that both the reference and the CPU path share, so that their only difference is how
// they find the candidate tokens (a full sort in the reference, a selection in the CPU path).
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "kernels/ops.h"

namespace ixc::kernels {

inline bool IsGreedy(const SamplingParams& params) { return params.temperature <= 0.f || params.top_k == 1; }

// The ids of `previous` the repetition penalty touches: each distinct id in [0, vocab) once, in first-seen order.
std::vector<int32_t> PenalizedIds(std::span<const int32_t> previous, int64_t vocab);

// HF's RepetitionPenaltyLogitsProcessor: for every id in `previous`, a positive logit is divided by the penalty
// and a negative one multiplied, once per distinct id (PenalizedIds).
void ApplyRepetitionPenalty(float* logits, int64_t vocab, float penalty, const std::vector<int32_t>& previous);

// `ascending`: the candidate ids sorted ascending by (logit, id); every other token is out. Applies HF's top-p rule
// (drop the tokens whose ascending cumulative probability is <= 1 - top_p, always keeping the most likely one), then
// draws one token with probability proportional to exp(logit - max), walking the kept ids in ascending id order.
int32_t DrawFromAscending(const float* logits, const std::vector<int32_t>& ascending, float top_p,
                          std::mt19937_64& rng);

}  // namespace ixc::kernels
