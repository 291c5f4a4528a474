// File: model/vision_encoder.h
//
// The vision component of IXC-2.5, tiles in, embeddings out (spec 3): the CLIP ViT (patch embedding without bias,
// class embedding, learned positions, pre_layrnorm, pre-norm encoder layers with quick_gelu MLPs; the last layer's
// output before post_layernorm, CLS dropped), the 2x2 token merge, the separator layout with plora_sub_GN /
// plora_glb_GN, and vision_proj (Linear, exact GELU, Linear). It holds its own view of the checkpoint, so vision
// ranks can load it without the language model.
//
// With `device` set (model/cuda/CudaVisionModel, --device cuda) the same functions run on the GPU.
//
//   IXC_ASSIGN_OR_RETURN(VisionWeights vision, LoadVisionWeights(dir, llm_hidden));
//   IXC_ASSIGN_OR_RETURN(std::vector<float> embeds, EmbedImage(vision, crops));   // (tokens, llm_hidden)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/safetensors.h"
#include "model/config.h"

namespace ixc::model {

struct VitLayerWeights {
  std::vector<float> ln1_weight, ln1_bias, ln2_weight, ln2_bias;  // (hv)
  TensorView q, k, v, out;                                        // (hv, hv)
  std::vector<float> q_bias, k_bias, v_bias, out_bias;            // (hv)
  TensorView fc1;                                                 // (intermediate, hv)
  std::vector<float> fc1_bias;                                    // (intermediate)
  TensorView fc2;                                                 // (hv, intermediate)
  std::vector<float> fc2_bias;                                    // (hv)
};

class DeviceVisionModel;

struct VisionWeights {
  VisionConfig config;
  int llm_hidden = 0;
  Checkpoint checkpoint;
  TensorView patch_embedding;              // (hv, 3 * patch * patch), the conv kernel flattened
  std::vector<float> class_embedding;      // (hv)
  std::vector<float> position_embedding;   // (grid^2 + 1, hv)
  std::vector<float> pre_ln_weight, pre_ln_bias;
  std::vector<VitLayerWeights> layers;
  std::vector<float> sub_separator;        // plora_sub_GN (4 hv): ends every row of merged tokens
  std::vector<float> global_separator;     // plora_glb_GN (4 hv): between the global view and the tiles
  TensorView proj1;                        // vision_proj.0 (llm_hidden, 4 hv)
  std::vector<float> proj1_bias;
  TensorView proj2;                        // vision_proj.2 (llm_hidden, llm_hidden)
  std::vector<float> proj2_bias;
  std::shared_ptr<DeviceVisionModel> device;  // set: EncodeCrops, AssembleImage and EmbedImage run there
};

absl::StatusOr<VisionWeights> LoadVisionWeights(const std::string& directory, int llm_hidden);

// The ViT on `count` crops (count, 3, S, S): the last layer's patch features without CLS, (count, grid^2, hv).
absl::StatusOr<std::vector<float>> EncodeCrops(const VisionWeights& weights, const float* crops, int count);
// The same into `features`: host memory, or with weights.device also memory of that GPU (model::NewFloats), where
// the vision ranks keep an image for the NCCL handoff.
absl::Status EncodeCropsInto(const VisionWeights& weights, const float* crops, int count, float* features);

// One image's embeddings for the LLM from its crops (crop 0 the global view, then rows x cols tiles row-major):
// (VisionTokenCount(rows, cols, merged_side), llm_hidden). Every row is a vision position (im_mask = 1).
absl::StatusOr<std::vector<float>> EmbedImage(const VisionWeights& weights, const float* crops, int rows, int cols);

// The second half of EmbedImage, from the ViT features of all 1 + rows * cols crops (EncodeCrops): the 2x2 merge,
// the separators and vision_proj. Vision ranks that encode parts of an image meet here.
absl::StatusOr<std::vector<float>> AssembleImage(const VisionWeights& weights, const std::vector<float>& features,
                                                 int rows, int cols);
// The same from and into host memory or (weights.device) that GPU's memory: features (1 + rows * cols, grid^2, hv),
// embeddings (ImageTokenCount(rows, cols), llm_hidden).
absl::Status AssembleImageInto(const VisionWeights& weights, const float* features, int rows, int cols,
                               float* embeddings);
// The rows of a rows x cols image's embeddings (spec 3.5; coordinator/media's VisionTokenCount of the merged side).
int64_t ImageTokenCount(const VisionConfig& config, int rows, int cols);

// Where each row of an image's sequence before vision_proj comes from (spec 3.4-3.5), for kernels::
// AssembleImageTokens: (tokens, 4) feature rows, a merged token's 2x2 patch block in the order (0,0), (0,1), (1,0),
// (1,1), or the separator markers in all four. Patch p of crop c is feature row c * crop_stride + first_patch + p:
// (grid^2, 0) for EncodeCrops' features, (grid^2 + 1, 1) for ViT rows that still hold each crop's CLS token.
std::vector<int32_t> ImageTokenSources(const VisionConfig& config, int rows, int cols, int64_t crop_stride,
                                       int64_t first_patch);

// The same functions on an accelerator with a copy of the vision weights (model/cuda/CudaVisionModel).
class DeviceVisionModel {
 public:
  virtual ~DeviceVisionModel() = default;
  // Results into host memory or this device's: the Into functions above, arguments checked.
  virtual absl::Status EncodeCropsInto(const float* crops, int count, float* features) = 0;
  virtual absl::Status AssembleImageInto(const float* features, int rows, int cols, float* embeddings) = 0;
  // Both, without the features leaving the device.
  virtual absl::StatusOr<std::vector<float>> EmbedImage(const float* crops, int rows, int cols) = 0;
};

}  // namespace ixc::model
