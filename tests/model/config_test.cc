// config.json parsing and weight loading: what loads, and the message for each thing that must stop start-up.
#include <filesystem>
#include <fstream>
#include <functional>

#include "model/generation.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ixc::model {
namespace {

nlohmann::json BaseConfig() {
  return nlohmann::json::parse(R"({
    "architectures": ["InternLMXComposer2ForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 160, "vocab_size": 512,
    "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "rope_scaling": {"type": "dynamic", "factor": 2.0},
    "max_position_embeddings": 64, "bias": false, "hidden_act": "silu"})");
}

std::string ErrorOf(const nlohmann::json& config) {
  auto parsed = ParseLlmConfig(config.dump(), "config.json");
  EXPECT_FALSE(parsed.ok());
  return parsed.ok() ? "" : std::string(parsed.status().message());
}

TEST(LlmConfigTest, ReadsEveryValue) {
  auto config = ParseLlmConfig(BaseConfig().dump(), "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, Architecture::kInternLMXComposer2);
  EXPECT_EQ(config->head_dim, 16);
  EXPECT_EQ(config->q_heads_per_kv_head(), 2);
  EXPECT_EQ(config->qkv_size(), (4 + 2 * 2) * 16);
  EXPECT_EQ(config->rope_scaling, RopeScaling::kDynamic);
  EXPECT_EQ(config->rope_scaling_factor, 2.0);
  EXPECT_EQ(config->rope_theta, 1e6);
  EXPECT_FLOAT_EQ(config->rms_norm_eps, 1e-5f);
  EXPECT_FALSE(config->bias);
  nlohmann::json text_only = BaseConfig();
  text_only["architectures"] = {"InternLM2ForCausalLM"};
  text_only["rope_scaling"] = nullptr;
  config = ParseLlmConfig(text_only.dump(), "config.json");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->architecture, Architecture::kInternLM2);
  EXPECT_EQ(config->rope_scaling, RopeScaling::kNone);
}

TEST(LlmConfigTest, UnsupportedValuesNameTheKey) {
  nlohmann::json c = BaseConfig();
  c["architectures"] = {"LlavaForCausalLM"};
  EXPECT_NE(ErrorOf(c).find("key 'architectures'"), std::string::npos);
  c = BaseConfig();
  c.erase("hidden_size");
  EXPECT_NE(ErrorOf(c).find("key 'hidden_size': missing"), std::string::npos);
  c = BaseConfig();
  c["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  EXPECT_NE(ErrorOf(c).find("key 'rope_scaling.type': 'yarn'"), std::string::npos);
  c = BaseConfig();
  c["rope_scaling"] = {{"type", "dynamic"}};
  EXPECT_NE(ErrorOf(c).find("rope_scaling.factor"), std::string::npos);
  c = BaseConfig();
  c["num_key_value_heads"] = 3;
  EXPECT_NE(ErrorOf(c).find("key 'num_key_value_heads'"), std::string::npos);
  c = BaseConfig();
  c["hidden_act"] = "gelu";
  EXPECT_NE(ErrorOf(c).find("key 'hidden_act'"), std::string::npos);
  c = BaseConfig();
  c["vocab_size"] = "many";
  EXPECT_NE(ErrorOf(c).find("key 'vocab_size'"), std::string::npos);
  EXPECT_NE(std::string(ParseLlmConfig("{", "dir/config.json").status().message()).find("dir/config.json"),
            std::string::npos);
}

// Weight loading on a copy of a golden checkpoint whose config or files we break.
class WeightsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("ixc_weights_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::copy(std::string(IXC_GOLDEN_MODELS_DIR) + "/internlm2_bias_linear_rope", dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void EditConfig(const std::function<void(nlohmann::json&)>& edit) {
    std::ifstream in(dir_ / "config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    edit(config);
    std::ofstream(dir_ / "config.json") << config.dump();
  }
  std::filesystem::path dir_;
};

TEST_F(WeightsTest, ShapeMismatchNamesTensorAndFile) {
  EditConfig([](nlohmann::json& c) { c["intermediate_size"] = 161; });
  auto weights = LoadLlmWeights(dir_.string());
  ASSERT_FALSE(weights.ok());
  EXPECT_NE(weights.status().message().find("model.safetensors: tensor 'model.layers.0.feed_forward.w1.weight' has "
                                            "shape [160, 64], the config implies [161, 64]"),
            std::string::npos)
      << weights.status();
}

TEST_F(WeightsTest, MissingTensorIsNamed) {
  EditConfig([](nlohmann::json& c) { c["num_hidden_layers"] = 3; });
  auto weights = LoadLlmWeights(dir_.string());
  ASSERT_FALSE(weights.ok());
  EXPECT_NE(weights.status().message().find("model.layers.2.attention_norm.weight"), std::string::npos)
      << weights.status();
}

TEST_F(WeightsTest, XComposerWithoutPloraIsRefused) {
  EditConfig([](nlohmann::json& c) { c["architectures"] = {"InternLMXComposer2ForCausalLM"}; });
  auto weights = LoadLlmWeights(dir_.string());
  ASSERT_FALSE(weights.ok());
  EXPECT_NE(weights.status().message().find("Plora_A"), std::string::npos) << weights.status();
}

TEST_F(WeightsTest, RequestsTheCheckpointCannotServeAreRefused) {
  auto weights = LoadLlmWeights(dir_.string());
  ASSERT_TRUE(weights.ok()) << weights.status();
  KvCache cache(weights->config, 4, 8);
  SequenceKv seq;
  std::vector<float> logits;
  const std::vector<int32_t> ids = {1, 2, 3};
  const std::vector<uint8_t> mask = {0, 1, 1};
  ForwardInput input;
  input.ids = ids;
  input.lora = LoraMode::kWeb;
  EXPECT_NE(LanguageModelForward(*weights, input, seq, cache, &logits).message().find("lora_web"), std::string::npos);
  input.lora = LoraMode::kBase;
  input.image_mask = mask;
  EXPECT_NE(LanguageModelForward(*weights, input, seq, cache, &logits).message().find("PLoRA"), std::string::npos);
  const std::vector<int32_t> bad_ids = {1, 512};
  input.image_mask = {};
  input.ids = bad_ids;
  EXPECT_NE(LanguageModelForward(*weights, input, seq, cache, &logits).message().find("token id 512"),
            std::string::npos);
}

TEST_F(WeightsTest, FullKvCacheIsAnErrorAndReturnsEveryBlock) {
  auto weights = LoadLlmWeights(dir_.string());
  ASSERT_TRUE(weights.ok());
  KvCache cache(weights->config, /*block_size=*/4, /*num_blocks=*/2);  // 8 tokens
  std::vector<int32_t> prompt(6, 5);
  ForwardInput input;
  input.ids = prompt;
  GenerationOptions options;
  options.max_new_tokens = 5;  // the 9th token does not fit
  auto result = Generate(*weights, input, options, cache);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cache.free_blocks(), 2);
  options.max_new_tokens = 3;
  result = Generate(*weights, input, options, cache);
  EXPECT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->ids.size(), 3u);
}

TEST_F(WeightsTest, ContextLimitStopsGenerationAndRejectsLongPrompts) {
  auto weights = LoadLlmWeights(dir_.string());
  ASSERT_TRUE(weights.ok());
  KvCache cache(weights->config, 4, 16);
  std::vector<int32_t> prompt(6, 5);
  ForwardInput input;
  input.ids = prompt;
  GenerationOptions options;
  options.max_new_tokens = 20;
  options.max_context = 10;
  auto result = Generate(*weights, input, options, cache);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->ids.size(), 4u);
  EXPECT_EQ(result->finish_reason, "length");
  options.max_context = 6;
  result = Generate(*weights, input, options, cache);
  ASSERT_FALSE(result.ok());
  EXPECT_NE(result.status().message().find("the prompt has 6 tokens; the context holds 6"), std::string::npos);
}

}  // namespace
}  // namespace ixc::model
