// The decode GEMV on AVX2 and FMA (x86-64-v3, the build's baseline): kernels/cpu/gemv.h.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/cpu/gemv.h"
#include "kernels/cpu/lane_sum.h"
#include "kernels/cpu/gemv_kernel.h"

namespace ixc::kernels {
namespace {

struct Avx2 {
  using V = __m256;
  static constexpr int kLanes = 8;
  static constexpr int kRowsPerPass = 2;  // activation rows whose accumulators the 16 registers hold
  static V Zero() { return _mm256_setzero_ps(); }
  static V LoadF(const float* p) { return _mm256_loadu_ps(p); }
  static V Fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V Add(V a, V b) { return _mm256_add_ps(a, b); }
  static float Sum(V v) { return LaneSum(v); }
  template <DType kDType, typename Element>
  static void LoadPair(const Element* p, V& first, V& second) {
    if constexpr (kDType == DType::kF32) {
      first = _mm256_loadu_ps(p);
      second = _mm256_loadu_ps(p + kLanes);
    } else if constexpr (kDType == DType::kF16) {
      first = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      second = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + kLanes)));
    } else {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
      first = _mm256_castsi256_ps(_mm256_slli_epi32(raw, 16));
      second = _mm256_castsi256_ps(_mm256_and_si256(raw, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
    }
  }
};

}  // namespace

void GemvAvx2(const float* x, TensorView w, float* out, int64_t m, bool accumulate) {
  GemvFor<Avx2>(x, w, out, m, accumulate);
}

}  // namespace ixc::kernels
