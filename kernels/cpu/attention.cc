// CPU paged attention: one pass over the keys with online softmax (running max m, running sum l, unnormalized
// output acc), one KV block at a time, so memory stays linear in tokens: no (tokens x tokens) score matrix.
//
// Work split: threads take (query token, KV head) pairs; the heads / kv_heads query heads that share a KV head are
// processed together, so each key and value row is read once per group rather than once per query head.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/ops.h"

namespace ixc::kernels {

void PagedAttention(const float* q, const int32_t* positions, const PagedKv& kv, const AttentionShape& shape,
                    float* out, float* lse) {
  const int d = kv.head_dim;
  const int group = shape.heads / kv.kv_heads;
  const int64_t pairs = static_cast<int64_t>(shape.tokens) * kv.kv_heads;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(group) * kv.block_size);  // (group, block_size)
    std::vector<float> running_max(group), running_sum(group);
#pragma omp for schedule(dynamic, 4)
    for (int64_t pair = 0; pair < pairs; ++pair) {
      const int64_t t = pair / kv.kv_heads;
      const int kv_head = static_cast<int>(pair % kv.kv_heads);
      // Keys visible to this query: the first `keys` (positions ascend).
      int64_t keys = positions[t] + 1;
      if (kv.key_positions != nullptr) {
        keys = std::upper_bound(kv.key_positions, kv.key_positions + kv.num_keys, positions[t]) - kv.key_positions;
      }
      const float* queries = q + (t * shape.heads + static_cast<int64_t>(kv_head) * group) * d;  // (group, d)
      float* acc = out + (t * shape.heads + static_cast<int64_t>(kv_head) * group) * d;           // (group, d)
      std::fill(acc, acc + static_cast<int64_t>(group) * d, 0.f);
      std::fill(running_max.begin(), running_max.end(), -std::numeric_limits<float>::infinity());
      std::fill(running_sum.begin(), running_sum.end(), 0.f);

      for (int64_t first = 0; first < keys; first += kv.block_size) {
        const int64_t block = kv.block_table[first / kv.block_size];
        const int count = static_cast<int>(std::min<int64_t>(kv.block_size, keys - first));
        const float* k_rows = kv.k_pool + (block * kv.block_size * kv.kv_heads + kv_head) * d;
        const float* v_rows = kv.v_pool + (block * kv.block_size * kv.kv_heads + kv_head) * d;
        const int64_t row_stride = static_cast<int64_t>(kv.kv_heads) * d;
        for (int g = 0; g < group; ++g) {
          const float* query = queries + static_cast<int64_t>(g) * d;
          float* s = scores.data() + static_cast<int64_t>(g) * kv.block_size;
          float block_max = -std::numeric_limits<float>::infinity();
          for (int j = 0; j < count; ++j) {
            const float* key = k_rows + j * row_stride;
            float dot = 0.f;
#pragma omp simd reduction(+ : dot)
            for (int c = 0; c < d; ++c) dot += query[c] * key[c];
            s[j] = dot * shape.scale;
            block_max = std::max(block_max, s[j]);
          }
          const float new_max = std::max(running_max[g], block_max);
          const float rescale = std::exp(running_max[g] - new_max);
          float* o = acc + static_cast<int64_t>(g) * d;
          running_sum[g] *= rescale;
#pragma omp simd
          for (int c = 0; c < d; ++c) o[c] *= rescale;
          for (int j = 0; j < count; ++j) {
            const float p = std::exp(s[j] - new_max);
            running_sum[g] += p;
            const float* value = v_rows + j * row_stride;
#pragma omp simd
            for (int c = 0; c < d; ++c) o[c] += p * value[c];
          }
          running_max[g] = new_max;
        }
      }
      for (int g = 0; g < group; ++g) {
        float* o = acc + static_cast<int64_t>(g) * d;
        if (keys == 0) {  // no visible key: out stays 0
          if (lse != nullptr) lse[t * shape.heads + kv_head * group + g] = -INFINITY;
          continue;
        }
        const float inv_sum = 1.f / running_sum[g];
        for (int c = 0; c < d; ++c) o[c] *= inv_sum;
        if (lse != nullptr) lse[t * shape.heads + kv_head * group + g] = running_max[g] + std::log(running_sum[g]);
      }
    }
  }
}

}  // namespace ixc::kernels

namespace ixc::kernels {

void MergeAttention(float* out_a, float* lse_a, const float* out_b, const float* lse_b, int64_t rows, int heads,
                    int head_dim) {
#pragma omp parallel for schedule(static) if (rows * heads > 64)
  for (int64_t i = 0; i < rows * heads; ++i) {
    const float a = lse_a[i], b = lse_b[i];
    if (b == -INFINITY) continue;
    const float m = std::max(a, b);
    const float wa = a == -INFINITY ? 0.f : std::exp(a - m), wb = std::exp(b - m);
    const float inv = 1.f / (wa + wb);
    float* o = out_a + i * head_dim;
    const float* ob = out_b + i * head_dim;
#pragma omp simd
    for (int c = 0; c < head_dim; ++c) o[c] = (wa * o[c] + wb * ob[c]) * inv;
    lse_a[i] = m + std::log(wa + wb);
  }
}

}  // namespace ixc::kernels
