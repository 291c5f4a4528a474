// The language model on the GPU against the CPU path on the golden checkpoints (f32, bf16, f16; GQA 2:1 and 4:1;
// head dims 16 and, in d128_gqa4_plora_bf16, the real model's 128, which reaches the kernels' 128-wide paths;
// PLoRA rows; web and write LoRAs; biases; dynamic NTK): logits of every prompt position, then decode steps fed the
// same tokens, alone and batched across sequences; a prompt's last row batched with a decode row. The GPU runs bf16
// (f16 for the f16 checkpoint): activations are rounded at every GEMM input, so logits agree to about 1% of their
// range, and the greedy choices where the top two are apart by more than that. Each case runs with the decode steps
// launched kernel by kernel and replayed as CUDA graphs (captured at the first step, replayed at the next five).
// Skipped without a GPU.
//   IXC_GOLDEN_MODELS=/path/to/models ./model_cuda_test   (tests/make_golden_models.py builds them)
#include <algorithm>
#include <functional>

#include "core/status_macros.h"
#include "kernels/ops.h"
#include "model/cuda/cuda_language_model.h"
#include "model/generation.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/model/golden_cases.h"
#include "tests/model/token_choice_check.h"

namespace ixc::model {
namespace {

using ixc::testing::CudaTest;
using ixc::testing::kLanguageModelCases;
using ixc::testing::RelativeError;

constexpr int kKvBlocks = 256;

// The golden checkpoint `name` on the GPU in its 16-bit dtype (f16 for the f16 checkpoint, else bf16).
absl::StatusOr<KvCache> AttachGolden(LlmWeights& weights, bool decode_graphs, int64_t max_rows_per_call = 0) {
  CudaModelOptions options;
  options.decode_graphs = decode_graphs;
  options.max_rows_per_call = max_rows_per_call;
  options.dtype = weights.layers[0].attn_qkv.weight.dtype == DType::kF16 ? DType::kF16 : DType::kBF16;
  options.kv_blocks = kKvBlocks;
  options.kv_reserve_bytes = 0;
  return AttachCudaModel(weights, options);
}

// Each case's golden checkpoint loaded twice, one copy on the GPU (with or without decode graphs), each with a KV
// cache of the same blocks; and the case's prompt.
class CudaModelTest : public ixc::testing::CudaTest,
                      public ::testing::WithParamInterface<std::tuple<std::string, bool>> {
 protected:
  absl::Status LoadBoth(int64_t max_rows_per_call = 0) {
    const auto& [name, decode_graphs] = GetParam();
    golden_ = ixc::testing::LoadGoldenPrompt(name);
    IXC_ASSIGN_OR_RETURN(cpu_weights_, LoadLlmWeights(ixc::testing::GoldenModelsDir() + "/" + name));
    IXC_ASSIGN_OR_RETURN(gpu_weights_, LoadLlmWeights(ixc::testing::GoldenModelsDir() + "/" + name));
    IXC_ASSIGN_OR_RETURN(KvCache gpu_cache, AttachGolden(gpu_weights_, decode_graphs, max_rows_per_call));
    gpu_cache_.emplace(std::move(gpu_cache));
    cpu_cache_.emplace(cpu_weights_.config, gpu_cache_->block_size(), kKvBlocks);
    prompt_.ids = golden_.ids;
    prompt_.image_mask = golden_.image_mask;
    prompt_.lora = golden_.lora;
    return absl::OkStatus();
  }

  ixc::testing::GoldenPrompt golden_;
  LlmWeights cpu_weights_, gpu_weights_;
  std::optional<KvCache> cpu_cache_, gpu_cache_;
  ForwardInput prompt_;
};

TEST_P(CudaModelTest, LogitsMatchTheCpuPath) {
  const absl::Status loaded = LoadBoth();
  ASSERT_TRUE(loaded.ok()) << loaded;
  const auto& [name, decode_graphs] = GetParam();
  SequenceKv cpu_seq, gpu_seq;
  auto cpu_logits = Prefill(cpu_weights_, prompt_, /*all_logits=*/true, cpu_seq, *cpu_cache_, nullptr);
  auto gpu_logits = Prefill(gpu_weights_, prompt_, /*all_logits=*/true, gpu_seq, *gpu_cache_, nullptr);
  ASSERT_TRUE(cpu_logits.ok()) << cpu_logits.status();
  ASSERT_TRUE(gpu_logits.ok()) << gpu_logits.status();
  EXPECT_LT(RelativeError(*gpu_logits, *cpu_logits), 0.03) << name << " prefill";

  // Decode steps fed the same tokens (the CPU's greedy choices), two sequences batched on each side.
  SequenceKv cpu_seq2, gpu_seq2;
  ForwardInput short_prompt = prompt_;
  short_prompt.ids = std::span<const int32_t>(golden_.ids).first(golden_.ids.size() / 2);
  if (!golden_.image_mask.empty())
    short_prompt.image_mask = std::span<const uint8_t>(golden_.image_mask).first(golden_.ids.size() / 2);
  ASSERT_TRUE(Prefill(cpu_weights_, short_prompt, false, cpu_seq2, *cpu_cache_, nullptr).ok());
  ASSERT_TRUE(Prefill(gpu_weights_, short_prompt, false, gpu_seq2, *gpu_cache_, nullptr).ok());
  const int64_t vocab = cpu_weights_.config.vocab_size;
  int32_t token = static_cast<int32_t>(
      std::max_element(cpu_logits->end() - vocab, cpu_logits->end()) - (cpu_logits->end() - vocab));
  for (int step = 0; step < 6; ++step) {
    std::vector<DecodeItem> cpu_items(2), gpu_items(2);
    for (int s = 0; s < 2; ++s) {
      const int64_t position = s == 0 ? cpu_seq.length : cpu_seq2.length;
      cpu_items[s] = {token, static_cast<int32_t>(position), golden_.lora, s == 0 ? &cpu_seq : &cpu_seq2, {}};
      gpu_items[s] = {token, static_cast<int32_t>(position), golden_.lora, s == 0 ? &gpu_seq : &gpu_seq2, {}};
    }
    ASSERT_TRUE(DecodeSteps(cpu_weights_, cpu_items, *cpu_cache_, nullptr).ok());
    auto status = DecodeSteps(gpu_weights_, gpu_items, *gpu_cache_, nullptr);
    ASSERT_TRUE(status.ok()) << status;
    for (int s = 0; s < 2; ++s) {
      EXPECT_LT(RelativeError(gpu_items[s].logits, cpu_items[s].logits), 0.03)
          << name << (decode_graphs ? " (graphs)" : "") << " decode step " << step << " sequence " << s;
    }
    token = static_cast<int32_t>(std::max_element(cpu_items[0].logits.begin(), cpu_items[0].logits.end()) -
                                 cpu_items[0].logits.begin());
  }
  EXPECT_EQ(gpu_seq.length, cpu_seq.length);
}

// Where only a prompt's last row gives logits, the GPU's last layer goes on past its K/V with the logit rows alone
// (compacted, attending through the decode kernel): a batch of the prompt and another sequence's decode row (base
// mode) against the CPU's same batch, a decode step after it (reading the last layer's K/V of every row), and a
// prompt whose last row is an image row.
TEST_P(CudaModelTest, LastLayerOnTheLogitRowsAlone) {
  const absl::Status loaded = LoadBoth();
  ASSERT_TRUE(loaded.ok()) << loaded;
  const auto& [name, decode_graphs] = GetParam();
  ForwardInput start;  // the other sequence's first tokens
  start.ids = std::span<const int32_t>(golden_.ids).first(3);
  const std::vector<int32_t> decode_token = {golden_.ids[3]};
  ForwardInput decode;
  decode.ids = decode_token;
  struct Side {
    LlmWeights* weights = nullptr;
    KvCache* cache = nullptr;
    SequenceKv prompt_seq, other;
    std::vector<float> prompt_logits, other_logits;
  };
  Side cpu, gpu;
  cpu.weights = &cpu_weights_;
  cpu.cache = &*cpu_cache_;
  gpu.weights = &gpu_weights_;
  gpu.cache = &*gpu_cache_;
  for (Side* side : {&cpu, &gpu}) {
    ASSERT_TRUE(Prefill(*side->weights, start, false, side->other, *side->cache, nullptr).ok());
    std::vector<BatchEntry> batch = {{prompt_, &side->prompt_seq, &side->prompt_logits},
                                     {decode, &side->other, &side->other_logits}};
    const absl::Status status = LanguageModelForwardBatch(*side->weights, batch, *side->cache);
    ASSERT_TRUE(status.ok()) << status;
  }
  EXPECT_LT(RelativeError(gpu.prompt_logits, cpu.prompt_logits), 0.03) << name << " the prompt's last row";
  EXPECT_LT(RelativeError(gpu.other_logits, cpu.other_logits), 0.03) << name << " the decode row beside it";
  const std::vector<int32_t> next_token = {golden_.ids[0]};
  ForwardInput next;
  next.ids = next_token;
  next.lora = golden_.lora;
  for (Side* side : {&cpu, &gpu}) {
    std::vector<BatchEntry> batch = {{next, &side->prompt_seq, &side->prompt_logits}};
    ASSERT_TRUE(LanguageModelForwardBatch(*side->weights, batch, *side->cache).ok());
  }
  EXPECT_LT(RelativeError(gpu.prompt_logits, cpu.prompt_logits), 0.03) << name << " a decode step after it";

  if (!cpu_weights_.has_plora) return;
  std::vector<uint8_t> image(golden_.ids.size(), 0);
  image[1] = image.back() = 1;
  prompt_.image_mask = image;
  SequenceKv cpu_image, gpu_image;
  auto cpu_last = Prefill(cpu_weights_, prompt_, false, cpu_image, *cpu_cache_, nullptr);
  auto gpu_last = Prefill(gpu_weights_, prompt_, false, gpu_image, *gpu_cache_, nullptr);
  ASSERT_TRUE(cpu_last.ok() && gpu_last.ok());
  EXPECT_LT(RelativeError(*gpu_last, *cpu_last), 0.03) << name << " an image row last";
}

// A GPU whose forward calls take 7 rows at most (CudaModelOptions::max_rows_per_call; its scratch budget bounds it)
// prefills a prompt in chunks (model/chunked_forward.h): every position's logits as the CPU's in one call, and the
// next token chosen on the device after the last chunk as the CPU chooses it.
TEST_P(CudaModelTest, LongPromptsInChunksMatchTheCpu) {
  const absl::Status loaded = LoadBoth(/*max_rows_per_call=*/7);
  ASSERT_TRUE(loaded.ok()) << loaded;
  const auto& [name, decode_graphs] = GetParam();
  ASSERT_EQ(gpu_weights_.device->Limits().rows, 7);
  SequenceKv cpu_seq, gpu_seq;
  auto cpu_logits = Prefill(cpu_weights_, prompt_, /*all_logits=*/true, cpu_seq, *cpu_cache_, nullptr);
  auto gpu_logits = Prefill(gpu_weights_, prompt_, /*all_logits=*/true, gpu_seq, *gpu_cache_, nullptr);
  ASSERT_TRUE(cpu_logits.ok() && gpu_logits.ok());
  ASSERT_EQ(gpu_logits->size(), cpu_logits->size());
  EXPECT_LT(RelativeError(*gpu_logits, *cpu_logits), 0.03) << name << " every position";
  TokenChoice cpu_choice, gpu_choice;
  std::vector<float> cpu_last, gpu_last;
  SequenceKv cpu_chosen, gpu_chosen;
  std::vector<BatchEntry> cpu_batch = {{prompt_, &cpu_chosen, &cpu_last, &cpu_choice}};
  std::vector<BatchEntry> gpu_batch = {{prompt_, &gpu_chosen, &gpu_last, &gpu_choice}};
  ASSERT_TRUE(LanguageModelForwardBatch(cpu_weights_, cpu_batch, *cpu_cache_).ok());
  ASSERT_TRUE(LanguageModelForwardBatch(gpu_weights_, gpu_batch, *gpu_cache_).ok());
  // Where the CPU's top two logits are apart by more than the GPU's rounding moves them (about 1% of their range).
  std::vector<float> sorted = cpu_last;
  std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<float>());
  const float range = sorted[0] - *std::min_element(cpu_last.begin(), cpu_last.end());
  if (sorted[0] - sorted[1] > 0.02f * range) {
    EXPECT_EQ(gpu_choice.token, cpu_choice.token) << name << " the next token";
  }
}

// Decode steps that choose their next token on the device (argmax, the repetition penalty, temperature, top-k and
// top-p with the host's draw) pick what SampleNext picks from the same GPU's logits, kernel by kernel and in graphs.
TEST_P(CudaModelTest, DeviceChoosesWhatTheHostChooses) {
  const auto& [name, decode_graphs] = GetParam();
  const ixc::testing::GoldenPrompt c = ixc::testing::LoadGoldenPrompt(name);
  auto weights = LoadLlmWeights(ixc::testing::GoldenModelsDir() + "/" + name);
  ASSERT_TRUE(weights.ok()) << weights.status();
  auto cache = AttachGolden(*weights, decode_graphs);
  ASSERT_TRUE(cache.ok()) << cache.status();
  ixc::testing::ExpectChoicesMatchHostSampling(*weights, *cache, c.ids);
}

INSTANTIATE_TEST_SUITE_P(GoldenCases, CudaModelTest,
                         ::testing::Combine(::testing::ValuesIn(std::vector<std::string>(
                                                std::begin(kLanguageModelCases), std::end(kLanguageModelCases))),
                                            ::testing::Bool()));

// Input embeddings may sit in the GPU's memory (image rows that came over NCCL): the same logits, bit for bit, as
// from host memory.
TEST_F(CudaTest, EmbeddingsInDeviceMemoryGiveTheLogitsOfHostOnes) {
  const std::string name = "d128_gqa4_plora_bf16";
  const ixc::testing::GoldenPrompt c = ixc::testing::LoadGoldenPrompt(name);
  auto weights = LoadLlmWeights(ixc::testing::GoldenModelsDir() + "/" + name);
  ASSERT_TRUE(weights.ok()) << weights.status();
  auto cache = AttachGolden(*weights, /*decode_graphs=*/false);
  ASSERT_TRUE(cache.ok()) << cache.status();
  const int64_t hidden = weights->config.hidden_size;
  std::vector<float> embeddings(c.ids.size() * hidden);
  ASSERT_TRUE(kernels::EmbeddingGather(weights->tok_embeddings, c.ids.data(), c.ids.size(), embeddings.data()).ok());
  ixc::testing::DeviceBuffer<float> on_device(embeddings);
  std::vector<std::vector<float>> logits;
  for (const float* rows : {static_cast<const float*>(embeddings.data()), static_cast<const float*>(on_device.data)}) {
    ForwardInput prompt;
    prompt.embeddings = std::span<const float>(rows, embeddings.size());
    prompt.image_mask = c.image_mask;
    prompt.lora = c.lora;
    SequenceKv seq;
    auto result = Prefill(*weights, prompt, /*all_logits=*/true, seq, *cache, nullptr);
    ASSERT_TRUE(result.ok()) << result.status();
    logits.push_back(std::move(*result));
    cache->Release(seq);
  }
  EXPECT_EQ(logits[0], logits[1]);
}

// --device cuda starts where a GPU is usable and stops with the runtime's reason where none is.
TEST(CudaModelStartTest, AttachStartsOrSaysWhy) {
  auto weights = LoadLlmWeights(ixc::testing::GoldenModelsDir() + "/tiny_f32");
  ASSERT_TRUE(weights.ok()) << weights.status();
  CudaModelOptions options;
  options.kv_blocks = 16;
  options.kv_reserve_bytes = 0;
  auto cache = AttachCudaModel(*weights, options);
  if (kernels::cuda::ProbeCudaDevice().ok()) {
    ASSERT_TRUE(cache.ok()) << cache.status();
    EXPECT_EQ(cache->num_blocks(), 16);
    EXPECT_NE(weights->device, nullptr);
  } else {
    ASSERT_FALSE(cache.ok());
    EXPECT_NE(cache.status().message().find("no CUDA device is usable"), std::string::npos) << cache.status();
  }
}

// With SP a prompt's shard is prefilled in one call (ring attention): the pool leaves room for the longest one's
// scratch (CudaModelOptions::ring_rows; its arithmetic is ScratchPlanTest's), and a pool that would leave too little
// is refused at start, naming the ring.
TEST(CudaModelStartTest, PoolLeavesRoomForTheLongestRingShard) {
  if (!kernels::cuda::ProbeCudaDevice().ok()) GTEST_SKIP() << "no usable CUDA device";
  auto weights = LoadLlmWeights(ixc::testing::GoldenModelsDir() + "/tiny_f32");
  ASSERT_TRUE(weights.ok()) << weights.status();
  CudaModelOptions options;
  options.kv_blocks = 16;
  options.kv_reserve_bytes = 0;
  options.ring_rows = int64_t{1} << 16;
  ASSERT_TRUE(AttachCudaModel(*weights, options).ok());
  const auto* model = static_cast<const CudaLanguageModel*>(weights->device.get());
  EXPECT_EQ(model->ReserveBytes(), model->scratch_plan().ReserveBytes(0, options.ring_rows));
  EXPECT_GT(model->ReserveBytes(), 0);

  // A shard whose residual stream alone outgrows the GPU: no pool leaves room for it.
  size_t free_bytes = 0, total_bytes = 0;
  ASSERT_EQ(cudaMemGetInfo(&free_bytes, &total_bytes), cudaSuccess);
  options.ring_rows = static_cast<int64_t>(total_bytes) / (weights->config.hidden_size * 4) + 1;
  auto refused = AttachCudaModel(*weights, options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("ring prefill"), std::string::npos) << refused.status();
}

}  // namespace
}  // namespace ixc::model
