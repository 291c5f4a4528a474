// Tensor and sequence parallelism under mpirun: every golden case (text and multimodal) on a T x S grid of LLM ranks
// gives the single-rank results, which equal the transformers goldens: logits within 1e-4, the same greedy tokens,
// on every rank. With S > 1 the prompt is prefilled in zig-zag shards with ring attention and decoded with the
// all-gather merge. Cases whose KV heads the TP size does not divide must be refused at load with a clear message.
//   IXC_TEST_LAYOUT=0,0,2,2 mpirun -np 4 parallel_golden_test
#include <filesystem>
#include <fstream>

#include "coordinator/media/vision_input.h"
#include "core/dtype.h"
#include "core/npy.h"
#include "model/beam_search.h"
#include "model/generation.h"
#include "model/multimodal_input.h"
#include "nlohmann/json.hpp"
#include "parallel/mpi_device_comm.h"
#include "parallel/sequence_shard.h"
#include "tests/model/token_choice_check.h"
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

// A golden case's prompt, and what its spans point into.
struct LoadedPrompt {
  ForwardInput input;
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
  MultimodalInput multimodal;
  std::vector<coordinator::PreparedVision> media;
};

// The prompt of golden case `name` (a text case's ids and image mask, or a multimodal case's pieces through the HD
// transform, the ViT and the merge) for `weights`, with its LoRA mode.
void LoadPrompt(const std::string& name, const std::string& model_dir, const LlmWeights& weights,
                LoadedPrompt& prompt) {
  std::ifstream case_file(kGolden + name + "/case.json");
  const nlohmann::json c = nlohmann::json::parse(case_file);
  if (c.contains("pieces")) {
    auto vision = LoadVisionWeights(model_dir, weights.config.hidden_size);
    ASSERT_TRUE(vision.ok()) << vision.status();
    std::vector<PromptPiece> pieces;
    prompt.media.reserve(c["pieces"].size());  // pieces point into them
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
      prompt.media.push_back(std::move(*prepared));
      pieces.push_back({{}, prompt.media.back().crops.pixels.data(), prompt.media.back().geometry.rows,
                        prompt.media.back().geometry.cols});
    }
    auto assembled = AssembleInput(weights, &*vision, pieces);
    ASSERT_TRUE(assembled.ok()) << assembled.status();
    prompt.multimodal = std::move(*assembled);
    prompt.input.embeddings = prompt.multimodal.embeddings;
    prompt.input.image_mask = prompt.multimodal.image_mask;
    return;
  }
  const NpyArray prompt_ids = *ReadNpy(kGolden + name + "/prompt_ids.npy");
  prompt.ids.assign(prompt_ids.ints.begin(), prompt_ids.ints.end());
  prompt.input.ids = prompt.ids;
  if (std::filesystem::exists(kGolden + name + "/image_mask.npy")) {
    const NpyArray m = *ReadNpy(kGolden + name + "/image_mask.npy");
    prompt.mask.assign(m.ints.begin(), m.ints.end());
    prompt.input.image_mask = prompt.mask;
  }
  prompt.input.lora = *LoraModeFromName(c["lora_mode"].get<std::string>());
}

std::string ModelDirOf(const std::string& name) {
  const bool multimodal = name.rfind("multimodal/", 0) == 0;
  return std::string(IXC_GOLDEN_MODELS_DIR) + "/" +
         (multimodal ? "multimodal_" + name.substr(std::string("multimodal/").size()) : name);
}

// The records of tests/data/golden/<folder>/*.json, in file-name order: the same on every rank.
std::vector<nlohmann::json> GoldenRecords(const std::string& folder) {
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(kGolden + folder)) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  std::vector<nlohmann::json> records;
  for (const auto& file : files) {
    std::ifstream in(file);
    records.push_back(nlohmann::json::parse(in));
  }
  return records;
}

// Whether golden case `name`'s checkpoint loads under TP `slice`: its KV heads divide over the group (else the load
// refuses it, as the first test checks).
bool LoadsUnder(const std::string& name, const parallel::TpSlice& slice) {
  auto config = LoadLlmConfig(ModelDirOf(name));
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() && config->num_kv_heads % slice.size == 0;
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
    auto config = LoadLlmConfig(test_case.model_dir);
    ASSERT_TRUE(config.ok()) << config.status();
    const bool whole_kv_groups = config->num_kv_heads % slice.size == 0;
    auto weights = LoadLlmWeights(test_case.model_dir, slice);
    EXPECT_EQ(weights.ok(), whole_kv_groups) << weights.status();
    if (!weights.ok()) {
      EXPECT_NE(weights.status().message().find("tensor parallelism of"), std::string::npos) << weights.status();
      ++refused;
      continue;
    }
    KvCache cache(weights->shard, /*block_size=*/4, /*num_blocks=*/64);  // small blocks: round-robin decode KV
    LoadedPrompt prompt;
    ASSERT_NO_FATAL_FAILURE(LoadPrompt(test_case.name, test_case.model_dir, *weights, prompt));
    GenerationOptions options;
    options.max_new_tokens = c["max_new_tokens"].get<int>();
    options.keep_prompt_logits = true;
    auto result = Generate(*weights, prompt.input, options, cache, comm->get());
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_LE(MaxAbsDiff(result->prompt_logits, ReadNpy(kGolden + test_case.name + "/logits.npy")->floats), 1e-4);
    const NpyArray greedy = *ReadNpy(kGolden + test_case.name + "/greedy_ids.npy");
    EXPECT_EQ(result->ids, std::vector<int32_t>(greedy.ints.begin(), greedy.ints.end()));
    ++checked;
  }
  EXPECT_GE(checked, 1);
  if (slice.size > 1) {
    EXPECT_GE(refused, 1);  // the 1-KV-head checkpoint, and at TP 4 the 2-KV-head ones
  }
}

// transformers 4.33's beam search (tools/reference/beam_goldens.py: B = 2 and 3, repetition penalty 1.005 and 3.0,
// beams ending on either of two EOS ids) gives the same tokens, text and image prompts, on every rank. Small blocks
// (3 positions) make forks copy partly filled blocks; with SP each rank forks its own shard.
TEST(ParallelGoldenTest, BeamSearchesMatchTransformers) {
  const parallel::Mapping mapping = testing::WorldMapping();
  auto comm = parallel::CreateMpiDeviceComm(mapping);
  ASSERT_TRUE(comm.ok()) << comm.status();
  const parallel::TpSlice slice{mapping.tp_rank(), mapping.layout().tp};
  int searched = 0;
  for (const nlohmann::json& golden : GoldenRecords("beams")) {
    const std::string name = golden["case"].get<std::string>();
    SCOPED_TRACE(name + " on " + mapping.ToString());
    if (!LoadsUnder(name, slice)) continue;
    auto weights = LoadLlmWeights(ModelDirOf(name), slice);
    ASSERT_TRUE(weights.ok()) << weights.status();
    LoadedPrompt prompt;
    ASSERT_NO_FATAL_FAILURE(LoadPrompt(name, ModelDirOf(name), *weights, prompt));
    for (const auto& search : golden["searches"]) {
      BeamGenerationOptions options;
      options.num_beams = search["num_beams"].get<int>();
      options.repetition_penalty = search["repetition_penalty"].get<float>();
      options.eos_ids = search["eos_ids"].get<std::vector<int32_t>>();
      options.max_new_tokens = search["max_new_tokens"].get<int>();
      KvCache cache(weights->shard, /*block_size=*/3, /*num_blocks=*/256);
      auto result = GenerateBeams(*weights, prompt.input, options, cache, comm->get());
      ASSERT_TRUE(result.ok()) << result.status();
      EXPECT_EQ(result->ids, search["ids"].get<std::vector<int32_t>>())
          << "B=" << options.num_beams << " penalty " << options.repetition_penalty;
      EXPECT_EQ(cache.free_blocks(), cache.num_blocks()) << "every block back after the search";
      ++searched;
    }
  }
  if (searched == 0) GTEST_SKIP() << "no beam golden checkpoint has KV heads that TP " << slice.size << " divides";
  EXPECT_GE(searched, 4);
}

// transformers 4.33 seeds generate()'s ids with BOS when given input embeddings, and its repetition penalty sees
// them: greedy decoding penalizes BOS too (spec 8). tools/reference/penalty_goldens.py makes the head's BOS row the
// first greedy token's row times 2 (or 1/2; exact in every dtype), so that BOS would win the first step unpenalized,
// and records 4.33's greedy ids under penalty 3.0 (5.x, which seeds nothing, picks BOS). Every layout, the BOS row
// written into whichever TP rank's slice of the head holds it.
TEST(ParallelGoldenTest, RepetitionPenaltySeesBosAsTransformers433) {
  const parallel::Mapping mapping = testing::WorldMapping();
  auto comm = parallel::CreateMpiDeviceComm(mapping);
  ASSERT_TRUE(comm.ok()) << comm.status();
  const parallel::TpSlice slice{mapping.tp_rank(), mapping.layout().tp};
  int checked = 0;
  for (const nlohmann::json& golden : GoldenRecords("penalty_bos")) {
    const std::string name = golden["case"].get<std::string>();
    SCOPED_TRACE(name + " on " + mapping.ToString());
    if (!LoadsUnder(name, slice)) continue;
    auto weights = LoadLlmWeights(ModelDirOf(name), slice);
    auto whole = LoadLlmWeights(ModelDirOf(name));  // the source row may live in another rank's slice
    ASSERT_TRUE(weights.ok() && whole.ok()) << weights.status() << whole.status();
    // This rank's head, copied, with the BOS row made where this slice holds it.
    const TensorView head = weights->output;
    const int64_t hidden = head.dim(1), local = head.dim(0), offset = slice.rank * local;
    const size_t row_bytes = static_cast<size_t>(hidden) * DTypeSize(head.dtype);
    std::vector<uint8_t> copy(static_cast<const uint8_t*>(head.data),
                              static_cast<const uint8_t*>(head.data) + head.nbytes());
    const int64_t bos = kHistoryBosId, from = golden["bos_row_from"].get<int64_t>();
    const float scale = golden["scale"].get<float>();
    if (bos >= offset && bos < offset + local) {
      const uint8_t* source = static_cast<const uint8_t*>(whole->output.data) + from * row_bytes;
      uint8_t* target = copy.data() + (bos - offset) * row_bytes;
      for (int64_t c = 0; c < hidden; ++c) {
        switch (head.dtype) {
          case DType::kF32:
            reinterpret_cast<float*>(target)[c] = reinterpret_cast<const float*>(source)[c] * scale;
            break;
          case DType::kBF16:
            reinterpret_cast<uint16_t*>(target)[c] =
                F32ToBf16(Bf16ToF32(reinterpret_cast<const uint16_t*>(source)[c]) * scale);
            break;
          case DType::kF16:
            reinterpret_cast<uint16_t*>(target)[c] =
                F32ToF16(F16ToF32(reinterpret_cast<const uint16_t*>(source)[c]) * scale);
            break;
        }
      }
    }
    weights->output = TensorView(copy.data(), head.dtype, {local, hidden});
    LoadedPrompt prompt;
    ASSERT_NO_FATAL_FAILURE(LoadPrompt(name, ModelDirOf(name), *weights, prompt));
    GenerationOptions options;
    options.max_new_tokens = golden["max_new_tokens"].get<int>();
    options.sampling.repetition_penalty = golden["repetition_penalty"].get<float>();
    KvCache cache(weights->shard, /*block_size=*/4, /*num_blocks=*/128);
    auto result = Generate(*weights, prompt.input, options, cache, comm->get());
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->ids, golden["ids"].get<std::vector<int32_t>>());
    EXPECT_NE(result->ids, golden["ids_transformers5"].get<std::vector<int32_t>>()) << "the case must tell them apart";
    ++checked;
  }
  if (checked == 0) GTEST_SKIP() << "no penalty golden checkpoint has KV heads that TP " << slice.size << " divides";
}

// The case the SP prefill tests share: 26 positions, below max_position_embeddings (one RoPE base throughout); 4 KV
// heads, so every layout loads it; image rows and the web LoRA on top. This rank's TP slice of its weights.
struct KvFourCase {
  std::unique_ptr<parallel::DeviceComm> comm;
  LlmWeights weights;
  std::vector<int32_t> ids;   // (length)
  std::vector<uint8_t> mask;  // (length)
  std::vector<float> golden;  // (length, vocab) transformers' logits
};

KvFourCase LoadKvFourCase(const parallel::Mapping& mapping) {
  const std::string name = "kv4_bias_plora_web";
  auto comm = parallel::CreateMpiDeviceComm(mapping);
  EXPECT_TRUE(comm.ok()) << comm.status();
  auto weights =
      LoadLlmWeights(std::string(IXC_GOLDEN_MODELS_DIR) + "/" + name, {mapping.tp_rank(), mapping.layout().tp});
  EXPECT_TRUE(weights.ok()) << weights.status();
  const NpyArray prompt = *ReadNpy(kGolden + name + "/prompt_ids.npy");
  const NpyArray mask = *ReadNpy(kGolden + name + "/image_mask.npy");
  return {std::move(*comm), std::move(*weights), std::vector<int32_t>(prompt.ints.begin(), prompt.ints.end()),
          std::vector<uint8_t>(mask.ints.begin(), mask.ints.end()), ReadNpy(kGolden + name + "/logits.npy")->floats};
}

// The case's ids and image mask at `positions` (a rank's rows of the prompt).
struct PromptRows {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
};
PromptRows RowsAt(const KvFourCase& c, const std::vector<int32_t>& positions) {
  PromptRows rows;
  for (int32_t p : positions) {
    rows.ids.push_back(c.ids[p]);
    rows.mask.push_back(c.mask[p]);
  }
  return rows;
}

// Chunked prefill on a sequence split across the SP group (architecture section 4): the first part of the prompt by
// ring attention, the rest as one chunk that every SP rank holds, attended to each rank's shard and merged, each
// token's K/V kept by its round-robin owner. The logits of both parts equal the goldens: with the chunk in one
// forward call, and cut into calls of 5 rows (chunked_forward.h), each attending to the pieces before it.
void CheckChunkedPrefillAfterARingPrefill(const KvFourCase& c, int64_t max_rows_per_call) {
  parallel::DeviceComm* comm = c.comm.get();
  const int64_t vocab = c.weights.config.vocab_size, first = 7, length = static_cast<int64_t>(c.ids.size());
  KvCache cache(c.weights.shard, /*block_size=*/2, /*num_blocks=*/32);
  SequenceKv seq;
  ForwardInput head;
  head.ids = std::span<const int32_t>(c.ids.data(), first);
  head.image_mask = std::span<const uint8_t>(c.mask.data(), first);
  head.lora = LoraMode::kWeb;
  auto logits = Prefill(c.weights, head, /*all_logits=*/true, seq, cache, comm);
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_LE(MaxAbsDiff(*logits, std::vector<float>(c.golden.begin(), c.golden.begin() + first * vocab)), 1e-4);

  const int sp = comm->GroupSize(parallel::Group::kSequence);
  const int sp_rank = comm->GroupRank(parallel::Group::kSequence);
  std::vector<int32_t> positions;
  std::vector<uint8_t> keep;
  for (int64_t p = first; p < length; ++p) {
    positions.push_back(static_cast<int32_t>(p));
    keep.push_back(sp == 1 || parallel::KvOwner(p, cache.block_size(), sp) == sp_rank);
  }
  ForwardInput chunk;
  chunk.ids = std::span<const int32_t>(c.ids.data() + first, length - first);
  chunk.image_mask = std::span<const uint8_t>(c.mask.data() + first, length - first);
  chunk.lora = LoraMode::kWeb;
  chunk.positions = positions;
  chunk.store_kv = keep;
  chunk.all_logits = true;
  chunk.sp_attention = sp > 1 ? SpAttention::kGatherMerge : SpAttention::kLocal;
  std::vector<float> rest;
  std::vector<BatchEntry> batch = {{chunk, &seq, &rest}};
  ASSERT_TRUE(LanguageModelForwardBatch(c.weights, batch, cache, comm, max_rows_per_call).ok());
  EXPECT_LE(MaxAbsDiff(rest, std::vector<float>(c.golden.begin() + first * vocab, c.golden.end())), 1e-4);
}

TEST(ParallelGoldenTest, ChunkedPrefillAfterARingPrefill) {
  const KvFourCase c = LoadKvFourCase(testing::WorldMapping());
  ASSERT_FALSE(HasFailure());
  for (int64_t max_rows_per_call : {0, 5}) {
    SCOPED_TRACE(::testing::Message() << "rows per forward call: " << (max_rows_per_call == 0 ? "any" : "5"));
    CheckChunkedPrefillAfterARingPrefill(c, max_rows_per_call);
  }
}

// A prompt its caller has already cut into this SP rank's block-cyclic shard (the cluster's LLM ranks, which receive
// image rows straight into place) prefills as one Prefill cuts itself: the goldens' logits. Positions that are not
// this rank's shard are refused.
TEST(ParallelGoldenTest, PromptShardedByTheCaller) {
  const KvFourCase c = LoadKvFourCase(testing::WorldMapping());
  ASSERT_FALSE(HasFailure());
  parallel::DeviceComm* comm = c.comm.get();
  const int64_t length = static_cast<int64_t>(c.ids.size());
  const int sp = comm->GroupSize(parallel::Group::kSequence);
  const int sp_rank = comm->GroupRank(parallel::Group::kSequence);
  if (sp == 1) GTEST_SKIP() << "no sequence parallelism in this layout";
  const std::vector<int32_t> positions = parallel::OwnedPositions(length, sp_rank, sp, /*block_size=*/2);
  const PromptRows rows = RowsAt(c, positions);
  ForwardInput shard;
  shard.ids = rows.ids;
  shard.image_mask = rows.mask;
  shard.lora = LoraMode::kWeb;
  shard.positions = positions;
  shard.context_length = length;
  KvCache cache(c.weights.shard, /*block_size=*/2, /*num_blocks=*/32);
  SequenceKv seq;
  auto logits = Prefill(c.weights, shard, /*all_logits=*/true, seq, cache, comm);
  ASSERT_TRUE(logits.ok()) << logits.status();
  EXPECT_LE(MaxAbsDiff(*logits, c.golden), 1e-4);

  // Another rank's positions: refused here, before any collective, so every rank refuses alike.
  const std::vector<int32_t> others = parallel::OwnedPositions(length, (sp_rank + 1) % sp, sp, /*block_size=*/2);
  shard.positions = others;
  SequenceKv other_seq;
  auto refused = Prefill(c.weights, shard, /*all_logits=*/true, other_seq, cache, comm);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("positions it prefills"), std::string::npos) << refused.status();
}

// A prompt too short for a block on every SP rank (under 2S with blocks of 2) goes whole to every SP rank, which keep
// the K/V of the positions they own (as decode steps do, so a rank may hold none) and attend by the all-gather merge:
// the first L golden positions' logits for every L up to 2S (the first ring prefill), given whole or as the cluster's
// ranks give it (positions = PrefillPositions), and decode steps after it as on one rank with the whole weights.
TEST(ParallelGoldenTest, ShortPromptsGoWholeToEveryRank) {
  const KvFourCase c = LoadKvFourCase(testing::WorldMapping());
  ASSERT_FALSE(HasFailure());
  parallel::DeviceComm* comm = c.comm.get();
  const int sp = comm->GroupSize(parallel::Group::kSequence);
  const int sp_rank = comm->GroupRank(parallel::Group::kSequence);
  if (sp == 1) GTEST_SKIP() << "no sequence parallelism in this layout";
  auto whole = LoadLlmWeights(std::string(IXC_GOLDEN_MODELS_DIR) + "/kv4_bias_plora_web");
  ASSERT_TRUE(whole.ok()) << whole.status();
  const int64_t vocab = c.weights.config.vocab_size;
  for (int64_t length = 1; length <= 2 * sp; ++length) {
    for (const bool sharded_by_caller : {false, true}) {
      SCOPED_TRACE(::testing::Message() << length << " tokens over " << sp << " ranks"
                                        << (sharded_by_caller ? ", positions from the caller" : ""));
      EXPECT_EQ(parallel::RingPrefill(length, sp, /*block_size=*/2), length == 2 * sp);
      const std::vector<int32_t> positions = parallel::PrefillPositions(0, length, sp_rank, sp, /*block_size=*/2);
      const PromptRows rows = RowsAt(c, positions);
      ForwardInput prompt;
      prompt.ids =
          sharded_by_caller ? std::span<const int32_t>(rows.ids) : std::span<const int32_t>(c.ids.data(), length);
      prompt.image_mask =
          sharded_by_caller ? std::span<const uint8_t>(rows.mask) : std::span<const uint8_t>(c.mask.data(), length);
      prompt.lora = LoraMode::kWeb;
      if (sharded_by_caller) {
        prompt.positions = positions;
        prompt.context_length = length;
      }
      KvCache cache(c.weights.shard, /*block_size=*/2, /*num_blocks=*/32), reference_cache(whole->shard, 2, 32);
      SequenceKv seq, reference_seq;
      auto logits = Prefill(c.weights, prompt, /*all_logits=*/true, seq, cache, comm);
      ASSERT_TRUE(logits.ok()) << logits.status();
      EXPECT_LE(MaxAbsDiff(*logits, std::vector<float>(c.golden.begin(), c.golden.begin() + length * vocab)), 1e-4);
      // K/V kept where the coordinator's blocks say (parallel::OwnedPositions).
      EXPECT_EQ(seq.positions, parallel::OwnedPositions(length, sp_rank, sp, cache.block_size()));

      ForwardInput reference_prompt;
      reference_prompt.ids = std::span<const int32_t>(c.ids.data(), length);
      reference_prompt.image_mask = std::span<const uint8_t>(c.mask.data(), length);
      reference_prompt.lora = LoraMode::kWeb;
      ASSERT_TRUE(Prefill(*whole, reference_prompt, false, reference_seq, reference_cache, nullptr).ok());
      for (int32_t step = 0; step < 3; ++step) {
        const int32_t token = c.ids[12 + step], position = static_cast<int32_t>(length) + step;
        auto mine = DecodeStep(c.weights, token, position, LoraMode::kWeb, seq, cache, comm);
        auto reference = DecodeStep(*whole, token, position, LoraMode::kWeb, reference_seq, reference_cache, nullptr);
        ASSERT_TRUE(mine.ok() && reference.ok()) << mine.status() << " " << reference.status();
        EXPECT_LE(MaxAbsDiff(*mine, *reference), 1e-4) << "decode step " << step;
      }
    }
  }
}

// A prompt after a cached prefix (the prefix cache: its first `cached` positions' K/V are in the sequence's blocks
// already, laid out block-cyclically as any prefill leaves them) prefills the rest whole on every SP rank: the
// goldens' logits of those positions, for prefixes prefilled by the ring or whole, given whole or as the cluster's
// ranks give it. A sequence that does not hold its rank's part of the prefix is refused.
TEST(ParallelGoldenTest, PrefillAfterACachedPrefix) {
  const KvFourCase c = LoadKvFourCase(testing::WorldMapping());
  ASSERT_FALSE(HasFailure());
  parallel::DeviceComm* comm = c.comm.get();
  const int64_t vocab = c.weights.config.vocab_size, length = static_cast<int64_t>(c.ids.size());
  const int sp = comm->GroupSize(parallel::Group::kSequence);
  const int sp_rank = comm->GroupRank(parallel::Group::kSequence);
  for (int64_t cached : {2, 8, 12}) {
    for (const bool sharded_by_caller : {false, true}) {
      SCOPED_TRACE(::testing::Message() << cached << " cached positions of " << length
                                        << (sharded_by_caller ? ", positions from the caller" : ""));
      KvCache cache(c.weights.shard, /*block_size=*/2, /*num_blocks=*/32);
      SequenceKv seq;
      ForwardInput prefix;
      prefix.ids = std::span<const int32_t>(c.ids.data(), cached);
      prefix.image_mask = std::span<const uint8_t>(c.mask.data(), cached);
      prefix.lora = LoraMode::kWeb;
      ASSERT_TRUE(Prefill(c.weights, prefix, /*all_logits=*/false, seq, cache, comm).ok());
      EXPECT_EQ(seq.positions, parallel::OwnedPositions(cached, sp_rank, sp, cache.block_size()));

      const std::vector<int32_t> positions =
          parallel::PrefillPositions(cached, length, sp_rank, sp, cache.block_size());
      ForwardInput rest;
      rest.ids = std::span<const int32_t>(c.ids.data() + cached, length - cached);
      rest.image_mask = std::span<const uint8_t>(c.mask.data() + cached, length - cached);
      rest.lora = LoraMode::kWeb;
      const PromptRows rows = RowsAt(c, positions);
      if (sharded_by_caller && sp > 1) {  // this rank's rows alone
        rest.ids = rows.ids;
        rest.image_mask = rows.mask;
        rest.positions = positions;
        rest.context_length = length;
      }
      auto logits = Prefill(c.weights, rest, /*all_logits=*/true, seq, cache, comm, false, {.cached = cached});
      ASSERT_TRUE(logits.ok()) << logits.status();
      EXPECT_LE(MaxAbsDiff(*logits, std::vector<float>(c.golden.begin() + cached * vocab, c.golden.end())), 1e-4);
      EXPECT_EQ(seq.positions, parallel::OwnedPositions(length, sp_rank, sp, cache.block_size()));

      if (cached >= sp * cache.block_size()) {  // every rank holds part of the prefix, so every rank refuses alike
        SequenceKv empty;
        auto refused = Prefill(c.weights, rest, /*all_logits=*/true, empty, cache, comm, false, {.cached = cached});
        EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
      }
    }
  }
}

// Chunked prefill (PromptSpan): the prompt in 2, 3 and 7 chunks of uneven sizes, cut inside the image rows, each
// chunk attending to the K/V the ones before it wrote (by the ring where a chunk has a block for every SP rank) with
// RoPE's base of the whole prompt, gives the whole prefill's logits (within 1e-5) and the goldens'; so do the decode
// steps after it.
TEST(ParallelGoldenTest, ChunkedPrefillEqualsTheWhole) {
  const KvFourCase c = LoadKvFourCase(testing::WorldMapping());
  ASSERT_FALSE(HasFailure());
  parallel::DeviceComm* comm = c.comm.get();
  const int64_t vocab = c.weights.config.vocab_size, length = static_cast<int64_t>(c.ids.size());
  auto part = [&](int64_t begin, int64_t end) {
    ForwardInput input;
    input.ids = std::span<const int32_t>(c.ids.data() + begin, end - begin);
    input.image_mask = std::span<const uint8_t>(c.mask.data() + begin, end - begin);
    input.lora = LoraMode::kWeb;
    return input;
  };
  KvCache whole_cache(c.weights.shard, /*block_size=*/2, /*num_blocks=*/32);
  SequenceKv whole_seq;
  auto whole = Prefill(c.weights, part(0, length), /*all_logits=*/true, whole_seq, whole_cache, comm);
  ASSERT_TRUE(whole.ok()) << whole.status();
  EXPECT_LE(MaxAbsDiff(*whole, c.golden), 1e-4);
  for (int chunks : {2, 3, 7}) {
    SCOPED_TRACE(::testing::Message() << chunks << " chunks of " << length << " positions");
    KvCache cache(c.weights.shard, /*block_size=*/2, /*num_blocks=*/32);
    SequenceKv seq;
    std::vector<float> logits;
    auto boundary = [&](int i) { return i == chunks ? length : length * i / chunks + i % 2; };  // uneven
    for (int i = 0; i < chunks; ++i) {
      const int64_t begin = boundary(i), end = boundary(i + 1);
      auto chunk = Prefill(c.weights, part(begin, end), /*all_logits=*/true, seq, cache, comm, false,
                           {.cached = begin, .end = end, .length = length});
      ASSERT_TRUE(chunk.ok()) << chunk.status();
      ASSERT_EQ(static_cast<int64_t>(chunk->size()), (end - begin) * vocab);
      logits.insert(logits.end(), chunk->begin(), chunk->end());
    }
    EXPECT_LE(MaxAbsDiff(logits, *whole), 1e-5);
    for (int32_t step = 0; step < 2; ++step) {
      const int32_t token = c.ids[3 + step], position = static_cast<int32_t>(length) + step;
      auto mine = DecodeStep(c.weights, token, position, LoraMode::kWeb, seq, cache, comm);
      auto reference = DecodeStep(c.weights, token, position, LoraMode::kWeb, whole_seq, whole_cache, comm);
      ASSERT_TRUE(mine.ok() && reference.ok()) << mine.status() << " " << reference.status();
      EXPECT_LE(MaxAbsDiff(*mine, *reference), 1e-5) << "decode step " << step;
    }
    // The whole sequence's decode steps ran twice: give them back for the next chunking.
    whole_cache.Release(whole_seq);
    ASSERT_TRUE(Prefill(c.weights, part(0, length), false, whole_seq, whole_cache, comm).ok());
  }
}

// Decode steps that choose their own tokens on every rank of the layout (the prompts prefilled by the ring where SP
// > 1, the decode KV round-robin) give the tokens SampleNext picks from the same batch's whole logits.
TEST(ParallelGoldenTest, TokenChoicesMatchHostSampling) {
  const KvFourCase c = LoadKvFourCase(testing::WorldMapping());
  ASSERT_FALSE(HasFailure());
  KvCache cache(c.weights.shard, /*block_size=*/4, /*num_blocks=*/128);
  ixc::testing::ExpectChoicesMatchHostSampling(c.weights, cache, c.ids, c.comm.get());
}

}  // namespace
}  // namespace ixc::model

IXC_MPI_TEST_MAIN()
