// The language model against Hugging Face transformers (tools/reference/language_model_goldens.py): logits of every
// prompt position within 1e-4 in f32, and the same greedy continuation. The checkpoints are rebuilt from their
// seeds by the CTest fixture `golden_models` (tests/make_golden_models.py).
//
// The cases are listed in tests/model/golden_cases.h.
#include "model/generation.h"
#include "tests/model/golden_cases.h"
#include "tests/model/token_choice_check.h"
#include "tests/test_util.h"

namespace ixc::model {
namespace {

using ixc::testing::GoldenDir;
using ixc::testing::kLanguageModelCases;

struct Golden {
  std::vector<int32_t> prompt;
  std::vector<uint8_t> image_mask;
  NpyArray logits;
  std::vector<int32_t> greedy;
  LoraMode lora = LoraMode::kBase;
};

std::string ModelDir(const std::string& name) { return std::string(IXC_GOLDEN_MODELS_DIR) + "/" + name; }

Golden LoadGolden(const std::string& name) {
  Golden golden;
  ixc::testing::GoldenPrompt prompt = ixc::testing::LoadGoldenPrompt(name);
  golden.prompt = std::move(prompt.ids);
  golden.image_mask = std::move(prompt.image_mask);
  golden.lora = prompt.lora;
  const std::string dir = GoldenDir(name);
  golden.logits = *ReadNpy(dir + "/logits.npy");
  auto greedy = ReadNpy(dir + "/greedy_ids.npy");
  golden.greedy.assign(greedy->ints.begin(), greedy->ints.end());
  return golden;
}

double MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]));
  return worst;
}

// The golden's prompt as a forward input, with its image rows and LoRA mode.
ForwardInput PromptOf(const Golden& golden) {
  ForwardInput prompt;
  prompt.ids = golden.prompt;
  prompt.image_mask = golden.image_mask;
  prompt.lora = golden.lora;
  return prompt;
}

class LanguageModelGoldenTest : public ::testing::TestWithParam<const char*> {};

TEST_P(LanguageModelGoldenTest, LogitsAndGreedyMatchTransformers) {
  const Golden golden = LoadGolden(GetParam());
  auto weights = LoadLlmWeights(ModelDir(GetParam()));
  ASSERT_TRUE(weights.ok()) << weights.status();
  KvCache cache(weights->config, /*block_size=*/8, /*num_blocks=*/64);

  ForwardInput prompt = PromptOf(golden);
  GenerationOptions options;
  options.max_new_tokens = static_cast<int>(golden.greedy.size());
  options.keep_prompt_logits = true;
  auto result = Generate(*weights, prompt, options, cache);
  ASSERT_TRUE(result.ok()) << result.status();

  ASSERT_EQ(result->prompt_logits.size(), golden.logits.floats.size());
  const double error = MaxAbsDiff(result->prompt_logits, golden.logits.floats);
  EXPECT_LE(error, 1e-4) << "max |logit - transformers logit|";
  EXPECT_EQ(result->ids, golden.greedy);
  EXPECT_EQ(cache.free_blocks(), cache.num_blocks()) << "the sequence's blocks went back to the pool";
  RecordProperty("max_abs_logit_error", std::to_string(error));
}

// Where only a prompt's last row gives logits, the last layer goes on past its K/V with the logit rows alone: the
// prompt batched with another sequence's decode row gives transformers' logits of its last position (its image rows
// and LoRA as the case has them), the decode row those of the same step alone, and a decode step after it (reading
// the last layer's K/V of every row) chooses the greedy continuation's second token.
TEST_P(LanguageModelGoldenTest, LastLayerOnTheLogitRowsAlone) {
  const Golden golden = LoadGolden(GetParam());
  auto weights = LoadLlmWeights(ModelDir(GetParam()));
  ASSERT_TRUE(weights.ok()) << weights.status();
  KvCache cache(weights->config, /*block_size=*/4, /*num_blocks=*/64);
  const int64_t vocab = weights->config.vocab_size, length = static_cast<int64_t>(golden.prompt.size());
  ForwardInput prompt = PromptOf(golden);
  ForwardInput start;  // the other sequence's first tokens, in the base mode (so its row takes none of the LoRAs)
  start.ids = std::span<const int32_t>(golden.prompt).first(3);
  SequenceKv seq, other, other_alone;
  for (SequenceKv* s : {&other, &other_alone}) ASSERT_TRUE(Prefill(*weights, start, false, *s, cache, nullptr).ok());
  const std::vector<int32_t> token = {golden.prompt[3]};
  ForwardInput decode;
  decode.ids = token;
  std::vector<float> logits, other_logits, alone_logits;
  std::vector<BatchEntry> batch = {{prompt, &seq, &logits}, {decode, &other, &other_logits}};
  ASSERT_TRUE(LanguageModelForwardBatch(*weights, batch, cache).ok());
  const std::vector<float> last(golden.logits.floats.end() - vocab, golden.logits.floats.end());
  EXPECT_LE(MaxAbsDiff(logits, last), 1e-4) << "the prompt's last position";
  std::vector<BatchEntry> alone = {{decode, &other_alone, &alone_logits}};
  ASSERT_TRUE(LanguageModelForwardBatch(*weights, alone, cache).ok());
  EXPECT_LE(MaxAbsDiff(other_logits, alone_logits), 1e-5) << "the decode row beside it";
  auto next = DecodeStep(*weights, golden.greedy[0], static_cast<int32_t>(length), golden.lora, seq, cache, nullptr);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(std::max_element(next->begin(), next->end()) - next->begin(), golden.greedy[1]) << "the step after";

  // A last row that is an image row keeps its PLoRA: the same as the last of every row's logits.
  if (!weights->has_plora) return;
  std::vector<uint8_t> image(length, 0);
  image[1] = image.back() = 1;
  prompt.image_mask = image;
  SequenceKv whole, last_only;
  auto every_row = Prefill(*weights, prompt, true, whole, cache, nullptr);
  auto last_row = Prefill(*weights, prompt, false, last_only, cache, nullptr);
  ASSERT_TRUE(every_row.ok() && last_row.ok());
  EXPECT_LE(MaxAbsDiff(*last_row, std::vector<float>(every_row->end() - vocab, every_row->end())), 1e-5)
      << "an image row last";
}

// A call of more rows than a backend call takes (max_rows_per_call 7 here; a GPU's scratch bounds it) goes as several
// (model/chunked_forward.h): the prompt prefilled in chunks gives transformers' logits of every position (the
// dynamic-NTK case with the RoPE base of the whole prompt in every chunk); batched between two decode rows, the
// prompt's chosen next token is the greedy continuation's and the decode rows get their logits of a call alone.
TEST_P(LanguageModelGoldenTest, LongPromptsInChunksMatchOneCall) {
  const Golden golden = LoadGolden(GetParam());
  auto weights = LoadLlmWeights(ModelDir(GetParam()));
  ASSERT_TRUE(weights.ok()) << weights.status();
  KvCache cache(weights->config, /*block_size=*/4, /*num_blocks=*/128);
  constexpr int64_t kMaxRows = 7;
  ForwardInput prompt = PromptOf(golden);
  prompt.all_logits = true;
  ASSERT_GT(static_cast<int64_t>(golden.prompt.size()), 2 * kMaxRows);
  SequenceKv whole;
  std::vector<float> logits;
  std::vector<BatchEntry> alone = {{prompt, &whole, &logits}};
  ASSERT_TRUE(LanguageModelForwardBatch(*weights, alone, cache, nullptr, kMaxRows).ok());
  ASSERT_EQ(logits.size(), golden.logits.floats.size());
  EXPECT_LE(MaxAbsDiff(logits, golden.logits.floats), 1e-4) << "every position, in chunks";

  // Two other sequences' decode rows around the prompt, which chooses its next token.
  ForwardInput start, decode;
  start.ids = std::span<const int32_t>(golden.prompt).first(3);
  const std::vector<int32_t> token = {golden.prompt[3]};
  decode.ids = token;
  SequenceKv before, after, before_alone, after_alone, chosen_seq;
  for (SequenceKv* s : {&before, &after, &before_alone, &after_alone}) {
    ASSERT_TRUE(Prefill(*weights, start, false, *s, cache, nullptr).ok());
  }
  prompt.all_logits = false;
  TokenChoice choice;
  std::vector<float> before_logits, after_logits, prompt_logits, expected_before, expected_after;
  std::vector<BatchEntry> batch = {{decode, &before, &before_logits},
                                   {prompt, &chosen_seq, &prompt_logits, &choice},
                                   {decode, &after, &after_logits}};
  ASSERT_TRUE(LanguageModelForwardBatch(*weights, batch, cache, nullptr, kMaxRows).ok());
  EXPECT_EQ(choice.token, golden.greedy[0]) << "the prompt's next token";
  EXPECT_EQ(chosen_seq.length, static_cast<int64_t>(golden.prompt.size()));
  std::vector<BatchEntry> one = {{decode, &before_alone, &expected_before}};
  ASSERT_TRUE(LanguageModelForwardBatch(*weights, one, cache).ok());
  one = {{decode, &after_alone, &expected_after}};
  ASSERT_TRUE(LanguageModelForwardBatch(*weights, one, cache).ok());
  EXPECT_LE(MaxAbsDiff(before_logits, expected_before), 1e-5) << "the decode row before the prompt";
  EXPECT_LE(MaxAbsDiff(after_logits, expected_after), 1e-5) << "the decode row after it";
}

INSTANTIATE_TEST_SUITE_P(Cases, LanguageModelGoldenTest, ::testing::ValuesIn(kLanguageModelCases));

// The goldens with image rows must depend on the mask: without it the logits move well past the tolerance.
TEST(LanguageModelGoldenTest, ImageMaskChangesLogits) {
  const Golden golden = LoadGolden("tiny_plora");
  auto weights = LoadLlmWeights(ModelDir("tiny_plora"));
  ASSERT_TRUE(weights.ok()) << weights.status();
  KvCache cache(weights->config, 8, 64);
  SequenceKv seq;
  ForwardInput prompt;
  prompt.ids = golden.prompt;
  prompt.all_logits = true;
  std::vector<float> logits;
  ASSERT_TRUE(LanguageModelForward(*weights, prompt, seq, cache, &logits).ok());
  EXPECT_GT(MaxAbsDiff(logits, golden.logits.floats), 1e-2);
}

// Prefill in pieces (chunked prefill, then token-by-token decode) gives the logits of one whole prefill.
TEST(LanguageModelGoldenTest, ChunkedPrefillMatchesWholePrefill) {
  const Golden golden = LoadGolden("tiny_f32");
  auto weights = LoadLlmWeights(ModelDir("tiny_f32"));
  ASSERT_TRUE(weights.ok()) << weights.status();
  KvCache cache(weights->config, 8, 64);
  SequenceKv seq;
  const int64_t vocab = weights->config.vocab_size;
  std::vector<float> logits;
  // The whole prompt (20) is below max_position_embeddings (64), so the RoPE base is the same for every chunk.
  const std::vector<std::pair<int, int>> chunks = {{0, 7}, {7, 8}, {8, 20}};
  for (auto [begin, end] : chunks) {
    ForwardInput chunk;
    chunk.ids = std::span<const int32_t>(golden.prompt.data() + begin, end - begin);
    chunk.all_logits = true;
    ASSERT_TRUE(LanguageModelForward(*weights, chunk, seq, cache, &logits).ok());
    const std::vector<float> expected(golden.logits.floats.begin() + begin * vocab,
                                      golden.logits.floats.begin() + end * vocab);
    EXPECT_LE(MaxAbsDiff(logits, expected), 1e-4) << "chunk [" << begin << ", " << end << ")";
  }
}

// A batched decode step (continuous batching) gives every sequence the logits of its own step: sequences of
// different lengths and LoRA modes, in one call.
TEST(LanguageModelGoldenTest, BatchedDecodeMatchesOneSequenceAtATime) {
  const Golden golden = LoadGolden("tiny_lora_web");
  auto weights = LoadLlmWeights(ModelDir("tiny_lora_web"));
  ASSERT_TRUE(weights.ok()) << weights.status();
  const LoraMode modes[] = {LoraMode::kBase, LoraMode::kWeb, LoraMode::kWrite};
  const int lengths[] = {16, 9, 12};
  // One cache per way, identical prefills.
  KvCache one_cache(weights->config, 4, 64), batch_cache(weights->config, 4, 64);
  SequenceKv one[3], batched[3];
  std::vector<int32_t> last(3);
  for (int i = 0; i < 3; ++i) {
    ForwardInput prompt;
    prompt.ids = std::span<const int32_t>(golden.prompt.data(), lengths[i]);
    prompt.lora = modes[i];
    auto logits = Prefill(*weights, prompt, false, one[i], one_cache, nullptr);
    ASSERT_TRUE(logits.ok());
    ASSERT_TRUE(Prefill(*weights, prompt, false, batched[i], batch_cache, nullptr).ok());
    last[i] = static_cast<int32_t>(std::max_element(logits->begin(), logits->end()) - logits->begin());
  }
  for (int step = 0; step < 3; ++step) {
    std::vector<DecodeItem> items;
    for (int i = 0; i < 3; ++i) items.push_back({last[i], lengths[i] + step, modes[i], &batched[i], {}});
    ASSERT_TRUE(DecodeSteps(*weights, items, batch_cache, nullptr).ok());
    for (int i = 0; i < 3; ++i) {
      auto alone = DecodeStep(*weights, last[i], lengths[i] + step, modes[i], one[i], one_cache, nullptr);
      ASSERT_TRUE(alone.ok());
      EXPECT_LE(MaxAbsDiff(items[i].logits, *alone), 1e-5) << "sequence " << i << " step " << step;
      last[i] = static_cast<int32_t>(std::max_element(alone->begin(), alone->end()) - alone->begin());
    }
  }
}

// Decode steps that choose their own next token (TokenChoice) pick what SampleNext picks from their logits.
TEST(LanguageModelGoldenTest, DecodeChoosesWhatSampleNextChooses) {
  const Golden golden = LoadGolden("tiny_f32");
  auto weights = LoadLlmWeights(ModelDir("tiny_f32"));
  ASSERT_TRUE(weights.ok()) << weights.status();
  KvCache cache(weights->config, 4, 128);
  ixc::testing::ExpectChoicesMatchHostSampling(*weights, cache, golden.prompt);
}

// A choice wants one row's logits.
TEST(LanguageModelGoldenTest, TokenChoiceRefusesAllLogits) {
  auto weights = LoadLlmWeights(ModelDir("tiny_f32"));
  ASSERT_TRUE(weights.ok()) << weights.status();
  KvCache cache(weights->config, 4, 16);
  const std::vector<int32_t> ids = {1, 2, 3};
  SequenceKv seq;
  std::vector<float> logits;
  TokenChoice choice;
  ForwardInput input;
  input.ids = ids;
  input.all_logits = true;
  std::vector<BatchEntry> batch = {{input, &seq, &logits, &choice}};
  const absl::Status status = LanguageModelForwardBatch(*weights, batch, cache);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("token choice"), std::string::npos) << status;
}

}  // namespace
}  // namespace ixc::model
