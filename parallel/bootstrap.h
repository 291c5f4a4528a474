// File: parallel/bootstrap.h
//
// Start-up of an mpirun job: rank 0 (the coordinator) decides the cluster's settings, binds the control socket and
// sends both to every rank over MPI, so the workers need no flags of their own.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "parallel/mapping.h"

namespace ixc::parallel {

struct ClusterConfig {
  std::string model_dir;
  Layout layout;
  std::string control_endpoint;  // the coordinator's ZeroMQ ROUTER
  int kv_block_size = 16;
  int kv_blocks = 4096;          // per LLM rank
  int step_timeout_s = 120;      // every wait on another rank gives up after this
  std::string label_font;
  std::string device = "cpu";    // where the workers run their models: cpu | cuda (one GPU per worker)
  std::string dtype = "bf16";    // cuda: bf16 | f16
  int64_t kv_reserve_mib = 4096; // cuda: device memory an LLM rank keeps free beside its weights and KV pool
  bool cuda_graphs = true;       // cuda: decode steps as replayed CUDA graphs
};

// Collective over MPI_COMM_WORLD: rank 0 passes its config, the others null; every rank returns rank 0's.
absl::StatusOr<ClusterConfig> ShareClusterConfig(const ClusterConfig* config);

// Collective over MPI_COMM_WORLD: this rank's index among the ranks at or above `first_worker` on its machine (the
// GPU a worker takes with --device cuda), or -1 for a rank below it (the coordinator).
absl::StatusOr<int> NodeLocalWorkerIndex(int first_worker);

}  // namespace ixc::parallel
