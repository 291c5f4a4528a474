#include "model/placement.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

#ifdef IXC_HAVE_CUDA
#include "model/cuda/cuda_language_model.h"
#endif

namespace ixc::model {

absl::StatusOr<KvCache> PlaceModel(LlmWeights& weights, const Placement& placement, int64_t context_tokens) {
  if (placement.device == "cpu") {
    const int64_t blocks = (context_tokens + placement.block_size) / placement.block_size;
    return KvCache(weights.shard, placement.block_size, static_cast<int>(blocks));
  }
  if (placement.device != "cuda") {
    return absl::InvalidArgumentError(absl::StrCat("--device must be cpu or cuda, not '", placement.device, "'"));
  }
#ifdef IXC_HAVE_CUDA
  CudaModelOptions options;
  if (placement.dtype != "bf16" && placement.dtype != "f16") {
    return absl::InvalidArgumentError(absl::StrCat("--dtype must be bf16 or f16 on cuda, not '", placement.dtype, "'"));
  }
  options.dtype = placement.dtype == "f16" ? DType::kF16 : DType::kBF16;
  options.block_size = placement.block_size;
  options.kv_reserve_bytes = placement.kv_reserve_mib << 20;
  return AttachCudaModel(weights, options);
#else
  return absl::FailedPreconditionError(
      "--device cuda: this build has no CUDA backend; build it with `cmake --preset cuda && cmake --build --preset "
      "cuda` on a machine with the CUDA toolkit");
#endif
}

}  // namespace ixc::model
