// File: model/token_logprobs.h
//
// Log-probabilities of a chosen token and of the most likely ones, from the logits as SampleNext takes them (whole
// rows, or with TP this rank's vocabulary slice). They are the model's own distribution: the log-softmax of the raw
// logits, before the repetition penalty and the temperature, as vLLM reports them by default. With slices, TP ranks
// exchange (max, sum of exponentials, the chosen token's logit, n (logit, id) pairs) each instead of the rows.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/statusor.h"
#include "core/token_logprobs.h"
#include "model/weights.h"
#include "parallel/device_comm.h"

namespace ixc::model {

// `top_n` >= 0 alternatives (at most the vocabulary); `comm` is needed only for a slice.
absl::StatusOr<TokenLogprobs> LogprobsOf(const LlmWeights& weights, std::span<const float> logits, int32_t chosen,
                                         int top_n, parallel::DeviceComm* comm);

}  // namespace ixc::model
