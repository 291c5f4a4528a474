#include "bench/gpu_limits.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "bench/l2_scrub.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"

namespace ixc::bench {

namespace {

double MedianMsAfter(const std::function<void()>& before_each, const std::function<void()>& work,
                     cudaStream_t stream, int warmup, int repeats) {
  for (int i = 0; i < warmup; ++i) work();
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<float> times;
  for (int i = 0; i < repeats; ++i) {
    before_each();
    cudaEventRecord(start, stream);
    work();
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

double MedianMs(const std::function<void()>& work, cudaStream_t stream, int warmup, int repeats) {
  return MedianMsAfter([] {}, work, stream, warmup, repeats);
}

double MedianMsFromHbm(const std::function<void()>& work, cudaStream_t stream, int warmup, int repeats) {
  constexpr size_t kScrubBytes = size_t{256} << 20;  // several times any GPU's L2 (H100 50 MB, H200 60 MB)
  void* scrub = nullptr;
  uint32_t* sink = nullptr;
  if (cudaMalloc(&scrub, kScrubBytes) != cudaSuccess || cudaMalloc(&sink, sizeof(uint32_t)) != cudaSuccess) {
    std::fprintf(stderr, "cudaMalloc of the L2 scrub buffer failed\n");
    std::exit(1);
  }
  cudaMemsetAsync(scrub, 0, kScrubBytes, stream);  // its dirty lines leave the L2 in the first scrub, untimed
  const double ms =
      MedianMsAfter([&] { (void)LaunchReadAll(scrub, kScrubBytes, sink, stream); }, work, stream, warmup, repeats);
  cudaFree(scrub);
  cudaFree(sink);
  return ms;
}

void* DeviceRandom(int64_t bytes, uint64_t seed) {
  void* p = nullptr;
  if (cudaMalloc(&p, bytes) != cudaSuccess) {
    std::fprintf(stderr, "cudaMalloc of %lld bytes failed\n", static_cast<long long>(bytes));
    std::exit(1);
  }
  (void)kernels::cuda::LaunchFillUniform(DType::kBF16, p, bytes / 2, seed, 0.5f, nullptr);
  return p;
}

int32_t* DeviceInts(const std::vector<int32_t>& values) {
  int32_t* p = nullptr;
  cudaMalloc(&p, values.size() * 4);
  cudaMemcpy(p, values.data(), values.size() * 4, cudaMemcpyHostToDevice);
  return p;
}

GpuLimits MeasureGpuLimits() {
  GpuLimits limits;
  cudaDeviceProp properties{};
  cudaGetDeviceProperties(&properties, 0);
  limits.name = properties.name;
  limits.sms = properties.multiProcessorCount;
  if (limits.name.find("H200") != std::string::npos) limits.datasheet_tbytes = 4.8;

  const size_t bytes = size_t{4} << 30;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess) {
    std::fprintf(stderr, "cannot allocate the copy buffers\n");
    std::exit(1);
  }
  (void)kernels::cuda::LaunchFillUniform(DType::kBF16, a, bytes / 2, 1, 1.f, nullptr);
  const double copy_ms = MedianMs([&] { cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, nullptr); }, nullptr);
  limits.measured_tbytes = 2.0 * bytes / (copy_ms * 1e-3) / 1e12;

  const int64_t n = 8192;  // random data: zeros run faster than real data
  auto gemm = kernels::cuda::Gemm::Create();
  (void)kernels::cuda::LaunchFillUniform(DType::kBF16, b, n * n, 2, 1.f, nullptr);
  void* c = static_cast<char*>(a) + n * n * 2;
  const kernels::cuda::LinearArgs args{a, b, c, n, n, n, DType::kBF16, DType::kBF16};
  const double gemm_ms = MedianMs([&] { (void)(*gemm)->Linear(args, nullptr); }, nullptr);
  limits.measured_tflops = 2.0 * n * n * n / (gemm_ms * 1e-3) / 1e12;
  cudaFree(a);
  cudaFree(b);
  std::printf("GPU %s, %d SMs. Limits: datasheet %.2f TB/s and %.0f bf16 TFLOP/s; measured here %.2f TB/s "
              "(4 GiB device copy, read + write) and %.0f TFLOP/s (8192^3 bf16 cuBLASLt, random data)\n",
              limits.name.c_str(), limits.sms, limits.datasheet_tbytes, limits.datasheet_tflops,
              limits.measured_tbytes, limits.measured_tflops);
  return limits;
}

}  // namespace ixc::bench
