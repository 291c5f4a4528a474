// File: model/cuda/cuda_vision_model.h
//
// The vision tower on one GPU (spec 3): the CLIP ViT, the 2x2 merge with the separators and vision_proj, with
// model/vision_encoder's semantics. Weights in bf16 or f16, LayerNorm weights and biases in f32; the residual stream
// stays f32. Crops go through the ViT in passes of at most max_crops_per_pass, of even sizes (every linear layer one
// GEMM over all of a pass's tokens); attention is the flash kernel with every query seeing its crop's keys.
//
//   IXC_RETURN_IF_ERROR(AttachCudaVision(vision, {}));   // --device cuda
//   ... EmbedImage(vision, crops, rows, cols) now runs on the GPU ...
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "core/dtype.h"
#include "model/cuda/device_resources.h"
#include "model/vision_encoder.h"

namespace ixc::model {

struct CudaVisionOptions {
  DType dtype = DType::kBF16;  // weights and GEMM inputs: bf16 or f16
  int device = 0;
  // Crops per ViT pass at most (passes of even sizes): each takes about 45 MB of scratch at 560 px in bf16, and
  // larger passes are fewer, larger GEMMs (at 8 crops those with 1024 outputs fill about 3 waves of an H200's
  // multiprocessors). The cluster's vision ranks with a GPU of their own take kOwnGpuCropsPerPass (model/placement.h).
  int max_crops_per_pass = 8;
};

class CudaVisionModel : public DeviceVisionModel {
 public:
  static absl::StatusOr<std::shared_ptr<CudaVisionModel>> Upload(const VisionWeights& weights,
                                                                 const CudaVisionOptions& options);
  ~CudaVisionModel() override;

  absl::Status EncodeCropsInto(const float* crops, int count, float* features) override;
  absl::Status AssembleImageInto(const float* features, int rows, int cols, float* embeddings) override;
  absl::StatusOr<std::vector<float>> EmbedImage(const float* crops, int rows, int cols) override;

  int64_t weight_bytes() const { return arena_.bytes(); }

 private:
  struct Layer {
    float *ln1_weight = nullptr, *ln1_bias = nullptr, *ln2_weight = nullptr, *ln2_bias = nullptr;  // (hv)
    void *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr;                                 // (hv, hv)
    float *q_bias = nullptr, *k_bias = nullptr, *v_bias = nullptr, *out_bias = nullptr;            // (hv)
    void* fc1 = nullptr;                                                                           // (intermediate, hv)
    float* fc1_bias = nullptr;
    void* fc2 = nullptr;  // (hv, intermediate)
    float* fc2_bias = nullptr;
  };

  CudaVisionModel(const VisionConfig& config, int llm_hidden, const CudaVisionOptions& options);
  // The ViT on host crops (count, 3, S, S): every crop's final rows, CLS first, into features_ (count, grid^2 + 1,
  // hv) f32 on the device.
  absl::Status EncodeToDevice(const float* crops, int count);
  // One pass: `count` crops already in crops_ -> x (count, grid^2 + 1, hv) f32.
  absl::Status RunVitPass(int count, float* x);
  // Merge, separators and vision_proj of features on the device ((*, hv) f32, crop c's patch p at row
  // c * crop_stride + first_patch + p) to embeddings (tokens, llm_hidden) in host or device memory.
  absl::Status Project(const float* features, int64_t feature_rows, int64_t crop_stride, int64_t first_patch, int rows,
                       int cols, float* embeddings);
  absl::Status Linear(const void* x, const void* w, const float* bias, void* y, int64_t rows, int64_t n, int64_t k,
                      DType out_dtype, bool accumulate);

  VisionConfig config_;
  int llm_hidden_ = 0;
  CudaVisionOptions options_;
  int64_t patch_row_width_ = 0;  // 3 p^2 rounded up to a multiple of 8
  std::unique_ptr<GpuRuntime> gpu_;
  DeviceArena arena_;

  void* patch_embedding_ = nullptr;      // (hv, patch_row_width_)
  float* class_embedding_ = nullptr;     // (hv)
  float* position_embedding_ = nullptr;  // (grid^2 + 1, hv)
  float *pre_ln_weight_ = nullptr, *pre_ln_bias_ = nullptr;
  std::vector<Layer> layers_;
  float *sub_separator_ = nullptr, *global_separator_ = nullptr;  // (4 hv)
  void* proj1_ = nullptr;                                         // (llm_hidden, 4 hv)
  float* proj1_bias_ = nullptr;
  void* proj2_ = nullptr;  // (llm_hidden, llm_hidden)
  float* proj2_bias_ = nullptr;
  int32_t* attention_tables_ = nullptr;     // {0, 1, ...}: crop i's keys are block i
  int32_t* attention_positions_ = nullptr;  // (grid^2 + 1) all the last position: every query sees every key

  // Scratch for one pass (max_crops_per_pass crops at most), the features of one image, and its projection.
  GrowingBuffer crops_;                           // (count, 3, S, S) f32
  GrowingBuffer columns_;                         // (count * grid^2, patch_row_width_)
  GrowingBuffer patch_rows_;                      // (count * grid^2, hv) f32
  GrowingBuffer normed_, q_, k_, v_, attention_;  // (count * tokens, hv)
  GrowingBuffer hidden_;                          // (count * tokens, intermediate)
  GrowingBuffer features_;                        // (crops, tokens, hv) f32
  GrowingBuffer sources_;                         // (image tokens, 4) int32
  GrowingBuffer sequence_;                        // (image tokens, 4 hv)
  GrowingBuffer projected_;                       // (image tokens, llm_hidden)
  GrowingBuffer embeddings_;                      // (image tokens, llm_hidden) f32
};

// Uploads `weights` to the GPU and sets weights.device, so that EncodeCrops, AssembleImage and EmbedImage on them run
// there. Fails with a clear message where there is no usable GPU.
absl::Status AttachCudaVision(VisionWeights& weights, const CudaVisionOptions& options);

}  // namespace ixc::model
