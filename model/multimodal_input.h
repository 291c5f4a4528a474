// File: model/multimodal_input.h
//
// The language model's input for an interleaved prompt (the reference's interleav_wrap_chat, spec 5.2): text pieces
// through tok_embeddings (im_mask 0), images through the vision component (im_mask 1), concatenated in order.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "model/vision_encoder.h"
#include "model/weights.h"

namespace ixc::model {

// One stretch of the prompt: token ids, or an image's crops (crop 0 the global view, then rows x cols tiles).
struct PromptPiece {
  std::vector<int32_t> ids;
  const float* crops = nullptr;  // (1 + rows * cols, 3, S, S), when an image
  int rows = 0, cols = 0;
};

struct MultimodalInput {
  std::vector<float> embeddings;  // (tokens, hidden)
  std::vector<uint8_t> image_mask;  // (tokens)
};

// `vision` may be null when no piece is an image.
absl::StatusOr<MultimodalInput> AssembleInput(const LlmWeights& llm, const VisionWeights* vision,
                                              const std::vector<PromptPiece>& pieces);

}  // namespace ixc::model
