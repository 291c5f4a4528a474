// File: model/generation.h
//
// One request's generation loop on a single process: prefill the prompt, then sample and decode until a stop token,
// the token budget or the context limit. The cluster's scheduler runs the same steps for many sequences at once.
//
//   GenerationOptions options;  options.max_new_tokens = 64;
//   IXC_ASSIGN_OR_RETURN(GenerationResult out, Generate(weights, ForwardInput{.ids = prompt}, options, cache));
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/ops.h"
#include "model/language_model.h"

namespace ixc::model {

struct GenerationOptions {
  int max_new_tokens = 32;
  kernels::SamplingParams sampling;  // greedy by default
  uint64_t seed = 0;
  std::vector<int32_t> stop_ids;     // generation ends after emitting one of these
  int64_t max_context = 98304;       // prompt + generated tokens, at most (96K)
  bool keep_prompt_logits = false;   // return the logits of every prompt position
};

struct GenerationResult {
  std::vector<int32_t> ids;           // generated tokens, the stop token included
  std::string finish_reason;          // "stop" or "length"
  std::vector<float> prompt_logits;   // (prompt tokens, vocab) when asked for
  int64_t prompt_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

// Errors: a prompt that does not fit the context (naming both sizes), a KV cache too small, bad token ids.
// The repetition penalty counts generated tokens only, as the reference's chat() does (it generates from
// input embeddings, so Hugging Face never sees the prompt ids).
// With TP-sharded weights, every rank of the TP group calls it with the same prompt, options and `comm`; the
// logits are whole on every rank and the sampling seed is shared, so every rank picks the same tokens.
absl::StatusOr<GenerationResult> Generate(const LlmWeights& weights, const ForwardInput& prompt,
                                          const GenerationOptions& options, KvCache& cache,
                                          parallel::DeviceComm* comm = nullptr);

}  // namespace ixc::model
