// ixc-generate's path with --device cuda, below its flags, on the tiny multimodal checkpoint: the vision tower and
// the language model placed on one GPU by PlaceVision and PlaceModel (the vision tower first, as the tool does), the
// interleaved prompt assembled there (ViT, merge, separators, vision_proj, im_mask) and Generate's prefill (PLoRA on
// the image rows) and greedy decode, against the same calls on the CPU. The GPU runs bf16, so its logits agree with
// the CPU's to about 1% of their range (model_cuda_test), and each token it picks must be one the CPU's logits at
// that step (fed the GPU's tokens) rank within that margin of the best. Skipped without a GPU.
//   IXC_GOLDEN_MODELS=/path/to/models ./generate_cuda_test   (tests/make_golden_models.py builds them)
#include <algorithm>

#include "model/beam_search.h"
#include "model/generation.h"
#include "model/multimodal_input.h"
#include "model/placement.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/test_util.h"

namespace ixc::model {
namespace {

using ixc::testing::CudaTest;
using ixc::testing::RelativeError;

std::string ModelDir() { return ixc::testing::GoldenModelsDir() + "/multimodal_one_image"; }

// Where the logits' argmax would be `token` within `margin` of their range: the CPU would not call that choice wrong.
::testing::AssertionResult NearlyBest(const std::vector<float>& logits, int32_t token, double margin) {
  const auto [low, high] = std::minmax_element(logits.begin(), logits.end());
  const double range = std::max({std::fabs(double{*low}), std::fabs(double{*high}), 1e-6});
  if (token < 0 || token >= static_cast<int32_t>(logits.size())) {
    return ::testing::AssertionFailure() << "token " << token << " is outside the vocabulary";
  }
  if (logits[token] >= *high - margin * range) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "token " << token << " has logit " << logits[token] << ", the best "
                                       << *high << " (token " << high - logits.begin() << ")";
}

TEST_F(CudaTest, MultimodalGenerateMatchesTheCpu) {
  auto cpu_llm = LoadLlmWeights(ModelDir()), gpu_llm = LoadLlmWeights(ModelDir());
  ASSERT_TRUE(cpu_llm.ok()) << cpu_llm.status();
  ASSERT_TRUE(gpu_llm.ok()) << gpu_llm.status();
  auto cpu_vision = LoadVisionWeights(ModelDir(), cpu_llm->config.hidden_size);
  auto gpu_vision = LoadVisionWeights(ModelDir(), gpu_llm->config.hidden_size);
  ASSERT_TRUE(cpu_vision.ok()) << cpu_vision.status();
  ASSERT_TRUE(gpu_vision.ok()) << gpu_vision.status();
  const Placement placement{.device = "cuda", .kv_blocks = 64};
  const absl::Status vision_placed = PlaceVision(*gpu_vision, placement);
  ASSERT_TRUE(vision_placed.ok()) << vision_placed;
  ASSERT_NE(gpu_vision->device, nullptr);

  // Text, a 1 x 2 image (three crops of normalized-pixel-like values), text.
  const int64_t tile = cpu_vision->config.image_size;
  const std::vector<float> crops = ixc::testing::RandomFloats(3 * 3 * tile * tile, 11, 1.2f);
  const std::vector<PromptPiece> pieces = {{{1, 17, 93, 260}}, {{}, crops.data(), 1, 2}, {{44, 301, 7}}};
  auto cpu_input = AssembleInput(*cpu_llm, &*cpu_vision, pieces);
  auto gpu_input = AssembleInput(*gpu_llm, &*gpu_vision, pieces);
  ASSERT_TRUE(cpu_input.ok()) << cpu_input.status();
  ASSERT_TRUE(gpu_input.ok()) << gpu_input.status();
  EXPECT_EQ(gpu_input->image_mask, cpu_input->image_mask);
  EXPECT_LT(RelativeError(gpu_input->embeddings, cpu_input->embeddings), 0.03) << "prompt embeddings";

  GenerationOptions options;
  options.max_new_tokens = 8;
  options.keep_prompt_logits = true;
  ForwardInput gpu_prompt;
  gpu_prompt.embeddings = gpu_input->embeddings;
  gpu_prompt.image_mask = gpu_input->image_mask;
  const int64_t prompt_tokens = gpu_prompt.tokens(gpu_llm->config.hidden_size);
  auto gpu_cache = PlaceModel(*gpu_llm, placement, prompt_tokens + options.max_new_tokens);
  ASSERT_TRUE(gpu_cache.ok()) << gpu_cache.status();
  ASSERT_NE(gpu_llm->device, nullptr);
  auto generated = Generate(*gpu_llm, gpu_prompt, options, *gpu_cache);
  ASSERT_TRUE(generated.ok()) << generated.status();
  ASSERT_EQ(generated->ids.size(), 8u);
  EXPECT_EQ(generated->finish_reason, "length");

  // The CPU on its own embeddings: the prompt's logits, then a decode step per token the GPU chose.
  KvCache cpu_cache(cpu_llm->config, 16, 64);
  ForwardInput cpu_prompt;
  cpu_prompt.embeddings = cpu_input->embeddings;
  cpu_prompt.image_mask = cpu_input->image_mask;
  SequenceKv seq;
  auto logits = Prefill(*cpu_llm, cpu_prompt, /*all_logits=*/true, seq, cpu_cache, nullptr);
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_LT(RelativeError(generated->prompt_logits, *logits), 0.03) << "prompt logits";
  const int64_t vocab = cpu_llm->config.vocab_size;
  std::vector<float> step_logits(logits->end() - vocab, logits->end());
  for (size_t i = 0; i < generated->ids.size(); ++i) {
    const int32_t token = generated->ids[i];
    EXPECT_TRUE(NearlyBest(step_logits, token, 0.03)) << "generated token " << i;
    if (i + 1 == generated->ids.size()) break;
    auto next = DecodeStep(*cpu_llm, token, static_cast<int32_t>(seq.length), LoraMode::kBase, seq, cpu_cache, nullptr);
    ASSERT_TRUE(next.ok()) << next.status();
    step_logits = std::move(*next);
  }
}

// Beam search on the GPU (B = 3, 12 steps, no EOS, repetition penalty 3.0): beams fork their parents' blocks, and a
// fork's partly filled block is copied on the device (CopyKvBlock). The best beam's score must be what the same tokens
// score when the GPU computes them afresh in one prefill, with no fork: a copy from the wrong block or layer would
// give the search other logits than the sequence's own. bf16 on both sides: within 2% of the score.
TEST_F(CudaTest, BeamSearchForksMatchAFreshPrefill) {
  auto llm = LoadLlmWeights(ModelDir());
  ASSERT_TRUE(llm.ok()) << llm.status();
  const std::vector<int32_t> prompt_ids = {1, 17, 93, 260, 44, 301, 7, 5, 60, 61, 62, 63, 64};
  const Placement placement{.device = "cuda", .kv_blocks = 64};
  auto cache = PlaceModel(*llm, placement, 64);
  ASSERT_TRUE(cache.ok()) << cache.status();
  ForwardInput prompt;
  prompt.ids = prompt_ids;
  BeamGenerationOptions options;
  options.num_beams = 3;
  options.max_new_tokens = 12;
  options.repetition_penalty = 3.f;
  auto searched = GenerateBeams(*llm, prompt, options, *cache);
  ASSERT_TRUE(searched.ok()) << searched.status();
  ASSERT_EQ(searched->ids.size(), 12u);
  EXPECT_EQ(cache->free_blocks(), cache->num_blocks()) << "every block back after the search";

  // The prompt and the beam's tokens but the last, prefilled at once: each position's logits score the next token.
  std::vector<int32_t> sequence = prompt_ids;
  sequence.insert(sequence.end(), searched->ids.begin(), searched->ids.end() - 1);
  ForwardInput whole;
  whole.ids = sequence;
  SequenceKv seq;
  auto logits = Prefill(*llm, whole, /*all_logits=*/true, seq, *cache, nullptr);
  ASSERT_TRUE(logits.ok()) << logits.status();
  cache->Release(seq);
  const int64_t vocab = llm->config.vocab_size;
  std::vector<int32_t> history = {1};  // BOS, then the beam's tokens (model/beam_search.h)
  double sum = 0;
  for (size_t t = 0; t < searched->ids.size(); ++t) {
    const int64_t row = static_cast<int64_t>(prompt_ids.size() + t) - 1;
    auto scored = BeamCandidatesOf(*llm, std::span<const float>(logits->data() + row * vocab, vocab),
                                   options.repetition_penalty, history, static_cast<int>(vocab), nullptr);
    ASSERT_TRUE(scored.ok()) << scored.status();
    const auto at = std::find(scored->ids.begin(), scored->ids.end(), searched->ids[t]) - scored->ids.begin();
    sum += scored->logprobs[at];
    history.push_back(searched->ids[t]);
  }
  const double rescored = sum / static_cast<double>(searched->ids.size() + 1);
  EXPECT_NEAR(searched->score, rescored, 0.02 * std::fabs(rescored)) << "the search's score against a fresh prefill's";
}

}  // namespace
}  // namespace ixc::model
