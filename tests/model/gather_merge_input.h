// File: tests/model/gather_merge_input.h
//
// The rows of a gather-merge forward call (SP: every rank of the group holds them) for the model's unit tests.
#pragma once

#include <cstdint>
#include <vector>

#include "model/language_model.h"

namespace ixc::model {

// `ids` at `positions`, keeping the K/V where `keep` says; the input's spans read the three vectors.
inline ForwardInput GatherMergeInput(const std::vector<int32_t>& ids, const std::vector<int32_t>& positions,
                                     const std::vector<uint8_t>& keep) {
  ForwardInput input;
  input.ids = ids;
  input.positions = positions;
  input.store_kv = keep;
  input.sp_attention = SpAttention::kGatherMerge;
  return input;
}

}  // namespace ixc::model
