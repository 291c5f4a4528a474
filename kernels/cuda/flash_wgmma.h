// File: kernels/cuda/flash_wgmma.h
//
// Flash prefill on Hopper's warpgroup MMA (wgmma, sm_90a; built in a library of its own for that target alone), with
// LaunchBatchedFlashAttention's contract (kernels/cuda/attention.h) for head dims 64 and 128. Experimental until it
// has run on a GPU: LaunchBatchedFlashAttention takes it only on an sm_90 device with IXC_FLASH_WGMMA=1 in the
// environment, and tests/gpu/run.sh runs the attention, model and vision tests and the flash benchmark both ways.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/attention.h"

namespace ixc::kernels::cuda {

// Whether LaunchBatchedFlashAttention hands this head dim to LaunchFlashWgmma: an sm_90 device, head dim 64 or 128,
// and IXC_FLASH_WGMMA=1 (read once per process).
bool FlashWgmmaSelected(int head_dim);

// As LaunchBatchedFlashAttention, whose checks the arguments have passed.
absl::Status LaunchFlashWgmma(const void* q, const int32_t* positions, int64_t tokens, int sequences, int heads,
                              const DeviceKvPools& pools, const int32_t* block_tables, int64_t table_stride,
                              int64_t num_keys, float scale, void* out, float* lse, cudaStream_t stream);

}  // namespace ixc::kernels::cuda
