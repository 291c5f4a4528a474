// Reference LayerNorm, GELU, quick_gelu, bidirectional attention and the image-token assembly: plain loops.
#include <cmath>
#include <vector>

#include "kernels/ops.h"

namespace ixc::kernels::reference {

void LayerNorm(const float* x, const float* weight, const float* bias, float* out, int64_t rows, int64_t hidden,
               float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * hidden;
    double mean = 0, var = 0;
    for (int64_t c = 0; c < hidden; ++c) mean += in[c];
    mean /= hidden;
    for (int64_t c = 0; c < hidden; ++c) var += (in[c] - mean) * (in[c] - mean);
    var /= hidden;
    const double inv_std = 1.0 / std::sqrt(var + eps);
    for (int64_t c = 0; c < hidden; ++c) {
      out[r * hidden + c] = static_cast<float>((in[c] - mean) * inv_std) * weight[c] + bias[c];
    }
  }
}

void Gelu(const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = 0.5f * x[i] * (1.f + std::erf(x[i] / std::sqrt(2.f)));
}

void QuickGelu(const float* x, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] / (1.f + std::exp(-1.702f * x[i]));
}

void SelfAttention(const float* q, const float* k, const float* v, float* out, int64_t tokens, int heads,
                   int head_dim, float scale) {
  const int64_t row = static_cast<int64_t>(heads) * head_dim;
  std::vector<float> scores(tokens);
  for (int h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < tokens; ++i) {
      float max_score = -INFINITY;
      for (int64_t j = 0; j < tokens; ++j) {
        float dot = 0.f;
        for (int c = 0; c < head_dim; ++c) dot += q[i * row + h * head_dim + c] * k[j * row + h * head_dim + c];
        scores[j] = dot * scale;
        max_score = std::max(max_score, scores[j]);
      }
      float sum = 0.f;
      for (int64_t j = 0; j < tokens; ++j) sum += (scores[j] = std::exp(scores[j] - max_score));
      for (int c = 0; c < head_dim; ++c) {
        float acc = 0.f;
        for (int64_t j = 0; j < tokens; ++j) acc += scores[j] / sum * v[j * row + h * head_dim + c];
        out[i * row + h * head_dim + c] = acc;
      }
    }
  }
}

void AssembleImageTokens(const float* features, const int32_t* sources, const float* sub_separator,
                         const float* global_separator, float* out, int64_t tokens, int64_t hidden) {
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t q = 0; q < 4; ++q) {
      const int32_t source = sources[t * 4 + q];
      for (int64_t c = 0; c < hidden; ++c) {
        float value;
        if (source == kSubSeparatorSource) {
          value = sub_separator[q * hidden + c];
        } else if (source == kGlobalSeparatorSource) {
          value = global_separator[q * hidden + c];
        } else {
          value = features[source * hidden + c];
        }
        out[(t * 4 + q) * hidden + c] = value;
      }
    }
  }
}

}  // namespace ixc::kernels::reference
