// kernels::Linear at the shapes of the demo and `small` benchmark models and of IXC-2.5, f32 and bf16 weights, decode
// (M=1), decode batches (M=4..64: where the GEMV gives way to sgemm, kernels/cpu/gemv.h) and prefill (M=512), with
// Google Benchmark. Each row reports GFLOP/s and weight GB/s, and `of_limit`: the share of
// this machine's measured read bandwidth (M=1, bound by reading weights) or sgemm peak (M=512, bound by arithmetic).
//   build/cpu/bench/gemm_bench [--benchmark_filter=bf16]
#include <benchmark/benchmark.h>

#include <cstdio>
#include <vector>

#include "bench/machine_limits.h"
#include "kernels/cpu/blas_kernels.h"
#include "kernels/ops.h"
#include "tests/test_util.h"

namespace ixc::bench {
namespace {

MachineLimits& Limits() {
  static MachineLimits limits = MeasureMachineLimits();
  return limits;
}

void BM_Linear(benchmark::State& state, DType dtype, int64_t n, int64_t k) {
  const int64_t m = state.range(0);
  auto weights = testing::RandomTyped(dtype, n * k, 1, 0.02f);
  const TensorView w(weights.bytes.data(), dtype, {n, k});
  std::vector<float> x(m * k, 0.1f), out(m * n);
  for (auto _ : state) {
    kernels::Linear(x.data(), w, out.data(), m, /*accumulate=*/false);
    benchmark::DoNotOptimize(out.data());
  }
  const double flops = 2.0 * m * n * k, bytes = static_cast<double>(weights.bytes.size());
  state.counters["GFLOP"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GB"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["of_limit_pct"] = 0;  // filled in by LimitReporter, once the rate is known
  state.SetLabel(m == 1 ? "limit: read bandwidth" : "limit: sgemm peak");
}

void Register() {
  struct Shape {
    const char* name;
    int64_t n, k;
    bool prefill;
  };
  const Shape shapes[] = {{"small_wqkv", 1280, 768, true},   {"small_w1", 2048, 768, true},
                          {"small_w2", 768, 2048, true},     {"small_output", 92544, 768, false}, {"demo_output", 92544, 256, false}, {"demo_w1", 704, 256, false},
                          {"ixc25_w1", 14336, 4096, false},  {"ixc25_wqkv", 6144, 4096, false}};
  for (const Shape& s : shapes) {
    for (DType dtype : {DType::kF32, DType::kBF16}) {
      auto* b = benchmark::RegisterBenchmark((std::string(s.name) + "/" + DTypeName(dtype)).c_str(), BM_Linear, dtype,
                                             s.n, s.k);
      b->ArgName("M")->Arg(1)->Arg(4)->Arg(8)->Arg(16)->Arg(32)->Arg(64)->UseRealTime()->MinTime(0.3);
      if (s.prefill) b->Arg(512);
    }
  }
}

// Reports each run's share of the machine's limit next to Google Benchmark's own columns.
class LimitReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    std::vector<Run> with_share = runs;
    for (Run& run : with_share) {
      // The rate counters are final here (per second of real time).
      const bool decode = run.report_label.find("read") != std::string::npos;
      run.counters["of_limit_pct"] = decode ? 100.0 * run.counters["GB"].value / Limits().read_gbytes
                                            : 100.0 * run.counters["GFLOP"].value / Limits().sgemm_gflops;
    }
    ConsoleReporter::ReportRuns(with_share);
  }
};

}  // namespace
}  // namespace ixc::bench

int main(int argc, char** argv) {
  ixc::kernels::RestartForBetterBlasKernels(argv);
  benchmark::Initialize(&argc, argv);
  const ixc::bench::MachineLimits& limits = ixc::bench::Limits();
  std::printf("machine: %d threads, measured sgemm peak %.1f GFLOP/s, memory read %.1f GB/s\n", limits.threads,
              limits.sgemm_gflops, limits.read_gbytes);
  ixc::bench::Register();
  ixc::bench::LimitReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
}
