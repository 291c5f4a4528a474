// File: model/generation.h
//
// The steps of generating from one sequence, and the single-process loop built from them. The cluster's workers run
// the same steps for many sequences at once (worker/llm_worker.h), so a request gives the same tokens either way.
//
//   GenerationOptions options;  options.max_new_tokens = 64;
//   IXC_ASSIGN_OR_RETURN(GenerationResult out, Generate(weights, ForwardInput{.ids = prompt}, options, cache));
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/ops.h"
#include "model/language_model.h"

namespace ixc::model {

// Which positions of a prompt one Prefill call computes: [cached, end) of a prompt of `length` positions, after the
// `cached` ones whose K/V the sequence holds already (a prefix from the prefix cache, coordinator/block_manager.h, or
// the chunks prefilled before: chunked prefill). RoPE's base is the whole prompt's, as one call would use.
// Defaults: end = cached + the prompt's tokens (or, for a prompt sharded by the caller, its context_length); length =
// end.
struct PromptSpan {
  int64_t cached = 0;
  int64_t end = 0;
  int64_t length = 0;
};

// Prefills `prompt`, the positions `span` names, into `seq` and returns their logits (all_logits: one row per position
// of the span) or the logits of the span's last position. With sequence parallelism (comm's SP group larger than 1;
// parallel/sequence_shard.h) a span with a block for every rank is prefilled by ring attention, each SP rank its own
// positions, attending to every rank's K/V of the sequence; a shorter one whole on every rank with the all-gather
// merge, each keeping the K/V of the positions it owns (parallel::KvOwner); every rank gets the same logits. A prompt
// that already carries positions is taken as this rank's rows: positions = parallel::PrefillPositions(cached, end, sp
// rank, sp size, block size), and its ids or embeddings and image_mask hold those rows only (the cluster's LLM ranks
// receive image rows straight into place). With local_vocab (and not all_logits), TP ranks get their vocabulary
// slice, for SampleNext.
absl::StatusOr<std::vector<float>> Prefill(const LlmWeights& weights, const ForwardInput& prompt, bool all_logits,
                                           SequenceKv& seq, KvCache& cache, parallel::DeviceComm* comm,
                                           bool local_vocab = false, const PromptSpan& span = {});

// Prefill's forward input without running it, for a batch beside other sequences' work (the cluster's step: prompt
// chunks and decodes in one LanguageModelForwardBatch, so their rows share every linear layer). It owns what its
// input points to, so it stays where it was made; a ring prefill (ring()) runs alone. TrimLogits makes the logits of
// that forward what Prefill returns.
struct PreparedPrefill {
  PreparedPrefill() = default;
  PreparedPrefill(const PreparedPrefill&) = delete;
  PreparedPrefill& operator=(const PreparedPrefill&) = delete;
  bool ring() const { return input.sp_attention == SpAttention::kRing; }
  void TrimLogits(std::vector<float>& logits) const;

  ForwardInput input;
  PromptSpan span;                   // cached, end and length, filled in
  std::vector<int32_t> positions;    // what input's spans point to, where they are not the prompt's own
  std::vector<uint8_t> keep;
  std::vector<int32_t> ids;
  std::vector<float> embeddings;
  std::vector<uint8_t> image_mask;
};
absl::Status PreparePrefill(const LlmWeights& weights, const ForwardInput& prompt, bool all_logits, SequenceKv& seq,
                            KvCache& cache, parallel::DeviceComm* comm, bool local_vocab, const PromptSpan& span,
                            PreparedPrefill& prepared);

// One decode step: `token` at `position`, after everything cached. With sequence parallelism the step runs on every
// SP rank and the token's K/V is kept by one of them, round-robin by cache block. Returns the logits (vocab).
absl::StatusOr<std::vector<float>> DecodeStep(const LlmWeights& weights, int32_t token, int32_t position,
                                              LoraMode lora, SequenceKv& seq, KvCache& cache,
                                              parallel::DeviceComm* comm, bool local_vocab = false);

// One decode step for several sequences at once (LanguageModelForwardBatch): item i feeds tokens[i] at positions[i]
// to *seqs[i] and gets (*logits)[i], or, with a choice, its next token in choice->token (on the GPU chosen there:
// one id per sequence crosses to the host instead of the vocabulary's logits). The same per-sequence rules as
// DecodeStep.
struct DecodeItem {
  int32_t token = 0;
  int32_t position = 0;
  LoraMode lora = LoraMode::kBase;
  SequenceKv* seq = nullptr;
  std::vector<float> logits;
  TokenChoice* choice = nullptr;
};
absl::Status DecodeSteps(const LlmWeights& weights, std::vector<DecodeItem>& items, KvCache& cache,
                         parallel::DeviceComm* comm, bool local_vocab = false);
// DecodeSteps' batch entries, to run beside prepared prompt chunks; `keep` holds what their store_kv points to.
std::vector<BatchEntry> DecodeEntries(std::vector<DecodeItem>& items, const KvCache& cache,
                                      parallel::DeviceComm* comm, bool local_vocab, std::vector<uint8_t>& keep);

// IXC-2.5's <s>. transformers 4.33, which IXC-2.5 pins, seeds generate()'s ids with it when it is given input
// embeddings (as chat() calls it), and its repetition penalty sees those ids: BOS is penalized beside the generated
// tokens, in greedy decoding, sampling and beam search alike (spec 8; tests/data/golden/penalty_bos and beams).
inline constexpr int32_t kHistoryBosId = 1;

// The ids the repetition penalty sees: BOS, then the generated tokens.
std::vector<int32_t> PenaltyHistory(std::span<const int32_t> tokens, int32_t bos_id = kHistoryBosId);

// The next token from logits that are whole or, with TP, this rank's vocabulary slice (the vocab-parallel head):
// greedy takes each slice's maximum (after the repetition penalty, which is per token id) and all-gathers the
// (value, index) pairs, so TP ranks exchange 2 floats each instead of the logits; sampling all-gathers the row.
// Every TP rank returns the same token, the one SampleToken picks from the whole row.
absl::StatusOr<int32_t> SampleNext(const LlmWeights& weights, std::vector<float>& logits,
                                   const kernels::SamplingParams& params, const std::vector<int32_t>& previous,
                                   uint64_t seed, int64_t index, parallel::DeviceComm* comm);

// SampleNext for `choice` (its token), and, where it asks (top_logprobs >= 0), the token's log-probabilities from
// the logits as they were before the choice (LogprobsOf, model/token_logprobs.h). A choice that asks for beam
// candidates gets those instead of a token (BeamCandidatesOf, model/beam_search.h).
absl::Status ChooseNext(const LlmWeights& weights, std::vector<float>& logits, TokenChoice& choice,
                        parallel::DeviceComm* comm);

// The generator for the token at `index` of a request: a pure function of (seed, index), so a request recomputed
// after preemption, or run on any layout, draws the same numbers.
std::mt19937_64 TokenRng(uint64_t seed, int64_t index);

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
  double score = 0;                   // beam search: the best hypothesis' (model/beam_search.h)
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

// Errors: a prompt that does not fit the context (naming both sizes), a KV cache too small, bad token ids.
// The repetition penalty counts generated tokens only, as the reference's chat() does (it generates from
// input embeddings, so Hugging Face never sees the prompt ids).
// With TP-sharded weights or sequence parallelism, every LLM rank calls it with the same prompt, options and `comm`;
// the logits are whole on every rank and the sampling is seeded per token, so every rank picks the same tokens.
absl::StatusOr<GenerationResult> Generate(const LlmWeights& weights, const ForwardInput& prompt,
                                          const GenerationOptions& options, KvCache& cache,
                                          parallel::DeviceComm* comm = nullptr);

}  // namespace ixc::model
