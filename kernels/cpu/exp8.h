// e^x eight floats at a time, for the CPU code built for the AVX2 baseline (not for a file under another target
// pragma: these inline functions must stay the baseline's): the attention's softmax, and the log-softmax of a
// vocabulary's logits (beam search). A libm call per value cost more than the work around it.
#ifndef IXC_KERNELS_CPU_EXP8_H_
#define IXC_KERNELS_CPU_EXP8_H_

#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/lane_sum.h"

namespace ixc::kernels {

// e^x of 8 floats x <= 0 (values less their maximum), within 2 ulp of expf: x = n ln2 + r with n an integer and
// |r| <= ln2 / 2 (ln2 split in two, so that n ln2 is exact enough), e^r by its Taylor polynomial to r^7 / 7! (the
// rest is under 1e-8 relatively), 2^n put in the exponent bits. Below -87.3, -inf included, the answer is 0.
inline __m256 Exp8(__m256 x) {
  const __m256 lowest = _mm256_set1_ps(-87.33654f);  // ln(2^-126): the smallest normal float
  const __m256 underflow = _mm256_cmp_ps(x, lowest, _CMP_LT_OQ);
  x = _mm256_max_ps(x, lowest);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.f / 5040);
  for (const float c : {1.f / 720, 1.f / 120, 1.f / 24, 1.f / 6, 1.f / 2, 1.f, 1.f}) {
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
  }
  const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, _mm256_castsi256_ps(exponent)));
}

// The sum of e^(x[i] - shift) over i < n, every x[i] <= shift: four vectors of partial sums in f32, added in double
// at the end.
inline double SumExpShifted(const float* x, int64_t n, float shift) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256 sums[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int v = 0; v < 4; ++v) {
      sums[v] = _mm256_add_ps(sums[v], Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8 * v), s)));
    }
  }
  for (; i + 8 <= n; i += 8) sums[0] = _mm256_add_ps(sums[0], Exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s)));
  double total = 0;
  for (const __m256 v : sums) total += LaneSum(v);
  if (i < n) {
    alignas(32) float tail[8];
    for (int j = 0; j < 8; ++j) tail[j] = i + j < n ? x[i + j] - shift : -1e30f;  // e^-1e30 is 0
    total += LaneSum(Exp8(_mm256_load_ps(tail)));
  }
  return total;
}

}  // namespace ixc::kernels

#endif  // IXC_KERNELS_CPU_EXP8_H_
