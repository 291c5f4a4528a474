// File: coordinator/engine.h
//
// The coordinator's engine loop (architecture section 3), on a thread of its own: requests arrive through the
// EngineInbox at any time (from the HTTP server or the offline JSONL reader: one path for both); their images go to the
// vision ranks (round-robin) in arrival order as soon as they fit the image cache (image_cache.h: what the vision ranks
// hold for images, features until assembly and embeddings while used or cached; a request alone may exceed it; an image
// held already is not encoded again); a request is admitted when its images are encoded and its prefill fits the KV
// cache, after the longest prefix the prefix cache holds (block_manager.h); every step plan carries the prefills
// admitted this step and one decode for every running sequence (continuous batching: new requests join the running
// batch), with the KV blocks each takes. Each token goes to the request's RequestStream as its step finishes. When a
// decode needs a KV block that no longer exists, the most recently admitted sequence is preempted: its blocks are freed
// and it is later prefilled again from its prompt and the tokens it had generated, so its output is unchanged. A
// cancelled request (client gone, stop string) ends before the next step, which frees its blocks and images. Each step
// waits for every worker's result, with a timeout; a worker's error or silence (also while idle) fails every unfinished
// request with a message naming the rank.
#pragma once

#include <atomic>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/beam_group.h"
#include "coordinator/block_manager.h"
#include "coordinator/engine_inbox.h"
#include "coordinator/image_cache.h"
#include "coordinator/request.h"
#include "monitoring/metrics.h"
#include "parallel/mapping.h"
#include "protocol/messages.h"

namespace ixc::coordinator {

struct EngineOptions {
  int kv_block_size = 16;  // the KV blocks per LLM rank come from the ranks' ready messages (the smallest pool)
  int step_timeout_s = 120;
  int max_num_seqs = 256;  // sequences in the running batch, at most (vLLM's --max-num-seqs)
  // The positions one step may carry: decodes, then prompt chunks (docs/scheduling.md). A prompt past what is left
  // is prefilled over several steps.
  int64_t max_num_batched_tokens = 4096;
  // A prompt position counts one batched token plus one per this many keys its attention reads (chunk_cost.h), so
  // late chunks of a long prompt take fewer positions; 0: positions only.
  int64_t keys_per_token = 0;
  int64_t max_context = 98304;
  // The image cache (image_cache.h): its budget, one crop's ViT features (patches x vision width x 4), one image
  // row's embedding (the LLM's width x 4).
  int64_t image_cache_bytes = int64_t{8192} << 20;
  int64_t image_feature_bytes_per_crop = 0;
  int64_t image_row_bytes = 0;
  // Reuse: KV blocks of a shared prefix (block_manager.h) and the embeddings of an image seen before (image_cache.h).
  bool prefix_caching = true;
  // Sequences up to this length rotate with RoPE's fixed base (max_position_embeddings with dynamic NTK): the
  // prefix cache's keys depend on it past there (prefix_keys.h).
  int64_t rope_fixed_up_to = std::numeric_limits<int64_t>::max();
};


class Engine {
 public:
  // The engine records its metrics in `metrics` (gauges after every step, requests as they end).
  Engine(const parallel::Mapping& mapping, protocol::Channel& channel, const EngineOptions& options,
         monitoring::Metrics& metrics);

  // Waits until every worker has loaded its weights and said so, or one reports an error.
  absl::Status Start();
  // Runs what arrives in `inbox` until it is closed and everything taken from it is done. A worker's failure ends
  // every unfinished request (and what is still submitted) with its message, which is returned.
  absl::Status Serve(EngineInbox& inbox);
  // Tells every worker to stop.
  void Shutdown();

  // Every worker has loaded its model (/health); read from other threads.
  bool ready() const { return ready_; }
  // A worker's failure has ended the engine: set before the unfinished requests' streams end with its message, so a
  // handler woken by one already knows the server failed (503), not the request (400).
  bool failed() const { return failed_all_; }

 private:
  // Takes new requests and cancellations from the inbox.
  void TakeFromInbox(EngineInbox& inbox);
  void Cancel(uint64_t number, const std::string& reason);
  // Moves requests whose arrival time has come into the queues.
  void Arrive();
  absl::Status Step();
  // Dispatches the queued requests' images in order while they fit the image cache.
  absl::Status DispatchQueuedImages();
  absl::Status DispatchVision(Request& request);
  // Sends a new image cache entry's crops to the vision ranks.
  absl::Status EncodeImage(ImageInPrompt& image, ImageCache::Entry& entry);
  // An image cache entry is assembled: the requests that waited for it may be admitted.
  absl::Status ImageReady(int tag, int rows, int sender);
  // Admits `request` to a prefill if its blocks fit (after the longest cached prefix); whether it did.
  bool Admit(Request& request);
  // The request's first `computed` positions hold their K/V: their whole blocks join the prefix cache.
  void RegisterComputed(Request& request, int64_t computed);
  // Handles one worker message; counts this step's results and records sampled tokens by request number, and the
  // requests that failed alone in failed_.
  absl::Status HandleMessage(int sender, const protocol::Bytes& bytes,
                             std::map<uint64_t, protocol::SampledToken>* tokens,
                             int* results);
  // "ranks 2, 5" of the workers that have not answered the current step; whether their heartbeats go on.
  std::string Silent() const;
  std::string HeartbeatNote() const;
  // A rank whose heartbeats stopped `kDeadAfterSeconds` ago (and, within a step, that has not answered): it is gone.
  absl::Status CheckHeartbeats(bool in_step) const;
  protocol::Bytes BuildPlan(const std::vector<Request*>& prefills, const std::vector<Request*>& decodes);
  // The KV blocks and the image cache entries, all unreferenced once every request has ended (a leak, or a block freed
  // twice, is a bug this reports).
  absl::Status CheckIdle() const;
  // Preempts `request`; a beam, or the owner of beams, preempts the whole search (beam_group.h).
  void Preempt(Request& request);
  // Beam search (beam_group.h). `owner`'s prompt is prefilled: its beams start from the prompt's candidates.
  void StartBeams(Request& owner, BeamCandidates candidates);
  // Every live beam of `owner` has answered: the next beams (forked where a parent has several), or the end.
  void AdvanceBeams(Request& owner);
  // The best beam to the owner's stream; the owner ends.
  void FinishBeams(Request& owner);
  // Frees sequence `number`'s blocks here and, with the next plan, on the workers.
  void ReleaseSequence(uint64_t number);
  // Frees a beam's sequence and takes it out of the running batch.
  void DropBeam(Request& beam);
  // Drops `owner`'s beams, if it has a search under way (they stay in retired_beams_ until the next step), and the
  // search with them.
  void EndSearch(Request& owner);
  // Ends `request` (stream, KV blocks, images, queues); it leaves the engine after this loop iteration.
  void Finish(Request& request, const std::string& reason, const std::string& error = "");
  void FailAll(const absl::Status& status, EngineInbox& inbox);
  // The request's end in the metrics: its finish reason, and its latencies and lengths unless it failed.
  void RecordEnd(const Request& request);
  // The dispatch of its images in the vision stage's metrics.
  void RecordDispatch(const Request& request);
  // A worker's report with its step result in the per-rank metrics (and a vision rank's in the vision stage's).
  void RecordRank(int rank, const RankReport& report);
  void UpdateGauges();
  double Now() const;

  const parallel::Mapping& mapping_;
  protocol::Channel& channel_;
  EngineOptions options_;
  BlockManager blocks_;
  std::map<uint64_t, std::shared_ptr<Request>> requests_;  // unfinished, by number
  std::vector<Request*> not_arrived_;    // submitted with a later arrival time (offline arrive_after_ms)
  std::vector<Request*> running_;        // in admission order
  std::deque<Request*> waiting_;         // ready to prefill; preempted requests go first
  std::deque<Request*> image_queue_;     // arrived, images not yet dispatched, in arrival order
  std::vector<uint64_t> done_;           // finished in this iteration: they leave requests_ after it
  ImageCache image_cache_;
  std::vector<uint64_t> release_;
  struct Fork {  // a beam fork for the next plan (protocol KvFork), made before release_
    uint64_t parent = 0, child = 0;
    int32_t global_block = -1, copy_to = -1;
  };
  std::vector<Fork> forks_;
  std::vector<std::unique_ptr<Request>> retired_beams_;  // dropped this step: this step's lists may still point there
  uint64_t next_beam_number_ = kFirstBeamNumber;
  std::map<uint64_t, std::pair<int32_t, int32_t>> new_blocks_;  // this step's decodes: (global block, id) taken
  std::vector<bool> answered_;           // by world rank, for the current step
  std::map<uint64_t, std::string> failed_;  // request number -> why it failed alone, in the current step
  std::vector<double> heartbeat_;        // by world rank: when its last heartbeat came (Now())
  uint64_t step_ = 0;
  int kv_blocks_ = 0;  // the smallest KV pool the LLM ranks reported ready with, in blocks (0: none yet)
  int next_vision_ = 0;
  int64_t prefix_queries_ = 0, prefix_hits_ = 0;  // prompt positions looked up, found (the job's summary)
  double start_ = 0;
  monitoring::Metrics& metrics_;
  // A worker's per-rank series, made once: each lookup of a series builds its label set (the gauges are set at every
  // turn of the loop).
  struct RankSeries {
    monitoring::RankLabels labels;
    prometheus::Gauge* up = nullptr;
    prometheus::Gauge* heartbeat_age = nullptr;
    prometheus::Gauge* kv_blocks = nullptr;       // LLM ranks
    prometheus::Gauge* kv_blocks_used = nullptr;  // LLM ranks
    prometheus::Gauge* device_memory_used = nullptr;
    prometheus::Gauge* device_memory_total = nullptr;
    prometheus::Counter* steps = nullptr;
    prometheus::Counter* compute_seconds = nullptr;
  };
  std::vector<RankSeries> rank_series_;  // by world rank (the coordinator's entry unused)
  std::atomic<bool> ready_{false};
  std::atomic<bool> failed_all_{false};
};

}  // namespace ixc::coordinator
