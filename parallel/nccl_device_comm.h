// File: parallel/nccl_device_comm.h
//
// DeviceComm over NCCL on device buffers (the cuda preset). Its members are the LLM ranks, or, with the vision
// handoff over NCCL (where every vision rank has a GPU of its own), every worker: then Group::kWorld is that
// communicator (peers by world rank; the coordinator is no member) and the LLM group is split from it. The first
// member sends the others the unique id over MPI; the tp and sp groups are split from the LLM group. Without the
// handoff, Group::kWorld is an error (the handoff goes over the MPI DeviceComm on host buffers). Collectives and
// blocking transfers run on the comm's stream; the ring's send/recv on a stream of their own, so the ring attention's
// transfers overlap its compute. Every call returns a Status naming the NCCL error.
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

// Called by every LLM rank, and with `vision_handoff` by every worker (vision ranks too); `device` is this rank's
// CUDA device. NCCL's unique id goes from the first member to the others over MPI.
absl::StatusOr<std::unique_ptr<DeviceComm>> CreateNcclDeviceComm(const Mapping& mapping, int device,
                                                                 bool vision_handoff);

// The same from a member's place alone: `index` of `ranks` members; an LLM rank (`llm`) sits at (tp_rank, sp_rank)
// of the tp x sp grid, and the LLM ranks are the members from the first LLM one on; `device` is its CUDA device;
// `name` labels its errors. `share_id` gets the unique id that index 0 made (`bytes` at `id`) to every member: MPI
// in the job, nothing for a lone rank (tests/gpu/nccl_cuda_test.cc).
struct NcclRank {
  int ranks = 1, index = 0;
  bool llm = true;
  int tp_rank = 0, sp_rank = 0, device = 0;
  // With the vision handoff (every worker a member, vision ranks first): member 0's world rank, which Group::kWorld's
  // peers are counted from; -1: the members are the LLM ranks alone and there is no world group.
  int first_world_rank = -1;
  std::string name = "LLM rank 0";
};
using ShareNcclId = std::function<absl::Status(void* id, size_t bytes)>;
absl::StatusOr<std::unique_ptr<DeviceComm>> CreateNcclDeviceComm(const NcclRank& rank, const ShareNcclId& share_id);

}  // namespace ixc::parallel
