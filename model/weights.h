// File: model/weights.h
//
// The InternLM2 / IXC-2.5 language-model weights as plain structs of views into the memory-mapped checkpoint,
// loaded by their checkpoint names (spec 1.2). Large matrices stay in the checkpoint's dtype and are read in place;
// the small vectors (norm weights, biases) are converted to f32 once.
//
//   IXC_ASSIGN_OR_RETURN(LlmWeights weights, LoadLlmWeights("/models/ixc25"));
//   weights.layers[3].attn_qkv.weight  // BF16[6144, 4096], wqkv packed by KV group (spec 1.3)
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/safetensors.h"
#include "core/tensor_view.h"
#include "model/config.h"
#include "parallel/shard.h"

namespace ixc::model {

class DeviceLanguageModel;  // model/language_model.h

// The extra LoRA sets of IXC-2.5 (spec 7), chosen per request: none (chat), `web` (webpages), or `write`
// (articles: the sft and dpo sets together). They apply to every token, unscaled, on top of the base weight.
enum class LoraMode { kBase, kWeb, kWrite };

absl::StatusOr<LoraMode> LoraModeFromName(const std::string& name);  // "base" | "web" | "write"

// A low-rank pair: y += B . (A . x). Empty views when the checkpoint has no such pair.
struct LoraPair {
  TensorView a;  // (rank, in_features)
  TensorView b;  // (out_features, rank)
  bool present() const { return !a.empty(); }
};

struct LinearWeights {
  TensorView weight;        // (out_features, in_features)
  std::vector<float> bias;  // (out_features) or empty
  LoraPair plora;           // image rows only (spec 2)
  LoraPair web, sft, dpo;   // task LoRAs (spec 7)
};

struct LayerWeights {
  std::vector<float> attn_norm;  // (hidden)
  LinearWeights attn_qkv;        // (qkv_size, hidden), packed per KV group: q x group, k, v (spec 1.3)
  LinearWeights attn_out;        // (hidden, hidden)
  std::vector<float> ffn_norm;   // (hidden)
  LinearWeights ffn_gate;        // w1 (intermediate, hidden)
  LinearWeights ffn_up;          // w3 (intermediate, hidden)
  LinearWeights ffn_down;        // w2 (hidden, intermediate)
};

struct LlmWeights {
  LlmConfig config;               // the model's dimensions
  LlmConfig shard;                // this rank's: heads, KV heads, intermediate and vocab divided by the TP size
  parallel::TpSlice tp;           // which slice this rank holds (architecture section 5, parallel/shard.h)
  Checkpoint checkpoint;          // owns the mappings every view points into
  std::vector<std::unique_ptr<std::vector<uint8_t>>> owned;  // column slices, copied out of the mapping
  TensorView tok_embeddings;      // (vocab, hidden)
  TensorView output;              // (vocab, hidden); tok_embeddings when tied
  std::vector<float> final_norm;  // (hidden)
  std::vector<LayerWeights> layers;
  bool has_plora = false;
  bool has_web_lora = false;
  bool has_write_lora = false;
  // Set when the weights were also uploaded to an accelerator (--device cuda): forward calls then run there.
  std::shared_ptr<DeviceLanguageModel> device;
};

// Loads config.json and every language-model tensor of `directory`, checking each shape against the config, and
// keeps this rank's tensor-parallel slice of each (all of it when tp.size is 1). An IXC-2.5 checkpoint must carry
// PLoRA on every linear; the task LoRAs are optional (all or none per set).
absl::StatusOr<LlmWeights> LoadLlmWeights(const std::string& directory, parallel::TpSlice tp = {});

}  // namespace ixc::model
