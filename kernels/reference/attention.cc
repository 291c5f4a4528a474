// Reference paged attention: for each query and head, all causal scores, a softmax, a weighted sum.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/ops.h"

namespace ixc::kernels::reference {

void PagedAttention(const float* q, const int32_t* positions, const PagedKv& kv, const AttentionShape& shape,
                    float* out, float* lse) {
  const int d = kv.head_dim;
  const int group = shape.heads / kv.kv_heads;
  auto slot = [&](const float* pool, int64_t token, int kv_head) {
    const int64_t block = kv.block_table[token / kv.block_size];
    return pool + ((block * kv.block_size + token % kv.block_size) * kv.kv_heads + kv_head) * d;
  };
  for (int t = 0; t < shape.tokens; ++t) {
    // Keys visible to this query: the first `keys` (positions ascend).
    int64_t keys = positions[t] + 1;
    if (kv.key_positions != nullptr) {
      keys = 0;
      while (keys < kv.num_keys && kv.key_positions[keys] <= positions[t]) ++keys;
    }
    std::vector<float> scores(keys);
    for (int h = 0; h < shape.heads; ++h) {
      const float* query = q + (static_cast<int64_t>(t) * shape.heads + h) * d;
      float max_score = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < keys; ++j) {
        const float* key = slot(kv.k_pool, j, h / group);
        float dot = 0.f;
        for (int c = 0; c < d; ++c) dot += query[c] * key[c];
        scores[j] = dot * shape.scale;
        max_score = std::max(max_score, scores[j]);
      }
      float denominator = 0.f;
      for (int64_t j = 0; j < keys; ++j) {
        scores[j] = std::exp(scores[j] - max_score);
        denominator += scores[j];
      }
      float* o = out + (static_cast<int64_t>(t) * shape.heads + h) * d;
      for (int c = 0; c < d; ++c) o[c] = 0.f;
      if (keys == 0) {
        if (lse != nullptr) lse[static_cast<int64_t>(t) * shape.heads + h] = -INFINITY;
        continue;
      }
      for (int64_t j = 0; j < keys; ++j) {
        const float* value = slot(kv.v_pool, j, h / group);
        for (int c = 0; c < d; ++c) o[c] += scores[j] / denominator * value[c];
      }
      if (lse != nullptr) lse[static_cast<int64_t>(t) * shape.heads + h] = max_score + std::log(denominator);
    }
  }
}

}  // namespace ixc::kernels::reference

namespace ixc::kernels::reference {

void MergeAttention(float* out_a, float* lse_a, const float* out_b, const float* lse_b, int64_t rows, int heads,
                    int head_dim) {
  for (int64_t i = 0; i < rows * heads; ++i) {
    const double a = lse_a[i], b = lse_b[i];
    if (std::isinf(b) && b < 0) continue;  // nothing on side b
    const double m = std::max(a, b);
    const double wa = std::isinf(a) && a < 0 ? 0.0 : std::exp(a - m), wb = std::exp(b - m);
    for (int c = 0; c < head_dim; ++c) {
      out_a[i * head_dim + c] = static_cast<float>((wa * out_a[i * head_dim + c] + wb * out_b[i * head_dim + c]) /
                                                   (wa + wb));
    }
    lse_a[i] = static_cast<float>(m + std::log(wa + wb));
  }
}

}  // namespace ixc::kernels::reference
