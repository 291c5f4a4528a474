#include "model/placement.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

#ifdef IXC_HAVE_CUDA
#include "kernels/cuda/device.h"
#include "model/cuda/cuda_language_model.h"
#include "model/cuda/cuda_vision_model.h"
#endif

namespace ixc::model {
namespace {

// Called where the device is not "cpu".
absl::StatusOr<DType> CudaDType(const Placement& placement) {
  IXC_RETURN_IF_ERROR(CheckPlacementFlags(placement.device, placement.dtype));
  return placement.dtype == "f16" ? DType::kF16 : DType::kBF16;
}

#ifdef IXC_HAVE_CUDA
absl::StatusOr<KvCache> PlaceModelOnGpu(LlmWeights& weights, const Placement& placement, DType dtype) {
  CudaModelOptions options;
  options.dtype = dtype;
  options.block_size = placement.block_size;
  options.kv_reserve_bytes = placement.kv_reserve_mib << 20;
  options.ring_rows = placement.ring_rows;
  options.input_rows = placement.input_rows;
  options.kv_blocks = placement.kv_blocks;
  options.device = placement.gpu;
  options.decode_graphs = placement.cuda_graphs;
  return AttachCudaModel(weights, options);
}

absl::Status PlaceVisionOnGpu(VisionWeights& weights, const Placement& placement, DType dtype) {
  return AttachCudaVision(
      weights, {.dtype = dtype, .device = placement.gpu, .max_crops_per_pass = placement.vision_crops_per_pass});
}
absl::StatusOr<Floats> NewFloatsOnGpu(int64_t count, int gpu) { return NewDeviceFloats(count, gpu); }
absl::Status CopyFloatsOnGpu(float* dst, const float* src, int64_t count) {
  return CopyFloatsAnywhere(dst, src, count);
}
#else
absl::Status NoCudaBackend() {
  return absl::FailedPreconditionError(
      "--device cuda: this build has no CUDA backend; build it with `cmake --preset cuda && cmake --build --preset "
      "cuda` on a machine with the CUDA toolkit");
}
absl::StatusOr<KvCache> PlaceModelOnGpu(LlmWeights&, const Placement&, DType) { return NoCudaBackend(); }
absl::Status PlaceVisionOnGpu(VisionWeights&, const Placement&, DType) { return NoCudaBackend(); }
absl::StatusOr<Floats> NewFloatsOnGpu(int64_t, int) { return NoCudaBackend(); }
absl::Status CopyFloatsOnGpu(float*, const float*, int64_t) { return NoCudaBackend(); }
#endif

}  // namespace

absl::StatusOr<KvCache> PlaceModel(LlmWeights& weights, const Placement& placement, int64_t context_tokens) {
  if (placement.device == "cpu") {
    const int64_t blocks = placement.kv_blocks > 0 ? placement.kv_blocks
                                                   : (context_tokens + placement.block_size) / placement.block_size;
    return KvCache(weights.shard, placement.block_size, static_cast<int>(blocks));
  }
  IXC_ASSIGN_OR_RETURN(const DType dtype, CudaDType(placement));
  return PlaceModelOnGpu(weights, placement, dtype);
}

absl::Status PlaceVision(VisionWeights& weights, const Placement& placement) {
  if (placement.device == "cpu") return absl::OkStatus();
  IXC_ASSIGN_OR_RETURN(const DType dtype, CudaDType(placement));
  return PlaceVisionOnGpu(weights, placement, dtype);
}

absl::StatusOr<Floats> NewFloats(int64_t count, int gpu) {
  if (count < 0) return absl::InvalidArgumentError(absl::StrCat("cannot allocate ", count, " floats"));
  if (gpu < 0) return Floats(count);
  return NewFloatsOnGpu(count, gpu);
}

DeviceMemory DeviceMemoryOf(const Placement& placement) {
#ifdef IXC_HAVE_CUDA
  if (placement.device == "cuda") {
    const auto use = kernels::cuda::QueryDeviceMemory(placement.gpu);
    return use.ok() ? DeviceMemory{use->used, use->total} : DeviceMemory{};
  }
#endif
  // The CPU: this process's resident memory, of the machine's.
  const int64_t page = sysconf(_SC_PAGESIZE);
  int64_t size = 0, resident = 0;
  std::ifstream statm("/proc/self/statm");
  if (!(statm >> size >> resident)) return {};
  return {resident * page, static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * page};
}

absl::Status CopyFloats(float* dst, const float* src, int64_t count, int gpu) {
  if (gpu >= 0) return CopyFloatsOnGpu(dst, src, count);
  std::copy_n(src, count, dst);
  return absl::OkStatus();
}

}  // namespace ixc::model
