#include "model/cuda/cuda_vision_model.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/status_macros.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/vision.h"

namespace ixc::model {
namespace {

namespace kc = ::ixc::kernels::cuda;

}  // namespace

CudaVisionModel::CudaVisionModel(const VisionConfig& config, int llm_hidden, const CudaVisionOptions& options)
    : config_(config), llm_hidden_(llm_hidden), options_(options) {}

CudaVisionModel::~CudaVisionModel() {
  if (gpu_ != nullptr) cudaStreamSynchronize(gpu_->stream);
}

absl::StatusOr<std::shared_ptr<CudaVisionModel>> CudaVisionModel::Upload(const VisionWeights& weights,
                                                                         const CudaVisionOptions& options) {
  if (options.dtype == DType::kF32) {
    return absl::InvalidArgumentError("the cuda vision tower runs bf16 or f16 weights (--dtype bf16|f16), not f32");
  }
  const VisionConfig& c = weights.config;
  const int head_dim = c.hidden_size / c.num_heads;
  if (options.max_crops_per_pass < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the cuda vision tower takes at least one crop per pass, not ", options.max_crops_per_pass));
  }
  if (head_dim != 16 && head_dim != 32 && head_dim != 64 && head_dim != 128) {
    return absl::InvalidArgumentError(
        absl::StrCat("the cuda vision tower's attention takes head_dim 16, 32, 64 or "
                     "128; this ViT has ",
                     head_dim));
  }
  std::shared_ptr<CudaVisionModel> model(new CudaVisionModel(c, weights.llm_hidden, options));
  IXC_ASSIGN_OR_RETURN(model->gpu_, GpuRuntime::Create(options.device, /*tune_gemms=*/false));
  DeviceArena& arena = model->arena_;
  const DType dtype = options.dtype;
  auto matrix = [&](TensorView view) { return arena.UploadMatrix(view, dtype); };
  auto floats = [&](const std::vector<float>& values) { return arena.UploadFloats(values); };

  model->patch_row_width_ = (3 * c.patch_size * c.patch_size + 7) / 8 * 8;
  IXC_ASSIGN_OR_RETURN(model->patch_embedding_,
                       arena.UploadMatrix(weights.patch_embedding, dtype, model->patch_row_width_));
  IXC_ASSIGN_OR_RETURN(model->class_embedding_, floats(weights.class_embedding));
  IXC_ASSIGN_OR_RETURN(model->position_embedding_, floats(weights.position_embedding));
  IXC_ASSIGN_OR_RETURN(model->pre_ln_weight_, floats(weights.pre_ln_weight));
  IXC_ASSIGN_OR_RETURN(model->pre_ln_bias_, floats(weights.pre_ln_bias));
  for (const VitLayerWeights& w : weights.layers) {
    Layer layer;
    IXC_ASSIGN_OR_RETURN(layer.ln1_weight, floats(w.ln1_weight));
    IXC_ASSIGN_OR_RETURN(layer.ln1_bias, floats(w.ln1_bias));
    IXC_ASSIGN_OR_RETURN(layer.ln2_weight, floats(w.ln2_weight));
    IXC_ASSIGN_OR_RETURN(layer.ln2_bias, floats(w.ln2_bias));
    IXC_ASSIGN_OR_RETURN(layer.q, matrix(w.q));
    IXC_ASSIGN_OR_RETURN(layer.k, matrix(w.k));
    IXC_ASSIGN_OR_RETURN(layer.v, matrix(w.v));
    IXC_ASSIGN_OR_RETURN(layer.out, matrix(w.out));
    IXC_ASSIGN_OR_RETURN(layer.q_bias, floats(w.q_bias));
    IXC_ASSIGN_OR_RETURN(layer.k_bias, floats(w.k_bias));
    IXC_ASSIGN_OR_RETURN(layer.v_bias, floats(w.v_bias));
    IXC_ASSIGN_OR_RETURN(layer.out_bias, floats(w.out_bias));
    IXC_ASSIGN_OR_RETURN(layer.fc1, matrix(w.fc1));
    IXC_ASSIGN_OR_RETURN(layer.fc1_bias, floats(w.fc1_bias));
    IXC_ASSIGN_OR_RETURN(layer.fc2, matrix(w.fc2));
    IXC_ASSIGN_OR_RETURN(layer.fc2_bias, floats(w.fc2_bias));
    model->layers_.push_back(layer);
  }
  IXC_ASSIGN_OR_RETURN(model->sub_separator_, floats(weights.sub_separator));
  IXC_ASSIGN_OR_RETURN(model->global_separator_, floats(weights.global_separator));
  IXC_ASSIGN_OR_RETURN(model->proj1_, matrix(weights.proj1));
  IXC_ASSIGN_OR_RETURN(model->proj1_bias_, floats(weights.proj1_bias));
  IXC_ASSIGN_OR_RETURN(model->proj2_, matrix(weights.proj2));
  IXC_ASSIGN_OR_RETURN(model->proj2_bias_, floats(weights.proj2_bias));

  // Attention of a pass: crop i's K and V are block i of `tokens` keys, and every query sits at the last position.
  const int64_t tokens = int64_t{c.grid()} * c.grid() + 1;
  const int per_pass = options.max_crops_per_pass;
  std::vector<int32_t> metadata(per_pass + tokens, static_cast<int32_t>(tokens - 1));
  std::iota(metadata.begin(), metadata.begin() + per_pass, 0);
  IXC_ASSIGN_OR_RETURN(void* p, arena.Allocate(static_cast<int64_t>(metadata.size()) * 4));
  IXC_RETURN_IF_ERROR(CopyToDeviceNow(p, metadata.data(), static_cast<int64_t>(metadata.size()) * 4, nullptr));
  model->attention_tables_ = static_cast<int32_t*>(p);
  model->attention_positions_ = model->attention_tables_ + per_pass;
  return model;
}

absl::Status CudaVisionModel::Linear(const void* x, const void* w, const float* bias, void* y, int64_t rows, int64_t n,
                                     int64_t k, DType out_dtype, bool accumulate) {
  return gpu_->gemm->Linear({x, w, y, rows, n, k, options_.dtype, out_dtype, accumulate, bias}, gpu_->stream);
}

absl::Status CudaVisionModel::RunVitPass(int count, float* x) {
  const VisionConfig& c = config_;
  const DType dtype = options_.dtype;
  const int64_t e = DTypeSize(dtype), hv = c.hidden_size, patches = int64_t{c.grid()} * c.grid(), tokens = patches + 1,
                rows = count * tokens, inter = c.intermediate_size;
  const int head_dim = c.hidden_size / c.num_heads;
  cudaStream_t stream = gpu_->stream;
  IXC_RETURN_IF_ERROR(columns_.Reserve(count * patches * patch_row_width_ * e, stream, "ViT patch columns"));
  IXC_RETURN_IF_ERROR(patch_rows_.Reserve(count * patches * hv * 4, stream, "ViT patch rows"));
  for (GrowingBuffer* buffer : {&normed_, &q_, &k_, &v_, &attention_}) {
    IXC_RETURN_IF_ERROR(buffer->Reserve(rows * hv * e, stream, "ViT activations"));
  }
  IXC_RETURN_IF_ERROR(hidden_.Reserve(rows * inter * e, stream, "ViT MLP activations"));

  // Embeddings: patches as one GEMM (the conv without bias), CLS, positions, pre_layrnorm (in place).
  IXC_RETURN_IF_ERROR(kc::LaunchPatchColumns(crops_.as<float>(), count, c.image_size, c.patch_size, dtype,
                                             columns_.data(), patch_row_width_, stream));
  IXC_RETURN_IF_ERROR(Linear(columns_.data(), patch_embedding_, nullptr, patch_rows_.data(), count * patches, hv,
                             patch_row_width_, DType::kF32, false));
  IXC_RETURN_IF_ERROR(kc::LaunchVitEmbeddings(patch_rows_.as<float>(), class_embedding_, position_embedding_, count,
                                              patches, hv, x, stream));
  IXC_RETURN_IF_ERROR(kc::LaunchLayerNorm(DType::kF32, x, pre_ln_weight_, pre_ln_bias_, DType::kF32, x, rows, hv,
                                          c.layer_norm_eps, stream));

  const float scale = 1.f / std::sqrt(static_cast<float>(head_dim));
  for (const Layer& layer : layers_) {
    IXC_RETURN_IF_ERROR(kc::LaunchLayerNorm(DType::kF32, x, layer.ln1_weight, layer.ln1_bias, dtype, normed_.data(),
                                            rows, hv, c.layer_norm_eps, stream));
    IXC_RETURN_IF_ERROR(Linear(normed_.data(), layer.q, layer.q_bias, q_.data(), rows, hv, hv, dtype, false));
    IXC_RETURN_IF_ERROR(Linear(normed_.data(), layer.k, layer.k_bias, k_.data(), rows, hv, hv, dtype, false));
    IXC_RETURN_IF_ERROR(Linear(normed_.data(), layer.v, layer.v_bias, v_.data(), rows, hv, hv, dtype, false));
    // The pass's K and V rows are a pool of one block per crop; all crops in one launch.
    const kc::DeviceKvPools pools{k_.data(), v_.data(), dtype, static_cast<int>(tokens), c.num_heads, head_dim};
    IXC_RETURN_IF_ERROR(kc::LaunchBatchedFlashAttention(q_.data(), attention_positions_, tokens, count, c.num_heads,
                                                        pools, attention_tables_, 1, tokens, tokens - 1, scale,
                                                        attention_.data(), nullptr, stream));
    // The residual adds ride on the GEMMs: x += attention . W_out^T + bias (the bias in cuBLASLt's epilogue).
    IXC_RETURN_IF_ERROR(Linear(attention_.data(), layer.out, layer.out_bias, x, rows, hv, hv, DType::kF32, true));

    IXC_RETURN_IF_ERROR(kc::LaunchLayerNorm(DType::kF32, x, layer.ln2_weight, layer.ln2_bias, dtype, normed_.data(),
                                            rows, hv, c.layer_norm_eps, stream));
    // fc1's bias is added in the activation's pass.
    IXC_RETURN_IF_ERROR(Linear(normed_.data(), layer.fc1, nullptr, hidden_.data(), rows, inter, hv, dtype, false));
    const auto activation = c.quick_gelu ? kc::LaunchQuickGelu : kc::LaunchGelu;
    IXC_RETURN_IF_ERROR(activation(dtype, hidden_.data(), layer.fc1_bias, hidden_.data(), rows, inter, stream));
    IXC_RETURN_IF_ERROR(Linear(hidden_.data(), layer.fc2, layer.fc2_bias, x, rows, hv, inter, DType::kF32, true));
  }
  return absl::OkStatus();
}

absl::Status CudaVisionModel::EncodeToDevice(const float* crops, int count) {
  const VisionConfig& c = config_;
  const int64_t hv = c.hidden_size, tokens = int64_t{c.grid()} * c.grid() + 1;
  const int64_t crop_floats = 3 * int64_t{c.image_size} * c.image_size;
  cudaStream_t stream = gpu_->stream;
  IXC_RETURN_IF_ERROR(features_.Reserve(count * tokens * hv * 4, stream, "ViT features"));
  // As few passes as max_crops_per_pass allows, of even sizes (26 crops at 8: 7, 7, 6, 6 rather than 8, 8, 8, 2,
  // whose last pass would fill a fraction of the GPU for as many kernels as a whole one).
  const int per_pass = options_.max_crops_per_pass;
  const int passes = (count + per_pass - 1) / per_pass;
  for (int p = 0, first = 0; p < passes; ++p) {
    const int pass = (count - first) / (passes - p) + ((count - first) % (passes - p) != 0);
    IXC_RETURN_IF_ERROR(crops_.Reserve(pass * crop_floats * 4, stream, "crops"));
    IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(crops_.data(), crops + first * crop_floats, pass * crop_floats * 4,
                                             cudaMemcpyHostToDevice, stream));
    IXC_RETURN_IF_ERROR(RunVitPass(pass, features_.as<float>() + first * tokens * hv));  // stream order keeps
    first += pass;                                                                       // crops_ until it ends
  }
  return absl::OkStatus();
}

// Results go out with cudaMemcpyDefault: to the host, or to device memory for the NCCL handoff.
absl::Status CudaVisionModel::EncodeCropsInto(const float* crops, int count, float* features) {
  if (count == 0) return absl::OkStatus();
  const int64_t hv = config_.hidden_size, patches = int64_t{config_.grid()} * config_.grid();
  IXC_RETURN_IF_ERROR(EncodeToDevice(crops, count));
  // (count, patches, hv): the CLS rows stay behind.
  IXC_CUDA_RETURN_IF_ERROR(cudaMemcpy2DAsync(features, patches * hv * 4, features_.as<float>() + hv,
                                             (patches + 1) * hv * 4, patches * hv * 4, count, cudaMemcpyDefault,
                                             gpu_->stream));
  IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(gpu_->stream));
  return absl::OkStatus();
}

absl::Status CudaVisionModel::AssembleImageInto(const float* features, int rows, int cols, float* embeddings) {
  const int64_t patches = int64_t{config_.grid()} * config_.grid();
  const int64_t feature_rows = (1 + int64_t{rows} * cols) * patches, bytes = feature_rows * config_.hidden_size * 4;
  IXC_RETURN_IF_ERROR(features_.Reserve(bytes, gpu_->stream, "ViT features"));
  IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(features_.data(), features, bytes, cudaMemcpyDefault, gpu_->stream));
  return Project(features_.as<float>(), feature_rows, patches, 0, rows, cols, embeddings);
}

absl::StatusOr<std::vector<float>> CudaVisionModel::EmbedImage(const float* crops, int rows, int cols) {
  const int count = 1 + rows * cols;
  const int64_t tokens = int64_t{config_.grid()} * config_.grid() + 1;
  IXC_RETURN_IF_ERROR(EncodeToDevice(crops, count));
  std::vector<float> embeddings(ImageTokenCount(config_, rows, cols) * llm_hidden_);
  IXC_RETURN_IF_ERROR(Project(features_.as<float>(), count * tokens, tokens, 1, rows, cols, embeddings.data()));
  return embeddings;
}

absl::Status CudaVisionModel::Project(const float* features, int64_t feature_rows, int64_t crop_stride,
                                      int64_t first_patch, int rows, int cols, float* embeddings) {
  const DType dtype = options_.dtype;
  const int64_t e = DTypeSize(dtype), hv = config_.hidden_size, merged = config_.merged_size(), h = llm_hidden_;
  cudaStream_t stream = gpu_->stream;
  const std::vector<int32_t> sources = ImageTokenSources(config_, rows, cols, crop_stride, first_patch);
  const int64_t tokens = static_cast<int64_t>(sources.size()) / 4;
  IXC_RETURN_IF_ERROR(sources_.Reserve(static_cast<int64_t>(sources.size()) * 4, stream, "image token sources"));
  IXC_RETURN_IF_ERROR(sequence_.Reserve(tokens * merged * e, stream, "image tokens"));
  IXC_RETURN_IF_ERROR(projected_.Reserve(tokens * h * e, stream, "vision_proj activations"));
  IXC_RETURN_IF_ERROR(embeddings_.Reserve(tokens * h * 4, stream, "image embeddings"));
  IXC_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(sources_.data(), sources.data(), sources.size() * 4, cudaMemcpyHostToDevice, stream));
  IXC_RETURN_IF_ERROR(kc::LaunchAssembleImageTokens(features, feature_rows, sources_.as<int32_t>(), sub_separator_,
                                                    global_separator_, dtype, sequence_.data(), tokens, hv, stream));
  // vision_proj: Linear, exact GELU (with the first Linear's bias), Linear.
  IXC_RETURN_IF_ERROR(Linear(sequence_.data(), proj1_, nullptr, projected_.data(), tokens, h, merged, dtype, false));
  IXC_RETURN_IF_ERROR(kc::LaunchGelu(dtype, projected_.data(), proj1_bias_, projected_.data(), tokens, h, stream));
  IXC_RETURN_IF_ERROR(
      Linear(projected_.data(), proj2_, proj2_bias_, embeddings_.data(), tokens, h, h, DType::kF32, false));
  IXC_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(embeddings, embeddings_.data(), tokens * h * 4, cudaMemcpyDefault, stream));
  // `sources` and the caller's buffer must outlive the copies.
  IXC_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  return absl::OkStatus();
}

absl::Status AttachCudaVision(VisionWeights& weights, const CudaVisionOptions& options) {
  IXC_ASSIGN_OR_RETURN(std::shared_ptr<CudaVisionModel> model, CudaVisionModel::Upload(weights, options));
  IXC_LOG(INFO) << "vision tower on CUDA device " << options.device << " in " << DTypeName(options.dtype) << ": "
                << model->weight_bytes() / (1 << 20) << " MiB of weights";
  weights.device = std::move(model);
  return absl::OkStatus();
}

}  // namespace ixc::model
