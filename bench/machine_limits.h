// File: bench/machine_limits.h
//
// This machine's measured limits, the denominators of every CPU benchmark: f32 GEMM peak (OpenBLAS sgemm on a large
// square problem, all threads) and memory read bandwidth (a streaming sum over a buffer far larger than the caches).
#pragma once

#include <chrono>

namespace ixc::bench {

// Wall seconds since `start`: the benchmarks' clock.
inline double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

struct MachineLimits {
  double sgemm_gflops = 0;   // GFLOP/s
  double read_gbytes = 0;    // GB/s
  int threads = 0;
};

MachineLimits MeasureMachineLimits();

}  // namespace ixc::bench
