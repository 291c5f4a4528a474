#include "model/weights.h"

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/status_macros.h"

namespace ixc::model {
namespace {

// A 1-D tensor as f32: this rank's slice of it when the table splits it by rows.
absl::StatusOr<std::vector<float>> LoadVector(const Checkpoint& ckpt, const std::string& name, int64_t size,
                                              parallel::TpSlice tp = {}) {
  if (parallel::TpSplitOf(name) != parallel::Split::kRows) return ckpt.Floats(name, {size});
  return ckpt.Floats(name, {size}, size / tp.size * tp.rank, size / tp.size * (tp.rank + 1));
}

// The loader's context: the checkpoint and this rank's slice.
struct Loader {
  const Checkpoint& ckpt;
  parallel::TpSlice tp;
  std::vector<std::unique_ptr<std::vector<uint8_t>>>& owned;

  // `name`, shape-checked on the whole tensor, then sharded by the table.
  absl::StatusOr<TensorView> Tensor(const std::string& name, const std::vector<int64_t>& shape) {
    IXC_ASSIGN_OR_RETURN(TensorView view, ckpt.Tensor(name, shape));
    return parallel::ShardTensor(name, view, tp, owned);
  }
};

// Loads `prefix`.{A,B}.weight, if present, checking (rank, in) and (out, rank) with a shared rank.
absl::StatusOr<LoraPair> LoadLoraPair(Loader& loader, const std::string& prefix, int64_t out, int64_t in) {
  LoraPair pair;
  const std::string a_name = prefix + "_A.weight", b_name = prefix + "_B.weight";
  if (!loader.ckpt.Has(a_name) && !loader.ckpt.Has(b_name)) return pair;
  IXC_ASSIGN_OR_RETURN(TensorView a, loader.ckpt.Tensor(a_name));
  if (a.rank != 2 || a.dim(1) != in) {
    return absl::InvalidArgumentError(absl::StrCat(loader.ckpt.directory(), ": tensor '", a_name, "' is ",
                                                   a.ShapeString(), ", expected (rank, ", in, ")"));
  }
  IXC_ASSIGN_OR_RETURN(pair.a, loader.Tensor(a_name, {a.dim(0), in}));
  IXC_ASSIGN_OR_RETURN(pair.b, loader.Tensor(b_name, {out, a.dim(0)}));
  return pair;
}

absl::StatusOr<LinearWeights> LoadLinear(Loader& loader, const std::string& prefix, int64_t out, int64_t in,
                                         bool bias) {
  LinearWeights linear;
  IXC_ASSIGN_OR_RETURN(linear.weight, loader.Tensor(prefix + ".weight", {out, in}));
  if (bias) {
    IXC_ASSIGN_OR_RETURN(linear.bias, LoadVector(loader.ckpt, prefix + ".bias", out, loader.tp));
  }
  IXC_ASSIGN_OR_RETURN(linear.plora, LoadLoraPair(loader, prefix + ".Plora", out, in));
  IXC_ASSIGN_OR_RETURN(linear.web, LoadLoraPair(loader, prefix + ".lora_web", out, in));
  IXC_ASSIGN_OR_RETURN(linear.sft, LoadLoraPair(loader, prefix + ".lora_sft", out, in));
  IXC_ASSIGN_OR_RETURN(linear.dpo, LoadLoraPair(loader, prefix + ".lora_dpo", out, in));
  return linear;
}

// A LoRA set must be on every linear or on none; `present` reports which.
absl::Status CheckAllOrNone(const LlmWeights& weights, const std::string& set,
                            const LoraPair LinearWeights::*member, bool* present) {
  int with = 0, total = 0;
  std::string missing;
  for (size_t i = 0; i < weights.layers.size(); ++i) {
    const LayerWeights& layer = weights.layers[i];
    const std::pair<const LinearWeights*, const char*> linears[] = {
        {&layer.attn_qkv, "attention.wqkv"}, {&layer.attn_out, "attention.wo"}, {&layer.ffn_gate, "feed_forward.w1"},
        {&layer.ffn_up, "feed_forward.w3"}, {&layer.ffn_down, "feed_forward.w2"}};
    for (const auto& [linear, name] : linears) {
      ++total;
      if ((linear->*member).present()) {
        ++with;
      } else if (missing.empty()) {
        missing = absl::StrCat("model.layers.", i, ".", name, ".", set, "_A.weight");
      }
    }
  }
  *present = with > 0;
  if (with != 0 && with != total) {
    return absl::InvalidArgumentError(absl::StrCat(weights.checkpoint.directory(), ": the ", set, " set is on ", with,
                                                   " of ", total, " linears; missing e.g. '", missing, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LoraMode> LoraModeFromName(const std::string& name) {
  if (name == "base") return LoraMode::kBase;
  if (name == "web") return LoraMode::kWeb;
  if (name == "write") return LoraMode::kWrite;
  return absl::InvalidArgumentError(absl::StrCat("unknown LoRA mode '", name, "' (base, web or write)"));
}

absl::StatusOr<LlmWeights> LoadLlmWeights(const std::string& directory, parallel::TpSlice tp) {
  LlmWeights weights;
  IXC_ASSIGN_OR_RETURN(weights.checkpoint, Checkpoint::Open(directory));
  IXC_ASSIGN_OR_RETURN(weights.config, LoadLlmConfig(directory));
  const LlmConfig& c = weights.config;
  const Checkpoint& ckpt = weights.checkpoint;
  const int64_t hidden = c.hidden_size, ffn = c.intermediate_size;
  if (c.num_kv_heads % tp.size != 0 || c.intermediate_size % tp.size != 0 || c.vocab_size % tp.size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        directory, ": tensor parallelism of ", tp.size, " needs it to divide num_key_value_heads (", c.num_kv_heads,
        "), intermediate_size (", c.intermediate_size, ") and vocab_size (", c.vocab_size, ")"));
  }
  weights.tp = tp;
  weights.shard = c;
  weights.shard.num_heads /= tp.size;
  weights.shard.num_kv_heads /= tp.size;
  weights.shard.intermediate_size /= tp.size;
  weights.shard.vocab_size /= tp.size;
  Loader loader{ckpt, tp, weights.owned};

  IXC_ASSIGN_OR_RETURN(weights.tok_embeddings, ckpt.Tensor("model.tok_embeddings.weight", {c.vocab_size, hidden}));
  if (c.tie_word_embeddings) {
    weights.output = parallel::SliceRows(weights.tok_embeddings, tp);
  } else {
    IXC_ASSIGN_OR_RETURN(weights.output, loader.Tensor("output.weight", {c.vocab_size, hidden}));
  }
  IXC_ASSIGN_OR_RETURN(weights.final_norm, LoadVector(ckpt, "model.norm.weight", hidden));

  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    LayerWeights layer;
    IXC_ASSIGN_OR_RETURN(layer.attn_norm, LoadVector(ckpt, p + "attention_norm.weight", hidden));
    IXC_ASSIGN_OR_RETURN(layer.attn_qkv, LoadLinear(loader, p + "attention.wqkv", c.qkv_size(), hidden, c.bias));
    IXC_ASSIGN_OR_RETURN(layer.attn_out, LoadLinear(loader, p + "attention.wo", hidden, hidden, c.bias));
    IXC_ASSIGN_OR_RETURN(layer.ffn_norm, LoadVector(ckpt, p + "ffn_norm.weight", hidden));
    IXC_ASSIGN_OR_RETURN(layer.ffn_gate, LoadLinear(loader, p + "feed_forward.w1", ffn, hidden, false));
    IXC_ASSIGN_OR_RETURN(layer.ffn_up, LoadLinear(loader, p + "feed_forward.w3", ffn, hidden, false));
    IXC_ASSIGN_OR_RETURN(layer.ffn_down, LoadLinear(loader, p + "feed_forward.w2", hidden, ffn, false));
    weights.layers.push_back(std::move(layer));
  }

  IXC_RETURN_IF_ERROR(CheckAllOrNone(weights, "Plora", &LinearWeights::plora, &weights.has_plora));
  bool has_sft = false, has_dpo = false;
  IXC_RETURN_IF_ERROR(CheckAllOrNone(weights, "lora_web", &LinearWeights::web, &weights.has_web_lora));
  IXC_RETURN_IF_ERROR(CheckAllOrNone(weights, "lora_sft", &LinearWeights::sft, &has_sft));
  IXC_RETURN_IF_ERROR(CheckAllOrNone(weights, "lora_dpo", &LinearWeights::dpo, &has_dpo));
  if (has_sft != has_dpo) {
    return absl::InvalidArgumentError(absl::StrCat(directory, ": the write LoRA needs both lora_sft and lora_dpo; only ",
                                                   has_sft ? "lora_sft" : "lora_dpo", " is there"));
  }
  weights.has_write_lora = has_sft;
  if (c.architecture == Architecture::kInternLMXComposer2 && !weights.has_plora) {
    return absl::InvalidArgumentError(absl::StrCat(
        directory, ": InternLMXComposer2ForCausalLM needs PLoRA, but 'model.layers.0.attention.wqkv.Plora_A.weight' "
                   "is missing"));
  }
  IXC_LOG(INFO) << "loaded " << directory << ": " << c.num_layers << " layers, hidden " << hidden << ", heads "
                << c.num_heads << "/" << c.num_kv_heads << ", vocab " << c.vocab_size << ", weights "
                << DTypeName(weights.tok_embeddings.dtype) << (weights.has_plora ? ", PLoRA" : "")
                << (weights.has_web_lora ? ", web LoRA" : "") << (weights.has_write_lora ? ", write LoRA" : "")
                << (tp.size > 1 ? absl::StrCat(", TP slice ", tp.rank, "/", tp.size) : "");
  return weights;
}

}  // namespace ixc::model
