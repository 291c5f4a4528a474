// File: kernels/cuda/elementwise.h
//
// The language model's elementwise ops on the GPU, f32 on device pointers, each the counterpart of a reference op in
// kernels/ops.h (same shapes and semantics) and tested against it in tests/gpu/:
//   LaunchSwiGlu        out (n) = silu(gate) * up
//   LaunchApplyRope     x (tokens, heads, head_dim) rotated in place, rotate-half, inv_freq in f32 as the reference
//   LaunchEmbeddingGather  out (n, hidden) = table[ids], bf16 or f32 table; ids are checked on the host first
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "kernels/ops.h"

namespace ixc::kernels::cuda {

absl::Status LaunchSwiGlu(const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream);

// positions (tokens) on the device.
absl::Status LaunchApplyRope(float* x, const int32_t* positions, int64_t tokens, int heads, const RopeParams& rope,
                             cudaStream_t stream);

// table (vocab, hidden) and ids (n) on the device; `host_ids` (n) is checked against the vocabulary first.
absl::Status LaunchEmbeddingGather(const void* table, DType dtype, int64_t vocab, int64_t hidden, const int32_t* ids,
                                   const int32_t* host_ids, int64_t n, float* out, cudaStream_t stream);

}  // namespace ixc::kernels::cuda
