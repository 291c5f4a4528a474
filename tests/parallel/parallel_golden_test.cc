// Tensor and sequence parallelism under mpirun: every golden case (text and multimodal) on a T x S grid of LLM ranks
// gives the single-rank results, which equal the transformers goldens: logits within 1e-4, the same greedy tokens,
// on every rank. With S > 1 the prompt is prefilled in zig-zag shards with ring attention and decoded with the
// all-gather merge. Cases whose KV heads the TP size does not divide must be refused at load with a clear message.
//   IXC_TEST_LAYOUT=0,0,2,2 mpirun -np 4 parallel_golden_test
#include <filesystem>
#include <fstream>

#include "coordinator/media/vision_input.h"
#include "core/npy.h"
#include "model/generation.h"
#include "model/multimodal_input.h"
#include "nlohmann/json.hpp"
#include "parallel/mpi_device_comm.h"
#include "tests/parallel/mpi_test_main.h"

namespace ixc::model {
namespace {

const std::string kGolden = std::string(IXC_SOURCE_DIR) + "/tests/data/golden/";

struct Case {
  std::string name;       // directory under tests/data/golden
  std::string model_dir;  // under the golden models
};

std::vector<Case> AllCases() {
  std::vector<Case> cases;
  for (const char* suite : {"", "multimodal/"}) {
    for (const auto& entry : std::filesystem::directory_iterator(kGolden + suite)) {
      if (!std::filesystem::exists(entry.path() / "case.json")) continue;
      const std::string name = entry.path().filename().string();
      cases.push_back({std::string(suite) + name, std::string(IXC_GOLDEN_MODELS_DIR) + "/" +
                                                      (std::string(suite).empty() ? "" : "multimodal_") + name});
    }
  }
  std::sort(cases.begin(), cases.end(), [](const Case& a, const Case& b) { return a.name < b.name; });
  return cases;  // the same order on every rank: the collectives of each case line up
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = a.size() == b.size() ? 0 : INFINITY;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) worst = std::max(worst, std::fabs(double{a[i]} - b[i]));
  return worst;
}

TEST(ParallelGoldenTest, EveryGoldenCaseMatchesOnEveryRank) {
  const parallel::Mapping mapping = testing::WorldMapping();
  auto comm = parallel::CreateMpiDeviceComm(mapping);
  ASSERT_TRUE(comm.ok()) << comm.status();
  const parallel::TpSlice slice{mapping.tp_rank(), mapping.layout().tp};
  int checked = 0, refused = 0;
  for (const Case& test_case : AllCases()) {
    SCOPED_TRACE(test_case.name + " on " + mapping.ToString());
    std::ifstream case_file(kGolden + test_case.name + "/case.json");
    const nlohmann::json c = nlohmann::json::parse(case_file);
    auto weights = LoadLlmWeights(test_case.model_dir, slice);
    if (!weights.ok()) {
      EXPECT_NE(weights.status().message().find("tensor parallelism of"), std::string::npos) << weights.status();
      ++refused;
      continue;
    }
    KvCache cache(weights->shard, /*block_size=*/4, /*num_blocks=*/64);  // small blocks: round-robin decode KV
    ForwardInput prompt;
    std::vector<int32_t> ids;
    std::vector<uint8_t> mask;
    MultimodalInput multimodal;
    std::vector<coordinator::PreparedVision> media;  // kept alive: pieces point into them
    if (c.contains("pieces")) {
      auto vision = LoadVisionWeights(test_case.model_dir, weights->config.hidden_size);
      ASSERT_TRUE(vision.ok()) << vision.status();
      std::vector<PromptPiece> pieces;
      media.reserve(c["pieces"].size());
      auto font = coordinator::LabelFont::Load(coordinator::kDefaultLabelFont, 40);
      for (const auto& piece : c["pieces"]) {
        if (piece.contains("ids")) {
          pieces.push_back({piece["ids"].get<std::vector<int32_t>>()});
          continue;
        }
        const int tile = c["tile"].get<int>();
        auto prepared = piece.contains("video")
                            ? coordinator::PrepareVideo(std::string(IXC_SOURCE_DIR) + "/tests/data/videos/" +
                                                            piece["video"].get<std::string>(),
                                                        tile, **font, {})
                            : coordinator::PrepareImage(std::string(IXC_SOURCE_DIR) + "/tests/data/images/" +
                                                            piece["image"].get<std::string>(),
                                                        c["hd_num"].get<int>(), tile, {});
        ASSERT_TRUE(prepared.ok()) << prepared.status();
        media.push_back(std::move(*prepared));
        pieces.push_back({{}, media.back().crops.pixels.data(), media.back().geometry.rows,
                          media.back().geometry.cols});
      }
      auto assembled = AssembleInput(*weights, &*vision, pieces);
      ASSERT_TRUE(assembled.ok()) << assembled.status();
      multimodal = std::move(*assembled);
      prompt.embeddings = multimodal.embeddings;
      prompt.image_mask = multimodal.image_mask;
    } else {
      const NpyArray prompt_ids = *ReadNpy(kGolden + test_case.name + "/prompt_ids.npy");
      ids.assign(prompt_ids.ints.begin(), prompt_ids.ints.end());
      prompt.ids = ids;
      if (std::filesystem::exists(kGolden + test_case.name + "/image_mask.npy")) {
        const NpyArray m = *ReadNpy(kGolden + test_case.name + "/image_mask.npy");
        mask.assign(m.ints.begin(), m.ints.end());
        prompt.image_mask = mask;
      }
      prompt.lora = *LoraModeFromName(c["lora_mode"].get<std::string>());
    }
    GenerationOptions options;
    options.max_new_tokens = c["max_new_tokens"].get<int>();
    options.keep_prompt_logits = true;
    auto result = Generate(*weights, prompt, options, cache, comm->get());
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_LE(MaxAbsDiff(result->prompt_logits, ReadNpy(kGolden + test_case.name + "/logits.npy")->floats), 1e-4);
    const NpyArray greedy = *ReadNpy(kGolden + test_case.name + "/greedy_ids.npy");
    EXPECT_EQ(result->ids, std::vector<int32_t>(greedy.ints.begin(), greedy.ints.end()));
    ++checked;
  }
  EXPECT_GE(checked, 1);
  if (slice.size == 2) {
    EXPECT_EQ(refused, 0);
  } else if (slice.size == 4) {
    EXPECT_GE(refused, 1);  // the 2-KV-head checkpoints
  }
}

}  // namespace
}  // namespace ixc::model

IXC_MPI_TEST_MAIN()
