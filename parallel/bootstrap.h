// File: parallel/bootstrap.h
//
// Start-up of an mpirun job: rank 0 (the coordinator) decides the cluster's settings, binds the control socket and
// sends both to every rank over MPI, so the workers need no flags of their own.
#pragma once

#include <signal.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/mapping.h"

namespace ixc::parallel {

struct ClusterConfig {
  std::string model_dir;
  Layout layout;
  std::string control_endpoint;  // the coordinator's ZeroMQ ROUTER
  int kv_block_size = 16;
  int kv_blocks = 0;             // per LLM rank; 0: all that fit on a GPU, one --max-context sequence on the CPU
  int step_timeout_s = 120;      // every wait on another rank gives up after this
  std::string label_font;
  std::string device = "cpu";    // where the workers run their models: cpu | cuda (WorkerGpu: one per LLM rank)
  std::string dtype = "bf16";    // cuda: bf16 | f16
  int64_t kv_reserve_mib = 4096; // cuda: device memory an LLM rank keeps free beside its weights and KV pool
  int64_t max_context = 98304;   // prompt plus generated positions, at most (with SP it bounds a ring prefill)
  bool cuda_graphs = true;       // cuda: decode steps as replayed CUDA graphs
  std::string vision_handoff = "auto";  // cuda: auto | nccl | mpi (worker/handoff.h; auto: NCCL where every vision
                                        // rank has a GPU of its own)
};

// After MPI_Init: a process that exits before MPI_Finalize (a bad flag, a failed start, any exit()) ends the whole
// job with MPI_Abort, so no rank is left waiting for it (mpirun runs with orte_abort_on_non_zero_status 0, to let
// the coordinator name a failed rank before the job ends).
void EndJobOnEarlyExit();

// Blocks SIGTERM and SIGINT in this thread and the threads it starts later; call it before MPI_Init. The coordinator
// takes them with sigwait to drain; a worker ends when the coordinator tells it to (or goes silent), so that a
// scancel or a kill of the whole job lets the coordinator drain first.
void BlockDrainSignals();
// SIGTERM and SIGINT, the set BlockDrainSignals blocks (for sigwait).
sigset_t DrainSignals();

// Collective over MPI_COMM_WORLD: rank 0 passes its config, the others null; every rank returns rank 0's.
absl::StatusOr<ClusterConfig> ShareClusterConfig(const ClusterConfig* config);

// Collective over MPI_COMM_WORLD: where this rank sits among the workers of its machine (WorkerGpu turns it into
// the GPU a worker takes with --device cuda); the coordinator gets index -1.
absl::StatusOr<NodeWorkers> NodeLocalWorkers(const Mapping& mapping);

// Collective over MPI_COMM_WORLD: every rank's machine name (MPI_Get_processor_name), by world rank.
absl::StatusOr<std::vector<std::string>> HostNames();

// Collective over the workers alone (every rank but the coordinator, which takes no part): whether `mine` is true on
// every one of them.
absl::StatusOr<bool> OnEveryWorker(const Mapping& mapping, bool mine);

}  // namespace ixc::parallel
