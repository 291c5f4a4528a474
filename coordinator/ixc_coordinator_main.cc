// ixc-coordinator: rank 0 of the cluster job. Serving (--serve): an OpenAI-compatible HTTP server
// (coordinator/api/api_server.h) that runs until SIGTERM or SIGINT, then drains. Offline: reads requests from a JSONL
// file, runs them on the vision and LLM ranks, writes one JSONL result per request (coordinator/request.h has both
// formats). Both are clients of the same engine (coordinator/engine.h) through its inbox.
//
//   mpirun -np 1 ixc-coordinator --model DIR --tp 2 --sp 2 --vision 1 --serve --port 8000 : -np 5 ixc-worker
//   mpirun -np 1 ixc-coordinator --model DIR ... --requests in.jsonl --results out.jsonl : -np 5 ixc-worker
//
// deploy/launch.sh writes that line for you. A malformed request gets an error (a 4xx, an error line) and the
// others go on; a failing or silent rank fails the unfinished requests with a message naming it, and the job exits
// non-zero.
#include <mpi.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <memory>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "coordinator/api/api_server.h"
#include "coordinator/api/media_source.h"
#include "coordinator/chunk_cost.h"
#include "coordinator/engine.h"
#include "coordinator/engine_inbox.h"
#include "coordinator/request.h"
#include "core/command_line.h"
#include "core/flags.h"
#include "core/logging.h"
#include "core/status_macros.h"
#include "core/version.h"
#include "model/placement.h"
#include "parallel/bootstrap.h"
#include "parallel/mpi_device_comm.h"

ABSL_FLAG(std::string, model, "", "checkpoint directory");
ABSL_FLAG(int, tp, 1, "tensor-parallel size T (divides the KV heads)");
ABSL_FLAG(int, sp, 1, "sequence-parallel size S");
ABSL_FLAG(int, vision, 1, "vision ranks V");
ABSL_FLAG(std::string, requests, "", "JSONL requests, one per line");
ABSL_FLAG(std::string, results, "", "JSONL results, one per request, in input order");
ABSL_FLAG(int, kv_block_size, 16, "tokens per KV block");
ABSL_FLAG(int, kv_blocks, 0,
          "KV blocks per LLM rank; 0: all that fit beside --kv-reserve-mib on a GPU (the smallest rank's), room for "
          "one sequence of --max-context positions on the CPU");
ABSL_FLAG(int, max_num_seqs, 256, "sequences in the running batch (one engine step), at most");
ABSL_FLAG(int64_t, max_num_batched_tokens, 0,
          "positions one engine step may carry: its decodes, then chunks of prompts; a longer prompt is prefilled "
          "over several steps beside the decodes (docs/scheduling.md). 0: the device's default, 4096 on the CPU and "
          "8192 on GPUs");
ABSL_FLAG(int64_t, prefill_keys_per_token, -1,
          "a prompt position counts one batched token plus one per this many keys its attention reads, so chunks late "
          "in a long prompt take fewer positions and steps stay alike in time (docs/scheduling.md). 0: positions "
          "only; -1: the device's default, from the model's shape");
ABSL_FLAG(int, step_timeout_s, 120, "how long to wait for any rank's answer");
ABSL_FLAG(int64_t, max_context, 98304, "prompt plus generated positions, at most");
ABSL_FLAG(int64_t, image_cache_mib, 8192,
          "what the vision ranks hold for images at once, summed over them: ViT features until an image is "
          "assembled, embeddings until its request finishes; requests with images beyond this wait their turn (one "
          "alone may exceed it)");
ABSL_FLAG(bool, enable_prefix_caching, true,
          "reuse what an earlier request computed: the KV blocks of a shared prompt prefix (text, images, video, LoRA "
          "mode alike) and the embeddings of an image or video seen before (--enable-prefix-caching=false: compute "
          "every prompt whole)");
ABSL_FLAG(std::string, control_host, "127.0.0.1",
          "address the control socket binds (the workers connect to it; a reachable address on several machines)");
ABSL_FLAG(bool, serve, false, "serve the OpenAI API over HTTP until SIGTERM or SIGINT (instead of --requests)");
ABSL_FLAG(std::string, host, "127.0.0.1", "serve: the address the HTTP API listens on (0.0.0.0: every interface)");
ABSL_FLAG(int, port, 8000, "serve: the HTTP API's port (0: any free one, printed at start)");
ABSL_FLAG(std::string, served_model_name, "", "serve: the model's name in the API (default: the --model folder's)");
ABSL_FLAG(std::string, api_key, "", "serve: clients must send Authorization: Bearer KEY (default: none)");
ABSL_FLAG(int, max_queued_requests, 256,
          "serve: requests the engine holds at once, running or waiting; past it the answer is 429 with Retry-After");
ABSL_FLAG(int, drain_timeout_s, 30,
          "serve: after SIGTERM/SIGINT, how long requests in flight may run on before they end with 'abort'");
ABSL_FLAG(int64_t, max_request_mib, 100, "serve: the largest request body, in MiB (413 past it)");
ABSL_FLAG(int64_t, max_media_mib, 64, "serve: the largest image or video, encoded, in MiB");
ABSL_FLAG(int, max_images_per_request, 16, "serve: images and videos in one request, at most");
ABSL_FLAG(int, max_n, 8, "serve: choices (n) in one request, at most");
ABSL_FLAG(int64_t, max_video_frames, 216'000,
          "a video's length in frames, at most, counted before any frame is decoded (216000: an hour at 60 fps)");
ABSL_FLAG(int, max_logprobs, 20, "serve: top_logprobs (chat) or logprobs (completions) in one request, at most");
ABSL_FLAG(std::vector<std::string>, allowed_media_path, {},
          "serve: folders (comma-separated) whose files requests may name as images and videos (default: none; "
          "data: URLs always work)");
ABSL_FLAG(int, preprocess_threads, 2, "serve: requests prepared at once (template, decoding, HD transform)");
ABSL_FLAG(int, http_threads, 256, "serve: HTTP connections served at once (a stream holds one)");
ABSL_FLAG(std::string, label_font, ixc::coordinator::kDefaultLabelFont, "TrueType font of the video frame labels");
ABSL_FLAG(std::string, device, "cpu", "where the workers run the models: cpu, or cuda (a GPU of its own per LLM "
          "rank; vision ranks take the spare GPUs or share)");
ABSL_FLAG(std::string, dtype, "bf16", "cuda: weights and activations in bf16 or f16");
ABSL_FLAG(int64_t, kv_reserve_mib, 4096,
          "cuda: device memory an LLM rank keeps free beside weights and KV pool; half of it bounds a forward "
          "call's activations (longer prompts are prefilled in chunks)");
ABSL_FLAG(bool, cuda_graphs, true, "cuda: LLM ranks replay each decode step as a CUDA graph (one per batch shape)");
ABSL_FLAG(std::string, vision_handoff, "auto",
          "cuda: how image rows reach the LLM ranks: nccl (GPU to GPU; every vision rank needs a GPU of its own), mpi "
          "(through host memory), or auto (nccl where every vision rank has a GPU of its own, else mpi)");

namespace ixc::coordinator {
namespace {

// The offline mode, a client of the engine like the HTTP server: every line is submitted at once (each arrives at its
// arrive_after_ms), the inbox is closed, and the results are written in input order once all are done.
absl::Status RunOffline(Engine& engine, std::ifstream& in, const Tokenizer* tokenizer,
                        const RequestDefaults& defaults, int* exit_code) {
  std::vector<std::shared_ptr<Request>> requests;
  std::string line;
  const auto preparing = std::chrono::steady_clock::now();
  for (uint64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      --number;
      continue;
    }
    auto request = ParseRequest(line, number, tokenizer, defaults);
    if (!request.ok()) {
      auto failed = std::make_shared<Request>();
      failed->number = number;
      failed->id = absl::StrCat("line ", number);
      const nlohmann::json json = nlohmann::json::parse(line, nullptr, false);
      if (!json.is_discarded() && json.is_object() && json.contains("id") && json["id"].is_string()) {
        failed->id = json["id"];
      }
      failed->error = std::string(request.status().message());
      failed->finish_reason = "error";
      failed->state = RequestState::kDone;
      requests.push_back(std::move(failed));
      continue;
    }
    requests.push_back(std::make_shared<Request>(std::move(*request)));
  }
  // Preparation (template, tokens, media) overlaps the workers' loading; the benchmark adds it to the engine's time.
  IXC_LOG(INFO) << "prepared " << requests.size() << " requests in "
                << std::chrono::duration<double>(std::chrono::steady_clock::now() - preparing).count() << " s";
  EngineInbox inbox(std::numeric_limits<int64_t>::max());
  for (const std::shared_ptr<Request>& request : requests) {
    if (request->state != RequestState::kDone) inbox.Submit(request);
  }
  inbox.Close();
  absl::Status status = engine.Start();
  if (status.ok()) {
    status = engine.Serve(inbox);
  } else {
    for (const std::shared_ptr<Request>& request : requests) {
      if (request->state == RequestState::kDone) continue;
      request->error = std::string(status.message());
      request->finish_reason = "error";
    }
  }
  std::ofstream out(absl::GetFlag(FLAGS_results));
  for (const std::shared_ptr<Request>& request : requests) out << ResultJson(*request, tokenizer).dump() << "\n";
  out.close();
  if (!status.ok()) {
    *exit_code = 1;
    return status;
  }
  engine.Shutdown();
  int failed = 0;
  for (const std::shared_ptr<Request>& request : requests) failed += !request->error.empty();
  IXC_LOG(INFO) << requests.size() << " requests, " << failed << " failed; results in " << absl::GetFlag(FLAGS_results);
  return absl::OkStatus();
}

// Serving: the HTTP server answers on its threads, the engine runs on this one; SIGTERM or SIGINT closes the inbox
// (new requests 503), lets what is in flight finish for --drain-timeout-s, then ends the rest with 'abort'. A failed
// worker fails every request in flight, turns /health to 503, and the job ends non-zero after the answers are out.
absl::Status RunServer(Engine& engine, const ServerOptions& options, const Tokenizer& tokenizer,
                       const RequestDefaults& defaults, monitoring::Metrics& metrics, int* exit_code) {
  EngineInbox inbox(absl::GetFlag(FLAGS_max_queued_requests));
  ApiServer server(options, tokenizer, defaults, inbox, engine, metrics);
  IXC_RETURN_IF_ERROR(server.Start());
  std::atomic<bool> served{false};
  std::thread drainer([&] {
    const sigset_t signals = parallel::DrainSignals();
    int signal = 0;
    sigwait(&signals, &signal);
    if (served) return;  // woken by the end of serving
    IXC_LOG(INFO) << (signal == SIGTERM ? "SIGTERM" : "SIGINT") << ": draining; requests in flight have "
                  << absl::GetFlag(FLAGS_drain_timeout_s) << " s";
    server.BeginDrain();
    inbox.Close();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(absl::GetFlag(FLAGS_drain_timeout_s));
    while (!served && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!served) {
      IXC_LOG(WARNING) << "drain timeout: " << inbox.unfinished() << " requests end with finish_reason 'abort'";
      inbox.CancelAll("abort");
    }
  });
  absl::Status status = engine.Start();
  if (status.ok()) status = engine.Serve(inbox);
  served = true;
  pthread_kill(drainer.native_handle(), SIGTERM);  // wakes its sigwait if no signal came
  drainer.join();
  if (!status.ok()) {
    server.Fail();
    IXC_LOG(ERROR) << status.message();
    // The handlers tell their clients, and /health answers 503 for a second or two, so probes see the failure
    // before the job ends.
    std::this_thread::sleep_for(std::chrono::seconds(1));
    for (int i = 0; i < 40 && server.in_flight() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    *exit_code = 1;
    return status;
  }
  for (int i = 0; i < 100 && server.in_flight() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  server.Stop();
  engine.Shutdown();
  IXC_LOG(INFO) << "drained; the workers stop";
  return absl::OkStatus();
}

}  // namespace

absl::Status Run(int world_size, int* exit_code) {
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  parallel::Layout layout{1, absl::GetFlag(FLAGS_vision), absl::GetFlag(FLAGS_tp), absl::GetFlag(FLAGS_sp)};
  IXC_ASSIGN_OR_RETURN(parallel::Mapping mapping, parallel::Mapping::Create(world_size, 0, layout));
  if (model_dir.empty()) return absl::InvalidArgumentError("--model is required");
  const bool serve = absl::GetFlag(FLAGS_serve);
  if (serve && !absl::GetFlag(FLAGS_requests).empty()) {
    return absl::InvalidArgumentError("--serve and --requests exclude each other: serve HTTP, or run a JSONL file");
  }
  if (!serve && (absl::GetFlag(FLAGS_requests).empty() || absl::GetFlag(FLAGS_results).empty())) {
    return absl::InvalidArgumentError("give --serve, or --requests and --results");
  }
  for (const auto& [flag, value] : std::vector<std::pair<const char*, int64_t>>{
           {"--max-queued-requests", absl::GetFlag(FLAGS_max_queued_requests)},
           {"--max-num-seqs", absl::GetFlag(FLAGS_max_num_seqs)},
           {"--max-request-mib", absl::GetFlag(FLAGS_max_request_mib)},
           {"--max-media-mib", absl::GetFlag(FLAGS_max_media_mib)},
           {"--max-n", absl::GetFlag(FLAGS_max_n)},
           {"--max-video-frames", absl::GetFlag(FLAGS_max_video_frames)},
           {"--preprocess-threads", absl::GetFlag(FLAGS_preprocess_threads)},
           {"--http-threads", absl::GetFlag(FLAGS_http_threads)}}) {
    if (value < 1) return absl::InvalidArgumentError(absl::StrCat(flag, " ", value, " must be at least 1"));
  }
  if (absl::GetFlag(FLAGS_drain_timeout_s) < 0) return absl::InvalidArgumentError("--drain-timeout-s is negative");
  if (absl::GetFlag(FLAGS_max_logprobs) < 0 || absl::GetFlag(FLAGS_max_logprobs) > 1000) {
    return absl::InvalidArgumentError(absl::StrCat("--max-logprobs ", absl::GetFlag(FLAGS_max_logprobs),
                                                   " must be in [0, 1000]"));
  }
  if (absl::GetFlag(FLAGS_port) < 0 || absl::GetFlag(FLAGS_port) > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--port ", absl::GetFlag(FLAGS_port), " is not a TCP port"));
  }
  if (absl::GetFlag(FLAGS_max_images_per_request) < 0 ||
      absl::GetFlag(FLAGS_max_images_per_request) >= protocol::kMaxImagesPerRequest) {
    return absl::InvalidArgumentError(absl::StrCat("--max-images-per-request must be in [0, ",
                                                   protocol::kMaxImagesPerRequest - 1, "]"));
  }
  IXC_ASSIGN_OR_RETURN(const std::vector<std::string> media_roots,
                       CanonicalRoots(absl::GetFlag(FLAGS_allowed_media_path)));
  const std::string device = absl::GetFlag(FLAGS_device), dtype = absl::GetFlag(FLAGS_dtype);
  IXC_RETURN_IF_ERROR(model::CheckPlacementFlags(device, dtype));
  if (absl::GetFlag(FLAGS_image_cache_mib) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--image-cache-mib ", absl::GetFlag(FLAGS_image_cache_mib), " is negative"));
  }
  if (absl::GetFlag(FLAGS_prefill_keys_per_token) < -1) {
    return absl::InvalidArgumentError(absl::StrCat("--prefill-keys-per-token: ",
                                                   absl::GetFlag(FLAGS_prefill_keys_per_token),
                                                   " is below -1 (the default)"));
  }
  if (absl::GetFlag(FLAGS_max_num_batched_tokens) < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--max-num-batched-tokens ",
                                                   absl::GetFlag(FLAGS_max_num_batched_tokens), " is negative"));
  }
  if (absl::GetFlag(FLAGS_kv_blocks) < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--kv-blocks ", absl::GetFlag(FLAGS_kv_blocks), " is negative"));
  }
  if (absl::GetFlag(FLAGS_max_context) < 2) {
    return absl::InvalidArgumentError(absl::StrCat("--max-context ", absl::GetFlag(FLAGS_max_context),
                                                   " leaves no room for a prompt token and a generated one"));
  }
  const std::string vision_handoff = absl::GetFlag(FLAGS_vision_handoff);
  if (vision_handoff != "auto" && vision_handoff != "nccl" && vision_handoff != "mpi") {
    return absl::InvalidArgumentError(
        absl::StrCat("--vision-handoff must be auto, nccl or mpi, not '", vision_handoff, "'"));
  }
  if (vision_handoff == "nccl" && device != "cuda") {
    return absl::InvalidArgumentError("--vision-handoff nccl moves image rows between GPUs: it needs --device cuda");
  }
  IXC_ASSIGN_OR_RETURN(model::LlmConfig llm, model::LoadLlmConfig(model_dir));
  IXC_RETURN_IF_ERROR(mapping.CheckModel(llm.num_kv_heads, llm.vocab_size));
  IXC_ASSIGN_OR_RETURN(model::VisionConfig vision, model::LoadVisionConfig(model_dir));
  std::unique_ptr<Tokenizer> tokenizer;
  const std::string tokenizer_path = (std::filesystem::path(model_dir) / "tokenizer.model").string();
  if (std::filesystem::exists(tokenizer_path)) {
    std::string error;
    tokenizer = Tokenizer::Load(tokenizer_path, &error);
    if (!tokenizer) return absl::InvalidArgumentError(error);
  } else if (serve) {
    return absl::NotFoundError(absl::StrCat(tokenizer_path, ": not found; --serve needs the model's tokenizer (the "
                                            "API speaks text)"));
  }
  std::ifstream in;
  if (!serve) {
    in.open(absl::GetFlag(FLAGS_requests));
    if (!in) return absl::NotFoundError(absl::StrCat(absl::GetFlag(FLAGS_requests), ": cannot open"));
  }

  IXC_ASSIGN_OR_RETURN(std::unique_ptr<protocol::Channel> channel,
                       protocol::Channel::Bind(absl::GetFlag(FLAGS_control_host)));
  parallel::ClusterConfig config{model_dir,
                                 layout,
                                 channel->endpoint(),
                                 absl::GetFlag(FLAGS_kv_block_size),
                                 absl::GetFlag(FLAGS_kv_blocks),
                                 absl::GetFlag(FLAGS_step_timeout_s),
                                 absl::GetFlag(FLAGS_label_font),
                                 device,
                                 dtype,
                                 absl::GetFlag(FLAGS_kv_reserve_mib),
                                 absl::GetFlag(FLAGS_max_context),
                                 absl::GetFlag(FLAGS_cuda_graphs),
                                 vision_handoff};
  IXC_RETURN_IF_ERROR(parallel::ShareClusterConfig(&config).status());
  // Collectives: every rank takes part in splitting the communicators and in numbering the workers of each machine,
  // the coordinator too (it joins no group and takes no GPU).
  IXC_ASSIGN_OR_RETURN(std::unique_ptr<parallel::DeviceComm> comm, parallel::CreateMpiDeviceComm(mapping));
  IXC_RETURN_IF_ERROR(parallel::NodeLocalWorkers(mapping).status());
  IXC_ASSIGN_OR_RETURN(const std::vector<std::string> hosts, parallel::HostNames());
  for (const std::string& warning : parallel::TpGroupsSpanningMachines(layout, hosts)) IXC_LOG(WARNING) << warning;
  IXC_LOG(INFO) << "cluster of " << world_size << " ranks: 1 coordinator, " << layout.vision << " vision, "
                << layout.tp << " x " << layout.sp << " LLM (tp x sp) on " << device << "; control at "
                << channel->endpoint();

  RequestDefaults defaults;
  defaults.max_context = absl::GetFlag(FLAGS_max_context);
  defaults.vision = vision;
  defaults.label_font = absl::GetFlag(FLAGS_label_font);
  defaults.eos_id = llm.eos_token_id;
  defaults.vocab_size = llm.vocab_size;
  defaults.video_limits.max_stream_frames = absl::GetFlag(FLAGS_max_video_frames);
  const EngineOptions options{
      .kv_block_size = absl::GetFlag(FLAGS_kv_block_size),
      .step_timeout_s = absl::GetFlag(FLAGS_step_timeout_s),
      .max_num_seqs = absl::GetFlag(FLAGS_max_num_seqs),
      .max_num_batched_tokens = absl::GetFlag(FLAGS_max_num_batched_tokens) > 0
                                    ? absl::GetFlag(FLAGS_max_num_batched_tokens)
                                    : (device == "cuda" ? 8192 : 4096),
      .keys_per_token = absl::GetFlag(FLAGS_prefill_keys_per_token) >= 0
                            ? absl::GetFlag(FLAGS_prefill_keys_per_token)
                            : DefaultKeysPerToken(llm, device == "cuda"),
      .max_context = absl::GetFlag(FLAGS_max_context),
      .image_cache_bytes = absl::GetFlag(FLAGS_image_cache_mib) << 20,
      .image_feature_bytes_per_crop = int64_t{vision.grid()} * vision.grid() * vision.hidden_size * 4,
      .image_row_bytes = int64_t{llm.hidden_size} * 4,
      .prefix_caching = absl::GetFlag(FLAGS_enable_prefix_caching),
      .rope_fixed_up_to = llm.rope_scaling == model::RopeScaling::kDynamic ? llm.max_position_embeddings
                                                                          : std::numeric_limits<int64_t>::max()};
  std::string model_name = absl::GetFlag(FLAGS_served_model_name);
  if (model_name.empty()) {  // the model folder's name
    const std::filesystem::path folder = std::filesystem::path(model_dir).lexically_normal();
    model_name = !folder.filename().empty() ? folder.filename().string() : folder.parent_path().filename().string();
  }
  monitoring::Metrics metrics({.version = kVersion,
                               .commit = kGitCommit,
                               .device = device,
                               .dtype = device == "cuda" ? dtype : "f32",
                               .layout = absl::StrCat("V", layout.vision, " T", layout.tp, " S", layout.sp),
                               .model_name = model_name});
  Engine engine(mapping, *channel, options, metrics);
  if (!serve) return RunOffline(engine, in, tokenizer.get(), defaults, exit_code);
  ServerOptions server{.host = absl::GetFlag(FLAGS_host),
                       .port = absl::GetFlag(FLAGS_port),
                       .api_key = absl::GetFlag(FLAGS_api_key),
                       .served_model_name = model_name,
                       .model_dir = model_dir,
                       .max_request_bytes = absl::GetFlag(FLAGS_max_request_mib) << 20,
                       .http_threads = absl::GetFlag(FLAGS_http_threads),
                       .preprocess_threads = absl::GetFlag(FLAGS_preprocess_threads),
                       .limits = {.max_n = absl::GetFlag(FLAGS_max_n),
                                  .max_media = absl::GetFlag(FLAGS_max_images_per_request),
                                  .max_logprobs = absl::GetFlag(FLAGS_max_logprobs),
                                  .media = {media_roots, absl::GetFlag(FLAGS_max_media_mib) << 20}}};
  defaults.image_limits.max_bytes = server.limits.media.max_bytes;
  return RunServer(engine, server, *tokenizer, defaults, metrics, exit_code);
}

}  // namespace ixc::coordinator

int main(int argc, char** argv) {
  ixc::CommandLine line(argc, argv);  // dashes or underscores in flag names
  constexpr char kUsage[] =
      "ixc-coordinator --model DIR --tp T --sp S --vision V (--serve [--port 8000] | --requests IN --results OUT) "
      "[flags]\n  rank 0 of the mpirun job (deploy/launch.sh writes the line); the workers are ixc-worker";
  if (ixc::AsksForHelp(argc, argv)) ixc::ParseFlags(line, kUsage);  // prints and exits, before MPI starts
  // Before MPI_Init, whose threads must not take SIGTERM: a server drains on it (RunServer's sigwait).
  ixc::parallel::BlockDrainSignals();
  MPI_Init(&argc, &argv);
  ixc::parallel::EndJobOnEarlyExit();  // a bad flag below must not leave the workers waiting for rank 0
  ixc::ParseFlags(line, kUsage);
  if (!absl::GetFlag(FLAGS_serve)) {  // offline: SIGTERM and SIGINT end the process as they always do
    const sigset_t signals = ixc::parallel::DrainSignals();
    pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
  }
  int world = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  ixc::SetLogRank(0);
  int exit_code = 0;
  const absl::Status status = ixc::coordinator::Run(world, &exit_code);
  if (!status.ok()) {
    std::cerr << "ixc-coordinator: " << status.message() << "\n";
    // Ranks stuck in a collective with a failed one cannot finish: end the whole job, non-zero.
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return exit_code;
}
