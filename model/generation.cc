#include "model/generation.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace ixc::model {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

absl::StatusOr<GenerationResult> Generate(const LlmWeights& weights, const ForwardInput& prompt,
                                          const GenerationOptions& options, KvCache& cache,
                                          parallel::DeviceComm* comm) {
  const int64_t vocab = weights.config.vocab_size;
  GenerationResult result;
  result.prompt_tokens = prompt.tokens(weights.config.hidden_size);
  if (result.prompt_tokens == 0) return absl::InvalidArgumentError("the prompt is empty");
  if (result.prompt_tokens >= options.max_context) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", result.prompt_tokens,
                                                   " tokens; the context holds ", options.max_context,
                                                   " (prompt and generated tokens together)"));
  }
  SequenceKv seq;
  ForwardInput first = prompt;
  first.all_logits = options.keep_prompt_logits;
  std::vector<float> logits;
  auto start = std::chrono::steady_clock::now();
  absl::Status status = LanguageModelForward(weights, first, seq, cache, &logits, comm);
  result.prefill_seconds = SecondsSince(start);
  if (!status.ok()) {
    cache.Release(seq);
    return status;
  }
  if (options.keep_prompt_logits) {
    result.prompt_logits = logits;
    logits.erase(logits.begin(), logits.end() - vocab);
  }

  std::mt19937_64 rng(options.seed);
  result.finish_reason = "length";
  start = std::chrono::steady_clock::now();
  while (static_cast<int>(result.ids.size()) < options.max_new_tokens) {
    const int32_t token = kernels::SampleToken(logits.data(), vocab, options.sampling, result.ids, rng);
    result.ids.push_back(token);
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), token) != options.stop_ids.end()) {
      result.finish_reason = "stop";
      break;
    }
    if (static_cast<int>(result.ids.size()) == options.max_new_tokens ||
        result.prompt_tokens + static_cast<int64_t>(result.ids.size()) >= options.max_context) {
      break;
    }
    // Decode steps carry token ids, never image rows: PLoRA is off for generated tokens (spec 2).
    ForwardInput step;
    step.ids = std::span<const int32_t>(&result.ids.back(), 1);
    step.lora = prompt.lora;
    status = LanguageModelForward(weights, step, seq, cache, &logits, comm);
    if (!status.ok()) break;
  }
  result.decode_seconds = SecondsSince(start);
  cache.Release(seq);
  if (!status.ok()) return status;
  return result;
}

}  // namespace ixc::model
