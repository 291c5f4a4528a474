// File: kernels/cuda/elementwise.h
//
// Elementwise ops on the GPU, each the counterpart of a reference op in kernels/ops.h (same shapes and semantics,
// f32 arithmetic, storage in `dtype`: f32, bf16 or f16) and tested against it in tests/gpu/:
//   LaunchSwiGlu           out (n) = silu(gate) * up                         (reference::SwiGlu)
//   LaunchGelu             out (rows, cols) = exact GELU(x + bias)           (reference::Gelu)
//   LaunchQuickGelu        out (rows, cols) = QuickGELU(x + bias), QuickGELU(v) = v * sigmoid(1.702 v)
//                          (reference::QuickGelu); bias (cols) f32 or null: the vision MLP's first Linear's bias,
//                          added here rather than in a pass of its own
//   LaunchEmbeddingGather  out (n, hidden) f32 = table[ids], any table dtype (reference::EmbeddingGather)
//   LaunchAddBias          y (rows, cols) += bias (cols, f32)
//   LaunchFillUniform      x (n) = uniform in [-scale, scale) from a counter hash of (seed, i): benchmark weights
//   LaunchZeroRows         y (rows, cols) row r := 0 where mask[r] == 0: the masked part of PLoRA (the low-rank
//                          product A.x is kept only on image rows before B is applied)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "core/dtype.h"

namespace ixc::kernels::cuda {

absl::Status LaunchSwiGlu(DType dtype, const void* gate, const void* up, void* out, int64_t n, cudaStream_t stream);
absl::Status LaunchGelu(DType dtype, const void* x, const float* bias, void* out, int64_t rows, int64_t cols,
                        cudaStream_t stream);
absl::Status LaunchQuickGelu(DType dtype, const void* x, const float* bias, void* out, int64_t rows, int64_t cols,
                             cudaStream_t stream);

// table (vocab, hidden) and ids (n) on the device; `host_ids` (n) is checked against the vocabulary first.
absl::Status LaunchEmbeddingGather(const void* table, DType dtype, int64_t vocab, int64_t hidden, const int32_t* ids,
                                   const int32_t* host_ids, int64_t n, float* out, cudaStream_t stream);

absl::Status LaunchAddBias(DType dtype, void* y, const float* bias, int64_t rows, int64_t cols, cudaStream_t stream);

// mask (rows) uint8 on the device.
absl::Status LaunchZeroRows(DType dtype, void* y, const uint8_t* mask, int64_t rows, int64_t cols,
                            cudaStream_t stream);

absl::Status LaunchFillUniform(DType dtype, void* x, int64_t n, uint64_t seed, float scale, cudaStream_t stream);

}  // namespace ixc::kernels::cuda
