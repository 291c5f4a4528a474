// File: core/token_logprobs.h
//
// A generated token's log-probability and the most likely tokens at its position, as the model computes them
// (model/token_logprobs.h), the workers report them (protocol/messages.h) and the API returns them (OpenAI's
// `logprobs`). A plain value shared by those layers.
#pragma once

#include <cstdint>
#include <vector>

namespace ixc {

struct TokenLogprobs {
  float chosen = 0.f;               // the generated token's
  std::vector<int32_t> top_ids;     // (n) the most likely first, equal ones by smaller id
  std::vector<float> top_logprobs;  // (n)
};

}  // namespace ixc
