#include "model/beam_search.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cpu/exp8.h"
#include "kernels/sampling_rules.h"

namespace ixc::model {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A fork's K/V copy where a device holds the K/V (the host pools copied it already).
absl::Status CopyOnDevice(const LlmWeights& weights, const BlockCopy& copy) {
  if (weights.device == nullptr || copy.to < 0) return absl::OkStatus();
  return weights.device->CopyKvBlock(copy);
}

}  // namespace

absl::StatusOr<BeamCandidates> BeamCandidatesOf(const LlmWeights& weights, std::span<const float> logits,
                                                float repetition_penalty, std::span<const int32_t> history,
                                                int count, parallel::DeviceComm* comm) {
  const int64_t vocab = weights.config.vocab_size;
  std::span<const float> row = logits;
  thread_local std::vector<float> gathered;  // (vocab) with TP; reused: a fresh one per call would fault its pages
  if (static_cast<int64_t>(logits.size()) != vocab) {
    if (comm == nullptr || static_cast<int64_t>(logits.size()) != weights.shard.vocab_size) {
      return absl::InvalidArgumentError("beam candidates: logits are neither whole nor this rank's vocabulary slice");
    }
    gathered.resize(vocab);
    IXC_RETURN_IF_ERROR(comm->AllGather(logits.data(), weights.shard.vocab_size, gathered.data(),
                                        parallel::Group::kTensor));
    row = gathered;
  }
  // log_softmax as torch computes it in f32: x - max - log(sum(exp(x - max))).
  const float max_logit = *std::max_element(row.begin(), row.end());
  const float log_sum = static_cast<float>(std::log(kernels::SumExpShifted(row.data(), vocab, max_logit)));
  auto logprob = [&](int64_t id) { return (row[id] - max_logit) - log_sum; };

  // The best `n`, highest first; an equal score later in the vocabulary ranks after (a larger id).
  const size_t n = static_cast<size_t>(std::clamp<int64_t>(count, 0, vocab));
  using Scored = std::pair<float, int32_t>;
  const auto before = [](const Scored& a, const Scored& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  };
  auto offer = [&](std::vector<Scored>& best, float value, int32_t id) {
    if (best.size() == n && !before({value, id}, best.back())) return;
    best.insert(std::upper_bound(best.begin(), best.end(), Scored{value, id}, before), {value, id});
    if (best.size() > n) best.pop_back();
  };
  // First the ids the penalty leaves alone, by their logits (log_softmax keeps their order): eight at a time, most
  // groups of eight pass at one comparison with the n-th best so far. Then the penalized ids, which the penalty may
  // raise as well as lower, by their penalized log-probabilities.
  std::vector<int32_t> penalized =
      repetition_penalty == 1.f ? std::vector<int32_t>() : kernels::PenalizedIds(history, vocab);
  std::sort(penalized.begin(), penalized.end());
  std::vector<Scored> by_logit;
  by_logit.reserve(n + 1);
  size_t next_penalized = 0;
  auto consider = [&](int64_t id) {
    while (next_penalized < penalized.size() && penalized[next_penalized] < id) ++next_penalized;
    if (next_penalized < penalized.size() && penalized[next_penalized] == id) return;
    offer(by_logit, row[id], static_cast<int32_t>(id));
  };
  int64_t id = 0;
  for (; id + 8 <= vocab && n > 0; id += 8) {
    if (by_logit.size() == n) {
      const __m256 above = _mm256_cmp_ps(_mm256_loadu_ps(row.data() + id), _mm256_set1_ps(by_logit.back().first),
                                         _CMP_GT_OQ);
      if (_mm256_movemask_ps(above) == 0) continue;
    }
    for (int64_t j = id; j < id + 8; ++j) consider(j);
  }
  for (; id < vocab && n > 0; ++id) consider(id);
  std::vector<Scored> best;
  best.reserve(n + 1);
  for (const auto& [logit, i] : by_logit) offer(best, logprob(i), i);
  for (int32_t i : penalized) {
    const float value = logprob(i);
    offer(best, value < 0.f ? value * repetition_penalty : value / repetition_penalty, i);
  }
  BeamCandidates candidates;
  for (const auto& [value, id] : best) {
    candidates.ids.push_back(id);
    candidates.logprobs.push_back(value);
  }
  return candidates;
}

BeamSearch::BeamSearch(BeamSearchOptions options) : options_(std::move(options)), tokens_(1), scores_(1, 0.f) {}

int BeamSearch::CandidatesPerBeam(int num_beams, size_t eos_ids) {
  return std::max(2, 1 + static_cast<int>(eos_ids)) * num_beams;
}

void BeamSearch::Add(std::vector<Hypothesis>& hypotheses, double& worst, std::vector<int32_t> tokens, double sum,
                     bool ended) const {
  const double score = sum / static_cast<double>(tokens.size() + 1);  // BOS counts: 4.33's ids start with it
  const size_t keep = static_cast<size_t>(options_.num_beams);
  if (hypotheses.size() >= keep && score <= worst) return;
  hypotheses.push_back({score, std::move(tokens), ended});
  if (hypotheses.size() <= keep) {
    worst = std::min(score, worst);
    return;
  }
  // Drop the worst (the earliest of equal ones); the next worst becomes the bar.
  std::vector<size_t> order(hypotheses.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return hypotheses[a].score != hypotheses[b].score ? hypotheses[a].score < hypotheses[b].score : a < b;
  });
  worst = hypotheses[order[1]].score;
  hypotheses.erase(hypotheses.begin() + static_cast<std::ptrdiff_t>(order[0]));
}

absl::StatusOr<BeamSearch::Next> BeamSearch::Step(const std::vector<BeamCandidates>& candidates) {
  if (done()) return absl::FailedPreconditionError("a beam search step after the search ended");
  if (static_cast<int>(candidates.size()) != live_beams()) {
    return absl::InvalidArgumentError(
        absl::StrCat("a beam search step takes candidates of ", live_beams(), " beams, not ", candidates.size()));
  }
  struct Scored {
    float score;
    int beam;
    int32_t token;
  };
  std::vector<Scored> all;
  for (int b = 0; b < live_beams(); ++b) {
    const BeamCandidates& c = candidates[b];
    if (c.ids.size() != c.logprobs.size() || static_cast<int>(c.ids.size()) < candidates_per_beam()) {
      return absl::InvalidArgumentError(absl::StrCat("beam ", b, " has ", c.ids.size(), " candidates; a step needs ",
                                                     candidates_per_beam()));
    }
    for (size_t i = 0; i < c.ids.size(); ++i) all.push_back({c.logprobs[i] + scores_[b], b, c.ids[i]});
  }
  // torch.topk over (beams x vocab): the highest first; equal scores by the flat index (beam, then token).
  const size_t top = std::min(all.size(), static_cast<size_t>(candidates_per_beam()));
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(top), all.end(),
                    [](const Scored& a, const Scored& b) {
                      if (a.score != b.score) return a.score > b.score;
                      return a.beam != b.beam ? a.beam < b.beam : a.token < b.token;
                    });
  Next next;
  std::vector<float> next_scores;
  for (size_t rank = 0; rank < top && static_cast<int>(next.parent.size()) < options_.num_beams; ++rank) {
    const Scored& s = all[rank];
    const bool eos = std::find(options_.eos_ids.begin(), options_.eos_ids.end(), s.token) != options_.eos_ids.end();
    if (!eos) {
      next.parent.push_back(s.beam);
      next.token.push_back(s.token);
      next_scores.push_back(s.score);
    } else if (rank < static_cast<size_t>(options_.num_beams)) {  // an EOS past the first B ends nothing
      Add(hypotheses_, worst_, tokens_[s.beam], s.score, /*ended=*/true);
    }
  }
  if (static_cast<int>(next.parent.size()) < options_.num_beams) {
    return absl::InternalError("a beam search step found too few tokens that are not EOS");
  }
  // Whether a running beam can still beat the worst kept hypothesis: the best score over the length it would
  // have (transformers' cur_len: the ids so far, BOS included, plus this step's).
  const double best = all.front().score;
  const double length = static_cast<double>(steps_) + 2;
  if (static_cast<int>(hypotheses_.size()) >= options_.num_beams && worst_ >= best / length) done_ = true;
  std::vector<std::vector<int32_t>> tokens;
  std::vector<bool> has_child(tokens_.size(), false);
  for (int j = 0; j < options_.num_beams; ++j) {
    tokens.push_back(tokens_[next.parent[j]]);
    tokens.back().push_back(next.token[j]);
    next.takes_over.push_back(!has_child[next.parent[j]]);
    has_child[next.parent[j]] = true;
  }
  for (int b = 0; b < live_beams(); ++b) {
    if (!has_child[b]) next.childless.push_back(b);
  }
  tokens_ = std::move(tokens);
  scores_ = std::move(next_scores);
  ++steps_;
  return next;
}

BeamSearch::Result BeamSearch::Finish() const {
  std::vector<Hypothesis> hypotheses = hypotheses_;
  double worst = worst_;
  if (!done_) {  // out of steps: the running beams compete too
    for (int b = 0; b < live_beams(); ++b) Add(hypotheses, worst, tokens_[b], scores_[b], /*ended=*/false);
  }
  Result result;
  if (hypotheses.empty()) return result;
  // sorted(...)[-1]: the highest score, the last added of equal ones.
  size_t best = 0;
  for (size_t i = 1; i < hypotheses.size(); ++i) {
    if (hypotheses[i].score >= hypotheses[best].score) best = i;
  }
  result.ids = hypotheses[best].tokens;
  result.score = hypotheses[best].score;
  result.finish_reason = hypotheses[best].ended ? "stop" : "length";
  if (hypotheses[best].ended) result.ids.push_back(options_.eos_ids.front());
  return result;
}

absl::StatusOr<GenerationResult> GenerateBeams(const LlmWeights& weights, const ForwardInput& prompt,
                                               const BeamGenerationOptions& options, KvCache& cache,
                                               parallel::DeviceComm* comm) {
  GenerationResult result;
  result.prompt_tokens = prompt.tokens(weights.config.hidden_size);
  if (options.num_beams < 1) return absl::InvalidArgumentError("num_beams must be at least 1");
  if (result.prompt_tokens == 0) return absl::InvalidArgumentError("the prompt is empty");
  if (result.prompt_tokens >= options.max_context) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", result.prompt_tokens,
                                                   " tokens; the context holds ", options.max_context,
                                                   " (prompt and generated tokens together)"));
  }
  BeamSearch search({options.num_beams, options.eos_ids,
                     static_cast<int>(std::min<int64_t>(options.max_new_tokens,
                                                        options.max_context - result.prompt_tokens)),
                     options.bos_id});
  const bool local_vocab = weights.tp.size > 1;
  std::vector<SequenceKv> beams(1);
  auto release_all = [&] {
    for (SequenceKv& seq : beams) cache.Release(seq);
  };
  auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::vector<float>> logits = Prefill(weights, prompt, false, beams[0], cache, comm, local_vocab);
  result.prefill_seconds = SecondsSince(start);
  if (!logits.ok()) {
    release_all();
    return logits.status();
  }
  start = std::chrono::steady_clock::now();
  std::vector<BeamCandidates> candidates(1);
  const std::vector<int32_t> history = search.History(0);
  absl::StatusOr<BeamCandidates> first = BeamCandidatesOf(weights, *logits, options.repetition_penalty, history,
                                                          search.candidates_per_beam(), comm);
  absl::Status status = first.status();
  if (first.ok()) candidates[0] = std::move(*first);
  while (status.ok() && !search.done()) {
    absl::StatusOr<BeamSearch::Next> next = search.Step(candidates);
    if (!next.ok()) {
      status = next.status();
      break;
    }
    // The forks first, while their parents are where they were; then the takeovers; then the childless end.
    std::vector<SequenceKv> forked(options.num_beams);
    for (int j = 0; j < options.num_beams && status.ok(); ++j) {
      if (next->takes_over[j]) continue;
      absl::StatusOr<BlockCopy> copy = cache.Fork(beams[next->parent[j]], forked[j]);
      status = copy.ok() ? CopyOnDevice(weights, *copy) : copy.status();
    }
    for (int j = 0; j < options.num_beams; ++j) {
      if (next->takes_over[j]) forked[j] = std::move(beams[next->parent[j]]);
    }
    for (int p : next->childless) cache.Release(beams[p]);
    beams = std::move(forked);
    if (!status.ok() || search.done()) break;
    // One batched decode step of every beam, each giving its candidates.
    std::vector<std::vector<int32_t>> histories(options.num_beams);
    std::vector<TokenChoice> choices(options.num_beams);
    std::vector<DecodeItem> items;
    for (int j = 0; j < options.num_beams; ++j) {
      histories[j] = search.History(j);
      choices[j].params.repetition_penalty = options.repetition_penalty;
      choices[j].previous = histories[j];
      choices[j].beam_candidates = search.candidates_per_beam();
      const int64_t position = result.prompt_tokens + static_cast<int64_t>(search.tokens(j).size()) - 1;
      items.push_back({next->token[j], static_cast<int32_t>(position), prompt.lora, &beams[j], {}, &choices[j]});
    }
    status = DecodeSteps(weights, items, cache, comm, local_vocab);
    candidates.assign(options.num_beams, {});
    for (int j = 0; j < options.num_beams && status.ok(); ++j) candidates[j] = std::move(choices[j].candidates);
  }
  result.decode_seconds = SecondsSince(start);
  release_all();
  IXC_RETURN_IF_ERROR(status);
  BeamSearch::Result best = search.Finish();
  result.ids = std::move(best.ids);
  result.finish_reason = std::move(best.finish_reason);
  result.score = best.score;
  return result;
}

}  // namespace ixc::model
