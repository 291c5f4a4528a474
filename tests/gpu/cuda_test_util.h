// File: tests/gpu/cuda_test_util.h
//
// What the GPU tests share: a fixture that skips with the runtime's reason where no GPU is usable, a device copy of
// a host vector, where the golden checkpoints are, and the GPU-vs-CPU error measure of the model tests.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "kernels/cuda/device.h"

namespace ixc::testing {

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto device = kernels::cuda::ProbeCudaDevice();
    if (!device.ok()) GTEST_SKIP() << device.status().message();
  }
};

// Device copy of a host vector, freed with the object.
template <typename T>
struct DeviceBuffer {
  explicit DeviceBuffer(const std::vector<T>& host) : size(host.size()) {
    EXPECT_EQ(cudaMalloc(&data, std::max<size_t>(1, host.size()) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  explicit DeviceBuffer(size_t n, T fill = T{}) : DeviceBuffer(std::vector<T>(n, fill)) {}
  ~DeviceBuffer() { cudaFree(data); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  std::vector<T> Read() const {
    std::vector<T> host(size);
    EXPECT_EQ(cudaMemcpy(host.data(), data, size * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
  T* data = nullptr;
  size_t size;
};

// bf16/f16 bytes -> f32.
inline std::vector<float> Widen(DType dtype, const std::vector<uint8_t>& bytes) {
  std::vector<float> values(bytes.size() / DTypeSize(dtype));
  ConvertToF32(dtype, bytes.data(), values.data(), values.size());
  return values;
}

#ifdef IXC_GOLDEN_MODELS_DIR
// The golden checkpoints (tests/make_golden_models.py): $IXC_GOLDEN_MODELS (tests/gpu/run.sh sets it), else the
// build's.
inline std::string GoldenModelsDir() {
  const char* env = std::getenv("IXC_GOLDEN_MODELS");
  return env != nullptr ? env : IXC_GOLDEN_MODELS_DIR;
}
#endif

// max |gpu - cpu| over max |cpu|: the GPU's error relative to the values' range (bf16 activations on the GPU, f32
// on the CPU).
inline double RelativeError(const std::vector<float>& gpu, const std::vector<float>& cpu) {
  EXPECT_EQ(gpu.size(), cpu.size());
  double worst = 0, range = 1e-6;
  for (size_t i = 0; i < cpu.size() && i < gpu.size(); ++i) {
    worst = std::max(worst, std::fabs(static_cast<double>(gpu[i]) - cpu[i]));
    range = std::max(range, std::fabs(static_cast<double>(cpu[i])));
  }
  return worst / range;
}

}  // namespace ixc::testing
