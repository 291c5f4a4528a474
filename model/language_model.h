// File: model/language_model.h
//
// The InternLM2 decoder of IXC-2.5 (spec 1) with PLoRA on image rows (spec 2) and the task LoRAs (spec 7), as one
// plain function over the weights: a prefill is a call with the prompt's tokens, a decode step a call with one.
// Every call appends its tokens' K/V to the sequence's paged cache and attends over all earlier tokens.
//
//   SequenceKv seq;
//   ForwardInput prompt{.ids = ids};                       // or .embeddings for image positions
//   IXC_RETURN_IF_ERROR(LanguageModelForward(weights, prompt, seq, cache, &logits));   // logits of the last token
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "core/token_logprobs.h"
#include "kernels/ops.h"
#include "model/kv_cache.h"
#include "model/weights.h"
#include "parallel/device_comm.h"

namespace ixc::model {

// How attention finds the keys when a sequence is split across the SP group (architecture section 4):
//   kLocal        no sequence parallelism: every key is in this rank's cache
//   kRing         prefill of a block-cyclic shard: every rank's cached K/V of the sequence (a cached prefix's and this
//                 call's) travel around the SP ring, each rank attends its own queries to every block and merges by
//                 log-sum-exp
//   kGatherMerge  every SP rank holds the same queries (decode, chunked prefill): each attends to its cached shard,
//                 one all-gather and a log-sum-exp merge give the exact result
enum class SpAttention { kLocal, kRing, kGatherMerge };

struct ForwardInput {
  std::span<const int32_t> ids;         // (tokens) token ids; or
  std::span<const float> embeddings;    // (tokens, hidden) input embeddings (text and image rows already merged);
                                        // on the GPU's model they may also be in its memory (model::NewFloats)
  std::span<const uint8_t> image_mask;  // (tokens) 1 on vision rows, which get PLoRA; empty: no vision rows
  LoraMode lora = LoraMode::kBase;
  bool all_logits = false;              // logits of every token (else only of the last)
  bool local_vocab = false;             // with TP: this rank's vocabulary slice of the logits, not gathered
  // Sequence parallelism (defaults: one rank holds the whole sequence):
  std::span<const int32_t> positions;   // (tokens) positions in the sequence; default: after the cached ones
  int64_t context_length = 0;           // the sequence's length after this call (RoPE's base); 0: last position + 1
  std::span<const uint8_t> store_kv;    // (tokens) 1 where this rank keeps the token's K/V; default: all
  SpAttention sp_attention = SpAttention::kLocal;

  int64_t tokens(int hidden) const { return ids.empty() ? static_cast<int64_t>(embeddings.size()) / hidden : ids.size(); }
};

// Runs `input` after the `seq.length` tokens already cached, appends their K/V (growing `seq` in `cache`) and writes
// f32 logits: (tokens, vocab) with all_logits, else (1, vocab). Positions continue from seq.length. RoPE uses the
// dynamic-NTK base of the sequence's length after this call (spec 6): keys already cached keep the rotation they were
// written with, as in the reference.
//
// With weights sharded over a TP group (weights.tp.size > 1) every rank of the group calls this with the same input
// and `comm`: the attention output and FFN down projections are summed by one all-reduce each, the vocab-parallel
// logits are all-gathered, and every rank gets the whole logits. The cache holds this rank's KV heads only.
// With sequence parallelism (input.sp_attention != kLocal) the SP group's ranks call it together; with kRing each
// brings its own shard of the prompt and every rank gets the logits of the whole prompt (all_logits: one row per
// position 0..context_length-1) or of its last position.
absl::Status LanguageModelForward(const LlmWeights& weights, const ForwardInput& input, SequenceKv& seq,
                                  KvCache& cache, std::vector<float>* logits, parallel::DeviceComm* comm = nullptr);

// Several sequences in one call (continuous batching): their rows go through every linear layer together, so a
// decode step reads the weights once for all of them; attention, RoPE and the KV cache stay per sequence. Each
// entry gets the logits LanguageModelForward would give it. A ring prefill (kRing) runs alone.
//
// An entry with a TokenChoice wants the next token after its last position instead (SampleNext's rules,
// generation.h; every TP and SP rank gets the same token): a backend that holds the logits elsewhere chooses there
// and moves one id (the GPU: model/cuda/cuda_token_choice.cc); otherwise the logits (this TP rank's vocabulary
// slice on the CPU, whole rows from a device) go through SampleNext on the host (ChooseNext). Its `logits` may then
// be left as they were. A choice that asks for log-probabilities or beam candidates is always made on the host.
struct TokenChoice {
  kernels::SamplingParams params;
  std::span<const int32_t> previous;  // the ids the repetition penalty applies to (the generated ones)
  uint64_t seed = 0;                  // the request's: TokenRng(seed, index) makes the draw
  int64_t index = 0;                  // which generated token this is
  int32_t top_logprobs = -1;          // >= 0: also the token's log-probability and this many likeliest (logprobs)
  int32_t beam_candidates = 0;        // > 0: no token; this many candidates of a beam instead (model/beam_search.h)
  int32_t token = -1;                 // out
  TokenLogprobs logprobs = {};        // out, where asked (model/token_logprobs.h)
  BeamCandidates candidates = {};     // out, where asked
};
struct BatchEntry {
  ForwardInput input;
  SequenceKv* seq = nullptr;
  std::vector<float>* logits = nullptr;
  TokenChoice* choice = nullptr;  // set: choose the next token (not with all_logits or a ring prefill)
};
// The most one backend call takes: rows, and of them rows whose logits it returns (each holds a vocabulary of f32
// logits: all_logits rows; the others have one per entry). Unbounded on the CPU.
struct CallLimits {
  int64_t rows = std::numeric_limits<int64_t>::max();
  int64_t logit_rows = std::numeric_limits<int64_t>::max();
};

// The same forward on an accelerator that holds a copy of the weights (model/cuda/CudaLanguageModel), with the
// semantics of LanguageModelForwardBatch; `cache` then keeps the block tables and the device keeps the K/V.
class DeviceLanguageModel {
 public:
  virtual ~DeviceLanguageModel() = default;
  virtual absl::Status ForwardBatch(const LlmWeights& weights, std::vector<BatchEntry>& batch, KvCache& cache,
                                    parallel::DeviceComm* comm) = 0;
  // What one ForwardBatch call takes (its scratch); the same on every rank of a TP or SP group.
  virtual CallLimits Limits() const = 0;
  // Copies one KV block's K/V of every layer into another (a forked beam's partly filled block: KvCache::Fork).
  virtual absl::Status CopyKvBlock(const BlockCopy& copy) = 0;
};

// Runs on weights.device when it is set, else on the CPU; the comm and ring checks hold for both. A call past the
// device's Limits (or, where given, max_rows_per_call rows of either kind) goes as several (model/chunked_forward.h:
// a long prompt is prefilled in chunks), with the same results.
absl::Status LanguageModelForwardBatch(const LlmWeights& weights, std::vector<BatchEntry>& batch, KvCache& cache,
                                       parallel::DeviceComm* comm = nullptr, int64_t max_rows_per_call = 0);

}  // namespace ixc::model
