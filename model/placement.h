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
#include "absl/strings/str_cat.h"
#include "model/floats.h"
#include "model/kv_cache.h"
#include "model/vision_encoder.h"
#include "model/weights.h"

namespace ixc::model {

// The vision tower's crops per ViT pass on a GPU it shares with a language model, and on one of its own.
inline constexpr int kSharedGpuCropsPerPass = 8, kOwnGpuCropsPerPass = 32;

struct Placement {
  std::string device = "cpu";      // "cpu" | "cuda"
  int block_size = 16;
  int kv_blocks = 0;               // the KV pool, exactly (a cluster's --kv-blocks); 0: enough for context_tokens on
                                   // the CPU, all that fit on the GPU
  int64_t kv_reserve_mib = 4096;   // cuda: device memory kept free after the KV pool
  int64_t ring_rows = 0;           // cuda: the longest ring prefill shard, whose scratch the pool leaves room for
                                   // (CudaModelOptions::ring_rows)
  int64_t input_rows = 0;          // cuda: input embedding rows kept on the GPU (CudaModelOptions::input_rows)
  std::string dtype = "bf16";      // cuda: "bf16" | "f16"
  int gpu = 0;                     // cuda: which of this machine's devices
  bool cuda_graphs = true;         // cuda: decode steps as replayed CUDA graphs (CudaModelOptions::decode_graphs)
  // cuda: the vision tower's crops per ViT pass at most (CudaVisionOptions::max_crops_per_pass): kSharedGpuCropsPerPass
  // where it shares its GPU with a language model, kOwnGpuCropsPerPass where the GPU is its own (a cluster's vision
  // rank: about 1.4 GB of scratch for fewer, larger GEMMs).
  int vision_crops_per_pass = kSharedGpuCropsPerPass;
};

// The checks of --device (cpu | cuda) and --dtype (the GPU's: bf16 | f16), for every entry point that takes them
// (the coordinator checks them before it starts the workers). Inline: no CUDA library comes with it.
inline absl::Status CheckPlacementFlags(const std::string& device, const std::string& dtype) {
  if (device != "cpu" && device != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("--device must be cpu or cuda, not '", device, "'"));
  }
  if (dtype != "bf16" && dtype != "f16") {
    return absl::InvalidArgumentError(absl::StrCat("--dtype must be bf16 or f16 on cuda, not '", dtype, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<KvCache> PlaceModel(LlmWeights& weights, const Placement& placement, int64_t context_tokens);

// The memory in use and in all on the placement's device, in bytes (the per-rank metrics): its GPU's (every
// process's use), or on the CPU this process's resident memory and the machine's; 0 and 0 where it cannot be read.
struct DeviceMemory {
  int64_t used = 0;
  int64_t total = 0;
};
DeviceMemory DeviceMemoryOf(const Placement& placement);
absl::Status PlaceVision(VisionWeights& weights, const Placement& placement);

// Buffers of the vision handoff (model/floats.h): `count` zeroed floats on the host where `gpu` < 0, else on that
// CUDA device (the NCCL handoff: image rows go from GPU to GPU).
absl::StatusOr<Floats> NewFloats(int64_t count, int gpu);
// dst <- src, `count` floats, both on the host where `gpu` < 0, else either on the host or on that device.
absl::Status CopyFloats(float* dst, const float* src, int64_t count, int gpu);

}  // namespace ixc::model
