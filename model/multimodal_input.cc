#include "model/multimodal_input.h"

#include "core/status_macros.h"
#include "kernels/ops.h"

namespace ixc::model {

absl::StatusOr<MultimodalInput> AssembleInput(const LlmWeights& llm, const VisionWeights* vision,
                                              const std::vector<PromptPiece>& pieces) {
  const int64_t hidden = llm.config.hidden_size;
  MultimodalInput input;
  for (const PromptPiece& piece : pieces) {
    const size_t start = input.embeddings.size();
    if (piece.crops == nullptr) {
      input.embeddings.resize(start + piece.ids.size() * hidden);
      IXC_RETURN_IF_ERROR(
          kernels::EmbeddingGather(llm.tok_embeddings, piece.ids.data(), piece.ids.size(), &input.embeddings[start]));
      input.image_mask.insert(input.image_mask.end(), piece.ids.size(), 0);
      continue;
    }
    if (vision == nullptr) return absl::InvalidArgumentError("the prompt has an image but no vision weights are loaded");
    IXC_ASSIGN_OR_RETURN(std::vector<float> image, EmbedImage(*vision, piece.crops, piece.rows, piece.cols));
    input.embeddings.insert(input.embeddings.end(), image.begin(), image.end());
    input.image_mask.insert(input.image_mask.end(), image.size() / hidden, 1);
  }
  return input;
}

}  // namespace ixc::model
