#include "parallel/bootstrap.h"

#include <mpi.h>

#include "nlohmann/json.hpp"

namespace ixc::parallel {

absl::StatusOr<ClusterConfig> ShareClusterConfig(const ClusterConfig* config) {
  std::string text;
  if (config != nullptr) {
    text = nlohmann::json{{"model_dir", config->model_dir},
                          {"layout", {config->layout.coordinators, config->layout.vision, config->layout.tp,
                                      config->layout.sp}},
                          {"control_endpoint", config->control_endpoint},
                          {"kv_block_size", config->kv_block_size},
                          {"kv_blocks", config->kv_blocks},
                          {"step_timeout_s", config->step_timeout_s},
                          {"label_font", config->label_font}}
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
  return shared;
}

}  // namespace ixc::parallel
