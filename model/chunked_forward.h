// File: model/chunked_forward.h
//
// A forward call cut into backend calls within CallLimits (LanguageModelForwardBatch's every call: one backend call
// where the batch fits, as always on the CPU; DeviceLanguageModel::Limits bounds a GPU's). Entries are packed into
// calls in order; a prompt too long for a call is prefilled in chunks (of limits.rows, or limits.logit_rows with
// all_logits), each attending to the ones before it through the cache and all with the RoPE base of the whole
// prompt's length, as one call would; so every entry gets the logits (all of its rows' with all_logits,
// concatenated) and the chosen token one call would give it. A gather-merge chunk (SP) is cut the same way on every
// rank of the group: the limits are the same there, and each piece's K/V reach their owners' caches before the next
// piece attends to them. A ring prefill is not cut (its shards attend to each other only within the call): one too
// long for a call goes as it is, and the backend says whether it fits.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "model/language_model.h"

namespace ixc::model {

using BackendCall = std::function<absl::Status(std::vector<BatchEntry>& batch)>;

absl::Status ForwardInChunks(const LlmWeights& weights, std::vector<BatchEntry>& batch, const CallLimits& limits,
                             const BackendCall& backend);

}  // namespace ixc::model
