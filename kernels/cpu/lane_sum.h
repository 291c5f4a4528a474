// The sum of a vector's eight lanes, for the CPU kernels built for the AVX2 baseline (not for a file under another
// target pragma: this inline function must stay the baseline's).
#ifndef IXC_KERNELS_CPU_LANE_SUM_H_
#define IXC_KERNELS_CPU_LANE_SUM_H_

#include <immintrin.h>

namespace ixc::kernels {

inline float LaneSum(__m256 v) {
  const __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
  return _mm_cvtss_f32(_mm_add_ss(sum2, _mm_shuffle_ps(sum2, sum2, 1)));
}

}  // namespace ixc::kernels

#endif  // IXC_KERNELS_CPU_LANE_SUM_H_
