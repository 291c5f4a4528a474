// File: model/beam_search.h
//
// Beam search as Hugging Face transformers 4.33 runs it (the version IXC-2.5 pins; spec section 8), for one request:
// BeamSearch keeps the beams and the finished hypotheses and picks each step's beams from every live beam's
// candidates; the single-process loop GenerateBeams and the cluster's engine (coordinator/beam_group.h) both drive it,
// so a request gives the same tokens either way. The rules, in transformers' words and ours:
//   - a beam's scores are log_softmax of its f32 logits, then the repetition penalty on its history (BeamCandidatesOf);
//     its history is BOS and its generated ids: chat() generates from input embeddings, and 4.33 seeds the ids with
//     BOS;
//   - the first step expands beam 0 alone; each step ranks beam score + candidate score over every beam, keeps the top
//     max(2, 1 + EOS ids) x B, and walks them in order: an EOS id among the first B ends that beam as a finished
//     hypothesis scored sum / (1 + its generated ids) (length_penalty 1), any other token continues a beam, until B
//     beams continue;
//   - the B best hypotheses are kept; the search ends when they are B and the best running sum / (its length + 1)
//     cannot beat the worst of them (early_stopping False), or after max_new_tokens steps, when the running beams
//     become hypotheses too;
//   - the best hypothesis is returned, with the first EOS id after it where it ended on one.
// Transformers 5 seeds no BOS and so scores and penalises differently: docs/composition.md shows where it differs.
//
//   BeamSearch search({.num_beams = 3, .eos_ids = {2, 92542}, .max_new_tokens = 64});
//   while (!search.done()) { ...each live beam's BeamCandidates...; search.Step(candidates); ...fork the KV... }
//   BeamSearch::Result best = search.Finish();
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/token_logprobs.h"
#include "model/generation.h"
#include "model/weights.h"
#include "parallel/device_comm.h"

namespace ixc::model {

// A search's beams, at most (the API and the command line refuse more).
inline constexpr int kMaxBeams = 16;

// The `count` best next tokens of a beam from its logits (whole, or with TP this rank's vocabulary slice, which is
// all-gathered): log_softmax in f32, then HF's repetition penalty on the ids of `history`. Every TP rank gets them.
absl::StatusOr<BeamCandidates> BeamCandidatesOf(const LlmWeights& weights, std::span<const float> logits,
                                                float repetition_penalty, std::span<const int32_t> history,
                                                int count, parallel::DeviceComm* comm);

struct BeamSearchOptions {
  int num_beams = 2;
  std::vector<int32_t> eos_ids;  // end a beam; the first is written after the best hypothesis where it ended
  int max_new_tokens = 32;
  int32_t bos_id = kHistoryBosId;  // the history's first id
};

class BeamSearch {
 public:
  explicit BeamSearch(BeamSearchOptions options);

  // The beams the next Step takes candidates of: 1 before the first step, then num_beams.
  int live_beams() const { return static_cast<int>(tokens_.size()); }
  // How many candidates Step needs of each beam: max(2, 1 + EOS ids) x num_beams, enough for num_beams to continue.
  int candidates_per_beam() const { return CandidatesPerBeam(options_.num_beams, options_.eos_ids.size()); }
  static int CandidatesPerBeam(int num_beams, size_t eos_ids);
  // Beam b's generated ids, and the history its repetition penalty sees (BOS, then those).
  const std::vector<int32_t>& tokens(int beam) const { return tokens_[beam]; }
  std::vector<int32_t> History(int beam) const { return PenaltyHistory(tokens_[beam], options_.bos_id); }

  // Where each beam of the next step comes from: new beam j continues beam parent[j] with token[j]. Its KV: a
  // parent's first child takes the parent's sequence over (takes_over[j]), any other forks it; the beams no new beam
  // continues (childless) end.
  struct Next {
    std::vector<int> parent;
    std::vector<int32_t> token;
    std::vector<bool> takes_over;
    std::vector<int> childless;
  };
  // One step from each live beam's candidates (highest first). Errors on a wrong count of beams or candidates.
  absl::StatusOr<Next> Step(const std::vector<BeamCandidates>& candidates);
  // No step is left: the hypotheses cannot be beaten, or max_new_tokens steps are done.
  bool done() const { return done_ || steps_ >= options_.max_new_tokens; }

  struct Result {
    std::vector<int32_t> ids;   // generated, with eos_ids[0] after them where the hypothesis ended on EOS
    std::string finish_reason;  // "stop" (an EOS id) or "length"
    double score = 0;           // sum of log-probabilities / (1 + generated ids before the EOS)
  };
  // The best hypothesis (the running beams count when the search ran out of steps).
  Result Finish() const;

 private:
  struct Hypothesis {
    double score;
    std::vector<int32_t> tokens;
    bool ended;  // on an EOS id
  };
  // BeamHypotheses.add: keeps the num_beams best, dropping the worst (the earliest of equal ones).
  void Add(std::vector<Hypothesis>& hypotheses, double& worst, std::vector<int32_t> tokens, double sum,
           bool ended) const;

  BeamSearchOptions options_;
  std::vector<std::vector<int32_t>> tokens_;  // (live beams) generated ids
  std::vector<float> scores_;                 // (live beams) summed log-probabilities, f32 as transformers keeps them
  std::vector<Hypothesis> hypotheses_;        // finished, at most num_beams, in insertion order
  double worst_ = 1e9;                        // the worst kept hypothesis' score (1e9 while none)
  int steps_ = 0;
  bool done_ = false;
};

struct BeamGenerationOptions {
  int num_beams = 2;
  int max_new_tokens = 32;
  float repetition_penalty = 1.f;
  std::vector<int32_t> eos_ids;  // empty: the beams run max_new_tokens steps
  int32_t bos_id = kHistoryBosId;
  int64_t max_context = 98304;
};

// Beam search on one process, or with TP/SP every LLM rank calling it alike (as Generate): the prompt is prefilled
// once, each step decodes the live beams in one batch, and a beam that continues a parent forks the parent's KV
// blocks (KvCache::Fork; the first child of a parent takes its sequence over). result.ids is the best hypothesis.
absl::StatusOr<GenerationResult> GenerateBeams(const LlmWeights& weights, const ForwardInput& prompt,
                                               const BeamGenerationOptions& options, KvCache& cache,
                                               parallel::DeviceComm* comm = nullptr);

}  // namespace ixc::model
