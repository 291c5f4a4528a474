// CPU LayerNorm, GELU, quick_gelu, the image-token assembly (threaded loops) and bidirectional attention: per head, the scores as one sgemm,
// a softmax per row, the output as a second sgemm. A ViT sequence is short (1601 tokens at 560 px), so the
// (tokens x tokens) score block of one head, 10 MB, is affordable; heads run in parallel, BLAS single-threaded.
#include <cblas.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/ops.h"

namespace ixc::kernels {

void LayerNorm(const float* x, const float* weight, const float* bias, float* out, int64_t rows, int64_t hidden,
               float eps) {
#pragma omp parallel for schedule(static) if (rows > 1)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = x + r * hidden;
    double mean = 0, var = 0;
    for (int64_t c = 0; c < hidden; ++c) mean += in[c];
    mean /= hidden;
    for (int64_t c = 0; c < hidden; ++c) var += (in[c] - mean) * (in[c] - mean);
    var /= hidden;
    const float inv_std = static_cast<float>(1.0 / std::sqrt(var + eps));
    const float mean_f = static_cast<float>(mean);
    float* o = out + r * hidden;
#pragma omp simd
    for (int64_t c = 0; c < hidden; ++c) o[c] = (in[c] - mean_f) * inv_std * weight[c] + bias[c];
  }
}

void Gelu(const float* x, float* out, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) out[i] = 0.5f * x[i] * (1.f + std::erf(x[i] * 0.70710678118654752f));
}

void QuickGelu(const float* x, float* out, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 16384)
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] / (1.f + std::exp(-1.702f * x[i]));
}

void SelfAttention(const float* q, const float* k, const float* v, float* out, int64_t tokens, int heads,
                   int head_dim, float scale) {
  const int64_t row = static_cast<int64_t>(heads) * head_dim;
#pragma omp parallel for schedule(dynamic, 1)
  for (int h = 0; h < heads; ++h) {
    std::vector<float> scores(tokens * tokens);  // (tokens, tokens) of this head
    // scores = scale * Q_h K_h^T; the head's columns are a strided view (leading dimension = heads * head_dim).
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, tokens, tokens, head_dim, scale, q + h * head_dim, row,
                k + h * head_dim, row, 0.f, scores.data(), tokens);
    for (int64_t i = 0; i < tokens; ++i) {
      float* s = scores.data() + i * tokens;
      float max_score = -INFINITY;
      for (int64_t j = 0; j < tokens; ++j) max_score = std::max(max_score, s[j]);
      float sum = 0.f;
      for (int64_t j = 0; j < tokens; ++j) sum += (s[j] = std::exp(s[j] - max_score));
      const float inv_sum = 1.f / sum;
      for (int64_t j = 0; j < tokens; ++j) s[j] *= inv_sum;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, tokens, head_dim, tokens, 1.f, scores.data(), tokens,
                v + h * head_dim, row, 0.f, out + h * head_dim, row);
  }
}

void AssembleImageTokens(const float* features, const int32_t* sources, const float* sub_separator,
                         const float* global_separator, float* out, int64_t tokens, int64_t hidden) {
#pragma omp parallel for schedule(static) if (tokens > 256)
  for (int64_t part = 0; part < tokens * 4; ++part) {  // one quarter of a token each
    const int32_t source = sources[part];
    const int64_t quarter = part % 4;
    const float* from = source == kSubSeparatorSource      ? sub_separator + quarter * hidden
                        : source == kGlobalSeparatorSource ? global_separator + quarter * hidden
                                                           : features + source * hidden;
    std::memcpy(out + part * hidden, from, hidden * sizeof(float));
  }
}

}  // namespace ixc::kernels
