// File: kernels/cuda/attention_dispatch.cuh
//
// The attention launchers' shared argument checks and head-dim dispatch (attention.cu, decode_attention.cu).
#pragma once

#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cuda/attention.h"

namespace ixc::kernels::cuda {

// Calls f.template operator()<D>() for the supported head dims.
template <typename F>
inline absl::Status DispatchHeadDim(int head_dim, const char* op, F&& f) {
  switch (head_dim) {
    case 16:
      return f(std::integral_constant<int, 16>{});
    case 32:
      return f(std::integral_constant<int, 32>{});
    case 64:
      return f(std::integral_constant<int, 64>{});
    case 128:
      return f(std::integral_constant<int, 128>{});
  }
  return absl::InvalidArgumentError(absl::StrCat(op, ": head_dim ", head_dim, " (built for 16, 32, 64, 128)"));
}

inline absl::Status CheckPools(const DeviceKvPools& pools, int heads, const char* op) {
  if (pools.kv_heads <= 0 || heads <= 0 || heads % pools.kv_heads != 0 || pools.block_size <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(op, ": heads ", heads, ", kv_heads ", pools.kv_heads, ", block_size ", pools.block_size));
  }
  if (pools.dtype == DType::kF32)
    return absl::InvalidArgumentError(absl::StrCat(op, ": the KV pools must be bf16 or f16"));
  return absl::OkStatus();
}

}  // namespace ixc::kernels::cuda
