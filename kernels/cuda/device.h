// File: kernels/cuda/device.h
//
// Whether this process can use a CUDA device. `--device cuda` on a machine without one stops with this message.
// Whether the environment asks for kernels other than the defaults.
#pragma once

#include <cstdint>
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

// Bytes in use (every process's) and in all on device `gpu`, as cudaMemGetInfo reports them (the monitoring's
// per-rank gauges). Leaves the calling thread's current device as it was.
struct DeviceMemoryUse {
  int64_t used = 0;
  int64_t total = 0;
};
absl::StatusOr<DeviceMemoryUse> QueryDeviceMemory(int gpu);

// Whether the environment variable `name` is "1": how tests/gpu/run.sh chooses kernels other than the defaults.
inline bool KernelFlagSet(const char* name) {
  const char* flag = std::getenv(name);
  return flag != nullptr && std::strcmp(flag, "1") == 0;
}

// Whether IXC_FALLBACK_KERNELS=1 is set (read once per process): the kernels that the faster ones replace where
// those cannot run (mma.sync flash off sm_90 or at head dims other than 64 and 128; scalar decode attention at head
// dims that are not a multiple of 32) then run everywhere, so that tests/gpu/run.sh checks them on the H100/H200 too.
inline bool FallbackKernelsRequested() {
  static const bool requested = KernelFlagSet("IXC_FALLBACK_KERNELS");
  return requested;
}

// Whether IXC_FEWER_DECODE_KERNELS=1 is set (read once per process): experimental, not yet run on a GPU, so off by
// default (tests/gpu/run.sh's experimental pass sets it). A decode step of the language model then has three kernels
// fewer per layer on its chain of dependent kernels for 1-2 rows on one GPU (the RMSNorms done by the weight passes
// that read them, and RoPE and the KV store by the qkv pass or its LoRA's B product pass: kernels/cuda/gemm.h,
// RmsNormInput and QkvRopeArgs), two more in the LoRA modes (the feed-forward's B products with SwiGLU:
// LowRankSwiGluArgs), and one fewer at any batch (the decode attention's splits merged by the kernel's last block
// for each row and KV head, kernels/cuda/attention.h).
inline bool FewerDecodeKernelsRequested() {
  static const bool requested = KernelFlagSet("IXC_FEWER_DECODE_KERNELS");
  return requested;
}

}  // namespace ixc::kernels::cuda
