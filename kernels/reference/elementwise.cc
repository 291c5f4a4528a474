// Reference RmsNorm, RoPE, SwiGLU and embedding gather: the spec's formulas as plain loops.
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/ops.h"

namespace ixc::kernels::reference {

void RmsNorm(const float* x, const float* weight, float* out, int64_t rows, int64_t hidden, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * hidden;
    float sum_sq = 0.f;
    for (int64_t c = 0; c < hidden; ++c) sum_sq += in[c] * in[c];
    const float inv_rms = 1.f / std::sqrt(sum_sq / static_cast<float>(hidden) + eps);
    // The reference normalizes, casts back to the activation dtype, then multiplies by the weight.
    for (int64_t c = 0; c < hidden; ++c) out[r * hidden + c] = weight[c] * (in[c] * inv_rms);
  }
}

void ApplyRope(float* x, const int32_t* positions, int64_t tokens, int heads, const RopeParams& rope) {
  const int half = rope.head_dim / 2;
  for (int64_t t = 0; t < tokens; ++t) {
    const float position = static_cast<float>(positions[t]) * rope.position_scale;
    for (int h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * rope.head_dim;
      for (int i = 0; i < half; ++i) {
        const float exponent = static_cast<float>(2 * i) / static_cast<float>(rope.head_dim);
        const float inv_freq = 1.f / std::pow(rope.base, exponent);
        const float angle = position * inv_freq;
        const float c = std::cos(angle), s = std::sin(angle);
        const float a = v[i], b = v[i + half];
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
      }
    }
  }
}

void SwiGlu(const float* gate, const float* up, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = gate[i] / (1.f + std::exp(-gate[i])) * up[i];
}

absl::Status EmbeddingGather(TensorView table, const int32_t* ids, int64_t n, float* out) {
  const int64_t vocab = table.dim(0), hidden = table.dim(1);
  for (int64_t t = 0; t < n; ++t) {
    if (ids[t] < 0 || ids[t] >= vocab) {
      return absl::OutOfRangeError(absl::StrCat("token id ", ids[t], " at position ", t, " is outside the vocabulary [0, ",
                                                vocab, ")"));
    }
    ConvertToF32(table.dtype, static_cast<const uint8_t*>(table.data) + ids[t] * hidden * DTypeSize(table.dtype),
                 out + t * hidden, hidden);
  }
  return absl::OkStatus();
}

}  // namespace ixc::kernels::reference
