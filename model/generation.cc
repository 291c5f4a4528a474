#include "model/generation.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/sampling_rules.h"
#include "model/beam_search.h"
#include "model/token_logprobs.h"
#include "parallel/sequence_shard.h"

namespace ixc::model {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// This SP rank's positions of a prompt given whole (parallel/sequence_shard.h).
struct PromptShard {
  std::vector<int32_t> positions;
  std::vector<int32_t> ids;
  std::vector<float> embeddings;
  std::vector<uint8_t> image_mask;
};

// `prompt` holds positions [cached, length); the shard, this rank's of them.
PromptShard OwnedShard(const ForwardInput& prompt, int64_t cached, int64_t length, int hidden, int rank, int size,
                       int block_size) {
  PromptShard shard;
  shard.positions = parallel::PrefillPositions(cached, length, rank, size, block_size);
  for (int32_t p : shard.positions) {
    const int64_t row = p - cached;
    if (!prompt.ids.empty()) shard.ids.push_back(prompt.ids[row]);
    if (!prompt.embeddings.empty()) {
      shard.embeddings.insert(shard.embeddings.end(), prompt.embeddings.begin() + row * hidden,
                              prompt.embeddings.begin() + (row + 1) * hidden);
    }
    if (!prompt.image_mask.empty()) shard.image_mask.push_back(prompt.image_mask[row]);
  }
  return shard;
}

int SequenceParallelSize(parallel::DeviceComm* comm) {
  return comm == nullptr ? 1 : comm->GroupSize(parallel::Group::kSequence);
}

}  // namespace

absl::Status PreparePrefill(const LlmWeights& weights, const ForwardInput& prompt, bool all_logits, SequenceKv& seq,
                            KvCache& cache, parallel::DeviceComm* comm, bool local_vocab, const PromptSpan& span,
                            PreparedPrefill& prepared) {
  const int sp_size = SequenceParallelSize(comm);
  const int block_size = cache.block_size();
  const int64_t cached = span.cached;
  ForwardInput& first = prepared.input;
  first = prompt;
  first.all_logits = all_logits;
  first.local_vocab = local_vocab && !all_logits;
  const int sp_rank = sp_size == 1 ? 0 : comm->GroupRank(parallel::Group::kSequence);
  const int64_t held = sp_size == 1 ? cached
                                    : static_cast<int64_t>(
                                          parallel::OwnedPositions(cached, sp_rank, sp_size, block_size).size());
  if (seq.length != held) {
    return absl::FailedPreconditionError(absl::StrCat("a prefill after ", cached, " computed positions needs the ",
                                                      held, " of them this rank keeps in its cache; it holds ",
                                                      seq.length));
  }
  // This call's positions [cached, end) of a prompt of `length` (RoPE's base: the whole prompt's, as one call would).
  const bool sharded = sp_size > 1 && !prompt.positions.empty();  // by the caller
  const int64_t end = span.end > 0    ? span.end
                      : sharded      ? prompt.context_length
                                     : cached + prompt.tokens(weights.config.hidden_size);
  const int64_t length = span.length > 0 ? span.length : sharded ? prompt.context_length : end;
  if (end <= cached || end > length) {
    return absl::InvalidArgumentError(
        absl::StrCat("a prefill of positions [", cached, ", ", end, ") of a prompt of ", length));
  }
  prepared.span = {cached, end, length};
  first.context_length = length;
  if (sp_size > 1) {
    if (sharded) {
      const std::vector<int32_t> expected = parallel::PrefillPositions(cached, end, sp_rank, sp_size, block_size);
      if (!std::equal(expected.begin(), expected.end(), prompt.positions.begin(), prompt.positions.end())) {
        return absl::InvalidArgumentError(absl::StrCat("a prompt shard for SP rank ", sp_rank, " of ", sp_size,
                                                       " must hold the positions it prefills of [", cached, ", ", end,
                                                       ") (parallel::PrefillPositions)"));
      }
    }
    if (parallel::RingPrefill(end - cached, sp_size, block_size)) {
      if (!sharded) {
        PromptShard shard = OwnedShard(prompt, cached, end, weights.config.hidden_size, sp_rank, sp_size, block_size);
        prepared.positions = std::move(shard.positions);
        prepared.ids = std::move(shard.ids);
        prepared.embeddings = std::move(shard.embeddings);
        prepared.image_mask = std::move(shard.image_mask);
        first.ids = prepared.ids;
        first.embeddings = prepared.embeddings;
        first.image_mask = prepared.image_mask;
        first.positions = prepared.positions;
      }
      first.sp_attention = SpAttention::kRing;
    } else {  // every rank holds the whole prompt and keeps the K/V of the positions it owns
      prepared.positions = parallel::PrefillPositions(cached, end, sp_rank, sp_size, block_size);  // all of them
      for (int32_t p : prepared.positions) {
        prepared.keep.push_back(parallel::KvOwner(p, block_size, sp_size) == sp_rank);
      }
      first.positions = prepared.positions;
      first.store_kv = prepared.keep;
      first.sp_attention = SpAttention::kGatherMerge;
    }
  } else if (first.positions.empty()) {
    prepared.positions.resize(end - cached);
    for (size_t i = 0; i < prepared.positions.size(); ++i) prepared.positions[i] = static_cast<int32_t>(cached + i);
    first.positions = prepared.positions;
  }
  return absl::OkStatus();
}

void PreparedPrefill::TrimLogits(std::vector<float>& logits) const {
  if (!input.all_logits || input.sp_attention != SpAttention::kRing || (span.cached == 0 && span.end == span.length)) {
    return;
  }
  // One row per position of the prompt: this call's are [cached, end).
  const int64_t row = static_cast<int64_t>(logits.size()) / span.length;
  logits.erase(logits.begin() + span.end * row, logits.end());
  logits.erase(logits.begin(), logits.begin() + span.cached * row);
}

absl::StatusOr<std::vector<float>> Prefill(const LlmWeights& weights, const ForwardInput& prompt, bool all_logits,
                                           SequenceKv& seq, KvCache& cache, parallel::DeviceComm* comm,
                                           bool local_vocab, const PromptSpan& span) {
  PreparedPrefill prepared;
  IXC_RETURN_IF_ERROR(PreparePrefill(weights, prompt, all_logits, seq, cache, comm, local_vocab, span, prepared));
  std::vector<float> logits;
  IXC_RETURN_IF_ERROR(LanguageModelForward(weights, prepared.input, seq, cache, &logits, comm));
  prepared.TrimLogits(logits);
  return logits;
}

std::vector<BatchEntry> DecodeEntries(std::vector<DecodeItem>& items, const KvCache& cache,
                                      parallel::DeviceComm* comm, bool local_vocab, std::vector<uint8_t>& keep) {
  // Decode steps carry token ids, never image rows: PLoRA is off for generated tokens (spec 2).
  const int sp_size = SequenceParallelSize(comm);
  const int sp_rank = sp_size == 1 ? 0 : comm->GroupRank(parallel::Group::kSequence);
  keep.assign(items.size(), 0);
  std::vector<BatchEntry> batch(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    DecodeItem& item = items[i];
    ForwardInput& step = batch[i].input;
    step.ids = std::span<const int32_t>(&item.token, 1);
    step.lora = item.lora;
    step.local_vocab = local_vocab;
    step.positions = std::span<const int32_t>(&item.position, 1);
    if (sp_size > 1) {
      keep[i] = parallel::KvOwner(item.position, cache.block_size(), sp_size) == sp_rank;
      step.store_kv = std::span<const uint8_t>(&keep[i], 1);
      step.sp_attention = SpAttention::kGatherMerge;
    }
    batch[i].seq = item.seq;
    batch[i].logits = &item.logits;
    batch[i].choice = item.choice;
  }
  return batch;
}

absl::Status DecodeSteps(const LlmWeights& weights, std::vector<DecodeItem>& items, KvCache& cache,
                         parallel::DeviceComm* comm, bool local_vocab) {
  std::vector<uint8_t> keep;
  std::vector<BatchEntry> batch = DecodeEntries(items, cache, comm, local_vocab, keep);
  return LanguageModelForwardBatch(weights, batch, cache, comm);
}

absl::StatusOr<std::vector<float>> DecodeStep(const LlmWeights& weights, int32_t token, int32_t position,
                                              LoraMode lora, SequenceKv& seq, KvCache& cache,
                                              parallel::DeviceComm* comm, bool local_vocab) {
  std::vector<DecodeItem> items = {{token, position, lora, &seq, {}, nullptr}};
  IXC_RETURN_IF_ERROR(DecodeSteps(weights, items, cache, comm, local_vocab));
  return std::move(items[0].logits);
}

absl::StatusOr<int32_t> SampleNext(const LlmWeights& weights, std::vector<float>& logits,
                                   const kernels::SamplingParams& params, const std::vector<int32_t>& previous,
                                   uint64_t seed, int64_t index, parallel::DeviceComm* comm) {
  const int64_t vocab = weights.config.vocab_size;
  std::mt19937_64 rng = TokenRng(seed, index);
  if (static_cast<int64_t>(logits.size()) == vocab) return kernels::SampleToken(logits.data(), vocab, params, previous, rng);
  const int64_t local = weights.shard.vocab_size, offset = weights.tp.rank * local;
  if (comm == nullptr || static_cast<int64_t>(logits.size()) != local) {
    return absl::InvalidArgumentError("SampleNext: logits are neither whole nor this rank's vocabulary slice");
  }
  if (!kernels::IsGreedy(params)) {
    std::vector<float> whole(vocab);
    IXC_RETURN_IF_ERROR(comm->AllGather(logits.data(), local, whole.data(), parallel::Group::kTensor));
    return kernels::SampleToken(whole.data(), vocab, params, previous, rng);
  }
  // The penalty on this slice's ids, then (value, global index) of its first maximum. Indices below 2^24 are exact.
  std::vector<int32_t> mine;
  for (int32_t id : previous) {
    if (id >= offset && id < offset + local) mine.push_back(static_cast<int32_t>(id - offset));
  }
  kernels::ApplyRepetitionPenalty(logits.data(), local, params.repetition_penalty, mine);
  const int64_t best = kernels::FirstArgMax(logits.data(), local);
  const float pair[2] = {logits[best], static_cast<float>(offset + best)};
  std::vector<float> pairs(2 * weights.tp.size);
  IXC_RETURN_IF_ERROR(comm->AllGather(pair, 2, pairs.data(), parallel::Group::kTensor));
  int winner = 0;  // slices ascend by index: the first of equal maxima is the smallest index, as argmax
  for (int t = 1; t < weights.tp.size; ++t) {
    if (pairs[2 * t] > pairs[2 * winner]) winner = t;
  }
  return static_cast<int32_t>(pairs[2 * winner + 1]);
}

absl::Status ChooseNext(const LlmWeights& weights, std::vector<float>& logits, TokenChoice& choice,
                        parallel::DeviceComm* comm) {
  if (choice.beam_candidates > 0) {
    IXC_ASSIGN_OR_RETURN(choice.candidates,
                         BeamCandidatesOf(weights, logits, choice.params.repetition_penalty, choice.previous,
                                          choice.beam_candidates, comm));
    return absl::OkStatus();
  }
  std::vector<float> raw;  // SampleNext changes the logits (penalty, temperature)
  if (choice.top_logprobs >= 0) raw = logits;
  IXC_ASSIGN_OR_RETURN(choice.token,
                       SampleNext(weights, logits, choice.params,
                                  std::vector<int32_t>(choice.previous.begin(), choice.previous.end()), choice.seed,
                                  choice.index, comm));
  if (choice.top_logprobs >= 0) {
    IXC_ASSIGN_OR_RETURN(choice.logprobs, LogprobsOf(weights, raw, choice.token, choice.top_logprobs, comm));
  }
  return absl::OkStatus();
}

std::mt19937_64 TokenRng(uint64_t seed, int64_t index) {
  return std::mt19937_64(seed ^ (0x9E3779B97F4A7C15ull * static_cast<uint64_t>(index + 1)));
}

std::vector<int32_t> PenaltyHistory(std::span<const int32_t> tokens, int32_t bos_id) {
  std::vector<int32_t> history = {bos_id};
  history.insert(history.end(), tokens.begin(), tokens.end());
  return history;
}

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
  auto start = std::chrono::steady_clock::now();
  const bool local_vocab = weights.tp.size > 1;
  absl::StatusOr<std::vector<float>> logits =
      Prefill(weights, prompt, options.keep_prompt_logits, seq, cache, comm, local_vocab);
  result.prefill_seconds = SecondsSince(start);
  if (!logits.ok()) {
    cache.Release(seq);
    return logits.status();
  }
  if (options.keep_prompt_logits) {
    result.prompt_logits = *logits;
    logits->erase(logits->begin(), logits->end() - vocab);
  }
  result.finish_reason = "length";
  start = std::chrono::steady_clock::now();
  // The first token from the prompt's logits, each later one chosen by its decode step (TokenChoice).
  std::vector<int32_t> history = PenaltyHistory({});
  absl::StatusOr<int32_t> next = SampleNext(weights, *logits, options.sampling, history, options.seed, 0, comm);
  while (next.ok() && static_cast<int>(result.ids.size()) < options.max_new_tokens) {
    const int32_t token = *next;
    result.ids.push_back(token);
    history.push_back(token);
    if (std::find(options.stop_ids.begin(), options.stop_ids.end(), token) != options.stop_ids.end()) {
      result.finish_reason = "stop";
      break;
    }
    const int64_t length = result.prompt_tokens + static_cast<int64_t>(result.ids.size());
    if (static_cast<int>(result.ids.size()) == options.max_new_tokens || length >= options.max_context) break;
    TokenChoice choice{options.sampling, history, options.seed, static_cast<int64_t>(result.ids.size())};
    std::vector<DecodeItem> items = {{token, static_cast<int32_t>(length - 1), prompt.lora, &seq, {}, &choice}};
    const absl::Status stepped = DecodeSteps(weights, items, cache, comm);
    next = stepped.ok() ? absl::StatusOr<int32_t>(choice.token) : stepped;
  }
  result.decode_seconds = SecondsSince(start);
  cache.Release(seq);
  if (!next.ok()) return next.status();
  return result;
}

}  // namespace ixc::model
