// File: parallel/mpi_device_comm.h
//
// DeviceComm over MPI on host buffers: the CPU backend's data plane. The TP, SP and LLM communicators are split from
// MPI_COMM_WORLD once, by the Mapping, on every rank of the job (ranks outside the LLM grid get null groups).
// MPI must be initialized before, and finalized after, the object's lifetime.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "parallel/device_comm.h"
#include "parallel/mapping.h"

namespace ixc::parallel {

// Collective over MPI_COMM_WORLD: every rank of the job must call it.
absl::StatusOr<std::unique_ptr<DeviceComm>> CreateMpiDeviceComm(const Mapping& mapping);

}  // namespace ixc::parallel
