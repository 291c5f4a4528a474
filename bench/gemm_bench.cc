// GEMM throughput of kernels::Linear at the shapes of the `small` benchmark model and of IXC-2.5, with f32 and
// bf16 weights, next to this machine's measured sgemm peak (compute-bound shapes) and read bandwidth (decode shapes).
//   build/cpu/bench/gemm_bench
#include <chrono>
#include <cstdio>
#include <vector>

#include "bench/machine_limits.h"
#include "kernels/ops.h"
#include "tests/test_util.h"

namespace ixc::bench {
namespace {

struct Shape {
  const char* name;
  int64_t n, k;
};

void Run(const MachineLimits& limits) {
  const Shape shapes[] = {{"small wqkv", 1280, 768}, {"small w1", 2048, 768}, {"small w2", 768, 2048},
                          {"small output", 92544, 768}, {"7B w1", 14336, 4096}};
  std::printf("%-14s %-5s %6s %12s %10s %14s\n", "shape", "dtype", "M", "GFLOP/s", "GB/s", "of limit");
  for (const Shape& s : shapes) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      auto weights = testing::RandomTyped(dtype, s.n * s.k, 1, 0.02f);
      const TensorView w(weights.bytes.data(), dtype, {s.n, s.k});
      for (int64_t m : {1, 512}) {
        if (m == 512 && s.n * s.k > 20'000'000) continue;  // the big shapes only at decode size
        std::vector<float> x(m * s.k, 0.1f), out(m * s.n);
        kernels::Linear(x.data(), w, out.data(), m, false);  // warm up
        int repeats = 0;
        const auto start = std::chrono::steady_clock::now();
        double seconds = 0;
        while (seconds < 0.5) {
          kernels::Linear(x.data(), w, out.data(), m, false);
          ++repeats;
          seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        }
        seconds /= repeats;
        const double gflops = 2.0 * m * s.n * s.k / seconds / 1e9;
        const double gbytes = static_cast<double>(weights.bytes.size()) / seconds / 1e9;
        // M=1 is bound by reading the weights; M=512 by arithmetic.
        const double share = m == 1 ? gbytes / limits.read_gbytes : gflops / limits.sgemm_gflops;
        std::printf("%-14s %-5s %6lld %12.1f %10.1f %8.0f%% of %s\n", s.name, DTypeName(dtype),
                    static_cast<long long>(m), gflops, gbytes, 100 * share, m == 1 ? "read BW" : "sgemm peak");
      }
    }
  }
}

}  // namespace
}  // namespace ixc::bench

int main() {
  const ixc::bench::MachineLimits limits = ixc::bench::MeasureMachineLimits();
  std::printf("machine: %d threads, measured sgemm peak %.1f GFLOP/s, memory read %.1f GB/s\n", limits.threads,
              limits.sgemm_gflops, limits.read_gbytes);
  ixc::bench::Run(limits);
}
