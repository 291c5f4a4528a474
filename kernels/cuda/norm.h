// File: kernels/cuda/norm.h
//
// Row normalizations on the GPU, one thread block per row, statistics in f32 (references: kernels::reference::
// RmsNorm and LayerNorm):
//   LaunchRmsNorm     out = weight * (x * rsqrt(mean(x^2) + eps)); x and out f32 or bf16 (the same)
//   LaunchAddRmsNorm  the decoder's fused step: residual += delta (+ bias), then out = RmsNorm(residual) in the GEMM
//                     dtype. The residual stream stays f32 on the GPU; delta is a sublayer's f32 output.
//   LaunchLayerNorm   out = (x - mean) / sqrt(var + eps) * weight + bias (the ViT); x and out each f32, bf16 or
//                     f16 (the ViT reads its f32 residual stream and writes the GEMM dtype)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "core/dtype.h"

namespace ixc::kernels::cuda {

// Device pointers, each starting on a 4-element boundary; hidden must be a multiple of 4 (every model width is);
// rows >= 0. out must not overlap x (RmsNorm) or the residual and delta (AddRmsNorm); LayerNorm may run in place.
absl::Status LaunchRmsNorm(DType dtype, void* out, const void* x, const float* weight, int64_t rows, int64_t hidden,
                           float eps, cudaStream_t stream);

// residual (rows, hidden) f32, updated in place (only read where delta and bias are both null: the norm of a residual
// the GEMMs before it added onto); delta (rows, hidden) f32 or null; bias (hidden) f32 or null; weight (hidden) f32;
// out (rows, hidden) in out_dtype (bf16, f16 or f32).
absl::Status LaunchAddRmsNorm(float* residual, const float* delta, const float* bias, const float* weight,
                              DType out_dtype, void* out, int64_t rows, int64_t hidden, float eps,
                              cudaStream_t stream);

// x (rows, hidden) in dtype, out (rows, hidden) in out_dtype; weight, bias (hidden) f32.
absl::Status LaunchLayerNorm(DType dtype, const void* x, const float* weight, const float* bias, DType out_dtype,
                             void* out, int64_t rows, int64_t hidden, float eps, cudaStream_t stream);

}  // namespace ixc::kernels::cuda
