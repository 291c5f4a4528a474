// File: bench/random_vision.h
//
// The vision tower at a given shape with seeded random f32 weights (no checkpoint), for the CPU and GPU benchmarks,
// and the FLOPs of one crop through its ViT.
#pragma once

#include <vector>

#include "model/vision_encoder.h"

namespace ixc::bench {

// Every tensor of VisionWeights (ViT, separators, vision_proj to `llm_hidden`), owned by `storage`.
model::VisionWeights RandomVision(const model::VisionConfig& c, int llm_hidden,
                                  std::vector<std::vector<float>>& storage);

// Patch embedding, per layer q/k/v/out and the MLP, and attention.
double FlopsPerTile(const model::VisionConfig& c);

}  // namespace ixc::bench
