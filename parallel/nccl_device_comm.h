// File: parallel/nccl_device_comm.h
//
// DeviceComm over NCCL on device buffers (the cuda preset), for the LLM ranks' model: an LLM communicator whose
// unique id the first LLM rank sends the others over MPI, and the tp and sp groups split from it. The coordinator and
// the vision ranks take no part (they need no GPU for it); host-side transfers such as the vision handoff stay on
// the MPI DeviceComm, and Group::kWorld here is an error. Collectives run on the comm's stream; the ring's send/recv
// on a stream of their own, so the ring attention's transfers overlap its compute. Every call returns a Status
// naming the NCCL error.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/device_comm.h"
#include "parallel/mapping.h"

namespace ixc::parallel {

// Called by every LLM rank (and only by them); `device` is this rank's CUDA device. NCCL's unique id goes from the
// first LLM rank to the others over MPI.
absl::StatusOr<std::unique_ptr<DeviceComm>> CreateNcclDeviceComm(const Mapping& mapping, int device);

// The same from an LLM rank's place alone: `index` of `ranks` LLM ranks, at (tp_rank, sp_rank) of the tp x sp grid,
// on CUDA device `device`; `name` labels its errors. `share_id` gets the unique id that index 0 made (`bytes` at
// `id`) to every rank: MPI in the job, nothing for a lone rank (tests/gpu/nccl_cuda_test.cc).
struct NcclRank {
  int ranks = 1, index = 0, tp_rank = 0, sp_rank = 0, device = 0;
  std::string name = "LLM rank 0";
};
using ShareNcclId = std::function<absl::Status(void* id, size_t bytes)>;
absl::StatusOr<std::unique_ptr<DeviceComm>> CreateNcclDeviceComm(const NcclRank& rank, const ShareNcclId& share_id);

}  // namespace ixc::parallel
