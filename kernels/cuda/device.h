// File: kernels/cuda/device.h
//
// Whether this process can use a CUDA device. `--device cuda` on a machine without one stops with this message.
// Which experimental kernels the environment asks for.
#pragma once

#include <cstdlib>
#include <cstring>
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

// Whether the environment variable `name` is "1": how a kernel that has not yet run on a GPU is chosen
// (IXC_FLASH_WGMMA, IXC_DECODE_MMA, IXC_GEMM_MMA), so tests/gpu/run.sh can run the tests both ways.
inline bool ExperimentalKernelRequested(const char* name) {
  const char* flag = std::getenv(name);
  return flag != nullptr && std::strcmp(flag, "1") == 0;
}

}  // namespace ixc::kernels::cuda
