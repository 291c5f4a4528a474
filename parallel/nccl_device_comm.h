// File: parallel/nccl_device_comm.h
//
// DeviceComm over NCCL on device buffers (the cuda preset): one communicator per group, made by ncclCommSplit from
// a world communicator whose unique id rank 0 broadcasts over MPI. Collectives run on the comm's stream; the ring's
// send/recv on a stream of their own, so the ring attention's transfers overlap its compute. Every call returns a
// Status naming the NCCL error.
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "absl/status/statusor.h"
#include "parallel/device_comm.h"
#include "parallel/mapping.h"

namespace ixc::parallel {

// Collective over MPI_COMM_WORLD: every rank of the job calls it (ranks outside the LLM grid get no LLM groups).
// `device` is this rank's CUDA device.
absl::StatusOr<std::unique_ptr<DeviceComm>> CreateNcclDeviceComm(const Mapping& mapping, int device);

}  // namespace ixc::parallel
