// File: tests/model/golden_cases.h
//
// The language-model golden cases (tools/reference/language_model_goldens.py, tests/data/golden/<case>/) and their
// inputs, shared by the CPU golden test and the GPU-vs-CPU test.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/npy.h"
#include "model/weights.h"
#include "nlohmann/json.hpp"

namespace ixc::testing {

// To add a case: add it to CASES in the reference script, regenerate the goldens, add its name here.
constexpr const char* kLanguageModelCases[] = {
    "tiny_f32",        "gqa4_bf16",          "tiny_plora",   "gqa4_plora_f16", "gqa4_dynamic_ntk", "tiny_lora_web",
    "tiny_lora_write", "kv4_bias_plora_web", "internlm2_bias_linear_rope", "d128_gqa4_plora_bf16"};

inline std::string GoldenDir(const std::string& name) {
  return std::string(IXC_SOURCE_DIR) + "/tests/data/golden/" + name;
}

// A case's prompt: ids, the image-row mask (empty when the case has none) and the LoRA mode.
struct GoldenPrompt {
  std::vector<int32_t> ids;
  std::vector<uint8_t> image_mask;
  model::LoraMode lora = model::LoraMode::kBase;
};

inline GoldenPrompt LoadGoldenPrompt(const std::string& name) {
  const std::string dir = GoldenDir(name);
  GoldenPrompt prompt;
  auto ids = ReadNpy(dir + "/prompt_ids.npy");
  EXPECT_TRUE(ids.ok()) << ids.status();
  if (ids.ok()) prompt.ids.assign(ids->ints.begin(), ids->ints.end());
  if (std::filesystem::exists(dir + "/image_mask.npy")) {
    auto mask = ReadNpy(dir + "/image_mask.npy");
    EXPECT_TRUE(mask.ok()) << mask.status();
    if (mask.ok()) prompt.image_mask.assign(mask->ints.begin(), mask->ints.end());
  }
  std::ifstream case_file(dir + "/case.json");
  prompt.lora = *model::LoraModeFromName(nlohmann::json::parse(case_file)["lora_mode"].get<std::string>());
  return prompt;
}

}  // namespace ixc::testing
