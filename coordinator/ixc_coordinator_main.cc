// ixc-coordinator: rank 0 of the cluster job. Offline mode: reads requests from a JSONL file, runs them on the
// vision and LLM ranks, writes one JSONL result per request (coordinator/request.h has both formats).
//
//   mpirun -np 1 ixc-coordinator --model DIR --tp 2 --sp 2 --vision 1 --requests in.jsonl --results out.jsonl
//       : -np 5 ixc-worker   (one line)
//
// deploy/launch.sh writes that line for you. A malformed request gets an error result and the others go on; a
// failing or silent rank fails the unfinished requests with a message naming it, and the job exits non-zero.
#include <mpi.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "coordinator/engine.h"
#include "coordinator/request.h"
#include "core/command_line.h"
#include "core/logging.h"
#include "core/status_macros.h"
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
ABSL_FLAG(int, step_timeout_s, 120, "how long to wait for any rank's answer");
ABSL_FLAG(int64_t, max_context, 98304, "prompt plus generated positions, at most");
ABSL_FLAG(int64_t, image_cache_mib, 8192,
          "what the vision ranks hold for images at once, summed over them: ViT features until an image is "
          "assembled, embeddings until its request finishes; requests with images beyond this wait their turn (one "
          "alone may exceed it)");
ABSL_FLAG(std::string, host, "127.0.0.1", "address the control socket binds (the workers connect to it)");
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

absl::Status Run(int world_size, int* exit_code) {
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  parallel::Layout layout{1, absl::GetFlag(FLAGS_vision), absl::GetFlag(FLAGS_tp), absl::GetFlag(FLAGS_sp)};
  IXC_ASSIGN_OR_RETURN(parallel::Mapping mapping, parallel::Mapping::Create(world_size, 0, layout));
  if (model_dir.empty()) return absl::InvalidArgumentError("--model is required");
  if (absl::GetFlag(FLAGS_requests).empty() || absl::GetFlag(FLAGS_results).empty()) {
    return absl::InvalidArgumentError("--requests and --results are required");
  }
  const std::string device = absl::GetFlag(FLAGS_device), dtype = absl::GetFlag(FLAGS_dtype);
  IXC_RETURN_IF_ERROR(model::CheckPlacementFlags(device, dtype));
  if (absl::GetFlag(FLAGS_image_cache_mib) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--image-cache-mib ", absl::GetFlag(FLAGS_image_cache_mib), " is negative"));
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
  }
  std::ifstream in(absl::GetFlag(FLAGS_requests));
  if (!in) return absl::NotFoundError(absl::StrCat(absl::GetFlag(FLAGS_requests), ": cannot open"));

  IXC_ASSIGN_OR_RETURN(std::unique_ptr<protocol::Channel> channel, protocol::Channel::Bind(absl::GetFlag(FLAGS_host)));
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
  IXC_LOG(INFO) << "cluster of " << world_size << " ranks: 1 coordinator, " << layout.vision << " vision, "
                << layout.tp << " x " << layout.sp << " LLM (tp x sp) on " << device << "; control at "
                << channel->endpoint();

  RequestDefaults defaults{absl::GetFlag(FLAGS_max_context), vision, absl::GetFlag(FLAGS_label_font),
                           llm.eos_token_id, llm.vocab_size};
  std::vector<Request> requests;
  std::string line;
  for (uint64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      --number;
      continue;
    }
    auto request = ParseRequest(line, number, tokenizer.get(), defaults);
    if (!request.ok()) {
      Request failed;
      failed.number = number;
      failed.id = absl::StrCat("line ", number);
      const nlohmann::json json = nlohmann::json::parse(line, nullptr, false);
      if (!json.is_discarded() && json.is_object() && json.contains("id") && json["id"].is_string()) {
        failed.id = json["id"];
      }
      failed.error = std::string(request.status().message());
      failed.finish_reason = "error";
      failed.state = RequestState::kDone;
      requests.push_back(std::move(failed));
      continue;
    }
    requests.push_back(std::move(*request));
  }

  const EngineOptions options{
      .kv_block_size = absl::GetFlag(FLAGS_kv_block_size),
      .step_timeout_s = absl::GetFlag(FLAGS_step_timeout_s),
      .max_context = absl::GetFlag(FLAGS_max_context),
      .image_cache_bytes = absl::GetFlag(FLAGS_image_cache_mib) << 20,
      .image_feature_bytes_per_crop = int64_t{vision.grid()} * vision.grid() * vision.hidden_size * 4,
      .image_row_bytes = int64_t{llm.hidden_size} * 4};
  Engine engine(mapping, *channel, options);
  const absl::Status status = engine.Run(requests);
  std::ofstream out(absl::GetFlag(FLAGS_results));
  for (const Request& request : requests) out << ResultJson(request, tokenizer.get()).dump() << "\n";
  out.close();
  if (!status.ok()) {
    *exit_code = 1;
    return status;
  }
  engine.Shutdown();
  int failed = 0;
  for (const Request& request : requests) failed += !request.error.empty();
  IXC_LOG(INFO) << requests.size() << " requests, " << failed << " failed; results in " << absl::GetFlag(FLAGS_results);
  return absl::OkStatus();
}

}  // namespace
}  // namespace ixc::coordinator

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  ixc::CommandLine line(argc, argv);  // dashes or underscores in flag names
  absl::ParseCommandLine(line.argc(), line.argv());
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
