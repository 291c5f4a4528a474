// File: worker/vision_worker.h
//
// A vision rank's main loop (the pipeline stage of architecture section 3). An image's crops are spread over the vision
// ranks: each encodes its part (VisionTask) and says so; when every part is done the coordinator sends a VisionGather,
// on which the helpers send their features to the image's owner over the data plane and the owner assembles the
// embeddings (merge, separators, projector) and reports them done. When a step plan prefills a request that uses them,
// the owner sends each LLM rank the rows it prefills; it keeps the embeddings until the coordinator's image cache drops
// them (coordinator/image_cache.h), so an image seen again skips the ViT. So the vision work of a new request overlaps
// the LLM steps of the running ones. Messages are handled in arrival order on every vision rank, and the coordinator
// sends gathers between steps, so the ranks' transfers always meet. Features and embeddings stay on the tower's GPU,
// and the embeddings where the handoff moves them from (worker/handoff.h): host memory, or this rank's GPU with the
// NCCL handoff.
#pragma once

#include <map>

#include "absl/status/status.h"
#include "model/floats.h"
#include "model/vision_encoder.h"
#include "parallel/mapping.h"
#include "protocol/messages.h"
#include "worker/handoff.h"
#include "worker/rank_reporter.h"

namespace ixc::worker {

class VisionWorker {
 public:
  // `model_gpu`: the CUDA device the vision tower runs on (weights.device), -1 on the CPU. `block_size`: the KV
  // block's tokens, which place a prompt's rows on the SP ranks (parallel/sequence_shard.h).
  // `reporter` collects what each step's acknowledgement tells of this rank (ViT passes, the handoff's traffic).
  VisionWorker(const parallel::Mapping& mapping, const model::VisionWeights& weights, Handoff handoff, int model_gpu,
               int block_size, protocol::Channel& channel, int step_timeout_s, RankReporter& reporter);
  absl::Status Run();

 private:
  absl::Status Encode(const protocol::VisionTask& task);
  absl::Status Gather(const protocol::VisionGather& gather);
  absl::Status SendImages(const protocol::StepPlan& plan);
  // ViT features stay where the tower made them (its GPU, or the host) from encoding to assembly; with the MPI handoff
  // they pass through host memory only on their way to another vision rank (and wait there for their gather where
  // another image's already wait on the GPU).
  absl::Status SendFeatures(const model::Floats& features, int peer);
  absl::Status ReceiveFeatures(float* target, int64_t count, int peer);
  int64_t FeatureFloatsPerCrop() const {  // grid^2 x vit hidden
    return int64_t{weights_.config.grid()} * weights_.config.grid() * weights_.config.hidden_size;
  }

  struct Part {
    int rows = 0, cols = 0;
    int first_crop = 0, crop_count = 0;
    model::Floats features;  // (crop_count, grid^2, vit hidden)
  };

  const parallel::Mapping& mapping_;
  const model::VisionWeights& weights_;
  Handoff handoff_;
  int model_gpu_;
  int block_size_;
  protocol::Channel& channel_;
  int step_timeout_s_;
  RankReporter& reporter_;
  std::map<int, Part> parts_;                     // encoded parts awaiting their gather, by image tag
  std::map<int, model::Floats> embeddings_;       // assembled images this rank owns, by tag: (rows, llm hidden),
                                                  // until the image cache drops them (StepPlan.drop_images)
};

}  // namespace ixc::worker
