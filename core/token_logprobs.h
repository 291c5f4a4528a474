// File: core/token_logprobs.h
//
// A generated token's log-probability and the most likely tokens at its position, as the model computes them
// (model/token_logprobs.h), the workers report them (protocol/messages.h) and the API returns them (OpenAI's
// `logprobs`), and a beam's next-token candidates. Plain values shared by those layers.
#pragma once

#include <cstdint>
#include <vector>

namespace ixc {

struct TokenLogprobs {
  float chosen = 0.f;               // the generated token's
  std::vector<int32_t> top_ids;     // (n) the most likely first, equal ones by smaller id
  std::vector<float> top_logprobs;  // (n)
};

// A beam's candidates for its next token (beam search, model/beam_search.h): the highest log-probabilities after the
// repetition penalty, the highest first, equal ones by smaller id.
struct BeamCandidates {
  std::vector<int32_t> ids;       // (n)
  std::vector<float> logprobs;    // (n)
};

}  // namespace ixc
