// File: kernels/cuda/vision.h
//
// The vision encoder's data movement on the GPU (spec 3); its arithmetic is the shared GEMM, LayerNorm, QuickGELU,
// GELU and flash-attention kernels.
//   LaunchPatchColumns        crops (count, 3, S, S) f32 -> the patch embedding's GEMM input: one row per patch,
//                             its (channel, dy, dx) values in the conv kernel's order, zero-padded to `row_width`
//                             (a multiple of 8 keeps cuBLASLt's 16-byte alignment; 3 * 14 * 14 = 588 is not)
//   LaunchVitEmbeddings       x (count, grid^2 + 1, hidden) f32 = [class embedding; patch rows] + positions
//   LaunchAssembleImageTokens the 2x2 merge and the separators (reference::AssembleImageTokens) in `out_dtype`, the
//                             projector's GEMM input
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "core/dtype.h"

namespace ixc::kernels::cuda {

// crops (count, 3, image_size, image_size) f32; columns (count * grid^2, row_width) in dtype, grid = image_size /
// patch, row_width >= 3 * patch^2.
absl::Status LaunchPatchColumns(const float* crops, int64_t count, int image_size, int patch, DType dtype,
                                void* columns, int64_t row_width, cudaStream_t stream);

// patch_rows (count * patches, hidden) f32 (the patch GEMM's output), class_embedding (hidden), positions
// (patches + 1, hidden), x (count, patches + 1, hidden), all f32.
absl::Status LaunchVitEmbeddings(const float* patch_rows, const float* class_embedding, const float* positions,
                                 int64_t count, int64_t patches, int64_t hidden, float* x, cudaStream_t stream);

// features (*, hidden) f32, sources (tokens, 4) int32 (feature rows, or kernels::kSubSeparatorSource /
// kGlobalSeparatorSource), separators (4 hidden) f32; out (tokens, 4 hidden) in out_dtype. `feature_rows` bounds
// the sources (checked on the device: a row outside it is written as NaN rather than read).
absl::Status LaunchAssembleImageTokens(const float* features, int64_t feature_rows, const int32_t* sources,
                                       const float* sub_separator, const float* global_separator, DType out_dtype,
                                       void* out, int64_t tokens, int64_t hidden, cudaStream_t stream);

}  // namespace ixc::kernels::cuda
