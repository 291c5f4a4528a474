// CPU RmsNorm, RoPE, SwiGLU and embedding gather: the reference loops, threaded over rows, with the per-call
// constants (inverse frequencies, cos/sin per position) computed once instead of per element.
#include <omp.h>

#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/ops.h"

namespace ixc::kernels {

void RmsNorm(const float* x, const float* weight, float* out, int64_t rows, int64_t hidden, float eps) {
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * hidden;
    float sum_sq = 0.f;
#pragma omp simd reduction(+ : sum_sq)
    for (int64_t c = 0; c < hidden; ++c) sum_sq += in[c] * in[c];
    const float inv_rms = 1.f / std::sqrt(sum_sq / static_cast<float>(hidden) + eps);
    float* o = out + r * hidden;
#pragma omp simd
    for (int64_t c = 0; c < hidden; ++c) o[c] = weight[c] * (in[c] * inv_rms);
  }
}

double DynamicNtkBase(double theta, double factor, int max_position_embeddings, int64_t seq_len, int head_dim) {
  if (seq_len <= max_position_embeddings) return theta;
  const double d = head_dim;
  return theta * std::pow(factor * static_cast<double>(seq_len) / max_position_embeddings - (factor - 1.0),
                          d / (d - 2.0));
}

void ApplyRope(float* x, const int32_t* positions, int64_t tokens, int heads, const RopeParams& rope) {
  const int half = rope.head_dim / 2;
  std::vector<float> inv_freq(half);  // f32 throughout, as the reference computes it
  for (int i = 0; i < half; ++i) {
    inv_freq[i] = 1.f / std::pow(rope.base, static_cast<float>(2 * i) / static_cast<float>(rope.head_dim));
  }
#pragma omp parallel if (tokens > 1)
  {
    std::vector<float> cos_table(half), sin_table(half);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tokens; ++t) {
      const float position = static_cast<float>(positions[t]) * rope.position_scale;
      for (int i = 0; i < half; ++i) {
        const float angle = position * inv_freq[i];
        cos_table[i] = std::cos(angle);
        sin_table[i] = std::sin(angle);
      }
      for (int h = 0; h < heads; ++h) {
        float* v = x + (t * heads + h) * rope.head_dim;
#pragma omp simd
        for (int i = 0; i < half; ++i) {
          const float a = v[i], b = v[i + half];
          v[i] = a * cos_table[i] - b * sin_table[i];
          v[i + half] = b * cos_table[i] + a * sin_table[i];
        }
      }
    }
  }
}

void SwiGlu(const float* gate, const float* up, float* out, int64_t n) {
#pragma omp parallel for simd schedule(static) if (n > 4096)
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
}

absl::Status EmbeddingGather(TensorView table, const int32_t* ids, int64_t n, float* out) {
  const int64_t vocab = table.dim(0), hidden = table.dim(1);
  for (int64_t t = 0; t < n; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) {
      return absl::OutOfRangeError(absl::StrCat("token id ", ids[t], " at position ", t, " is outside the vocabulary [0, ",
                                                vocab, ")"));
    }
  }
  const int64_t row_bytes = hidden * DTypeSize(table.dtype);
#pragma omp parallel for schedule(static) if (n > 16)
  for (int64_t t = 0; t < n; ++t) {
    ConvertToF32(table.dtype, static_cast<const uint8_t*>(table.data) + ids[t] * row_bytes, out + t * hidden, hidden);
  }
  return absl::OkStatus();
}

}  // namespace ixc::kernels
