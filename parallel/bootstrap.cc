#include "parallel/bootstrap.h"

#include <pthread.h>

#include <cstdlib>
#include <cstring>

#include <mpi.h>

#include "nlohmann/json.hpp"

namespace ixc::parallel {

void EndJobOnEarlyExit() {
  std::atexit([] {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, 1);
  });
}

sigset_t DrainSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  return signals;
}

void BlockDrainSignals() {
  const sigset_t signals = DrainSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

absl::StatusOr<ClusterConfig> ShareClusterConfig(const ClusterConfig* config) {
  std::string text;
  if (config != nullptr) {
    text = nlohmann::json{{"model_dir", config->model_dir},
                          {"layout",
                           {config->layout.coordinators, config->layout.vision, config->layout.tp, config->layout.sp}},
                          {"control_endpoint", config->control_endpoint},
                          {"kv_block_size", config->kv_block_size},
                          {"kv_blocks", config->kv_blocks},
                          {"step_timeout_s", config->step_timeout_s},
                          {"label_font", config->label_font},
                          {"device", config->device},
                          {"dtype", config->dtype},
                          {"kv_reserve_mib", config->kv_reserve_mib},
                          {"max_context", config->max_context},
                          {"cuda_graphs", config->cuda_graphs},
                          {"vision_handoff", config->vision_handoff}}
               .dump();
  }
  int length = static_cast<int>(text.size());
  if (MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
    return absl::InternalError("MPI_Bcast of the cluster config failed");
  }
  text.resize(length);
  if (MPI_Bcast(text.data(), length, MPI_CHAR, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
    return absl::InternalError("MPI_Bcast of the cluster config failed");
  }
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded()) return absl::DataLossError("the cluster config from rank 0 is not JSON");
  ClusterConfig shared;
  shared.model_dir = json["model_dir"];
  const auto& layout = json["layout"];
  shared.layout = {layout[0], layout[1], layout[2], layout[3]};
  shared.control_endpoint = json["control_endpoint"];
  shared.kv_block_size = json["kv_block_size"];
  shared.kv_blocks = json["kv_blocks"];
  shared.step_timeout_s = json["step_timeout_s"];
  shared.label_font = json["label_font"];
  shared.device = json["device"];
  shared.dtype = json["dtype"];
  shared.kv_reserve_mib = json["kv_reserve_mib"];
  shared.max_context = json["max_context"];
  shared.cuda_graphs = json["cuda_graphs"];
  shared.vision_handoff = json["vision_handoff"];
  return shared;
}

absl::StatusOr<NodeWorkers> NodeLocalWorkers(const Mapping& mapping) {
  // The ranks sharing this machine's memory, ordered by world rank.
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, mapping.rank(), MPI_INFO_NULL, &node) !=
      MPI_SUCCESS) {
    return absl::InternalError("MPI_Comm_split_type of the ranks on this machine failed");
  }
  int local_rank = 0;
  MPI_Comm_rank(node, &local_rank);
  // (not workers, workers, vision ranks) on this machine.
  const Role role = mapping.role();
  int mine[3] = {role == Role::kCoordinator, role != Role::kCoordinator, role == Role::kVision}, sums[3] = {};
  const int code = MPI_Allreduce(mine, sums, 3, MPI_INT, MPI_SUM, node);
  MPI_Comm_free(&node);
  if (code != MPI_SUCCESS) return absl::InternalError("MPI_Allreduce over the ranks on this machine failed");
  // The coordinator comes first in world order, so it holds the machine's first local rank.
  NodeWorkers workers;
  workers.index = role == Role::kCoordinator ? -1 : local_rank - sums[0];
  workers.count = sums[1];
  workers.vision = sums[2];
  return workers;
}

absl::StatusOr<std::vector<std::string>> HostNames() {
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int length = 0;
  MPI_Get_processor_name(name, &length);
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  std::vector<char> all(static_cast<size_t>(size) * MPI_MAX_PROCESSOR_NAME);
  if (MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR,
                    MPI_COMM_WORLD) != MPI_SUCCESS) {
    return absl::InternalError("MPI_Allgather of the machine names failed");
  }
  std::vector<std::string> hosts;
  for (int rank = 0; rank < size; ++rank) {
    const char* at = all.data() + static_cast<size_t>(rank) * MPI_MAX_PROCESSOR_NAME;
    hosts.emplace_back(at, strnlen(at, MPI_MAX_PROCESSOR_NAME));
  }
  return hosts;
}

absl::StatusOr<bool> OnEveryWorker(const Mapping& mapping, bool mine) {
  if (mapping.role() == Role::kCoordinator) {
    return absl::FailedPreconditionError("OnEveryWorker is called by the workers alone");
  }
  // A communicator of the workers, made by them alone (MPI_Comm_create_group), so the coordinator need not wait.
  MPI_Group world = MPI_GROUP_NULL, workers = MPI_GROUP_NULL;
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  int range[1][3] = {{mapping.layout().coordinators, mapping.world_size() - 1, 1}};
  MPI_Group_range_incl(world, 1, range, &workers);
  MPI_Comm comm = MPI_COMM_NULL;
  constexpr int kTag = 7412;
  int code = MPI_Comm_create_group(MPI_COMM_WORLD, workers, kTag, &comm);
  MPI_Group_free(&workers);
  MPI_Group_free(&world);
  if (code != MPI_SUCCESS) return absl::InternalError("MPI_Comm_create_group of the workers failed");
  int all = 0, value = mine ? 1 : 0;
  code = MPI_Allreduce(&value, &all, 1, MPI_INT, MPI_LAND, comm);
  MPI_Comm_free(&comm);
  if (code != MPI_SUCCESS) return absl::InternalError("MPI_Allreduce over the workers failed");
  return all != 0;
}

}  // namespace ixc::parallel
