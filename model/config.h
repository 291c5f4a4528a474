// File: model/config.h
//
// The language-model hyperparameters, read from a checkpoint's config.json. Both IXC-2.5
// (`InternLMXComposer2ForCausalLM`) and text-only InternLM2 (`InternLM2ForCausalLM`) checkpoints load. Keys the
// model needs and cannot default are required; optional keys take the defaults of HF's InternLM2Config. Anything we
// cannot run stops start-up with an error naming the key.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace ixc::model {

enum class Architecture { kInternLMXComposer2, kInternLM2 };

enum class RopeScaling { kNone, kLinear, kDynamic };

struct LlmConfig {
  Architecture architecture = Architecture::kInternLM2;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;  // hidden_size / num_heads
  int intermediate_size = 0;
  int vocab_size = 0;
  float rms_norm_eps = 1e-6f;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling = RopeScaling::kNone;
  double rope_scaling_factor = 1.0;
  int max_position_embeddings = 2048;
  bool bias = true;  // wqkv and wo carry biases
  bool tie_word_embeddings = false;
  int bos_token_id = 1;
  int eos_token_id = 2;
  int pad_token_id = 0;

  int q_heads_per_kv_head() const { return num_heads / num_kv_heads; }
  // Rows of the fused wqkv weight: (heads + 2 * kv_heads) * head_dim.
  int qkv_size() const { return (num_heads + 2 * num_kv_heads) * head_dim; }
};

// The CLIP vision tower (spec 3.2). IXC-2.5 loads it from its own config (internlm-xcomposer2d5-clip); when the
// checkpoint's config.json has no `vision_config`, these ViT-L/14 at 560 px values apply.
struct VisionConfig {
  int hidden_size = 1024;
  int intermediate_size = 4096;
  int num_layers = 24;
  int num_heads = 16;
  int image_size = 560;  // also the HD transform's tile
  int patch_size = 14;
  bool quick_gelu = true;  // hidden_act: quick_gelu, or gelu (exact)
  float layer_norm_eps = 1e-5f;

  int grid() const { return image_size / patch_size; }        // patches per side: 40
  int merged_side() const { return grid() / 2; }              // tokens per crop side after the 2x2 merge: 20
  int merged_size() const { return 4 * hidden_size; }         // width of a merged token: 4096
};

// The IXC-2.5 7B language model's shape (spec section 1; RoPE as the spec reads it): for benchmarks at the real size
// and for sizing, where no checkpoint is at hand.
LlmConfig Ixc25SevenBConfig();

// Parses config.json text; `source` names the file in errors.
absl::StatusOr<LlmConfig> ParseLlmConfig(const std::string& json_text, const std::string& source);
// Reads `directory`/config.json.
absl::StatusOr<LlmConfig> LoadLlmConfig(const std::string& directory);

absl::StatusOr<VisionConfig> ParseVisionConfig(const std::string& json_text, const std::string& source);
absl::StatusOr<VisionConfig> LoadVisionConfig(const std::string& directory);

}  // namespace ixc::model
