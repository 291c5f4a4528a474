// File: worker/vision_worker.h
//
// A vision rank's main loop (the pipeline stage of architecture section 3): it encodes the crops the coordinator
// sends (VisionTask), reports each image done, keeps the embeddings, and when a step plan prefills a request that
// uses them, sends them over the data plane to every LLM rank. So the vision work of a new request overlaps the
// LLM steps of the running ones.
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
  absl::Status Handoff(const protocol::StepPlan& plan);

  const parallel::Mapping& mapping_;
  const model::VisionWeights& weights_;
  parallel::DeviceComm& comm_;
  protocol::Channel& channel_;
  int step_timeout_s_;
  std::map<int, std::vector<float>> embeddings_;  // by task tag: (rows, llm hidden)
};

}  // namespace ixc::worker
