// File: kernels/cuda/device.h
//
// Whether this process can use a CUDA device. `--device cuda` on a machine without one stops with this message.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace ixc::kernels::cuda {

struct DeviceInfo {
  int count = 0;
  std::string name;  // of device 0
  int compute_capability = 0;  // 90 for H100/H200
  double memory_gib = 0;
};

// Ok with device 0's properties, or FailedPrecondition naming what the CUDA runtime said (no driver, no device).
absl::StatusOr<DeviceInfo> ProbeCudaDevice();

}  // namespace ixc::kernels::cuda
