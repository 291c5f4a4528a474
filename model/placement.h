// File: model/placement.h
//
// Where the models run, chosen at start (--device cpu|cuda): the CPU, or a GPU that gets a copy of the weights
// (model/cuda/). PlaceModel returns the KV cache for `context_tokens` on the CPU, or the bookkeeping of the GPU's
// pool. `cuda` stops with a clear message in a build without the CUDA backend or on a machine without a usable GPU.
// Place the vision tower first where both share a GPU: the language model's KV pool takes the memory left.
//
//   IXC_RETURN_IF_ERROR(PlaceVision(vision, placement));
//   IXC_ASSIGN_OR_RETURN(KvCache cache, PlaceModel(weights, placement, context));
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "model/kv_cache.h"
#include "model/vision_encoder.h"
#include "model/weights.h"

namespace ixc::model {

struct Placement {
  std::string device = "cpu";      // "cpu" | "cuda"
  int block_size = 16;
  int kv_blocks = 0;               // the KV pool, exactly (a cluster's --kv-blocks); 0: enough for context_tokens on
                                   // the CPU, all that fit on the GPU
  int64_t kv_reserve_mib = 4096;   // cuda: device memory kept free after the KV pool
  std::string dtype = "bf16";      // cuda: "bf16" | "f16"
  int gpu = 0;                     // cuda: which of this machine's devices
  bool cuda_graphs = true;         // cuda: decode steps as replayed CUDA graphs (CudaModelOptions::decode_graphs)
};

absl::StatusOr<KvCache> PlaceModel(LlmWeights& weights, const Placement& placement, int64_t context_tokens);
absl::Status PlaceVision(VisionWeights& weights, const Placement& placement);

}  // namespace ixc::model
