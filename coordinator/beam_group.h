// File: coordinator/beam_group.h
//
// A request's beam search in the engine (engine.h). After the request's prompt is prefilled, each beam is a sequence
// of its own: an internal Request (beam_owner set) with a number of its own, that decodes in the running batch like
// any other and answers with its candidates instead of a token. When every live beam has answered, the owner's
// model::BeamSearch picks the next beams; a beam continuing a parent takes the parent's sequence over (its first
// child) or forks its KV blocks (BlockManager::Fork, the workers' KvFork). The best beam reaches the request's stream
// at the end. A preempted beam preempts its whole search, which starts again from the prompt: beam search draws no
// random numbers, so the output is unchanged.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "core/token_logprobs.h"
#include "coordinator/request.h"
#include "model/beam_search.h"

namespace ixc::coordinator {

// Beam sequences' numbers start here, far above the requests' (protocol request ids name both).
inline constexpr uint64_t kFirstBeamNumber = uint64_t{1} << 62;

struct BeamGroup {
  explicit BeamGroup(model::BeamSearchOptions options) : search(std::move(options)) {}

  model::BeamSearch search;
  std::vector<std::unique_ptr<Request>> beams;          // (live beams), in the search's beam order
  std::vector<std::optional<BeamCandidates>> answers;  // (live beams) this step's candidates, as they come
};

// The search options of `request` (num_beams > 1): its stop ids end beams, BOS opens every history.
model::BeamSearchOptions BeamOptionsOf(const Request& request, int64_t max_context);

// A beam of `owner` as the engine's request: its generated ids are the beam's tokens, its KV holds the prompt and all
// but the last of them.
std::unique_ptr<Request> NewBeam(Request& owner, uint64_t number, std::vector<int32_t> tokens);

}  // namespace ixc::coordinator
