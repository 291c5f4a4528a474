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

#include <memory>

#include "absl/status/statusor.h"
#include "parallel/device_comm.h"
#include "parallel/mapping.h"

namespace ixc::parallel {

// Called by every LLM rank (and only by them); `device` is this rank's CUDA device.
absl::StatusOr<std::unique_ptr<DeviceComm>> CreateNcclDeviceComm(const Mapping& mapping, int device);

}  // namespace ixc::parallel
