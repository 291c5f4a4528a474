#include "model/vision_encoder.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/ops.h"

namespace ixc::model {
namespace {

void AddBias(float* x, const std::vector<float>& bias, int64_t rows) {
  const int64_t n = static_cast<int64_t>(bias.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < n; ++c) x[r * n + c] += bias[c];
  }
}

// y (rows, out) = x W^T + b
void LinearWithBias(const float* x, TensorView w, const std::vector<float>& bias, float* y, int64_t rows) {
  kernels::Linear(x, w, y, rows, /*accumulate=*/false);
  AddBias(y, bias, rows);
}

}  // namespace

absl::StatusOr<VisionWeights> LoadVisionWeights(const std::string& directory, int llm_hidden) {
  VisionWeights w;
  IXC_ASSIGN_OR_RETURN(w.checkpoint, Checkpoint::Open(directory));
  IXC_ASSIGN_OR_RETURN(w.config, LoadVisionConfig(directory));
  w.llm_hidden = llm_hidden;
  const VisionConfig& c = w.config;
  const Checkpoint& ckpt = w.checkpoint;
  const int64_t hv = c.hidden_size, patch = c.patch_size, positions = c.grid() * c.grid() + 1;
  const std::string p = "vit.vision_tower.vision_model.";

  IXC_ASSIGN_OR_RETURN(TensorView conv, ckpt.Tensor(p + "embeddings.patch_embedding.weight", {hv, 3, patch, patch}));
  w.patch_embedding = conv.Reshape({hv, 3 * patch * patch});
  IXC_ASSIGN_OR_RETURN(w.class_embedding, ckpt.Floats(p + "embeddings.class_embedding", {hv}));
  IXC_ASSIGN_OR_RETURN(w.position_embedding,
                       ckpt.Floats(p + "embeddings.position_embedding.weight", {positions, hv}));
  IXC_ASSIGN_OR_RETURN(w.pre_ln_weight, ckpt.Floats(p + "pre_layrnorm.weight", {hv}));
  IXC_ASSIGN_OR_RETURN(w.pre_ln_bias, ckpt.Floats(p + "pre_layrnorm.bias", {hv}));
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string l = absl::StrCat(p, "encoder.layers.", i, ".");
    VitLayerWeights layer;
    IXC_ASSIGN_OR_RETURN(layer.ln1_weight, ckpt.Floats(l + "layer_norm1.weight", {hv}));
    IXC_ASSIGN_OR_RETURN(layer.ln1_bias, ckpt.Floats(l + "layer_norm1.bias", {hv}));
    IXC_ASSIGN_OR_RETURN(layer.ln2_weight, ckpt.Floats(l + "layer_norm2.weight", {hv}));
    IXC_ASSIGN_OR_RETURN(layer.ln2_bias, ckpt.Floats(l + "layer_norm2.bias", {hv}));
    const std::pair<TensorView*, std::vector<float>*> projections[] = {
        {&layer.q, &layer.q_bias}, {&layer.k, &layer.k_bias}, {&layer.v, &layer.v_bias}, {&layer.out, &layer.out_bias}};
    const char* names[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    for (int j = 0; j < 4; ++j) {
      IXC_ASSIGN_OR_RETURN(*projections[j].first, ckpt.Tensor(l + "self_attn." + names[j] + ".weight", {hv, hv}));
      IXC_ASSIGN_OR_RETURN(*projections[j].second, ckpt.Floats(l + "self_attn." + names[j] + ".bias", {hv}));
    }
    IXC_ASSIGN_OR_RETURN(layer.fc1, ckpt.Tensor(l + "mlp.fc1.weight", {c.intermediate_size, hv}));
    IXC_ASSIGN_OR_RETURN(layer.fc1_bias, ckpt.Floats(l + "mlp.fc1.bias", {c.intermediate_size}));
    IXC_ASSIGN_OR_RETURN(layer.fc2, ckpt.Tensor(l + "mlp.fc2.weight", {hv, c.intermediate_size}));
    IXC_ASSIGN_OR_RETURN(layer.fc2_bias, ckpt.Floats(l + "mlp.fc2.bias", {hv}));
    w.layers.push_back(std::move(layer));
  }
  const int64_t merged = c.merged_size();
  IXC_ASSIGN_OR_RETURN(w.sub_separator, ckpt.Floats("plora_sub_GN", {1, 1, 1, merged}));
  IXC_ASSIGN_OR_RETURN(w.global_separator, ckpt.Floats("plora_glb_GN", {1, 1, merged}));
  IXC_ASSIGN_OR_RETURN(w.proj1, ckpt.Tensor("vision_proj.0.weight", {llm_hidden, merged}));
  IXC_ASSIGN_OR_RETURN(w.proj1_bias, ckpt.Floats("vision_proj.0.bias", {llm_hidden}));
  IXC_ASSIGN_OR_RETURN(w.proj2, ckpt.Tensor("vision_proj.2.weight", {llm_hidden, llm_hidden}));
  IXC_ASSIGN_OR_RETURN(w.proj2_bias, ckpt.Floats("vision_proj.2.bias", {llm_hidden}));
  return w;
}

absl::StatusOr<std::vector<float>> EncodeCrops(const VisionWeights& weights, const float* crops, int count) {
  if (count < 0) return absl::InvalidArgumentError(absl::StrCat("cannot encode ", count, " crops"));
  const int64_t patches = int64_t{weights.config.grid()} * weights.config.grid();
  // (count, patches, hv)
  std::vector<float> features(static_cast<size_t>(count) * patches * weights.config.hidden_size);
  IXC_RETURN_IF_ERROR(EncodeCropsInto(weights, crops, count, features.data()));
  return features;
}

absl::Status EncodeCropsInto(const VisionWeights& weights, const float* crops, int count, float* features) {
  if (count < 0) return absl::InvalidArgumentError(absl::StrCat("cannot encode ", count, " crops"));
  if (weights.device != nullptr) return weights.device->EncodeCropsInto(crops, count, features);
  const VisionConfig& c = weights.config;
  const int64_t hv = c.hidden_size, grid = c.grid(), patch = c.patch_size, size = c.image_size;
  const int64_t patches = grid * grid, tokens = patches + 1, patch_values = 3 * patch * patch;
  const int head_dim = static_cast<int>(hv / c.num_heads);
  std::vector<float> columns(patches * patch_values);                      // (patches, 3 * patch * patch)
  std::vector<float> x(tokens * hv), normed(tokens * hv), q(tokens * hv), k(tokens * hv), v(tokens * hv),
      attention(tokens * hv), projected(tokens * hv);
  std::vector<float> hidden(tokens * c.intermediate_size);
  for (int crop = 0; crop < count; ++crop) {
    const float* image = crops + static_cast<size_t>(crop) * 3 * size * size;  // (3, S, S)
    // Patch embedding as a GEMM: each patch's (channel, dy, dx) values in the conv kernel's order.
    for (int64_t py = 0; py < grid; ++py) {
      for (int64_t px = 0; px < grid; ++px) {
        float* column = columns.data() + (py * grid + px) * patch_values;
        for (int64_t ch = 0; ch < 3; ++ch) {
          for (int64_t dy = 0; dy < patch; ++dy) {
            std::memcpy(column + (ch * patch + dy) * patch, image + (ch * size + py * patch + dy) * size + px * patch,
                        patch * sizeof(float));
          }
        }
      }
    }
    std::copy(weights.class_embedding.begin(), weights.class_embedding.end(), x.begin());
    kernels::Linear(columns.data(), weights.patch_embedding, x.data() + hv, patches, /*accumulate=*/false);
    for (int64_t i = 0; i < tokens * hv; ++i) x[i] += weights.position_embedding[i];
    kernels::LayerNorm(x.data(), weights.pre_ln_weight.data(), weights.pre_ln_bias.data(), x.data(), tokens, hv,
                       c.layer_norm_eps);

    for (const VitLayerWeights& layer : weights.layers) {
      kernels::LayerNorm(x.data(), layer.ln1_weight.data(), layer.ln1_bias.data(), normed.data(), tokens, hv,
                         c.layer_norm_eps);
      LinearWithBias(normed.data(), layer.q, layer.q_bias, q.data(), tokens);
      LinearWithBias(normed.data(), layer.k, layer.k_bias, k.data(), tokens);
      LinearWithBias(normed.data(), layer.v, layer.v_bias, v.data(), tokens);
      kernels::SelfAttention(q.data(), k.data(), v.data(), attention.data(), tokens, c.num_heads, head_dim,
                             1.f / std::sqrt(static_cast<float>(head_dim)));
      LinearWithBias(attention.data(), layer.out, layer.out_bias, projected.data(), tokens);
      for (int64_t i = 0; i < tokens * hv; ++i) x[i] += projected[i];

      kernels::LayerNorm(x.data(), layer.ln2_weight.data(), layer.ln2_bias.data(), normed.data(), tokens, hv,
                         c.layer_norm_eps);
      LinearWithBias(normed.data(), layer.fc1, layer.fc1_bias, hidden.data(), tokens);
      if (c.quick_gelu) {
        kernels::QuickGelu(hidden.data(), hidden.data(), hidden.size());
      } else {
        kernels::Gelu(hidden.data(), hidden.data(), hidden.size());
      }
      LinearWithBias(hidden.data(), layer.fc2, layer.fc2_bias, projected.data(), tokens);
      for (int64_t i = 0; i < tokens * hv; ++i) x[i] += projected[i];
    }
    std::copy(x.begin() + hv, x.end(), features + static_cast<size_t>(crop) * patches * hv);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> EmbedImage(const VisionWeights& weights, const float* crops, int rows, int cols) {
  if (rows <= 0 || cols <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("an image needs a tile grid of at least 1x1, not ", rows, "x", cols));
  }
  if (weights.device != nullptr) return weights.device->EmbedImage(crops, rows, cols);
  IXC_ASSIGN_OR_RETURN(std::vector<float> features, EncodeCrops(weights, crops, 1 + rows * cols));
  return AssembleImage(weights, features, rows, cols);
}

absl::StatusOr<std::vector<float>> AssembleImage(const VisionWeights& weights, const std::vector<float>& features,
                                                 int rows, int cols) {
  const int64_t patches = int64_t{weights.config.grid()} * weights.config.grid();
  if (rows <= 0 || cols <= 0 ||
      static_cast<int64_t>(features.size()) != (1 + int64_t{rows} * cols) * patches * weights.config.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat("features of ", features.size(), " values do not make a ", rows,
                                                   "x", cols, " image"));
  }
  std::vector<float> embeddings(ImageTokenCount(weights.config, rows, cols) * weights.llm_hidden);
  IXC_RETURN_IF_ERROR(AssembleImageInto(weights, features.data(), rows, cols, embeddings.data()));
  return embeddings;
}

absl::Status AssembleImageInto(const VisionWeights& weights, const float* features, int rows, int cols,
                               float* embeddings) {
  if (rows <= 0 || cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("an image needs a tile grid of at least 1x1, not ", rows, "x", cols));
  }
  if (weights.device != nullptr) return weights.device->AssembleImageInto(features, rows, cols, embeddings);
  const VisionConfig& c = weights.config;
  const int64_t hv = c.hidden_size, patches = int64_t{c.grid()} * c.grid();
  const std::vector<int32_t> sources = ImageTokenSources(c, rows, cols, patches, 0);
  const int64_t tokens = static_cast<int64_t>(sources.size()) / 4;
  std::vector<float> sequence(tokens * c.merged_size());  // (tokens, 4 hv)
  kernels::AssembleImageTokens(features, sources.data(), weights.sub_separator.data(), weights.global_separator.data(),
                               sequence.data(), tokens, hv);

  // vision_proj: Linear, exact GELU, Linear.
  std::vector<float> hidden(tokens * weights.llm_hidden);
  LinearWithBias(sequence.data(), weights.proj1, weights.proj1_bias, hidden.data(), tokens);
  kernels::Gelu(hidden.data(), hidden.data(), hidden.size());
  LinearWithBias(hidden.data(), weights.proj2, weights.proj2_bias, embeddings, tokens);
  return absl::OkStatus();
}

int64_t ImageTokenCount(const VisionConfig& config, int rows, int cols) {
  return static_cast<int64_t>(ImageTokenSources(config, rows, cols, /*crop_stride=*/0, /*first_patch=*/0).size()) / 4;
}

std::vector<int32_t> ImageTokenSources(const VisionConfig& config, int rows, int cols, int64_t crop_stride,
                                       int64_t first_patch) {
  const int64_t grid = config.grid(), side = config.merged_side();
  std::vector<int32_t> sources;  // (tokens, 4)
  sources.reserve(((int64_t{rows} * cols + 1) * side * side + 1 + (rows + 1) * side) * 4);
  auto merged_token = [&](int64_t crop, int64_t y, int64_t x) {
    for (int64_t dy = 0; dy < 2; ++dy) {
      for (int64_t dx = 0; dx < 2; ++dx) {
        sources.push_back(static_cast<int32_t>(crop * crop_stride + first_patch + (2 * y + dy) * grid + 2 * x + dx));
      }
    }
  };
  auto separator = [&](int32_t marker) { sources.insert(sources.end(), 4, marker); };
  // The global view's rows, each ended by sub_GN; glb_GN; the stitched tile grid's rows, each ended by sub_GN.
  for (int64_t y = 0; y < side; ++y) {
    for (int64_t x = 0; x < side; ++x) merged_token(0, y, x);
    separator(kernels::kSubSeparatorSource);
  }
  separator(kernels::kGlobalSeparatorSource);
  for (int64_t y = 0; y < rows * side; ++y) {
    for (int64_t x = 0; x < cols * side; ++x) merged_token(1 + (y / side) * cols + x / side, y % side, x % side);
    separator(kernels::kSubSeparatorSource);
  }
  return sources;
}

}  // namespace ixc::model
