// File: coordinator/engine.h
//
// The coordinator's engine loop (architecture section 3): requests arrive; their images go to the vision ranks
// (round-robin) in arrival order as soon as they fit the image cache (image_cache.h: what the vision ranks hold for
// images, features until assembly and embeddings until the request finishes; a request alone may exceed it); a request
// is admitted when its images are encoded and its prefill fits the KV cache; every step plan carries the prefills
// admitted this step and one decode for every running sequence (continuous batching: new requests join the running
// batch). When a decode needs a KV block that no longer exists, the most recently admitted sequence is preempted: its
// blocks are freed and it is later prefilled again from its prompt and the tokens it had generated, so its output is
// unchanged. Each step waits for every worker's result, with a timeout; a worker's error or silence fails the in-flight
// requests with a message naming the rank.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/block_manager.h"
#include "coordinator/image_cache.h"
#include "coordinator/request.h"
#include "parallel/mapping.h"
#include "protocol/messages.h"

namespace ixc::coordinator {

struct EngineOptions {
  int kv_block_size = 16;  // the KV blocks per LLM rank come from the ranks' ready messages (the smallest pool)
  int step_timeout_s = 120;
  int64_t max_context = 98304;
  // The image cache (image_cache.h): its budget, one crop's ViT features (patches x vision width x 4), one image
  // row's embedding (the LLM's width x 4).
  int64_t image_cache_bytes = int64_t{8192} << 20;
  int64_t image_feature_bytes_per_crop = 0;
  int64_t image_row_bytes = 0;
};

class Engine {
 public:
  Engine(const parallel::Mapping& mapping, protocol::Channel& channel, const EngineOptions& options);

  // Runs `requests` to completion (or to the first worker failure, which is returned after every unfinished
  // request has been marked with it). Results are in the requests.
  absl::Status Run(std::vector<Request>& requests);
  // Tells every worker to stop.
  void Shutdown();

 private:
  // Waits until every worker has loaded its weights and said so (step 0), or one reports an error.
  absl::Status WaitForWorkers(std::vector<Request>& requests);
  absl::Status Step(std::vector<Request>& requests);
  // Dispatches the queued requests' images in order while they fit the image cache.
  absl::Status DispatchQueuedImages();
  absl::Status DispatchVision(Request& request);
  // Handles one worker message; counts this step's results and records sampled tokens by request number, and the
  // requests that failed alone in failed_.
  absl::Status HandleMessage(int sender, const protocol::Bytes& bytes, std::vector<Request>& requests,
                             std::map<uint64_t, int32_t>* tokens, int* results);
  // "ranks 2, 5" of the workers that have not answered the current step; whether their heartbeats go on.
  std::string Silent() const;
  std::string HeartbeatNote() const;
  // A rank that has not answered and whose heartbeats stopped `kDeadAfterSeconds` ago: it is gone.
  absl::Status CheckHeartbeats() const;
  protocol::Bytes BuildPlan(const std::vector<Request*>& prefills, const std::vector<Request*>& decodes);
  void Preempt(Request& request);
  void Finish(Request& request, const std::string& reason);
  // A request that is done: its images leave the vision ranks and the image cache.
  void DropImages(Request& request);
  double Now() const;

  const parallel::Mapping& mapping_;
  protocol::Channel& channel_;
  EngineOptions options_;
  BlockManager blocks_;
  std::vector<Request*> running_;        // in admission order
  std::deque<Request*> waiting_;         // ready to prefill; preempted requests go first
  std::deque<Request*> image_queue_;     // arrived, images not yet dispatched, in arrival order
  ImageCache image_cache_;
  std::vector<uint64_t> release_, finished_;
  std::vector<bool> answered_;           // by world rank, for the current step
  std::map<uint64_t, std::string> failed_;  // request number -> why it failed alone, in the current step
  std::vector<double> heartbeat_;        // by world rank: when its last heartbeat came (Now())
  uint64_t step_ = 0;
  int kv_blocks_ = 0;  // the smallest KV pool the LLM ranks reported ready with, in blocks (0: none yet)
  int next_vision_ = 0;
  double start_ = 0;
};

}  // namespace ixc::coordinator
