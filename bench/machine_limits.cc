#include "bench/machine_limits.h"

#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace ixc::bench {
namespace {

template <typename F>
double BestSeconds(int repeats, F&& f) {
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const auto start = std::chrono::steady_clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

}  // namespace

MachineLimits MeasureMachineLimits() {
  MachineLimits limits;
  limits.threads = omp_get_max_threads();
  const int n = 2048;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  const double gemm_seconds = BestSeconds(3, [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(), n);
  });
  limits.sgemm_gflops = 2.0 * n * n * n / gemm_seconds / 1e9;

  const int64_t floats = 256ll << 20;  // 1 GiB
  std::vector<float> buffer(floats, 1.f);
  float sink = 0;
  const double read_seconds = BestSeconds(3, [&] {
    float total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static)
    for (int64_t i = 0; i < floats; i += 16) {
      const __m256 x = _mm256_add_ps(_mm256_loadu_ps(&buffer[i]), _mm256_loadu_ps(&buffer[i + 8]));
      total += _mm256_cvtss_f32(x);
    }
    sink += total;
  });
  limits.read_gbytes = floats * 4.0 / read_seconds / 1e9 + (sink == -1 ? 1 : 0);
  return limits;
}

}  // namespace ixc::bench
