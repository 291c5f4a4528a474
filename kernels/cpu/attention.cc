// CPU paged attention: one pass over the keys with online softmax (running max m, running sum l, unnormalized
// output acc), a span of KV blocks (about kSpanKeys keys) at a time, so memory stays linear in tokens: no
// (tokens x tokens) score matrix.
//
// Work split: threads take (query token, KV head) pairs one at a time (a decode step has only kv_heads of them); the
// heads / kv_heads query heads that share a KV head are processed together, so each key and value row is read once
// per group rather than once per query head. Where the head dim is a multiple of 8, a block's scores are taken eight
// keys at a time and its values summed into an output held in registers (the compiler's loops were bound by one FMA
// chain per dot product and by storing the output after every key); its exponentials 8 at a time (Exp8): a libm call
// per score cost more than the score itself.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/exp8.h"
#include "kernels/cpu/lane_sum.h"
#include "kernels/cpu/max_of.h"
#include "kernels/ops.h"

namespace ixc::kernels {
namespace {

// Keys per online-softmax update (a span of whole KV blocks): the running maximum's rescale, its libm exp and the
// output's rescale are paid once per span instead of once per 16-key block.
constexpr int kSpanKeys = 256;

// s[j] = e^(s[j] - max) for j < count; returns their sum.
float ExpShifted(float* s, int count, float max) {
  const __m256 shift = _mm256_set1_ps(max);
  __m256 sum = _mm256_setzero_ps();
  int j = 0;
  for (; j + 8 <= count; j += 8) {
    const __m256 e = Exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), shift));
    _mm256_storeu_ps(s + j, e);
    sum = _mm256_add_ps(sum, e);
  }
  if (j == count) return LaneSum(sum);
  alignas(32) float tail[8];
  std::fill(tail, tail + 8, -std::numeric_limits<float>::infinity());
  std::copy(s + j, s + count, tail);
  const __m256 e = Exp8(_mm256_sub_ps(_mm256_load_ps(tail), shift));
  sum = _mm256_add_ps(sum, e);  // the padding's e^-inf is 0
  _mm256_store_ps(tail, e);
  std::copy(tail, tail + (count - j), s + j);
  return LaneSum(sum);
}

// The sums of eight vectors' lanes, as one vector: [sum(a[0]), ..., sum(a[7])].
inline __m256 LaneSums8(const __m256* a) {
  const __m256 sums0123 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 sums4567 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  // Each half of sums0123 holds a partial sum of a[0..3]; the same for sums4567.
  return _mm256_add_ps(_mm256_permute2f128_ps(sums0123, sums4567, 0x20),
                       _mm256_permute2f128_ps(sums0123, sums4567, 0x31));
}

// s[j] = scale * (query . key j) for a block's `count` keys, rows `row_stride` apart; d a multiple of 8. Eight keys
// at a time, each in an accumulator of its own (eight independent FMA chains), their lanes summed together.
void BlockScores(const float* query, const float* k_rows, int64_t row_stride, int count, int d, float scale,
                 float* s) {
  int j = 0;
  for (; j + 8 <= count; j += 8) {
    __m256 acc[8];
    for (__m256& a : acc) a = _mm256_setzero_ps();
    for (int c = 0; c < d; c += 8) {
      const __m256 q = _mm256_loadu_ps(query + c);
      for (int key = 0; key < 8; ++key) {
        acc[key] = _mm256_fmadd_ps(q, _mm256_loadu_ps(k_rows + (j + key) * row_stride + c), acc[key]);
      }
    }
    _mm256_storeu_ps(s + j, _mm256_mul_ps(LaneSums8(acc), _mm256_set1_ps(scale)));
  }
  for (; j < count; ++j) {
    __m256 acc = _mm256_setzero_ps();
    for (int c = 0; c < d; c += 8) {
      acc = _mm256_fmadd_ps(_mm256_loadu_ps(query + c), _mm256_loadu_ps(k_rows + j * row_stride + c), acc);
    }
    s[j] = LaneSum(acc) * scale;
  }
}

// o (kVectors x 8 values) += sum over the block's keys of p[j] * value j: o stays in registers across the keys.
template <int kVectors>
void AccumulateValues(const float* p, const float* v_rows, int64_t row_stride, int count, float* o) {
  __m256 acc[kVectors];
  for (int r = 0; r < kVectors; ++r) acc[r] = _mm256_loadu_ps(o + 8 * r);
  for (int j = 0; j < count; ++j) {
    const __m256 weight = _mm256_set1_ps(p[j]);
    const float* value = v_rows + j * row_stride;
    for (int r = 0; r < kVectors; ++r) acc[r] = _mm256_fmadd_ps(weight, _mm256_loadu_ps(value + 8 * r), acc[r]);
  }
  for (int r = 0; r < kVectors; ++r) _mm256_storeu_ps(o + 8 * r, acc[r]);
}

// o (d) += p . V over a block, d a multiple of 8, 64 values of o at a time.
void BlockValues(const float* p, const float* v_rows, int64_t row_stride, int count, int d, float* o) {
  using Accumulate = void (*)(const float*, const float*, int64_t, int, float*);
  static constexpr Accumulate kByVectors[] = {nullptr,
                                              AccumulateValues<1>,
                                              AccumulateValues<2>,
                                              AccumulateValues<3>,
                                              AccumulateValues<4>,
                                              AccumulateValues<5>,
                                              AccumulateValues<6>,
                                              AccumulateValues<7>,
                                              AccumulateValues<8>};
  for (int c = 0; c < d; c += 64) kByVectors[std::min(8, (d - c) / 8)](p, v_rows + c, row_stride, count, o + c);
}

}  // namespace

void PagedAttention(const float* q, const int32_t* positions, const PagedKv& kv, const AttentionShape& shape,
                    float* out, float* lse) {
  const int d = kv.head_dim;
  const int group = shape.heads / kv.kv_heads;
  const int64_t pairs = static_cast<int64_t>(shape.tokens) * kv.kv_heads;
  const int64_t row_stride = static_cast<int64_t>(kv.kv_heads) * d;
  const bool vectors = d % 8 == 0;  // the head dims of every InternLM2; others take the plain loops
  // The keys one softmax update covers: whole blocks, about kSpanKeys of them.
  const int span_capacity = std::max(1, kSpanKeys / kv.block_size) * kv.block_size;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(group) * span_capacity);  // (group, span_capacity)
    std::vector<float> running_max(group), running_sum(group);
#pragma omp for schedule(dynamic, 1)
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

      for (int64_t first = 0; first < keys; first += span_capacity) {
        const int span = static_cast<int>(std::min<int64_t>(span_capacity, keys - first));
        // The span's scores, block by block (first is a block's first key).
        for (int b = 0; b < span; b += kv.block_size) {
          const int64_t block = kv.block_table[(first + b) / kv.block_size];
          const int count = std::min(kv.block_size, span - b);
          const float* k_rows = kv.k_pool + (block * kv.block_size * kv.kv_heads + kv_head) * d;
          for (int g = 0; g < group; ++g) {
            const float* query = queries + static_cast<int64_t>(g) * d;
            float* s = scores.data() + static_cast<int64_t>(g) * span_capacity + b;
            if (vectors) {
              BlockScores(query, k_rows, row_stride, count, d, shape.scale, s);
            } else {
              for (int j = 0; j < count; ++j) {
                const float* key = k_rows + j * row_stride;
                float dot = 0.f;
#pragma omp simd reduction(+ : dot)
                for (int c = 0; c < d; ++c) dot += query[c] * key[c];
                s[j] = dot * shape.scale;
              }
            }
          }
        }
        // One online-softmax update for the span: its maximum, the rescale of what came before, its weights.
        for (int g = 0; g < group; ++g) {
          float* s = scores.data() + static_cast<int64_t>(g) * span_capacity;
          const float new_max = std::max(running_max[g], MaxOf(s, span));
          const float rescale = std::exp(running_max[g] - new_max);
          float* o = acc + static_cast<int64_t>(g) * d;
#pragma omp simd
          for (int c = 0; c < d; ++c) o[c] *= rescale;
          running_sum[g] = running_sum[g] * rescale + ExpShifted(s, span, new_max);
          running_max[g] = new_max;
        }
        for (int b = 0; b < span; b += kv.block_size) {
          const int64_t block = kv.block_table[(first + b) / kv.block_size];
          const int count = std::min(kv.block_size, span - b);
          const float* v_rows = kv.v_pool + (block * kv.block_size * kv.kv_heads + kv_head) * d;
          if (vectors) {
            for (int g = 0; g < group; ++g) {
              BlockValues(scores.data() + static_cast<int64_t>(g) * span_capacity + b, v_rows, row_stride, count, d,
                          acc + static_cast<int64_t>(g) * d);
            }
          } else {
            for (int j = 0; j < count; ++j) {  // each value row once for the whole group
              const float* value = v_rows + j * row_stride;
              for (int g = 0; g < group; ++g) {
                const float p = scores[static_cast<size_t>(g) * span_capacity + b + j];
                float* o = acc + static_cast<int64_t>(g) * d;
#pragma omp simd
                for (int c = 0; c < d; ++c) o[c] += p * value[c];
              }
            }
          }
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
