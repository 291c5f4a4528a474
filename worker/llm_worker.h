// File: worker/llm_worker.h
//
// An LLM rank's main loop: it receives one step plan per engine step from the coordinator, runs each sequence's
// prefill or decode step on its (tp, sp) shard of the model and of the KV cache, and answers with a step result.
// Every LLM rank computes the same logits (TP gathers, SP merges) and samples the same token with the per-token
// seeded generator; the leader (tp 0, sp 0) reports the tokens. An error is reported to the coordinator with this
// rank and the request, then ends the loop.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/floats.h"
#include "model/generation.h"
#include "model/kv_cache.h"
#include "model/language_model.h"
#include "model/weights.h"
#include "parallel/device_comm.h"
#include "parallel/mapping.h"
#include "protocol/messages.h"
#include "worker/handoff.h"
#include "worker/rank_reporter.h"

namespace ixc::worker {

class LlmWorker {
 public:
  // `comm` moves host data (the sampling's logits); `model_comm` is the one the forward passes use: the same MPI comm
  // on the CPU, the NCCL comm on device buffers with --device cuda; `handoff` brings the image rows (handoff.h).
  // `reporter` collects what each step result tells of this rank (its step's time, its comms' traffic).
  LlmWorker(const parallel::Mapping& mapping, const model::LlmWeights& weights, parallel::DeviceComm& comm,
            parallel::DeviceComm& model_comm, Handoff handoff, protocol::Channel& channel, model::KvCache& cache,
            int step_timeout_s, RankReporter& reporter);

  // Until the coordinator says Shutdown (Ok) or something fails (the error, also sent to the coordinator).
  absl::Status Run();

 private:
  struct Sequence {
    model::SequenceKv kv;
    int64_t length = 0;         // positions in the sequence so far (a prompt's computed so far, chunk by chunk)
    int64_t dump_from = 0;      // dump_logits: the first position computed (after a cached prefix)
    std::vector<float> dumped;  // dump_logits: the leader's logits of the chunks so far, (positions, vocab)
  };

  // A step's work: the leader's tokens (`sampled`), and the requests that failed alone (`failures`); an error fails
  // the rank, naming `failed_request` where one request's work failed.
  absl::Status Execute(const protocol::StepPlan& plan, std::vector<protocol::SampledToken>* sampled,
                       std::vector<protocol::RequestFailure>* failures, uint64_t* failed_request);
  // Starts sequence fork.child() as a copy of fork.parent() (beam search), copying the partly filled block where
  // this SP rank holds it.
  absl::Status Fork(const protocol::KvFork& fork);
  // The prompt rows this rank prefills of positions [cached, end) (parallel::PrefillPositions: with SP its own
  // blocks of a span that goes by ring attention; model::Prefill takes it so), else all of them.
  struct PromptRows {
    std::vector<int32_t> positions;  // (rows) prompt positions, ascending
    std::vector<int64_t> slot_of;    // (prompt length) each position's row here, -1 for another rank's
    std::vector<int32_t> ids;        // (rows)
  };
  PromptRows RowsOf(const std::vector<int32_t>& ids, int64_t cached, int64_t end) const;
  // `work`'s KV blocks of this SP rank, appended to `kv`'s table (the coordinator hands them out).
  absl::Status AssignBlocks(const protocol::SequenceWork& work, model::SequenceKv& kv) const;
  // The rows' input embeddings (rows, hidden): text from the embedding table, image rows from the vision ranks
  // straight into place (in plan order, as they send them), in `buffer`; image_mask (rows) marks the image rows.
  absl::StatusOr<std::span<const float>> ReceivePromptEmbeddings(const protocol::SequenceWork& work,
                                                                 const PromptRows& rows, int64_t cached, int64_t end,
                                                                 model::Floats& buffer,
                                                                 std::vector<uint8_t>& image_mask);
  // A prefill of positions [cached_tokens, prefill_end) of the prompt, made ready by StartPrefill. A ring prefill
  // runs alone (RunRingPrefill); every other goes in the step's batch beside the decodes (RunBatch). FinishPrefill
  // gives the prompt's first token where the prefill ends the prompt; a chunk that does not end it gives none.
  struct PendingPrefill {
    const protocol::SequenceWork* work = nullptr;
    Sequence* sequence = nullptr;
    bool dump = false;  // dump_logits: all its logits, gathered by the leader
    PromptRows rows;
    std::vector<uint8_t> image_mask;
    model::PreparedPrefill prepared;
    std::vector<float> logits;
    std::vector<int32_t> history;
    model::TokenChoice choice;  // the prompt's first token, where this prefill ends the prompt
    bool ends_prompt() const { return prepared.span.end == prepared.span.length; }
    // The forward pass chooses the token (else FinishPrefill does, from the last row of all the logits).
    bool chosen_in_forward() const { return ends_prompt() && !dump && !prepared.ring(); }
  };
  absl::Status StartPrefill(const protocol::SequenceWork& work, model::Floats& rows_buffer, PendingPrefill& pending);
  absl::StatusOr<std::optional<protocol::SampledToken>> RunRingPrefill(PendingPrefill& pending,
                                                                       std::vector<protocol::RequestFailure>& failures);
  // After the forward pass. A dump_logits file the leader cannot write fails the request alone (`failures`): the
  // sequence is prefilled on every rank as usual, so the coordinator releases it like any other.
  absl::StatusOr<std::optional<protocol::SampledToken>> FinishPrefill(PendingPrefill& pending,
                                                                      std::vector<protocol::RequestFailure>& failures);
  // The step's decodes and prompt chunks in one forward pass, so their rows share every linear layer (a decode
  // step's fixed cost is not paid again beside a chunk); the tokens, the prompts' first then the decodes'.
  absl::StatusOr<std::vector<protocol::SampledToken>> RunBatch(std::vector<std::unique_ptr<PendingPrefill>>& prefills,
                                                               const std::vector<const protocol::SequenceWork*>& works,
                                                               std::vector<protocol::RequestFailure>& failures);
  // The sampling of `work`'s next token; `history` receives the ids the repetition penalty sees, BOS and the ones it
  // has produced (model::PenaltyHistory; choice.previous points there).
  static model::TokenChoice ChoiceFor(const protocol::SequenceWork& work, std::vector<int32_t>& history);
  // What the leader reports of `work`'s choice: the token, and its log-probabilities where the request asked.
  static protocol::SampledToken Sampled(const protocol::SequenceWork& work, const model::TokenChoice& choice);
  bool leader() const { return mapping_.tp_rank() == 0 && mapping_.sp_rank() == 0; }

  const parallel::Mapping& mapping_;
  const model::LlmWeights& weights_;
  parallel::DeviceComm& comm_;
  parallel::DeviceComm& model_comm_;
  Handoff handoff_;
  protocol::Channel& channel_;
  model::KvCache& cache_;
  int step_timeout_s_;
  RankReporter& reporter_;
  std::map<uint64_t, Sequence> sequences_;
  // Prefills with images: their input rows, one buffer per prefill of a step, in the handoff's memory (host, or this
  // GPU with NCCL), grown to the longest prompt seen and reused: an allocation and free per prefill would each
  // synchronize the GPU.
  std::vector<model::Floats> prompt_rows_;
};

}  // namespace ixc::worker
