#include "kernels/cuda/device.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"

namespace ixc::kernels::cuda {

absl::StatusOr<DeviceInfo> ProbeCudaDevice() {
  DeviceInfo info;
  const cudaError_t error = cudaGetDeviceCount(&info.count);
  if (error != cudaSuccess || info.count == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("no CUDA device is usable: ",
                     error != cudaSuccess ? cudaGetErrorString(error) : "the runtime reports 0 devices"));
  }
  cudaDeviceProp properties{};
  if (cudaGetDeviceProperties(&properties, 0) != cudaSuccess) {
    return absl::FailedPreconditionError("cannot read the properties of CUDA device 0");
  }
  info.name = properties.name;
  info.compute_capability = properties.major * 10 + properties.minor;
  info.memory_gib = properties.totalGlobalMem / double(1 << 30);
  return info;
}

absl::StatusOr<DeviceMemoryUse> QueryDeviceMemory(int gpu) {
  int current = 0;
  if (cudaGetDevice(&current) != cudaSuccess) return absl::FailedPreconditionError("no current CUDA device");
  if (current != gpu && cudaSetDevice(gpu) != cudaSuccess) {
    return absl::FailedPreconditionError(absl::StrCat("cannot select CUDA device ", gpu));
  }
  size_t free = 0, total = 0;
  const cudaError_t error = cudaMemGetInfo(&free, &total);
  if (current != gpu) cudaSetDevice(current);
  if (error != cudaSuccess) {
    return absl::FailedPreconditionError(absl::StrCat("cudaMemGetInfo: ", cudaGetErrorString(error)));
  }
  return DeviceMemoryUse{static_cast<int64_t>(total - free), static_cast<int64_t>(total)};
}

}  // namespace ixc::kernels::cuda
