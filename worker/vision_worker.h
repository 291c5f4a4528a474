// File: worker/vision_worker.h
//
// A vision rank's main loop (the pipeline stage of architecture section 3). An image's crops are spread over the
// vision ranks: each encodes its part (VisionTask) and says so; when every part is done the coordinator sends a
// VisionGather, on which the helpers send their features to the image's owner over the data plane and the owner
// assembles the embeddings (merge, separators, projector) and reports them done. When a step plan prefills a
// request that uses them, the owner sends each LLM rank the rows of its sequence shard. So the vision work of a new
// request overlaps the LLM steps of the running ones. Messages are handled in arrival order on every vision rank,
// and the coordinator sends gathers between steps, so the ranks' transfers always meet.
#pragma once

#include <map>
#include <vector>

#include "absl/status/status.h"
#include "model/vision_encoder.h"
#include "parallel/device_comm.h"
#include "parallel/mapping.h"
#include "protocol/messages.h"

namespace ixc::worker {

class VisionWorker {
 public:
  VisionWorker(const parallel::Mapping& mapping, const model::VisionWeights& weights, parallel::DeviceComm& comm,
               protocol::Channel& channel, int step_timeout_s);
  absl::Status Run();

 private:
  absl::Status Encode(const protocol::VisionTask& task);
  absl::Status Gather(const protocol::VisionGather& gather);
  absl::Status Handoff(const protocol::StepPlan& plan);

  struct Part {
    int rows = 0, cols = 0;
    int first_crop = 0, crop_count = 0;
    std::vector<float> features;  // (crop_count, grid^2, vit hidden)
  };

  const parallel::Mapping& mapping_;
  const model::VisionWeights& weights_;
  parallel::DeviceComm& comm_;
  protocol::Channel& channel_;
  int step_timeout_s_;
  std::map<int, Part> parts_;                     // encoded parts awaiting their gather, by image tag
  std::map<int, std::vector<float>> embeddings_;  // assembled images this rank owns, by tag: (rows, llm hidden)
};

}  // namespace ixc::worker
