// The whole multimodal path against tools/reference/multimodal_goldens.py (Pillow, torch, transformers'
// CLIPVisionModel and LlamaForCausalLM): decode, HD transform, crops, ViT, merge, separators, vision_proj, the
// interleaved input with im_mask, the decoder with PLoRA on vision rows. Logits within 1e-4, same greedy tokens.
//
// To add a case: add it to CASES in the reference script, regenerate, and add its name to kCases below.
#include <filesystem>
#include <fstream>

#include "coordinator/media/hd_transform.h"
#include "coordinator/media/video.h"
#include "core/npy.h"
#include "model/generation.h"
#include "model/multimodal_input.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ixc::model {
namespace {

constexpr const char* kCases[] = {"one_image", "three_images_gqa4_bf16", "portrait_first", "video",
                                  "vit_d64_one_image"};

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = a.size() == b.size() ? 0 : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) worst = std::max(worst, std::fabs(double{a[i]} - b[i]));
  return worst;
}

class MultimodalGoldenTest : public ::testing::TestWithParam<const char*> {};

TEST_P(MultimodalGoldenTest, MatchesTheReference) {
  const std::string golden = std::string(IXC_SOURCE_DIR) + "/tests/data/golden/multimodal/" + GetParam();
  const std::string model_dir = std::string(IXC_GOLDEN_MODELS_DIR) + "/multimodal_" + GetParam();
  std::ifstream case_file(golden + "/case.json");
  const nlohmann::json c = nlohmann::json::parse(case_file);
  auto llm = LoadLlmWeights(model_dir);
  ASSERT_TRUE(llm.ok()) << llm.status();
  auto vision = LoadVisionWeights(model_dir, llm->config.hidden_size);
  ASSERT_TRUE(vision.ok()) << vision.status();
  const int tile = c["tile"].get<int>();
  ASSERT_EQ(vision->config.image_size, tile);

  std::vector<coordinator::VisionCrops> crops;  // kept alive: pieces point into them
  crops.reserve(c["pieces"].size());
  std::vector<PromptPiece> pieces;
  for (const auto& piece : c["pieces"]) {
    if (piece.contains("ids")) {
      pieces.push_back({piece["ids"].get<std::vector<int32_t>>()});
      continue;
    }
    coordinator::HdGeometry geometry;
    if (piece.contains("video")) {
      auto video = coordinator::LoadVideoFrames(
          std::string(IXC_SOURCE_DIR) + "/tests/data/videos/" + piece["video"].get<std::string>(), tile, {});
      ASSERT_TRUE(video.ok()) << video.status();
      auto font = coordinator::LabelFont::Load(coordinator::kDefaultLabelFont, 40);
      ASSERT_TRUE(font.ok()) << font.status();
      const coordinator::Image composite = coordinator::CompositeFrames(video->frames, **font);
      crops.push_back(coordinator::MakeCrops(coordinator::VideoTransform(composite, tile, &geometry), tile));
    } else {
      auto image = coordinator::DecodeImageFile(
          std::string(IXC_SOURCE_DIR) + "/tests/data/images/" + piece["image"].get<std::string>(), {});
      ASSERT_TRUE(image.ok()) << image.status();
      const absl::StatusOr<coordinator::Image> padded =
          coordinator::HdTransform(*image, c["hd_num"].get<int>(), tile, &geometry);
      ASSERT_TRUE(padded.ok()) << padded.status();
      crops.push_back(coordinator::MakeCrops(*padded, tile));
    }
    EXPECT_EQ(geometry.rows, piece["grid"][0].get<int>());
    EXPECT_EQ(geometry.cols, piece["grid"][1].get<int>());
    pieces.push_back({{}, crops.back().pixels.data(), geometry.rows, geometry.cols});
  }
  auto input = AssembleInput(*llm, &*vision, pieces);
  ASSERT_TRUE(input.ok()) << input.status();
  int vision_rows = 0;
  for (uint8_t m : input->image_mask) vision_rows += m;
  EXPECT_EQ(vision_rows, c["image_mask_rows"].get<int>());

  // The first image's embeddings alone, so a vision error is told apart from a decoder one.
  const auto expected_embeds = *ReadNpy(golden + "/image_embeds_0.npy");
  const int first_image = pieces[0].crops ? 0 : 1;
  std::vector<float> first_embeds;
  {
    auto embeds = EmbedImage(*vision, pieces[first_image].crops, pieces[first_image].rows, pieces[first_image].cols);
    ASSERT_TRUE(embeds.ok());
    first_embeds = *embeds;
  }
  EXPECT_LE(MaxAbsDiff(first_embeds, expected_embeds.floats), 1e-4) << "image embeddings";

  KvCache cache(llm->config, 16, 32);
  ForwardInput prompt;
  prompt.embeddings = input->embeddings;
  prompt.image_mask = input->image_mask;
  GenerationOptions options;
  options.max_new_tokens = c["max_new_tokens"].get<int>();
  options.keep_prompt_logits = true;
  auto result = Generate(*llm, prompt, options, cache);
  ASSERT_TRUE(result.ok()) << result.status();
  const auto expected_logits = *ReadNpy(golden + "/logits.npy");
  const double error = MaxAbsDiff(result->prompt_logits, expected_logits.floats);
  EXPECT_LE(error, 1e-4) << "max |logit - reference logit|";
  const auto greedy = *ReadNpy(golden + "/greedy_ids.npy");
  EXPECT_EQ(result->ids, std::vector<int32_t>(greedy.ints.begin(), greedy.ints.end()));
  RecordProperty("max_abs_logit_error", std::to_string(error));
}

INSTANTIATE_TEST_SUITE_P(Cases, MultimodalGoldenTest, ::testing::ValuesIn(kCases));

}  // namespace
}  // namespace ixc::model
