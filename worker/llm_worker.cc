#include "worker/llm_worker.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/npy.h"
#include "core/status_macros.h"
#include "kernels/ops.h"
#include "model/generation.h"
#include "model/placement.h"
#include "parallel/sequence_shard.h"

namespace ixc::worker {

LlmWorker::LlmWorker(const parallel::Mapping& mapping, const model::LlmWeights& weights, parallel::DeviceComm& comm,
                     parallel::DeviceComm& model_comm, Handoff handoff, protocol::Channel& channel,
                     model::KvCache& cache, int step_timeout_s, RankReporter& reporter)
    : mapping_(mapping),
      weights_(weights),
      comm_(comm),
      model_comm_(model_comm),
      handoff_(handoff),
      channel_(channel),
      cache_(cache),
      step_timeout_s_(step_timeout_s),
      reporter_(reporter) {
  cache_.UseAssignedBlocks();  // the coordinator's (coordinator/block_manager.h)
}

absl::Status LlmWorker::AssignBlocks(const protocol::SequenceWork& work, model::SequenceKv& kv) const {
  if (work.blocks() == nullptr) return absl::OkStatus();
  std::vector<int32_t> mine;  // global block g lives on SP rank g % S
  for (size_t i = 0; i < work.blocks()->size(); ++i) {
    if ((work.first_block() + static_cast<int64_t>(i)) % mapping_.layout().sp == mapping_.sp_rank()) {
      mine.push_back(work.blocks()->Get(i));
    }
  }
  return cache_.Assign(kv, mine);
}

absl::Status LlmWorker::Run() {
  protocol::Bytes message;
  while (true) {
    IXC_ASSIGN_OR_RETURN(const protocol::Envelope* envelope,
                         protocol::AwaitCoordinator(channel_, mapping_.ToString(), step_timeout_s_, &message));
    if (envelope->body_type() == protocol::Body::Shutdown) return absl::OkStatus();
    const protocol::StepPlan* plan = envelope->body_as_StepPlan();
    if (plan == nullptr) continue;  // not for LLM ranks
    std::vector<protocol::SampledToken> sampled;
    std::vector<protocol::RequestFailure> failures;
    uint64_t failed_request = 0;
    const auto start = std::chrono::steady_clock::now();
    const absl::Status status = Execute(*plan, &sampled, &failures, &failed_request);
    reporter_.AddStep(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (!status.ok()) {
      IXC_LOG(ERROR) << mapping_.ToString() << ": " << status.message();
      (void)channel_.Send(0, protocol::EncodeError(mapping_.rank(), std::string(status.message()), failed_request));
      return status;
    }
    const RankReport report = reporter_.Take();
    IXC_RETURN_IF_ERROR(
        channel_.Send(0, protocol::EncodeStepResult(mapping_.rank(), plan->step(), sampled, failures, &report)));
  }
}

absl::Status LlmWorker::Execute(const protocol::StepPlan& plan, std::vector<protocol::SampledToken>* sampled,
                                std::vector<protocol::RequestFailure>* failures, uint64_t* failed_request) {
  if (plan.forks() != nullptr) {
    for (const protocol::KvFork* fork : *plan.forks()) {
      *failed_request = fork->parent();
      IXC_RETURN_IF_ERROR(Fork(*fork));
    }
    *failed_request = 0;
  }
  if (plan.release() != nullptr) {
    for (uint64_t id : *plan.release()) {
      auto it = sequences_.find(id);
      if (it == sequences_.end()) continue;
      cache_.Release(it->second.kv);
      sequences_.erase(it);
    }
  }
  if (plan.work() == nullptr) return absl::OkStatus();
  std::vector<const protocol::SequenceWork*> decodes;
  std::vector<std::unique_ptr<PendingPrefill>> batched;  // prompt chunks that go beside the decodes
  size_t prefills = 0;
  for (const protocol::SequenceWork* work : *plan.work()) {
    if (work->tokens() == nullptr || work->tokens()->size() == 0) {
      *failed_request = work->request_id();
      return absl::InvalidArgumentError(absl::StrCat("request ", work->request_id(), ": a step with no tokens"));
    }
    *failed_request = work->request_id();
    if (!work->prefill()) {
      if (auto it = sequences_.find(work->request_id()); it != sequences_.end()) {
        IXC_RETURN_IF_ERROR(AssignBlocks(*work, it->second.kv));
      }
      decodes.push_back(work);
      continue;
    }
    if (prompt_rows_.size() <= prefills) prompt_rows_.resize(prefills + 1);
    auto pending = std::make_unique<PendingPrefill>();
    IXC_RETURN_IF_ERROR(StartPrefill(*work, prompt_rows_[prefills++], *pending));
    if (!pending->prepared.ring()) {
      batched.push_back(std::move(pending));
      continue;
    }
    IXC_ASSIGN_OR_RETURN(std::optional<protocol::SampledToken> token, RunRingPrefill(*pending, *failures));
    if (leader() && token.has_value()) sampled->push_back(std::move(*token));
  }
  if (!decodes.empty() || !batched.empty()) {
    *failed_request = decodes.empty() ? batched.front()->work->request_id() : decodes.front()->request_id();
    IXC_ASSIGN_OR_RETURN(std::vector<protocol::SampledToken> tokens, RunBatch(batched, decodes, *failures));
    if (leader()) sampled->insert(sampled->end(), tokens.begin(), tokens.end());
  }
  *failed_request = 0;
  return absl::OkStatus();
}

absl::Status LlmWorker::Fork(const protocol::KvFork& fork) {
  auto parent = sequences_.find(fork.parent());
  if (parent == sequences_.end() || sequences_.contains(fork.child())) {
    return absl::FailedPreconditionError(absl::StrCat("a fork of sequence ", fork.parent(), " into ", fork.child(),
                                                      ": the parent must exist and the child not yet"));
  }
  // The partly filled block lives on one SP rank; every other rank's last block of the parent is full.
  const bool mine = fork.global_block() >= 0 && fork.global_block() % mapping_.layout().sp == mapping_.sp_rank();
  Sequence& child = sequences_[fork.child()];
  child.length = parent->second.length;
  IXC_ASSIGN_OR_RETURN(const model::BlockCopy copy,
                       cache_.Fork(parent->second.kv, child.kv, mine ? fork.copy_to() : -1));
  if (weights_.device != nullptr && copy.to >= 0) IXC_RETURN_IF_ERROR(weights_.device->CopyKvBlock(copy));
  return absl::OkStatus();
}

LlmWorker::PromptRows LlmWorker::RowsOf(const std::vector<int32_t>& ids, int64_t cached, int64_t end) const {
  PromptRows rows;
  const int64_t length = static_cast<int64_t>(ids.size());
  rows.positions =
      parallel::PrefillPositions(cached, end, mapping_.sp_rank(), mapping_.layout().sp, cache_.block_size());
  rows.slot_of.assign(length, -1);
  for (size_t row = 0; row < rows.positions.size(); ++row) {
    rows.slot_of[rows.positions[row]] = static_cast<int64_t>(row);
    rows.ids.push_back(ids[rows.positions[row]]);
  }
  return rows;
}

absl::StatusOr<std::span<const float>> LlmWorker::ReceivePromptEmbeddings(const protocol::SequenceWork& work,
                                                                          const PromptRows& rows, int64_t cached,
                                                                          int64_t end, model::Floats& buffer,
                                                                          std::vector<uint8_t>& image_mask) {
  const int64_t hidden = weights_.config.hidden_size, count = static_cast<int64_t>(rows.ids.size());
  const int64_t length = static_cast<int64_t>(rows.slot_of.size());
  if (buffer.size() < count * hidden) {
    buffer = model::Floats();  // the old rows go before the new ones come
    IXC_ASSIGN_OR_RETURN(buffer, model::NewFloats(count * hidden, handoff_.gpu));
  }
  model::Floats& embeddings = buffer;  // every row of (count, hidden) is written below
  std::vector<float> staged;  // (count, hidden) the text rows on the host, when `embeddings` are on the GPU
  if (embeddings.on_device()) staged.resize(count * hidden);
  float* text = embeddings.on_device() ? staged.data() : embeddings.data();
  IXC_RETURN_IF_ERROR(kernels::EmbeddingGather(weights_.tok_embeddings, rows.ids.data(), count, text));
  image_mask.assign(count, 0);
  for (const protocol::ImageRef* image : *work.images()) {
    if (image->first_row() < 0 || image->first_row() + image->rows() > length) {
      return absl::InvalidArgumentError(absl::StrCat("request ", work.request_id(), ": image rows outside the prompt"));
    }
    // The image's rows this rank prefills are consecutive rows here (parallel::PrefilledRows): one message.
    const auto ranges = parallel::PrefilledRows(cached, end, mapping_.sp_rank(), mapping_.layout().sp,
                                                cache_.block_size(), image->first_row(), image->rows());
    if (ranges.empty()) continue;
    int64_t count = 0;
    for (auto [begin, end] : ranges) count += end - begin;
    const int64_t slot = rows.slot_of[ranges.front().first];
    IXC_RETURN_IF_ERROR(handoff_.comm->Recv(embeddings.data() + slot * hidden, count * hidden, image->vision_rank(),
                                            parallel::Group::kWorld));
    std::fill_n(image_mask.begin() + slot, count, 1);
  }
  const std::span<const float> filled(embeddings.data(), count * hidden);
  if (!embeddings.on_device()) return filled;
  for (int64_t begin = 0; begin < count;) {  // the text rows up to the GPU, a run at a time
    int64_t end = begin;
    while (end < count && image_mask[end] == image_mask[begin]) ++end;
    if (image_mask[begin] == 0) {
      IXC_RETURN_IF_ERROR(model::CopyFloats(embeddings.data() + begin * hidden, text + begin * hidden,
                                            (end - begin) * hidden, handoff_.gpu));
    }
    begin = end;
  }
  return filled;
}

absl::Status LlmWorker::StartPrefill(const protocol::SequenceWork& work, model::Floats& rows_buffer,
                                     PendingPrefill& pending) {
  const std::vector<int32_t> ids(work.tokens()->begin(), work.tokens()->end());
  const int64_t length = static_cast<int64_t>(ids.size()), cached = work.cached_tokens();
  const int64_t end = work.prefill_end() > 0 ? work.prefill_end() : length;
  if (cached < 0 || cached >= end || end > length) {
    return absl::InvalidArgumentError(absl::StrCat("request ", work.request_id(), ": a prefill of positions [", cached,
                                                   ", ", end, ") of ", length));
  }
  auto [it, first_part] = sequences_.try_emplace(work.request_id());
  Sequence& sequence = it->second;
  if (first_part) {
    // The first part of the prompt: a cached prefix's K/V is in the blocks already, this rank's positions of it
    // (parallel/sequence_shard.h).
    sequence.kv.positions =
        parallel::OwnedPositions(cached, mapping_.sp_rank(), mapping_.layout().sp, cache_.block_size());
    sequence.kv.length = static_cast<int64_t>(sequence.kv.positions.size());
    sequence.length = cached;
    sequence.dump_from = cached;
  } else if (sequence.length != cached || sequence.length >= length) {
    return absl::FailedPreconditionError(absl::StrCat("request ", work.request_id(), ": a prefill of [", cached, ", ",
                                                      end, ") after ", sequence.length, " positions"));
  }
  IXC_RETURN_IF_ERROR(AssignBlocks(work, sequence.kv));
  pending.work = &work;
  pending.sequence = &sequence;
  pending.dump = work.dump_logits() != nullptr && work.dump_logits()->size() > 0;
  pending.rows = RowsOf(ids, cached, end);
  model::ForwardInput input;
  input.lora = static_cast<model::LoraMode>(work.lora_mode());
  if (mapping_.layout().sp > 1) {  // this rank's shard (model::Prefill)
    input.positions = pending.rows.positions;
    input.context_length = length;
  }
  if (work.images() == nullptr || work.images()->size() == 0) {
    input.ids = pending.rows.ids;
  } else {
    IXC_ASSIGN_OR_RETURN(input.embeddings,
                         ReceivePromptEmbeddings(work, pending.rows, cached, end, rows_buffer, pending.image_mask));
    input.image_mask = pending.image_mask;
  }
  IXC_RETURN_IF_ERROR(model::PreparePrefill(weights_, input, pending.dump, sequence.kv, cache_, &model_comm_,
                                            /*local_vocab=*/!pending.dump, {cached, end, length}, pending.prepared));
  if (pending.ends_prompt()) pending.choice = ChoiceFor(work, pending.history);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<protocol::SampledToken>> LlmWorker::RunRingPrefill(
    PendingPrefill& pending, std::vector<protocol::RequestFailure>& failures) {
  IXC_RETURN_IF_ERROR(model::LanguageModelForward(weights_, pending.prepared.input, pending.sequence->kv, cache_,
                                                  &pending.logits, &model_comm_));
  return FinishPrefill(pending, failures);
}

absl::StatusOr<std::optional<protocol::SampledToken>> LlmWorker::FinishPrefill(
    PendingPrefill& pending, std::vector<protocol::RequestFailure>& failures) {
  const protocol::SequenceWork& work = *pending.work;
  Sequence& sequence = *pending.sequence;
  std::vector<float>& logits = pending.logits;
  pending.prepared.TrimLogits(logits);
  sequence.length = pending.prepared.span.end;
  const int64_t vocab = weights_.config.vocab_size;
  if (pending.dump) {  // the positions computed, chunk by chunk: after the cached ones
    if (leader()) sequence.dumped.insert(sequence.dumped.end(), logits.begin(), logits.end());
    if (leader() && pending.ends_prompt()) {
      const absl::Status written = WriteNpyF32(work.dump_logits()->str(),
                                               {pending.prepared.span.length - sequence.dump_from, vocab}, sequence.dumped.data());
      if (!written.ok()) failures.push_back({work.request_id(), absl::StrCat("dump_logits: ", written.message())});
      std::vector<float>().swap(sequence.dumped);
    }
    logits.erase(logits.begin(), logits.end() - vocab);
  }
  if (!pending.ends_prompt()) return std::nullopt;  // a chunk: the prompt goes on in a later step
  if (!pending.chosen_in_forward()) IXC_RETURN_IF_ERROR(model::ChooseNext(weights_, logits, pending.choice, &comm_));
  return Sampled(work, pending.choice);
}

absl::StatusOr<std::vector<protocol::SampledToken>> LlmWorker::RunBatch(
    std::vector<std::unique_ptr<PendingPrefill>>& prefills, const std::vector<const protocol::SequenceWork*>& works,
    std::vector<protocol::RequestFailure>& failures) {
  std::vector<model::DecodeItem> items;
  // Each decode's next token is chosen by the forward call (on the GPU, there: one id per sequence comes back).
  std::vector<std::vector<int32_t>> histories(works.size());
  std::vector<model::TokenChoice> choices(works.size());
  for (size_t i = 0; i < works.size(); ++i) {
    const protocol::SequenceWork* work = works[i];
    auto it = sequences_.find(work->request_id());
    if (it == sequences_.end()) {
      return absl::FailedPreconditionError(absl::StrCat("request ", work->request_id(), ": decode before prefill"));
    }
    Sequence& sequence = it->second;
    choices[i] = ChoiceFor(*work, histories[i]);
    items.push_back({work->tokens()->Get(0), static_cast<int32_t>(sequence.length),
                     static_cast<model::LoraMode>(work->lora_mode()), &sequence.kv, {}, &choices[i]});
    sequence.length += 1;
  }
  std::vector<uint8_t> keep;
  std::vector<model::BatchEntry> batch = model::DecodeEntries(items, cache_, &model_comm_, false, keep);
  for (const auto& pending : prefills) {
    batch.push_back({pending->prepared.input, &pending->sequence->kv, &pending->logits,
                     pending->chosen_in_forward() ? &pending->choice : nullptr});
  }
  IXC_RETURN_IF_ERROR(model::LanguageModelForwardBatch(weights_, batch, cache_, &model_comm_));
  std::vector<protocol::SampledToken> sampled;
  for (const auto& pending : prefills) {
    IXC_ASSIGN_OR_RETURN(std::optional<protocol::SampledToken> token, FinishPrefill(*pending, failures));
    if (token.has_value()) sampled.push_back(std::move(*token));
  }
  for (size_t i = 0; i < works.size(); ++i) sampled.push_back(Sampled(*works[i], choices[i]));
  return sampled;
}

model::TokenChoice LlmWorker::ChoiceFor(const protocol::SequenceWork& work, std::vector<int32_t>& history) {
  std::span<const int32_t> generated;
  if (work.generated() != nullptr) generated = {work.generated()->data(), work.generated()->size()};
  history = model::PenaltyHistory(generated);
  model::TokenChoice choice;
  if (const protocol::Sampling* s = work.sampling()) {
    choice.params = {s->temperature(), s->top_k(), s->top_p(), s->repetition_penalty()};
    choice.seed = s->seed();
    choice.top_logprobs = s->logprobs();
    choice.beam_candidates = s->beam_candidates();
  }
  choice.previous = history;
  choice.index = static_cast<int64_t>(generated.size());
  return choice;
}

protocol::SampledToken LlmWorker::Sampled(const protocol::SequenceWork& work, const model::TokenChoice& choice) {
  protocol::SampledToken sampled{work.request_id(), choice.token, std::nullopt, std::nullopt};
  if (choice.top_logprobs >= 0) sampled.logprobs = choice.logprobs;
  if (choice.beam_candidates > 0) sampled.candidates = choice.candidates;
  return sampled;
}

}  // namespace ixc::worker
