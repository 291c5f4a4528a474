#include "worker/vision_worker.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/status_macros.h"
#include "model/placement.h"
#include "parallel/sequence_shard.h"

namespace ixc::worker {

VisionWorker::VisionWorker(const parallel::Mapping& mapping, const model::VisionWeights& weights, Handoff handoff,
                           int model_gpu, int block_size, protocol::Channel& channel, int step_timeout_s,
                           RankReporter& reporter)
    : mapping_(mapping),
      weights_(weights),
      handoff_(handoff),
      model_gpu_(model_gpu),
      block_size_(block_size),
      channel_(channel),
      step_timeout_s_(step_timeout_s),
      reporter_(reporter) {}

absl::Status VisionWorker::Run() {
  protocol::Bytes message;
  while (true) {
    IXC_ASSIGN_OR_RETURN(const protocol::Envelope* envelope,
                         protocol::AwaitCoordinator(channel_, mapping_.ToString(), step_timeout_s_, &message));
    absl::Status status;
    switch (envelope->body_type()) {
      case protocol::Body::Shutdown:
        return absl::OkStatus();
      case protocol::Body::VisionTask:
        status = Encode(*envelope->body_as_VisionTask());
        break;
      case protocol::Body::VisionGather:
        status = Gather(*envelope->body_as_VisionGather());
        break;
      case protocol::Body::StepPlan: {
        const auto start = std::chrono::steady_clock::now();
        status = SendImages(*envelope->body_as_StepPlan());  // a vision rank's part of a step
        reporter_.AddStep(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        if (status.ok()) {
          const RankReport report = reporter_.Take();
          status = channel_.Send(0, protocol::EncodeStepResult(mapping_.rank(), envelope->body_as_StepPlan()->step(),
                                                               {}, {}, &report));
        }
        break;
      }
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
  const int tile = task.tile();
  if (tile != weights_.config.image_size || task.crop_count() < 1 || task.pixels() == nullptr ||
      task.pixels()->size() != static_cast<size_t>(task.crop_count()) * 3 * tile * tile) {
    return absl::InvalidArgumentError(absl::StrCat("vision task ", task.tag(), ": crops do not match the ",
                                                   weights_.config.image_size, "-px vision tower"));
  }
  Part& part = parts_[task.tag()];
  part.rows = task.rows();
  part.cols = task.cols();
  part.first_crop = task.first_crop();
  part.crop_count = task.crop_count();
  // Features wait for their gather on the tower's GPU; but where that GPU is an LLM rank's too (the MPI handoff),
  // one image's at a time, the others on the host, so that a burst of images does not eat the LLM rank's reserve.
  const bool waiting_on_device =
      std::any_of(parts_.begin(), parts_.end(), [](const auto& entry) { return entry.second.features.on_device(); });
  const int gpu = handoff_.gpu >= 0 || !waiting_on_device ? model_gpu_ : -1;
  IXC_ASSIGN_OR_RETURN(part.features, model::NewFloats(task.crop_count() * FeatureFloatsPerCrop(), gpu));
  const auto start = std::chrono::steady_clock::now();
  IXC_RETURN_IF_ERROR(model::EncodeCropsInto(weights_, task.pixels()->data(), task.crop_count(), part.features.data()));
  reporter_.AddVitPass(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(),
                       task.crop_count());
  flatbuffers::FlatBufferBuilder builder;
  const auto body = protocol::CreateCropsEncoded(builder, task.tag());
  return channel_.Send(0, protocol::Finish(builder, mapping_.rank(), protocol::Body::CropsEncoded, body.Union()));
}

absl::Status VisionWorker::Gather(const protocol::VisionGather& gather) {
  auto it = parts_.find(gather.tag());
  if (it == parts_.end()) {
    return absl::FailedPreconditionError(absl::StrCat("image ", gather.tag(), ": gather before encoding"));
  }
  Part part = std::move(it->second);
  parts_.erase(it);
  if (gather.owner() != mapping_.rank()) return SendFeatures(part.features, gather.owner());
  const int crops = 1 + part.rows * part.cols;
  model::Floats features;  // (crops, grid^2, hv)
  if (part.first_crop == 0 && part.crop_count == crops) {
    features = std::move(part.features);  // this rank encoded every crop
  } else {
    IXC_ASSIGN_OR_RETURN(features, model::NewFloats(crops * FeatureFloatsPerCrop(), model_gpu_));
    for (const protocol::VisionPart* other : *gather.parts()) {
      float* target = features.data() + other->first_crop() * FeatureFloatsPerCrop();
      if (other->rank() == mapping_.rank()) {
        IXC_RETURN_IF_ERROR(model::CopyFloats(target, part.features.data(), part.features.size(), model_gpu_));
      } else {
        IXC_RETURN_IF_ERROR(ReceiveFeatures(target, other->crop_count() * FeatureFloatsPerCrop(), other->rank()));
      }
    }
  }
  const int64_t rows = model::ImageTokenCount(weights_.config, part.rows, part.cols);
  IXC_ASSIGN_OR_RETURN(model::Floats embeds, model::NewFloats(rows * weights_.llm_hidden, handoff_.gpu));
  IXC_RETURN_IF_ERROR(model::AssembleImageInto(weights_, features.data(), part.rows, part.cols, embeds.data()));
  embeddings_[gather.tag()] = std::move(embeds);
  flatbuffers::FlatBufferBuilder builder;
  const auto body = protocol::CreateVisionDone(builder, gather.tag(), static_cast<int>(rows));
  return channel_.Send(0, protocol::Finish(builder, mapping_.rank(), protocol::Body::VisionDone, body.Union()));
}

absl::Status VisionWorker::SendFeatures(const model::Floats& features, int peer) {
  if (!features.on_device() || handoff_.gpu >= 0) {
    return handoff_.comm->Send(features.data(), features.size(), peer, parallel::Group::kWorld);
  }
  std::vector<float> staged(features.size());
  IXC_RETURN_IF_ERROR(model::CopyFloats(staged.data(), features.data(), features.size(), model_gpu_));
  return handoff_.comm->Send(staged.data(), features.size(), peer, parallel::Group::kWorld);
}

absl::Status VisionWorker::ReceiveFeatures(float* target, int64_t count, int peer) {
  if (model_gpu_ < 0 || handoff_.gpu >= 0) {
    return handoff_.comm->Recv(target, count, peer, parallel::Group::kWorld);
  }
  std::vector<float> staged(count);
  IXC_RETURN_IF_ERROR(handoff_.comm->Recv(staged.data(), count, peer, parallel::Group::kWorld));
  return model::CopyFloats(target, staged.data(), count, model_gpu_);
}

absl::Status VisionWorker::SendImages(const protocol::StepPlan& plan) {
  if (plan.work() != nullptr) {
    for (const protocol::SequenceWork* work : *plan.work()) {
      if (!work->prefill() || work->images() == nullptr) continue;
      for (const protocol::ImageRef* image : *work->images()) {
        if (image->vision_rank() != mapping_.rank()) continue;
        auto it = embeddings_.find(image->tag());
        if (it == embeddings_.end()) {
          return absl::FailedPreconditionError(absl::StrCat("vision task ", image->tag(), " was never encoded here"));
        }
        // Each LLM rank gets the rows it prefills (all of them without SP, none of a cached prefix; every TP rank of
        // an SP column the same) as one message, in the order it receives them (worker/llm_worker.cc).
        const int64_t hidden = weights_.llm_hidden, length = work->tokens()->size();
        const parallel::Layout& layout = mapping_.layout();
        for (int llm_rank : mapping_.LlmRanks()) {
          const int sp_rank = (llm_rank - mapping_.first_llm_rank()) / layout.tp;
          const int64_t end = work->prefill_end() > 0 ? work->prefill_end() : length;  // a chunk's, or the prompt's
          const auto ranges = parallel::PrefilledRows(work->cached_tokens(), end, sp_rank, layout.sp, block_size_,
                                                      image->first_row(), image->rows());
          if (ranges.empty()) continue;
          const float* rows = it->second.data() + (ranges.front().first - image->first_row()) * hidden;
          int64_t count = ranges.front().second - ranges.front().first;
          model::Floats packed;  // the rows of several ranges, gathered (in the embeddings' memory)
          if (ranges.size() > 1) {
            count = 0;
            for (auto [begin, end] : ranges) count += end - begin;
            IXC_ASSIGN_OR_RETURN(packed, model::NewFloats(count * hidden, handoff_.gpu));
            int64_t at = 0;
            for (auto [begin, end] : ranges) {
              IXC_RETURN_IF_ERROR(model::CopyFloats(packed.data() + at * hidden,
                                                    it->second.data() + (begin - image->first_row()) * hidden,
                                                    (end - begin) * hidden, handoff_.gpu));
              at += end - begin;
            }
            rows = packed.data();
          }
          IXC_RETURN_IF_ERROR(handoff_.comm->Send(rows, count * hidden, llm_rank, parallel::Group::kWorld));
        }
      }
    }
  }
  if (plan.drop_images() != nullptr) {
    for (int tag : *plan.drop_images()) embeddings_.erase(tag);
  }
  return absl::OkStatus();
}

}  // namespace ixc::worker
