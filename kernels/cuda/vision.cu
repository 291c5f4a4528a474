// The vision encoder's gathers: one thread per output element, f32 in, the GEMM dtype out.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/grid_stride.cuh"
#include "kernels/cuda/vision.h"
#include "kernels/ops.h"

namespace ixc::kernels::cuda {
namespace {

template <typename T>
__global__ void PatchColumnsKernel(const float* crops, int64_t count, int size, int patch, T* columns,
                                   int64_t row_width) {
  const int grid = size / patch, values = 3 * patch * patch;
  const int64_t patches = int64_t{grid} * grid;
  IXC_GRID_STRIDE(e, count * patches * row_width) {
    const int64_t row = e / row_width, col = e % row_width;
    float value = 0.f;
    if (col < values) {
      const int64_t crop = row / patches, p = row % patches;
      const int py = static_cast<int>(p / grid), px = static_cast<int>(p % grid);
      const int channel = static_cast<int>(col) / (patch * patch), within = static_cast<int>(col) % (patch * patch);
      const int dy = within / patch, dx = within % patch;
      value = crops[((crop * 3 + channel) * size + py * patch + dy) * int64_t{size} + px * patch + dx];
    }
    columns[e] = FromFloat<T>(value);
  }
}

__global__ void VitEmbeddingsKernel(const float* patch_rows, const float* class_embedding, const float* positions,
                                    int64_t count, int64_t patches, int64_t hidden, float* x) {
  const int64_t tokens = patches + 1;
  IXC_GRID_STRIDE(e, count * tokens * hidden) {
    const int64_t c = e % hidden, token = (e / hidden) % tokens, crop = e / (hidden * tokens);
    const float base = token == 0 ? class_embedding[c] : patch_rows[(crop * patches + token - 1) * hidden + c];
    x[e] = base + positions[token * hidden + c];
  }
}

template <typename T>
__global__ void AssembleImageTokensKernel(const float* features, int64_t feature_rows, const int32_t* sources,
                                          const float* sub_separator, const float* global_separator, T* out,
                                          int64_t tokens, int64_t hidden) {
  IXC_GRID_STRIDE(e, tokens * 4 * hidden) {
    const int64_t part = e / hidden, c = e % hidden, quarter = part % 4;
    const int32_t source = sources[part];
    float value;
    if (source == kSubSeparatorSource) {
      value = sub_separator[quarter * hidden + c];
    } else if (source == kGlobalSeparatorSource) {
      value = global_separator[quarter * hidden + c];
    } else if (source >= 0 && source < feature_rows) {
      value = features[int64_t{source} * hidden + c];
    } else {
      value = NAN;
    }
    out[e] = FromFloat<T>(value);
  }
}

}  // namespace

absl::Status LaunchPatchColumns(const float* crops, int64_t count, int image_size, int patch, DType dtype,
                                void* columns, int64_t row_width, cudaStream_t stream) {
  if (count < 0 || patch <= 0 || image_size < patch || image_size % patch != 0 || row_width < 3 * patch * patch) {
    return absl::InvalidArgumentError(absl::StrCat("PatchColumns: ", count, " crops of ", image_size, " px, patch ",
                                                   patch, ", row width ", row_width));
  }
  const int64_t grid = image_size / patch, n = count * grid * grid * row_width;
  if (n == 0) return absl::OkStatus();
  IXC_RETURN_IF_ERROR(DispatchDType(dtype, [&](auto tag) {
    using T = decltype(tag);
    PatchColumnsKernel<T><<<GridStrideBlocks(n), kGridStrideThreads, 0, stream>>>(crops, count, image_size, patch,
                                                                                  static_cast<T*>(columns), row_width);
  }));
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

absl::Status LaunchVitEmbeddings(const float* patch_rows, const float* class_embedding, const float* positions,
                                 int64_t count, int64_t patches, int64_t hidden, float* x, cudaStream_t stream) {
  if (count < 0 || patches <= 0 || hidden <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("VitEmbeddings: ", count, " crops of ", patches, " patches, hidden ", hidden));
  }
  const int64_t n = count * (patches + 1) * hidden;
  if (n == 0) return absl::OkStatus();
  VitEmbeddingsKernel<<<GridStrideBlocks(n), kGridStrideThreads, 0, stream>>>(patch_rows, class_embedding, positions,
                                                                              count, patches, hidden, x);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

absl::Status LaunchAssembleImageTokens(const float* features, int64_t feature_rows, const int32_t* sources,
                                       const float* sub_separator, const float* global_separator, DType out_dtype,
                                       void* out, int64_t tokens, int64_t hidden, cudaStream_t stream) {
  if (tokens < 0 || hidden <= 0 || feature_rows < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("AssembleImageTokens: ", tokens, " tokens, hidden ", hidden, ", ", feature_rows, " feature rows"));
  }
  const int64_t n = tokens * 4 * hidden;
  if (n == 0) return absl::OkStatus();
  IXC_RETURN_IF_ERROR(DispatchDType(out_dtype, [&](auto tag) {
    using T = decltype(tag);
    AssembleImageTokensKernel<T><<<GridStrideBlocks(n), kGridStrideThreads, 0, stream>>>(
        features, feature_rows, sources, sub_separator, global_separator, static_cast<T*>(out), tokens, hidden);
  }));
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace ixc::kernels::cuda
