// The largest of n floats, eight lanes at a time in four independent chains (max's latency hidden), for the CPU
// kernels built for the AVX2 baseline (not for a file under another target pragma: this inline function must stay
// the baseline's). NaNs: not handled (logits and attention scores have none).
#ifndef IXC_KERNELS_CPU_MAX_OF_H_
#define IXC_KERNELS_CPU_MAX_OF_H_

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

namespace ixc::kernels {

// n >= 1.
inline float MaxOf(const float* x, int64_t n) {
  __m256 m0 = _mm256_set1_ps(x[0]), m1 = m0, m2 = m0, m3 = m0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
    m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
    m2 = _mm256_max_ps(m2, _mm256_loadu_ps(x + i + 16));
    m3 = _mm256_max_ps(m3, _mm256_loadu_ps(x + i + 24));
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
  float best = *std::max_element(lanes, lanes + 8);
  for (; i < n; ++i) best = std::max(best, x[i]);
  return best;
}

}  // namespace ixc::kernels

#endif  // IXC_KERNELS_CPU_MAX_OF_H_
