// File: kernels/cuda/rms_norm.h
//
// RMSNorm on the GPU: out (rows, hidden) = weight * (x * rsqrt(mean(x^2) + eps)), statistics in f32; activations
// f32 or bf16 (both tensors the same), weight f32. The reference is kernels::reference::RmsNorm.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "core/dtype.h"

namespace ixc::kernels::cuda {

// Device pointers. hidden must be a multiple of 4 (every model width is); rows >= 0.
absl::Status LaunchRmsNorm(DType dtype, void* out, const void* x, const float* weight, int64_t rows, int64_t hidden,
                           float eps, cudaStream_t stream);

}  // namespace ixc::kernels::cuda
