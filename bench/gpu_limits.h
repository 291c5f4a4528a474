// File: bench/gpu_limits.h
//
// The GPU's limits, the denominators of every GPU benchmark: the datasheet figures the goals use (H100 SXM:
// 3.35 TB/s, 989 dense bf16 TFLOP/s; H200: 4.8 TB/s, the same TFLOP/s) and this card's measured ceilings (a large
// device-to-device copy counting bytes read plus written; a large bf16 GEMM through cuBLASLt), a timer on CUDA
// events, and device buffers of seeded random values.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ixc::bench {

struct GpuLimits {
  std::string name;
  double datasheet_tbytes = 3.35;   // TB/s
  double datasheet_tflops = 989;    // dense bf16
  double measured_tbytes = 0;
  double measured_tflops = 0;
  int sms = 0;
};

// Median milliseconds of `repeats` runs of `work` on `stream`, after `warmup` runs, timed with CUDA events.
double MedianMs(const std::function<void()>& work, cudaStream_t stream, int warmup = 3, int repeats = 10);

// The same with the L2 cache emptied of `work`'s data before each run (a 256 MiB buffer read outside the timed span,
// so the L2 holds clean lines: bench/l2_scrub.h): for work whose bytes would fit in L2 (a 7B layer's weights, 8K
// tokens of one KV head group), which in a model step arrive from HBM, as the bandwidth figures assume.
double MedianMsFromHbm(const std::function<void()>& work, cudaStream_t stream, int warmup = 3, int repeats = 10);

GpuLimits MeasureGpuLimits();

// `bytes` of device memory holding seeded uniform bf16 values in [-0.5, 0.5); exits with a message where the device
// is out of memory (benchmarks only).
void* DeviceRandom(int64_t bytes, uint64_t seed);
// Device int32s from the host (free with cudaFree).
int32_t* DeviceInts(const std::vector<int32_t>& values);

}  // namespace ixc::bench
