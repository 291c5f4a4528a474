#include "model/config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace ixc::model {
namespace {

using nlohmann::json;

class ConfigReader {
 public:
  ConfigReader(const json& root, const std::string& source) : root_(root), source_(source) {}

  absl::Status Error(const std::string& key, const std::string& why) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": key '", key, "': ", why));
  }

  absl::Status RequiredInt(const std::string& key, int* out) const {
    if (!root_.contains(key)) return Error(key, "missing");
    return OptionalInt(key, out);
  }
  absl::Status OptionalInt(const std::string& key, int* out) const {
    if (!root_.contains(key) || root_[key].is_null()) return absl::OkStatus();
    if (!root_[key].is_number_integer() || root_[key].get<int64_t>() <= 0 || root_[key].get<int64_t>() > (1 << 30)) {
      return Error(key, "must be a positive integer");
    }
    *out = root_[key].get<int>();
    return absl::OkStatus();
  }
  absl::Status OptionalNumber(const std::string& key, double* out) const {
    if (!root_.contains(key) || root_[key].is_null()) return absl::OkStatus();
    if (!root_[key].is_number() || root_[key].get<double>() <= 0) return Error(key, "must be a positive number");
    *out = root_[key].get<double>();
    return absl::OkStatus();
  }
  absl::Status OptionalBool(const std::string& key, bool* out) const {
    if (!root_.contains(key) || root_[key].is_null()) return absl::OkStatus();
    if (!root_[key].is_boolean()) return Error(key, "must be true or false");
    *out = root_[key].get<bool>();
    return absl::OkStatus();
  }

 private:
  const json& root_;
  const std::string& source_;
};

}  // namespace

LlmConfig Ixc25SevenBConfig() {
  LlmConfig c;
  c.architecture = Architecture::kInternLMXComposer2;
  c.hidden_size = 4096;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.intermediate_size = 14336;
  c.vocab_size = 92544;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 1000000;
  c.rope_scaling = RopeScaling::kDynamic;
  c.rope_scaling_factor = 2.0;
  c.max_position_embeddings = 32768;
  c.bias = false;
  return c;
}

absl::StatusOr<LlmConfig> ParseLlmConfig(const std::string& json_text, const std::string& source) {
  const json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  ConfigReader reader(root, source);
  LlmConfig config;

  if (!root.contains("architectures") || !root["architectures"].is_array() || root["architectures"].empty() ||
      !root["architectures"][0].is_string()) {
    return reader.Error("architectures", "missing or not a list of names");
  }
  const std::string arch = root["architectures"][0].get<std::string>();
  if (arch == "InternLMXComposer2ForCausalLM") {
    config.architecture = Architecture::kInternLMXComposer2;
  } else if (arch == "InternLM2ForCausalLM") {
    config.architecture = Architecture::kInternLM2;
  } else {
    return reader.Error("architectures", absl::StrCat("'", arch,
                                                      "' is not supported (InternLMXComposer2ForCausalLM or "
                                                      "InternLM2ForCausalLM)"));
  }

  if (auto s = reader.RequiredInt("hidden_size", &config.hidden_size); !s.ok()) return s;
  if (auto s = reader.RequiredInt("num_hidden_layers", &config.num_layers); !s.ok()) return s;
  if (auto s = reader.RequiredInt("num_attention_heads", &config.num_heads); !s.ok()) return s;
  config.num_kv_heads = config.num_heads;
  if (auto s = reader.OptionalInt("num_key_value_heads", &config.num_kv_heads); !s.ok()) return s;
  if (auto s = reader.RequiredInt("intermediate_size", &config.intermediate_size); !s.ok()) return s;
  if (auto s = reader.RequiredInt("vocab_size", &config.vocab_size); !s.ok()) return s;
  if (auto s = reader.OptionalInt("max_position_embeddings", &config.max_position_embeddings); !s.ok()) return s;
  double eps = config.rms_norm_eps;
  if (auto s = reader.OptionalNumber("rms_norm_eps", &eps); !s.ok()) return s;
  config.rms_norm_eps = static_cast<float>(eps);
  if (auto s = reader.OptionalNumber("rope_theta", &config.rope_theta); !s.ok()) return s;
  if (auto s = reader.OptionalBool("bias", &config.bias); !s.ok()) return s;
  if (auto s = reader.OptionalBool("tie_word_embeddings", &config.tie_word_embeddings); !s.ok()) return s;
  for (auto [key, field] : {std::pair{"bos_token_id", &config.bos_token_id},
                            std::pair{"eos_token_id", &config.eos_token_id},
                            std::pair{"pad_token_id", &config.pad_token_id}}) {
    if (root.contains(key) && root[key].is_number_integer()) *field = root[key].get<int>();
  }

  if (root.contains("hidden_act") && root["hidden_act"] != "silu") {
    return reader.Error("hidden_act", "only 'silu' is supported");
  }
  if (root.contains("rope_scaling") && !root["rope_scaling"].is_null()) {
    const json& scaling = root["rope_scaling"];
    if (!scaling.is_object() || !scaling.contains("type") || !scaling["type"].is_string()) {
      return reader.Error("rope_scaling", "must be null or an object with a 'type'");
    }
    const std::string type = scaling["type"].get<std::string>();
    if (type == "dynamic") {
      config.rope_scaling = RopeScaling::kDynamic;
    } else if (type == "linear") {
      config.rope_scaling = RopeScaling::kLinear;
    } else {
      return reader.Error("rope_scaling.type", absl::StrCat("'", type, "' is not supported (dynamic or linear)"));
    }
    if (!scaling.contains("factor") || !scaling["factor"].is_number() || scaling["factor"].get<double>() < 1.0) {
      return reader.Error("rope_scaling.factor", "must be a number >= 1");
    }
    config.rope_scaling_factor = scaling["factor"].get<double>();
  }

  if (config.hidden_size % config.num_heads != 0) {
    return reader.Error("num_attention_heads", absl::StrCat(config.num_heads, " does not divide hidden_size ",
                                                            config.hidden_size));
  }
  if (config.num_heads % config.num_kv_heads != 0) {
    return reader.Error("num_key_value_heads", absl::StrCat(config.num_kv_heads,
                                                            " does not divide num_attention_heads ", config.num_heads));
  }
  config.head_dim = config.hidden_size / config.num_heads;
  if (config.head_dim % 2 != 0) return reader.Error("num_attention_heads", "head_dim must be even for RoPE");
  return config;
}

absl::StatusOr<VisionConfig> ParseVisionConfig(const std::string& json_text, const std::string& source) {
  const json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  }
  VisionConfig config;
  if (!root.contains("vision_config") || root["vision_config"].is_null()) return config;
  const json& vision = root["vision_config"];
  const std::string where = source + " vision_config";
  ConfigReader reader(vision, where);
  for (auto [key, field] : {std::pair{"hidden_size", &config.hidden_size},
                            std::pair{"intermediate_size", &config.intermediate_size},
                            std::pair{"num_hidden_layers", &config.num_layers},
                            std::pair{"num_attention_heads", &config.num_heads},
                            std::pair{"image_size", &config.image_size}, std::pair{"patch_size", &config.patch_size}}) {
    if (auto s = reader.OptionalInt(key, field); !s.ok()) return s;
  }
  double eps = config.layer_norm_eps;
  if (auto s = reader.OptionalNumber("layer_norm_eps", &eps); !s.ok()) return s;
  config.layer_norm_eps = static_cast<float>(eps);
  if (vision.contains("hidden_act")) {
    const json& act = vision["hidden_act"];
    if (act == "quick_gelu") {
      config.quick_gelu = true;
    } else if (act == "gelu") {
      config.quick_gelu = false;
    } else {
      return reader.Error("hidden_act", "only quick_gelu and gelu are supported");
    }
  }
  if (config.image_size % config.patch_size != 0 || config.grid() % 2 != 0) {
    return reader.Error("patch_size", absl::StrCat("image_size ", config.image_size, " / patch_size ",
                                                   config.patch_size, " must be an even whole number for the 2x2 merge"));
  }
  if (config.hidden_size % config.num_heads != 0) {
    return reader.Error("num_attention_heads", "must divide hidden_size");
  }
  return config;
}

namespace {

absl::StatusOr<std::string> ReadConfigText(const std::string& directory, std::string* path) {
  *path = (std::filesystem::path(directory) / "config.json").string();
  std::ifstream in(*path);
  if (!in) return absl::NotFoundError(absl::StrCat(*path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

absl::StatusOr<LlmConfig> LoadLlmConfig(const std::string& directory) {
  std::string path;
  auto text = ReadConfigText(directory, &path);
  if (!text.ok()) return text.status();
  return ParseLlmConfig(*text, path);
}

absl::StatusOr<VisionConfig> LoadVisionConfig(const std::string& directory) {
  std::string path;
  auto text = ReadConfigText(directory, &path);
  if (!text.ok()) return text.status();
  return ParseVisionConfig(*text, path);
}

}  // namespace ixc::model
