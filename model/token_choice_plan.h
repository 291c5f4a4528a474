// File: model/token_choice_plan.h
//
// What a device needs to choose a batch's next tokens the way SampleNext does (TokenChoice, model/language_model.h),
// worked out on the host: per row the distinct ids the repetition penalty applies to, the penalty, the temperature
// (1 where the row is greedy: the argmax needs no division), and for each row that draws, its top-k (0 where it
// keeps every token, as SampleToken does for k >= vocab), top-p and the uniform that TokenRng(seed, index) gives
// DrawFromAscending. model/cuda/cuda_token_choice.cc uploads it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "model/language_model.h"

namespace ixc::model {

struct TokenChoicePlan {
  struct Draw {
    int32_t row = 0;
    int32_t top_k = 0;
    float top_p = 1.f;
    double uniform = 0;  // in [0, 1)
  };
  std::vector<int32_t> offsets = {0};  // (rows + 1) into penalized
  std::vector<int32_t> penalized;      // each row's distinct ids in [0, vocab), first-seen order
  std::vector<float> penalties;        // (rows)
  std::vector<float> temperatures;     // (rows)
  std::vector<Draw> draws;             // the rows that are not greedy
  bool adjusts = false;                // some row has a penalty or a temperature to apply
};

// Fails, naming the row and the value, on a top-p outside (0, 1], a negative top-k or a penalty that is not positive.
absl::StatusOr<TokenChoicePlan> PlanTokenChoices(std::span<const TokenChoice* const> choices, int64_t vocab);

}  // namespace ixc::model
