// Tensor and sequence parallelism on the GPU, with the T x S LLM ranks as threads sharing one GPU
// (tests/gpu/threaded_device_comm.h): a ring prefill of the prompt's head (zig-zag shards, K/V blocks around the
// ring), the rest as one gather-merge chunk (flash over each rank's shard of the keys, round-robin KV; in one call,
// and cut into calls of 5 rows), then decode steps (the split-KV decode over the shard, gather-merge); with TP, the
// sums and the vocabulary gather. Every rank's logits against the CPU path on one rank making the same calls, within
// the bf16 tolerance of model_cuda_test. Then decode steps that choose their tokens on the device (the TP gather of
// whole rows included) against SampleNext on the same layout's logits; and prompts too short for the ring, whole on
// every rank. Skipped without a GPU.
#include <functional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "model/cuda/cuda_language_model.h"
#include "model/generation.h"
#include "parallel/sequence_shard.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/gpu/threaded_device_comm.h"
#include "tests/model/golden_cases.h"
#include "tests/model/token_choice_check.h"

namespace ixc::model {
namespace {

using ixc::testing::RelativeError;

constexpr int kBlockSize = 4;  // small blocks: the decode tokens' KV goes round-robin over the SP ranks
constexpr int kHead = 9;       // the first prefill (by the ring where it has a block for every SP rank); then a chunk
constexpr int kDecodeSteps = 3;

// The calls every rank makes, and the logits each gives: the ring prefill's, the chunk's (all positions), then one
// per decode step. The fed tokens are the reference's, so every layout sees the same sequence.
struct RankLogits {
  std::vector<float> head, chunk;
  std::vector<std::vector<float>> steps;
};

// kDecodeSteps decode steps after `length` positions of `seq`, feeding `fed`: their logits into run.steps.
absl::Status DecodeFed(const LlmWeights& weights, const ixc::testing::GoldenPrompt& prompt, int64_t length,
                       const std::vector<int32_t>& fed, SequenceKv& seq, KvCache& cache, parallel::DeviceComm* comm,
                       RankLogits& run) {
  for (int step = 0; step < kDecodeSteps; ++step) {
    std::vector<DecodeItem> items = {{fed[step], static_cast<int32_t>(length + step), prompt.lora, &seq, {}}};
    IXC_RETURN_IF_ERROR(DecodeSteps(weights, items, cache, comm));
    run.steps.push_back(std::move(items[0].logits));
  }
  return absl::OkStatus();
}

absl::StatusOr<RankLogits> RunSequence(const LlmWeights& weights, const ixc::testing::GoldenPrompt& prompt,
                                       KvCache& cache, parallel::DeviceComm* comm, const std::vector<int32_t>& fed) {
  const int sp = comm == nullptr ? 1 : comm->GroupSize(parallel::Group::kSequence);
  const int sp_rank = comm == nullptr ? 0 : comm->GroupRank(parallel::Group::kSequence);
  const int64_t length = static_cast<int64_t>(prompt.ids.size());
  auto mask = [&](int64_t begin, int64_t count) {
    return prompt.image_mask.empty() ? std::span<const uint8_t>()
                                     : std::span<const uint8_t>(prompt.image_mask).subspan(begin, count);
  };
  RankLogits run;
  SequenceKv seq;
  ForwardInput head;
  head.ids = std::span<const int32_t>(prompt.ids).first(kHead);
  head.image_mask = mask(0, kHead);
  head.lora = prompt.lora;
  IXC_ASSIGN_OR_RETURN(run.head, Prefill(weights, head, /*all_logits=*/true, seq, cache, comm));

  std::vector<int32_t> positions;
  std::vector<uint8_t> keep;
  for (int64_t p = kHead; p < length; ++p) {
    positions.push_back(static_cast<int32_t>(p));
    keep.push_back(sp == 1 || parallel::KvOwner(p, kBlockSize, sp) == sp_rank);
  }
  ForwardInput chunk;
  chunk.ids = std::span<const int32_t>(prompt.ids).subspan(kHead);
  chunk.image_mask = mask(kHead, length - kHead);
  chunk.lora = prompt.lora;
  chunk.positions = positions;
  chunk.store_kv = keep;
  chunk.all_logits = true;
  chunk.sp_attention = sp > 1 ? SpAttention::kGatherMerge : SpAttention::kLocal;
  IXC_RETURN_IF_ERROR(LanguageModelForward(weights, chunk, seq, cache, &run.chunk, comm));

  IXC_RETURN_IF_ERROR(DecodeFed(weights, prompt, length, fed, seq, cache, comm, run));
  return run;
}

// A prompt too short for a block on every SP rank (parallel::RingPrefill): its first `length` tokens
// prefilled whole on every rank, which keep the K/V of the positions they own (a rank may hold none), then decode
// steps; `head` holds the prefill's logits.
absl::StatusOr<RankLogits> RunShortPrompt(const LlmWeights& weights, const ixc::testing::GoldenPrompt& prompt,
                                          int64_t length, KvCache& cache, parallel::DeviceComm* comm,
                                          const std::vector<int32_t>& fed) {
  RankLogits run;
  SequenceKv seq;
  ForwardInput short_prompt;
  short_prompt.ids = std::span<const int32_t>(prompt.ids).first(length);
  if (!prompt.image_mask.empty()) short_prompt.image_mask = std::span<const uint8_t>(prompt.image_mask).first(length);
  short_prompt.lora = prompt.lora;
  IXC_ASSIGN_OR_RETURN(run.head, Prefill(weights, short_prompt, /*all_logits=*/true, seq, cache, comm));
  IXC_RETURN_IF_ERROR(DecodeFed(weights, prompt, length, fed, seq, cache, comm, run));
  cache.Release(seq);
  return run;
}

// The prefix cache's prefill (model::Prefill with `cached`): the first kCached tokens prefilled (and kept), then the
// rest after them, by the ring where it covers a block of every SP rank (each rank's K/V of the prefix travels with
// its new rows), whole on every rank where it does not; `head` and `chunk` hold both prefills' logits.
constexpr int64_t kCached = 8;  // whole blocks
absl::StatusOr<RankLogits> RunAfterCachedPrefix(const LlmWeights& weights, const ixc::testing::GoldenPrompt& prompt,
                                                KvCache& cache, parallel::DeviceComm* comm,
                                                const std::vector<int32_t>& fed) {
  const int64_t length = static_cast<int64_t>(prompt.ids.size());
  auto part = [&](int64_t begin, int64_t count) {
    ForwardInput input;
    input.ids = std::span<const int32_t>(prompt.ids).subspan(begin, count);
    if (!prompt.image_mask.empty()) {
      input.image_mask = std::span<const uint8_t>(prompt.image_mask).subspan(begin, count);
    }
    input.lora = prompt.lora;
    return input;
  };
  RankLogits run;
  SequenceKv seq;
  IXC_ASSIGN_OR_RETURN(run.head, Prefill(weights, part(0, kCached), /*all_logits=*/true, seq, cache, comm));
  IXC_ASSIGN_OR_RETURN(run.chunk, Prefill(weights, part(kCached, length - kCached), /*all_logits=*/true, seq, cache,
                                          comm, /*local_vocab=*/false, {.cached = kCached}));
  IXC_RETURN_IF_ERROR(DecodeFed(weights, prompt, length, fed, seq, cache, comm, run));
  cache.Release(seq);
  return run;
}

struct Layout {
  int tp, sp;
};
void PrintTo(const Layout& layout, std::ostream* os) { *os << "T" << layout.tp << "S" << layout.sp; }

// `run` on every rank of `layout`, each a thread with its TP slice of the checkpoint at `dir` on the GPU, taking at
// most `max_rows_per_call` rows a forward call where it is set (CudaModelOptions).
using RankRun = std::function<absl::StatusOr<RankLogits>(const LlmWeights&, KvCache&, parallel::DeviceComm*)>;
std::vector<absl::StatusOr<RankLogits>> RunOnEveryRank(const std::string& dir, const Layout& layout, const RankRun& run,
                                                       int64_t max_rows_per_call = 0) {
  ixc::testing::ThreadedWorld world(layout.tp, layout.sp);
  const int ranks = layout.tp * layout.sp;
  std::vector<absl::StatusOr<RankLogits>> results(ranks, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int index = 0; index < ranks; ++index) {
    threads.emplace_back([&, index] {
      const int tp_rank = index % layout.tp, sp_rank = index / layout.tp;
      ixc::testing::ThreadedDeviceComm comm(world, tp_rank, sp_rank);
      results[index] = [&]() -> absl::StatusOr<RankLogits> {
        IXC_ASSIGN_OR_RETURN(LlmWeights weights, LoadLlmWeights(dir, {tp_rank, layout.tp}));
        CudaModelOptions options;
        options.block_size = kBlockSize;
        options.kv_blocks = 256;
        options.kv_reserve_bytes = 0;
        options.max_rows_per_call = max_rows_per_call;
        IXC_ASSIGN_OR_RETURN(KvCache cache, AttachCudaModel(weights, options));
        return run(weights, cache, &comm);
      }();
      if (!results[index].ok()) world.Abort();  // the peers' next collective fails rather than waits
    });
  }
  for (std::thread& thread : threads) thread.join();
  return results;
}

class CudaParallelTest : public ixc::testing::CudaTest,
                         public ::testing::WithParamInterface<std::tuple<std::string, Layout>> {};

TEST_P(CudaParallelTest, EveryRankMatchesTheCpu) {
  const auto [name, layout] = GetParam();
  const std::string dir = ixc::testing::GoldenModelsDir() + "/" + name;
  const ixc::testing::GoldenPrompt prompt = ixc::testing::LoadGoldenPrompt(name);
  ASSERT_GE(prompt.ids.size(), static_cast<size_t>(kHead + 1));

  // The reference: the CPU on one rank, the same calls; its greedy tokens are fed to every layout.
  auto cpu_weights = LoadLlmWeights(dir);
  ASSERT_TRUE(cpu_weights.ok()) << cpu_weights.status();
  KvCache cpu_cache(cpu_weights->config, kBlockSize, 64);
  std::vector<int32_t> fed = {1, 2, 3};
  auto reference = RunSequence(*cpu_weights, prompt, cpu_cache, nullptr, fed);
  ASSERT_TRUE(reference.ok()) << reference.status();

  // Each call whole, then calls of at most 5 rows: the gather-merge chunk in pieces on every rank, the ring's shard
  // whole (chunked_forward.h).
  for (const int64_t max_rows_per_call : {0, 5}) {
    const std::vector<absl::StatusOr<RankLogits>> results = RunOnEveryRank(
        dir, layout,
        [&](const LlmWeights& weights, KvCache& cache, parallel::DeviceComm* comm) -> absl::StatusOr<RankLogits> {
          IXC_ASSIGN_OR_RETURN(RankLogits run, RunSequence(weights, prompt, cache, comm, fed));
          if (max_rows_per_call > 0) return run;
          ixc::testing::ExpectChoicesMatchHostSampling(weights, cache, prompt.ids, comm);
          if (::testing::Test::HasFatalFailure()) return absl::AbortedError("the token choice check stopped early");
          return run;
        },
        max_rows_per_call);
    for (size_t index = 0; index < results.size(); ++index) {
      SCOPED_TRACE(absl::StrCat(name, " T", layout.tp, "S", layout.sp, " rank ", index, ", rows per call ",
                                max_rows_per_call == 0 ? "any" : "5"));
      ASSERT_TRUE(results[index].ok()) << results[index].status();
      const RankLogits& run = *results[index];
      EXPECT_LT(RelativeError(run.head, reference->head), 0.03) << "ring prefill";
      EXPECT_LT(RelativeError(run.chunk, reference->chunk), 0.03) << "gather-merge chunk";
      for (int step = 0; step < kDecodeSteps; ++step) {
        EXPECT_LT(RelativeError(run.steps[step], reference->steps[step]), 0.03) << "decode step " << step;
      }
    }
  }
}

// Prompts of 1 to S blocks (the last the first that the ring prefills), then decode steps, against the CPU on one
// rank: a rank that holds none of the keys gives no weight to its part of the merge.
TEST_P(CudaParallelTest, ShortPromptsMatchTheCpu) {
  const auto [name, layout] = GetParam();
  if (layout.sp == 1) GTEST_SKIP() << "no sequence parallelism in this layout";
  const std::string dir = ixc::testing::GoldenModelsDir() + "/" + name;
  const ixc::testing::GoldenPrompt prompt = ixc::testing::LoadGoldenPrompt(name);
  ASSERT_GE(prompt.ids.size(), static_cast<size_t>(kBlockSize * layout.sp));
  auto cpu_weights = LoadLlmWeights(dir);
  ASSERT_TRUE(cpu_weights.ok()) << cpu_weights.status();
  const std::vector<int32_t> fed = {1, 2, 3};
  for (int64_t length = 1; length <= kBlockSize * layout.sp; ++length) {
    KvCache cpu_cache(cpu_weights->config, kBlockSize, 64);
    auto reference = RunShortPrompt(*cpu_weights, prompt, length, cpu_cache, nullptr, fed);
    ASSERT_TRUE(reference.ok()) << reference.status();
    const std::vector<absl::StatusOr<RankLogits>> results =
        RunOnEveryRank(dir, layout, [&](const LlmWeights& weights, KvCache& cache, parallel::DeviceComm* comm) {
          return RunShortPrompt(weights, prompt, length, cache, comm, fed);
        });
    for (size_t index = 0; index < results.size(); ++index) {
      SCOPED_TRACE(absl::StrCat(name, " T", layout.tp, "S", layout.sp, " rank ", index, ", ", length, " tokens"));
      ASSERT_TRUE(results[index].ok()) << results[index].status();
      EXPECT_LT(RelativeError(results[index]->head, reference->head), 0.03) << "prefill";
      for (int step = 0; step < kDecodeSteps; ++step) {
        EXPECT_LT(RelativeError(results[index]->steps[step], reference->steps[step]), 0.03) << "decode step " << step;
      }
    }
  }
}

// A prompt after a cached prefix, then decode steps, against the CPU on one rank.
TEST_P(CudaParallelTest, PrefillAfterACachedPrefixMatchesTheCpu) {
  const auto [name, layout] = GetParam();
  const std::string dir = ixc::testing::GoldenModelsDir() + "/" + name;
  const ixc::testing::GoldenPrompt prompt = ixc::testing::LoadGoldenPrompt(name);
  ASSERT_GE(prompt.ids.size(), static_cast<size_t>(kCached + kBlockSize * layout.sp));  // the rest goes by the ring
  auto cpu_weights = LoadLlmWeights(dir);
  ASSERT_TRUE(cpu_weights.ok()) << cpu_weights.status();
  const std::vector<int32_t> fed = {1, 2, 3};
  KvCache cpu_cache(cpu_weights->config, kBlockSize, 64);
  auto reference = RunAfterCachedPrefix(*cpu_weights, prompt, cpu_cache, nullptr, fed);
  ASSERT_TRUE(reference.ok()) << reference.status();
  const std::vector<absl::StatusOr<RankLogits>> results =
      RunOnEveryRank(dir, layout, [&](const LlmWeights& weights, KvCache& cache, parallel::DeviceComm* comm) {
        return RunAfterCachedPrefix(weights, prompt, cache, comm, fed);
      });
  for (size_t index = 0; index < results.size(); ++index) {
    SCOPED_TRACE(absl::StrCat(name, " T", layout.tp, "S", layout.sp, " rank ", index));
    ASSERT_TRUE(results[index].ok()) << results[index].status();
    EXPECT_LT(RelativeError(results[index]->head, reference->head), 0.03) << "the prefix";
    EXPECT_LT(RelativeError(results[index]->chunk, reference->chunk), 0.03) << "after the cached prefix";
    for (int step = 0; step < kDecodeSteps; ++step) {
      EXPECT_LT(RelativeError(results[index]->steps[step], reference->steps[step]), 0.03) << "decode step " << step;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, CudaParallelTest,
                         ::testing::Combine(::testing::Values(std::string("kv4_bias_plora_web"),
                                                              std::string("gqa4_dynamic_ntk")),
                                            ::testing::Values(Layout{1, 2}, Layout{1, 3}, Layout{2, 1}, Layout{2, 2})));
// The real head dim (128) and grouping: one KV head, so sequence parallelism only.
INSTANTIATE_TEST_SUITE_P(HeadDim128, CudaParallelTest,
                         ::testing::Combine(::testing::Values(std::string("d128_gqa4_plora_bf16")),
                                            ::testing::Values(Layout{1, 2}, Layout{1, 3})));

}  // namespace
}  // namespace ixc::model
