// File: kernels/cuda/flash_wgmma.h
//
// Flash prefill on Hopper's warpgroup MMA (wgmma, sm_90a; built in a library of its own for that target alone), with
// LaunchBatchedFlashAttention's contract (kernels/cuda/attention.h) for head dims 64 and 128, which it takes on an
// sm_90 device: 388 TFLOP/s at 32K tokens on the H200 against the mma.sync kernel's 284. IXC_FALLBACK_KERNELS=1 (for
// tests/gpu/run.sh's second pass) hands those to the mma.sync kernel as well.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/attention.h"

namespace ixc::kernels::cuda {

// Whether LaunchBatchedFlashAttention hands this head dim to LaunchFlashWgmma: an sm_90 device, head dim 64 or 128,
// and no IXC_FALLBACK_KERNELS=1.
bool FlashWgmmaSelected(int head_dim);
// Whether LaunchFlashWgmma runs its software-pipelined variant (experimental until it has run on a GPU): as
// FlashWgmmaSelected, with IXC_FLASH_PIPELINED=1 in the environment (read once per process).
bool FlashWgmmaPipelinedSelected(int head_dim);
// The flash kernel LaunchFlashAttention takes for this head dim, for the benchmarks' lines: "pipelined wgmma",
// "wgmma" or "mma.sync".
const char* FlashKernelName(int head_dim);

// As LaunchBatchedFlashAttention, whose checks the arguments have passed.
absl::Status LaunchFlashWgmma(const void* q, const int32_t* positions, int64_t tokens, int sequences, int heads,
                              const DeviceKvPools& pools, const int32_t* block_tables, int64_t table_stride,
                              int64_t num_keys, float scale, void* out, float* lse, cudaStream_t stream);

}  // namespace ixc::kernels::cuda
