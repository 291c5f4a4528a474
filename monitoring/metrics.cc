#include "monitoring/metrics.h"

#include <chrono>

#include "prometheus/text_serializer.h"

namespace ixc::monitoring {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;
using prometheus::Labels;
using prometheus::Registry;

Family<Counter>& CounterFamily(Registry& registry, const std::string& name, const std::string& help,
                               const Labels& model) {
  return prometheus::BuildCounter().Name(name).Help(help).Labels(model).Register(registry);
}
Family<Gauge>& GaugeFamily(Registry& registry, const std::string& name, const std::string& help, const Labels& model) {
  return prometheus::BuildGauge().Name(name).Help(help).Labels(model).Register(registry);
}
Family<Histogram>& HistogramFamily(Registry& registry, const std::string& name, const std::string& help,
                                   const Labels& model) {
  return prometheus::BuildHistogram().Name(name).Help(help).Labels(model).Register(registry);
}

Counter& OneCounter(Registry& registry, const std::string& name, const std::string& help, const Labels& model) {
  return CounterFamily(registry, name, help, model).Add({});
}
Gauge& OneGauge(Registry& registry, const std::string& name, const std::string& help, const Labels& model) {
  return GaugeFamily(registry, name, help, model).Add({});
}
Histogram& OneHistogram(Registry& registry, const std::string& name, const std::string& help, const Labels& model,
                        const std::vector<double>& buckets) {
  return HistogramFamily(registry, name, help, model).Add({}, buckets);
}

Labels WithRank(const RankLabels& rank, Labels more) {
  more["rank"] = std::to_string(rank.rank);
  more["role"] = rank.role;
  more["tp"] = rank.tp < 0 ? "" : std::to_string(rank.tp);
  more["sp"] = rank.sp < 0 ? "" : std::to_string(rank.sp);
  return more;
}

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::vector<double> TtftBuckets() {
  return {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
          2.5,   5.0,   7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
}

std::vector<double> InterTokenBuckets() {
  return {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0};
}

std::vector<double> RequestSecondsBuckets() {
  return {0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
          120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
}

std::vector<double> TokenCountBuckets() {
  std::vector<double> buckets;
  for (double decade = 1; decade <= 10000; decade *= 10) {
    for (double step : {1.0, 2.0, 5.0}) buckets.push_back(step * decade);
  }
  buckets.push_back(98304);  // IXC-2.5's 96K context
  return buckets;
}

std::vector<double> StepTokenBuckets() {
  return {1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 98304};
}

std::vector<double> StepSecondsBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
          25.0, 100.0};
}

std::vector<double> HttpSecondsBuckets() {
  return {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
}

Metrics::Metrics(const BuildInfo& info)
    : model_{{"model_name", info.model_name}},
      requests_running(OneGauge(*registry_, "ixc_num_requests_running", "Sequences in the running batch.", model_)),
      requests_waiting(OneGauge(*registry_, "ixc_num_requests_waiting",
                                "Requests arrived and not yet running (images in the queue or encoding, or waiting "
                                "for KV blocks).",
                                model_)),
      requests_waiting_for_image_cache(OneGauge(*registry_, "ixc_num_requests_waiting_for_image_cache",
                                                "Requests whose images wait for room in the image cache.", model_)),
      kv_cache_usage(OneGauge(*registry_, "ixc_kv_cache_usage_perc",
                              "KV cache usage, 0-1, of the fullest SP rank's pool.", model_)),
      preemptions(
          OneCounter(*registry_, "ixc_num_preemptions_total", "Sequences preempted to free KV blocks.", model_)),
      prefix_cache_queries(OneCounter(*registry_, "ixc_prefix_cache_queries_total",
                                      "Prompt positions looked up in the prefix cache (at each admission).", model_)),
      prefix_cache_hits(OneCounter(*registry_, "ixc_prefix_cache_hits_total",
                                   "Prompt positions found in the prefix cache: their K/V was not computed again.",
                                   model_)),
      prompt_tokens(OneCounter(*registry_, "ixc_prompt_tokens_total",
                               "Prompt positions prefilled (image rows included; a recompute after preemption not "
                               "counted again).",
                               model_)),
      generation_tokens(OneCounter(*registry_, "ixc_generation_tokens_total", "Tokens generated.", model_)),
      request_success(CounterFamily(*registry_, "ixc_request_success_total",
                                    "Requests finished, by finished_reason (stop, length, abort).", model_)),
      request_errors(OneCounter(*registry_, "ixc_request_error_total", "Requests ended by an error.", model_)),
      requests_aborted(OneCounter(*registry_, "ixc_num_aborted_requests_total",
                                  "Requests aborted: the client went away, or a drain ran out of time.", model_)),
      time_to_first_token(OneHistogram(*registry_, "ixc_time_to_first_token_seconds",
                                       "From the request's arrival (preparation included) to its first token.",
                                       model_, TtftBuckets())),
      inter_token_latency(OneHistogram(*registry_, "ixc_inter_token_latency_seconds",
                                       "Between consecutive tokens of a request.", model_, InterTokenBuckets())),
      e2e_request_latency(OneHistogram(*registry_, "ixc_e2e_request_latency_seconds",
                                       "From the request's arrival to its end.", model_, RequestSecondsBuckets())),
      request_queue_time(OneHistogram(*registry_, "ixc_request_queue_time_seconds",
                                      "From arrival at the engine to the first prefill (images encoded, KV found).",
                                      model_, RequestSecondsBuckets())),
      request_prefill_time(OneHistogram(*registry_, "ixc_request_prefill_time_seconds",
                                        "From the first prefill to the first token.", model_,
                                        RequestSecondsBuckets())),
      request_decode_time(OneHistogram(*registry_, "ixc_request_decode_time_seconds",
                                       "From the first token to the last.", model_, RequestSecondsBuckets())),
      request_prompt_tokens(OneHistogram(*registry_, "ixc_request_prompt_tokens",
                                         "Prompt positions per request (image rows included).", model_,
                                         TokenCountBuckets())),
      request_generation_tokens(OneHistogram(*registry_, "ixc_request_generation_tokens",
                                             "Tokens generated per request.", model_, TokenCountBuckets())),
      iteration_tokens(OneHistogram(*registry_, "ixc_iteration_tokens",
                                    "Positions in one engine step: prompt rows prefilled and decodes.", model_,
                                    StepTokenBuckets())),
      step_duration(OneHistogram(*registry_, "ixc_step_duration_seconds",
                                 "One engine step, from its plan to every rank's result.", model_,
                                 StepSecondsBuckets())),
      images_in(OneCounter(*registry_, "ixc_vision_images_total", "Images received (a video counts as one).", model_)),
      video_frames_in(OneCounter(*registry_, "ixc_vision_video_frames_total", "Video frames kept (one per second, at "
                                                                        "most 32 per video).",
                                 model_)),
      tiles_per_image(OneHistogram(*registry_, "ixc_vision_tiles_per_image",
                                   "ViT crops per image: the HD grid's tiles and the global view.", model_,
                                   {1, 2, 3, 5, 7, 10, 13, 17, 21, 25, 33, 41, 49})),
      vision_preprocess_time(OneHistogram(*registry_, "ixc_vision_preprocess_seconds",
                                          "Decoding an image or video and its HD transform.", model_,
                                          StepSecondsBuckets())),
      image_queue_time(OneHistogram(*registry_, "ixc_vision_image_queue_seconds",
                                    "From arrival to dispatch to the vision ranks (room in the image cache).", model_,
                                    StepSecondsBuckets())),
      image_cache_bytes(OneGauge(*registry_, "ixc_image_cache_bytes",
                                 "Bytes the vision ranks hold for images (features and embeddings, in use and "
                                 "cached).",
                                 model_)),
      image_cache_bytes_in_use(OneGauge(*registry_, "ixc_image_cache_bytes_in_use",
                                        "Of the image cache's bytes, those of images that requests use now (the rest "
                                        "are cached for reuse, evicted for room).",
                                        model_)),
      image_cache_queries(OneCounter(*registry_, "ixc_image_cache_queries_total",
                                     "Images and videos looked up in the image-embedding cache.", model_)),
      image_cache_hits(OneCounter(*registry_, "ixc_image_cache_hits_total",
                                  "Images and videos found in the image-embedding cache: the ViT did not run.",
                                  model_)),
      vit_pass_time(OneHistogram(*registry_, "ixc_vision_vit_pass_seconds",
                                 "One ViT pass on a vision rank: the crops of an image it was given.", model_,
                                 StepSecondsBuckets())),
      vit_crops(OneCounter(*registry_, "ixc_vision_vit_crops_total", "Crops the ViT encoded.", model_)),
      handoff_bytes(CounterFamily(*registry_, "ixc_vision_handoff_bytes_total",
                                  "Bytes the vision ranks sent (ViT features to an image's owner, embeddings to the "
                                  "LLM ranks), by path (mpi, nccl).",
                                  model_)),
      handoff_seconds(CounterFamily(*registry_, "ixc_vision_handoff_seconds_total",
                                    "The vision ranks' time in those sends, by path.", model_)),
      http_requests(CounterFamily(*registry_, "ixc_http_requests_total",
                                  "HTTP requests answered, by handler, method and status code.", model_)),
      http_duration(HistogramFamily(*registry_, "ixc_http_request_duration_seconds",
                                    "HTTP requests' durations, streams to their end, by handler and method.",
                                    model_)),
      rank_up(GaugeFamily(*registry_, "ixc_rank_up", "1 while the rank answers and its heartbeats come, else 0.",
                          model_)),
      rank_heartbeat_age(GaugeFamily(*registry_, "ixc_rank_heartbeat_age_seconds",
                                     "Seconds since the rank's last heartbeat (one a second).", model_)),
      rank_kv_blocks(GaugeFamily(*registry_, "ixc_rank_kv_blocks",
                                 "KV blocks in an LLM rank's pool (the smallest pool of the job).", model_)),
      rank_kv_blocks_used(GaugeFamily(*registry_, "ixc_rank_kv_blocks_used", "KV blocks in use on an LLM rank.",
                                      model_)),
      rank_steps(CounterFamily(*registry_, "ixc_rank_steps_total", "Step plans a rank worked on.", model_)),
      rank_compute_seconds(CounterFamily(*registry_, "ixc_rank_compute_seconds_total",
                                         "A rank's time in its steps' work, communication included.", model_)),
      rank_comm_seconds(CounterFamily(*registry_, "ixc_rank_comm_seconds_total",
                                      "A rank's time in data-plane calls, by group (tp, sp, llm, world), op and path.",
                                      model_)),
      rank_comm_bytes(CounterFamily(*registry_, "ixc_rank_comm_bytes_total",
                                    "Bytes a rank's data-plane calls moved, by group, op and path.", model_)),
      rank_device_memory_used(GaugeFamily(*registry_, "ixc_rank_device_memory_used_bytes",
                                          "Memory in use on a rank's device: its GPU, or on the CPU the process's resident memory.", model_)),
      rank_device_memory_total(GaugeFamily(*registry_, "ixc_rank_device_memory_total_bytes",
                                           "Memory of a rank's device: its GPU's, or the machine's.", model_)),
      build_info(GaugeFamily(*registry_, "ixc_build_info", "The build and the job: always 1.", model_)
                     .Add({{"version", info.version},
                           {"commit", info.commit},
                           {"device", info.device},
                           {"dtype", info.dtype},
                           {"layout", info.layout}})),
      process_start_time(OneGauge(*registry_, "ixc_process_start_time_seconds",
                                  "The coordinator's start, in seconds since the Unix epoch.", model_)) {
  build_info.Set(1);
  process_start_time.Set(UnixNow());
}

std::string Metrics::Scrape() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

Gauge& Metrics::RankGauge(Family<Gauge>& family, const RankLabels& rank, const Labels& more) {
  return family.Add(WithRank(rank, more));
}

Counter& Metrics::RankCounter(Family<Counter>& family, const RankLabels& rank, const Labels& more) {
  return family.Add(WithRank(rank, more));
}

}  // namespace ixc::monitoring
