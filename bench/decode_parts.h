// A CPU decode step taken apart: each kind of work a one-token step does, timed alone from cold caches on the model's
// own tensors and KV cache, per step. What the parts do not add up to is the forward's own code (buffers, copies, the
// KV store) and what caches the parts share within a step.
#pragma once

#include <string>
#include <vector>

#include "model/kv_cache.h"
#include "model/weights.h"

namespace ixc::bench {

struct DecodePart {
  std::string name;
  int calls = 0;             // per decode step
  double seconds = 0;        // per decode step
  double bytes = 0;          // weights read per decode step, where the part is a GEMV
};

// The parts of one decode step of a sequence whose cache holds `seq` (its attention reads all of it).
std::vector<DecodePart> TimeDecodeParts(const model::LlmWeights& weights, const model::KvCache& cache,
                                        const model::SequenceKv& seq);

}  // namespace ixc::bench
