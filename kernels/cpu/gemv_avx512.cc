// The decode GEMV on AVX-512F (kernels/cpu/gemv.h), compiled for it under a target pragma; linear.cc calls it only
// where the CPU has it.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/cpu/gemv.h"

#pragma GCC push_options
#pragma GCC target("avx512f")
// GCC 12 warns of its own intrinsics' deliberately undefined vectors (`__m512 __Y = __Y;`) under a target pragma.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include "kernels/cpu/gemv_kernel.h"

namespace ixc::kernels {
namespace {

struct Avx512 {
  using V = __m512;
  static constexpr int kLanes = 16;
  static constexpr int kRowsPerPass = 4;  // activation rows whose accumulators the 32 registers hold
  static V Zero() { return _mm512_setzero_ps(); }
  static V LoadF(const float* p) { return _mm512_loadu_ps(p); }
  static V Fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V Add(V a, V b) { return _mm512_add_ps(a, b); }
  static float Sum(V v) { return _mm512_reduce_add_ps(v); }
  template <DType kDType, typename Element>
  static void LoadPair(const Element* p, V& first, V& second) {
    if constexpr (kDType == DType::kF32) {
      first = _mm512_loadu_ps(p);
      second = _mm512_loadu_ps(p + kLanes);
    } else if constexpr (kDType == DType::kF16) {
      first = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
      second = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + kLanes)));
    } else {
      const __m512i raw = _mm512_loadu_si512(p);
      first = _mm512_castsi512_ps(_mm512_slli_epi32(raw, 16));
      second = _mm512_castsi512_ps(_mm512_and_si512(raw, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
    }
  }
};

}  // namespace

void GemvAvx512(const float* x, TensorView w, float* out, int64_t m, bool accumulate) {
  GemvFor<Avx512>(x, w, out, m, accumulate);
}

}  // namespace ixc::kernels

#pragma GCC diagnostic pop
#pragma GCC pop_options
