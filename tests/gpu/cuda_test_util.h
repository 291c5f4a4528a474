// File: tests/gpu/cuda_test_util.h
//
// What the GPU tests share: a fixture that skips with the runtime's reason where no GPU is usable, and a device
// copy of a host vector.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

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

}  // namespace ixc::testing
