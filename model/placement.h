// File: model/placement.h
//
// Where the language model runs, chosen at start (--device cpu|cuda): the CPU, or a GPU that gets a copy of the
// weights (model/cuda/). Returns the KV cache for `context_tokens` on the CPU, or the bookkeeping of the GPU's pool.
// `cuda` stops with a clear message in a build without the CUDA backend or on a machine without a usable GPU.
//
//   IXC_ASSIGN_OR_RETURN(KvCache cache, PlaceModel(weights, {.device = "cuda"}, context));
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "model/kv_cache.h"
#include "model/weights.h"

namespace ixc::model {

struct Placement {
  std::string device = "cpu";      // "cpu" | "cuda"
  int block_size = 16;
  int64_t kv_reserve_mib = 4096;   // cuda: device memory kept free after the KV pool
  std::string dtype = "bf16";      // cuda: "bf16" | "f16"
};

absl::StatusOr<KvCache> PlaceModel(LlmWeights& weights, const Placement& placement, int64_t context_tokens);

}  // namespace ixc::model
