// ixc-worker: every rank of the job except the coordinator. It takes its settings from rank 0 at start, then runs
// as a vision rank or an LLM rank by its place in the Mapping, on the CPU or (--device cuda on the coordinator) on
// a GPU of its machine (parallel::WorkerGpu: one per LLM rank; vision ranks take the rest or share). Image rows reach
// the LLM ranks over MPI from host buffers, or over NCCL from GPU to GPU where every vision rank has a GPU of its own.
//   mpirun -np 1 ixc-coordinator --model DIR --tp 2 --sp 2 --vision 1 ... : -np 5 ixc-worker
#include <malloc.h>
#include <mpi.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/status_macros.h"
#include "kernels/cpu/blas_kernels.h"
#include "model/placement.h"
#include "model/vision_encoder.h"
#include "parallel/bootstrap.h"
#include "parallel/mpi_device_comm.h"
#include "parallel/sequence_shard.h"
#ifdef IXC_HAVE_CUDA
#include "kernels/cuda/device.h"
#include "parallel/nccl_device_comm.h"
#endif
#include "worker/llm_worker.h"
#include "worker/vision_worker.h"

namespace ixc::worker {
namespace {

// A worker's comms, each counting its calls into one counter for the rank's reports (parallel/counting_comm.h).
struct Counted {
  Counted(parallel::DeviceComm* mpi_comm, parallel::DeviceComm* nccl_comm)
      : mpi(*mpi_comm, "mpi", counter),
        nccl(nccl_comm == nullptr ? nullptr : std::make_unique<parallel::CountingComm>(*nccl_comm, "nccl", counter)) {}
  parallel::CommCounter counter;
  parallel::CountingComm mpi;
  std::unique_ptr<parallel::CountingComm> nccl;
};

absl::Status Serve(const parallel::ClusterConfig& config, const parallel::Mapping& mapping,
                   const parallel::NodeWorkers& node, model::Placement placement, parallel::DeviceComm* comm,
                   protocol::Channel* channel);

// The GPU this worker takes with --device cuda (parallel::WorkerGpu), and whether it is this worker's alone.
struct GpuChoice {
  int gpu = -1;  // -1 on the CPU
  bool own = false;
};

// With the runtime's reason where no GPU is usable.
absl::StatusOr<GpuChoice> ChooseGpu(const parallel::ClusterConfig& config, const parallel::Mapping& mapping,
                                    const parallel::NodeWorkers& node) {
  if (config.device != "cuda") return GpuChoice{};
#ifdef IXC_HAVE_CUDA
  IXC_ASSIGN_OR_RETURN(const kernels::cuda::DeviceInfo gpus, kernels::cuda::ProbeCudaDevice());
  IXC_ASSIGN_OR_RETURN(const int gpu, parallel::WorkerGpu(node, mapping.role(), gpus.count));
  return GpuChoice{gpu, parallel::HasGpuOfItsOwn(node, mapping.role(), gpus.count)};
#else
  return GpuChoice{0, true};  // model::PlaceModel says that this build has no CUDA backend
#endif
}

// Whether image rows go from GPU to GPU over NCCL (worker/handoff.h): --vision-handoff nccl, or auto where every
// vision rank has a GPU of its own (NCCL takes one rank per GPU). Collective over the workers on GPUs.
absl::StatusOr<bool> HandoffOverNccl(const parallel::ClusterConfig& config, const parallel::Mapping& mapping,
                                     const GpuChoice& gpu) {
  // Without vision ranks there is nothing to hand off (and no comm of every worker to build).
  if (config.device != "cuda" || config.vision_handoff == "mpi" || config.layout.vision == 0) return false;
  IXC_ASSIGN_OR_RETURN(const bool every_gpu_own, parallel::OnEveryWorker(mapping, gpu.own));
  if (config.vision_handoff == "nccl" && !every_gpu_own) {
    return absl::FailedPreconditionError(
        "--vision-handoff nccl needs a GPU of its own for every vision rank, but a machine has fewer GPUs than "
        "workers; use --vision-handoff auto or mpi, or run fewer ranks per machine");
  }
  return every_gpu_own;
}

// The NCCL comm on GPUs: an LLM rank's forward passes use it, and with the NCCL handoff every worker's images go
// over it; null on the CPU and for a vision rank with the MPI handoff.
absl::StatusOr<std::unique_ptr<parallel::DeviceComm>> CreateNcclComm(const parallel::Mapping& mapping,
                                                                     const GpuChoice& gpu, bool nccl_handoff) {
  if (gpu.gpu < 0 || (mapping.role() != parallel::Role::kLlm && !nccl_handoff)) return nullptr;
#ifdef IXC_HAVE_CUDA
  return parallel::CreateNcclDeviceComm(mapping, gpu.gpu, nccl_handoff);
#else
  return nullptr;
#endif
}

// Runs this rank; a failure once the control channel is up is reported to the coordinator, which names this rank,
// fails the unfinished requests and ends the job.
absl::Status RunWorker(int world_size, int rank) {
  IXC_ASSIGN_OR_RETURN(parallel::ClusterConfig config, parallel::ShareClusterConfig(nullptr));
  IXC_ASSIGN_OR_RETURN(parallel::Mapping mapping, parallel::Mapping::Create(world_size, rank, config.layout));
  IXC_ASSIGN_OR_RETURN(std::unique_ptr<parallel::DeviceComm> comm, parallel::CreateMpiDeviceComm(mapping));
  IXC_ASSIGN_OR_RETURN(const parallel::NodeWorkers node, parallel::NodeLocalWorkers(mapping));
  IXC_RETURN_IF_ERROR(parallel::HostNames().status());  // the coordinator checks the placement
  model::Placement placement;
  placement.device = config.device;
  placement.dtype = config.dtype;
  placement.block_size = config.kv_block_size;
  placement.kv_blocks = config.kv_blocks;
  placement.kv_reserve_mib = config.kv_reserve_mib;
  placement.cuda_graphs = config.cuda_graphs;
  IXC_ASSIGN_OR_RETURN(std::unique_ptr<protocol::Channel> channel,
                       protocol::Channel::Connect(config.control_endpoint, rank));
  IXC_LOG(INFO) << mapping.ToString() << " connected to " << config.control_endpoint;
  IXC_ASSIGN_OR_RETURN(std::unique_ptr<protocol::HeartbeatSender> heartbeat,
                       protocol::HeartbeatSender::Start(config.control_endpoint, rank));
  const absl::Status status = Serve(config, mapping, node, placement, comm.get(), channel.get());
  if (!status.ok()) {
    (void)channel->Send(0, protocol::EncodeError(rank, std::string(status.message())));
    // Wait for the coordinator to write its results and end the job; leave on our own if it does not.
    (void)channel->Receive(std::chrono::seconds(config.step_timeout_s));
  }
  return status;
}

absl::Status Serve(const parallel::ClusterConfig& config, const parallel::Mapping& mapping,
                   const parallel::NodeWorkers& node, model::Placement placement, parallel::DeviceComm* comm,
                   protocol::Channel* channel) {
  IXC_ASSIGN_OR_RETURN(const GpuChoice gpu, ChooseGpu(config, mapping, node));
  placement.gpu = std::max(gpu.gpu, 0);
  IXC_ASSIGN_OR_RETURN(const bool nccl_handoff, HandoffOverNccl(config, mapping, gpu));
  if (mapping.rank() == mapping.layout().coordinators) {
    IXC_LOG(INFO) << "image rows go to the LLM ranks over " << (nccl_handoff ? "NCCL, GPU to GPU" : "MPI");
  }
  if (mapping.role() == parallel::Role::kVision) {
    IXC_ASSIGN_OR_RETURN(model::LlmConfig llm, model::LoadLlmConfig(config.model_dir));
    IXC_ASSIGN_OR_RETURN(model::VisionWeights weights, model::LoadVisionWeights(config.model_dir, llm.hidden_size));
    IXC_ASSIGN_OR_RETURN(std::unique_ptr<parallel::DeviceComm> nccl, CreateNcclComm(mapping, gpu, nccl_handoff));
    if (gpu.own) placement.vision_crops_per_pass = model::kOwnGpuCropsPerPass;
    IXC_RETURN_IF_ERROR(model::PlaceVision(weights, placement));
    Counted counted(comm, nccl.get());
    const Handoff handoff = nccl_handoff ? Handoff{counted.nccl.get(), gpu.gpu} : Handoff{&counted.mpi, -1};
    RankReporter reporter(counted.counter, placement);
    VisionWorker worker(mapping, weights, handoff, gpu.gpu, config.kv_block_size, *channel, config.step_timeout_s,
                        reporter);
    IXC_RETURN_IF_ERROR(channel->Send(0, protocol::EncodeReady(mapping.rank(), /*kv_blocks=*/0)));
    return worker.Run();
  }
  IXC_ASSIGN_OR_RETURN(model::LlmWeights weights,
                       model::LoadLlmWeights(config.model_dir, {mapping.tp_rank(), config.layout.tp}));
  // NCCL first: its buffers come out of the device memory the KV pool would otherwise take.
  IXC_ASSIGN_OR_RETURN(std::unique_ptr<parallel::DeviceComm> nccl, CreateNcclComm(mapping, gpu, nccl_handoff));
  // The most prompt rows this rank prefills: the longest prompt, or with SP its shard, which the ring takes in one
  // call; over NCCL an image prompt's rows also stay on this GPU (LlmWorker::ReceivePromptEmbeddings).
  const int64_t longest_prompt = config.max_context - 1;
  const bool sp = config.layout.sp > 1;
  const int64_t prompt_rows =
      sp ? parallel::LongestShard(longest_prompt, config.layout.sp, config.kv_block_size) : longest_prompt;
  if (sp) placement.ring_rows = prompt_rows;
  if (nccl_handoff) placement.input_rows = prompt_rows;
  // --kv-blocks 0: all that fit on a GPU; on the CPU, room for one sequence of --max-context positions.
  IXC_ASSIGN_OR_RETURN(model::KvCache cache, model::PlaceModel(weights, placement, config.max_context));
  Counted counted(comm, nccl.get());
  const Handoff handoff = nccl_handoff ? Handoff{counted.nccl.get(), gpu.gpu} : Handoff{&counted.mpi, -1};
  RankReporter reporter(counted.counter, placement);
  LlmWorker worker(mapping, weights, counted.mpi, counted.nccl != nullptr ? *counted.nccl : counted.mpi, handoff,
                   *channel, cache, config.step_timeout_s, reporter);
  IXC_RETURN_IF_ERROR(channel->Send(0, protocol::EncodeReady(mapping.rank(), cache.num_blocks())));
  return worker.Run();
}

}  // namespace
}  // namespace ixc::worker

int main(int argc, char** argv) {
  ixc::kernels::RestartForBetterBlasKernels(argv);
  // A step's buffers (a decode batch's logits are rows x 92,544 floats) are freed and asked for again every step:
  // kept in the heap instead of mapped and unmapped each time, they cost no page faults (5-7% of a CPU decode step).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  // SIGTERM and SIGINT are the coordinator's to drain on; this rank stops when it is told to (or the coordinator
  // goes silent), so a signal to the whole job lets the requests in flight finish.
  ixc::parallel::BlockDrainSignals();
  MPI_Init(&argc, &argv);
  ixc::parallel::EndJobOnEarlyExit();
  int world = 0, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  ixc::SetLogRank(rank);
  const absl::Status status = ixc::worker::RunWorker(world, rank);
  if (!status.ok()) {
    std::fprintf(stderr, "ixc-worker rank %d: %s\n", rank, std::string(status.message()).c_str());
    // Peers may be blocked in a collective with this rank: end the job rather than hang.
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return 0;
}
