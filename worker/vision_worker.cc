#include "worker/vision_worker.h"

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/status_macros.h"
#include "parallel/sequence_shard.h"

namespace ixc::worker {

VisionWorker::VisionWorker(const parallel::Mapping& mapping, const model::VisionWeights& weights,
                           parallel::DeviceComm& comm, protocol::Channel& channel, int step_timeout_s)
    : mapping_(mapping), weights_(weights), comm_(comm), channel_(channel), step_timeout_s_(step_timeout_s) {}

absl::Status VisionWorker::Run() {
  while (true) {
    auto message = channel_.Receive(std::chrono::seconds(4 * step_timeout_s_));
    if (!message.ok()) {
      return absl::DeadlineExceededError(
          absl::StrCat(mapping_.ToString(), ": no word from the coordinator: ", message.status().message()));
    }
    IXC_ASSIGN_OR_RETURN(const protocol::Envelope* envelope, protocol::Decode(message->second));
    absl::Status status;
    switch (envelope->body_type()) {
      case protocol::Body::Shutdown:
        return absl::OkStatus();
      case protocol::Body::VisionTask:
        status = Encode(*envelope->body_as_VisionTask());
        break;
      case protocol::Body::StepPlan:
        status = Handoff(*envelope->body_as_StepPlan());
        if (status.ok()) {
          status = channel_.Send(0, protocol::EncodeStepResult(mapping_.rank(), envelope->body_as_StepPlan()->step(),
                                                               {}, {}));
        }
        break;
      default:
        break;
    }
    if (!status.ok()) {
      IXC_LOG(ERROR) << mapping_.ToString() << ": " << status.message();
      (void)channel_.Send(0, protocol::EncodeError(mapping_.rank(), std::string(status.message())));
      return status;
    }
  }
}

absl::Status VisionWorker::Encode(const protocol::VisionTask& task) {
  const int tile = task.tile(), count = 1 + task.rows() * task.cols();
  if (tile != weights_.config.image_size || task.pixels() == nullptr ||
      task.pixels()->size() != static_cast<size_t>(count) * 3 * tile * tile) {
    return absl::InvalidArgumentError(absl::StrCat("vision task ", task.tag(), ": crops do not match the ",
                                                   weights_.config.image_size, "-px vision tower"));
  }
  IXC_ASSIGN_OR_RETURN(std::vector<float> embeds,
                       model::EmbedImage(weights_, task.pixels()->data(), task.rows(), task.cols()));
  const int rows = static_cast<int>(embeds.size() / weights_.llm_hidden);
  embeddings_[task.tag()] = std::move(embeds);
  flatbuffers::FlatBufferBuilder builder;
  const auto body = protocol::CreateVisionDone(builder, task.tag(), rows);
  return channel_.Send(0, protocol::Finish(builder, mapping_.rank(), protocol::Body::VisionDone, body.Union()));
}

absl::Status VisionWorker::Handoff(const protocol::StepPlan& plan) {
  if (plan.work() != nullptr) {
    for (const protocol::SequenceWork* work : *plan.work()) {
      if (!work->prefill() || work->images() == nullptr) continue;
      for (const protocol::ImageRef* image : *work->images()) {
        if (image->vision_rank() != mapping_.rank()) continue;
        auto it = embeddings_.find(image->tag());
        if (it == embeddings_.end()) {
          return absl::FailedPreconditionError(absl::StrCat("vision task ", image->tag(), " was never encoded here"));
        }
        // Each LLM rank gets the rows of its sequence shard (all of them without SP; every TP rank of an SP column
        // the same), in the order it receives them (worker/llm_worker.cc).
        const int64_t hidden = weights_.llm_hidden, length = work->tokens()->size();
        const parallel::Layout& layout = mapping_.layout();
        for (int llm_rank : mapping_.LlmRanks()) {
          const int sp_rank = (llm_rank - mapping_.first_llm_rank()) / layout.tp;
          for (auto [begin, end] : parallel::OwnedRows(length, sp_rank, layout.sp, image->first_row(), image->rows())) {
            IXC_RETURN_IF_ERROR(comm_.Send(it->second.data() + (begin - image->first_row()) * hidden,
                                           (end - begin) * hidden, llm_rank, parallel::Group::kWorld));
          }
        }
      }
    }
  }
  if (plan.finished() != nullptr) {
    for (uint64_t request : *plan.finished()) {
      embeddings_.erase(embeddings_.lower_bound(static_cast<int>(request * protocol::kMaxImagesPerRequest)),
                        embeddings_.lower_bound(static_cast<int>((request + 1) * protocol::kMaxImagesPerRequest)));
    }
  }
  return absl::OkStatus();
}

}  // namespace ixc::worker
