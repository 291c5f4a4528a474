// ixc-worker: every rank of the job except the coordinator. It takes its settings from rank 0 at start, then runs
// as a vision rank or an LLM rank by its place in the Mapping, on the CPU or (--device cuda on the coordinator) on
// a GPU of its machine (parallel::WorkerGpu: one per LLM rank; vision ranks take the rest or share).
//   mpirun -np 1 ixc-coordinator --model DIR --tp 2 --sp 2 --vision 1 ... : -np 5 ixc-worker
#include <mpi.h>

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "core/status_macros.h"
#include "model/placement.h"
#include "model/vision_encoder.h"
#include "parallel/bootstrap.h"
#include "parallel/mpi_device_comm.h"
#ifdef IXC_HAVE_CUDA
#include "kernels/cuda/device.h"
#include "parallel/nccl_device_comm.h"
#endif
#include "worker/llm_worker.h"
#include "worker/vision_worker.h"

namespace ixc::worker {
namespace {

absl::Status Serve(const parallel::ClusterConfig& config, const parallel::Mapping& mapping,
                   const parallel::NodeWorkers& node, model::Placement placement, parallel::DeviceComm* comm,
                   protocol::Channel* channel);

// The comm the LLM ranks' forward passes use: the MPI one on the CPU, NCCL among the LLM ranks on GPUs.
absl::StatusOr<std::unique_ptr<parallel::DeviceComm>> CreateModelComm(const parallel::Mapping& mapping,
                                                                      const model::Placement& placement) {
#ifdef IXC_HAVE_CUDA
  if (placement.device == "cuda") return parallel::CreateNcclDeviceComm(mapping, placement.gpu);
#endif
  return nullptr;
}

// The GPU this worker takes with --device cuda (parallel::WorkerGpu), or 0 on the CPU; with the runtime's reason
// where no GPU is usable.
absl::StatusOr<int> ChooseGpu(const parallel::ClusterConfig& config, const parallel::Mapping& mapping,
                              const parallel::NodeWorkers& node) {
  if (config.device != "cuda") return 0;
#ifdef IXC_HAVE_CUDA
  IXC_ASSIGN_OR_RETURN(const kernels::cuda::DeviceInfo gpus, kernels::cuda::ProbeCudaDevice());
  return parallel::WorkerGpu(node, mapping.role(), gpus.count);
#else
  return 0;  // model::PlaceModel says that this build has no CUDA backend
#endif
}

// Runs this rank; a failure once the control channel is up is reported to the coordinator, which names this rank,
// fails the unfinished requests and ends the job.
absl::Status RunWorker(int world_size, int rank) {
  IXC_ASSIGN_OR_RETURN(parallel::ClusterConfig config, parallel::ShareClusterConfig(nullptr));
  IXC_ASSIGN_OR_RETURN(parallel::Mapping mapping, parallel::Mapping::Create(world_size, rank, config.layout));
  IXC_ASSIGN_OR_RETURN(std::unique_ptr<parallel::DeviceComm> comm, parallel::CreateMpiDeviceComm(mapping));
  IXC_ASSIGN_OR_RETURN(const parallel::NodeWorkers node, parallel::NodeLocalWorkers(mapping));
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
  IXC_ASSIGN_OR_RETURN(placement.gpu, ChooseGpu(config, mapping, node));
  if (mapping.role() == parallel::Role::kVision) {
    IXC_ASSIGN_OR_RETURN(model::LlmConfig llm, model::LoadLlmConfig(config.model_dir));
    IXC_ASSIGN_OR_RETURN(model::VisionWeights weights, model::LoadVisionWeights(config.model_dir, llm.hidden_size));
    IXC_RETURN_IF_ERROR(model::PlaceVision(weights, placement));
    VisionWorker worker(mapping, weights, *comm, *channel, config.step_timeout_s);
    IXC_RETURN_IF_ERROR(channel->Send(0, protocol::EncodeStepResult(mapping.rank(), /*step=*/0, {}, {})));  // ready
    return worker.Run();
  }
  IXC_ASSIGN_OR_RETURN(model::LlmWeights weights,
                       model::LoadLlmWeights(config.model_dir, {mapping.tp_rank(), config.layout.tp}));
  // NCCL first: its buffers come out of the device memory the KV pool would otherwise take.
  IXC_ASSIGN_OR_RETURN(std::unique_ptr<parallel::DeviceComm> model_comm, CreateModelComm(mapping, placement));
  IXC_ASSIGN_OR_RETURN(model::KvCache cache, model::PlaceModel(weights, placement, /*context_tokens=*/0));
  LlmWorker worker(mapping, weights, *comm, model_comm != nullptr ? *model_comm : *comm, *channel, cache,
                   config.step_timeout_s);
  IXC_RETURN_IF_ERROR(channel->Send(0, protocol::EncodeStepResult(mapping.rank(), /*step=*/0, {}, {})));  // ready
  return worker.Run();
}

}  // namespace
}  // namespace ixc::worker

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
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
