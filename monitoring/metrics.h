// File: monitoring/metrics.h
//
// Every metric the cluster exports (docs/monitoring.md lists them), in one prometheus-cpp registry that the API's HTTP
// server serializes at /metrics (prometheus-cpp's own Exposer cannot start in a process that links cuBLASLt). Names
// follow vLLM's where vLLM has one, under the `ixc_` prefix; every series carries `model_name`, and only the per-rank
// series carry `rank`, `role`, `tp` and `sp`. The metric objects are thread-safe: the engine's thread, the HTTP
// handlers and the scrape use them at once.
//   Metrics metrics(BuildInfo{...});
//   metrics.prompt_tokens.Increment(120);
//   metrics.time_to_first_token.Observe(0.25);
//   response.set_content(metrics.Scrape(), kPrometheusText);
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace ixc::monitoring {

inline constexpr char kPrometheusText[] = "text/plain; version=0.0.4; charset=utf-8";

struct BuildInfo {
  std::string version;
  std::string commit;      // git, at configure time
  std::string device;      // cpu | cuda
  std::string dtype;
  std::string layout;      // "V1 T2 S2"
  std::string model_name;  // the served model's name
};

// A rank of the parallel grid, as its series are labelled.
struct RankLabels {
  int rank = 0;
  std::string role;  // vision | llm
  int tp = -1;       // -1 (an empty label) on a vision rank
  int sp = -1;
};

// The bucket boundaries (vLLM's, the token counts widened to IXC-2.5's 96K positions).
std::vector<double> TtftBuckets();
std::vector<double> InterTokenBuckets();
std::vector<double> RequestSecondsBuckets();  // e2e, queue, prefill, decode
std::vector<double> TokenCountBuckets();      // 1-2-5 up to 98304
std::vector<double> StepTokenBuckets();       // tokens in one engine step
std::vector<double> StepSecondsBuckets();     // one step, one ViT pass, one handoff: 100 us to 100 s
std::vector<double> HttpSecondsBuckets();     // 1 ms to an hour (a stream lasts as long as its answer)

class Metrics {
 public:
  explicit Metrics(const BuildInfo& info);

  // The text exposition format of every series.
  std::string Scrape() const;

  // One rank's series in a family of per-rank gauges or counters (created at first use).
  prometheus::Gauge& RankGauge(prometheus::Family<prometheus::Gauge>& family, const RankLabels& rank,
                               const prometheus::Labels& more = {});
  prometheus::Counter& RankCounter(prometheus::Family<prometheus::Counter>& family, const RankLabels& rank,
                                   const prometheus::Labels& more = {});

 private:
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  const prometheus::Labels model_;  // {model_name}: on every series

 public:
  // The engine.
  prometheus::Gauge& requests_running;
  prometheus::Gauge& requests_waiting;
  prometheus::Gauge& requests_waiting_for_image_cache;
  prometheus::Gauge& kv_cache_usage;  // 0-1, of the fullest SP rank's pool (the one that binds)
  prometheus::Counter& preemptions;
  prometheus::Counter& prefix_cache_queries;  // prompt positions looked up in the prefix cache, at each admission
  prometheus::Counter& prefix_cache_hits;     // of them, found cached
  prometheus::Counter& prompt_tokens;
  prometheus::Counter& generation_tokens;
  prometheus::Family<prometheus::Counter>& request_success;  // {finished_reason}: stop | length | abort
  prometheus::Counter& request_errors;                       // ended by an error (a rank failed, a bad dump file)
  prometheus::Counter& requests_aborted;                     // finished_reason abort: client gone, drain timeout
  prometheus::Histogram& time_to_first_token;
  prometheus::Histogram& inter_token_latency;
  prometheus::Histogram& e2e_request_latency;
  prometheus::Histogram& request_queue_time;
  prometheus::Histogram& request_prefill_time;
  prometheus::Histogram& request_decode_time;
  prometheus::Histogram& request_prompt_tokens;
  prometheus::Histogram& request_generation_tokens;
  prometheus::Histogram& iteration_tokens;
  prometheus::Histogram& step_duration;

  // The vision stage.
  prometheus::Counter& images_in;
  prometheus::Counter& video_frames_in;
  prometheus::Histogram& tiles_per_image;
  prometheus::Histogram& vision_preprocess_time;  // decoding and the HD transform, per image or video
  prometheus::Histogram& image_queue_time;        // arrival to dispatch to the vision ranks
  prometheus::Gauge& image_cache_bytes;         // held: in use, and cached for reuse
  prometheus::Gauge& image_cache_bytes_in_use;  // of them, those of images that requests use now
  prometheus::Counter& image_cache_queries;  // images and videos looked up in the image-embedding cache
  prometheus::Counter& image_cache_hits;     // of them, held already: no ViT
  prometheus::Histogram& vit_pass_time;     // one ViT pass on a vision rank (its crops of one image)
  prometheus::Counter& vit_crops;
  prometheus::Family<prometheus::Counter>& handoff_bytes;    // {path}: what vision ranks send (features, embeddings)
  prometheus::Family<prometheus::Counter>& handoff_seconds;  // {path}

  // HTTP.
  prometheus::Family<prometheus::Counter>& http_requests;      // {handler, method, status}
  prometheus::Family<prometheus::Histogram>& http_duration;    // {handler, method}

  // Per rank (RankLabels), from the workers' step results and the coordinator's heartbeats.
  prometheus::Family<prometheus::Gauge>& rank_up;
  prometheus::Family<prometheus::Gauge>& rank_heartbeat_age;
  prometheus::Family<prometheus::Gauge>& rank_kv_blocks;       // an LLM rank's pool, as the coordinator schedules it
  prometheus::Family<prometheus::Gauge>& rank_kv_blocks_used;
  prometheus::Family<prometheus::Counter>& rank_steps;
  prometheus::Family<prometheus::Counter>& rank_compute_seconds;  // the steps' time, communication included
  prometheus::Family<prometheus::Counter>& rank_comm_seconds;     // {group, op, path}
  prometheus::Family<prometheus::Counter>& rank_comm_bytes;       // {group, op, path}
  prometheus::Family<prometheus::Gauge>& rank_device_memory_used;   // a GPU's, or a CPU rank's resident memory
  prometheus::Family<prometheus::Gauge>& rank_device_memory_total;

  // The process.
  prometheus::Gauge& build_info;
  prometheus::Gauge& process_start_time;
};

}  // namespace ixc::monitoring
