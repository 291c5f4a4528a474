// CUDA RMSNorm against the reference op, f32 and bf16 activations, awkward row counts. Skipped without a GPU.
#include <cuda_runtime.h>

#include "kernels/cuda/device.h"
#include "kernels/cuda/rms_norm.h"
#include "kernels/ops.h"
#include "tests/test_util.h"

namespace ixc::kernels::cuda {
namespace {

using ixc::testing::AllClose;
using ixc::testing::RandomFloats;
using ixc::testing::RandomTyped;

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto device = ProbeCudaDevice();
    if (!device.ok()) GTEST_SKIP() << device.status().message();
  }
};

TEST_F(CudaTest, RmsNormMatchesReference) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (auto [rows, hidden] : {std::pair<int64_t, int64_t>{1, 4096}, {19, 500}, {99, 1024}, {989, 128}}) {
      auto x = RandomTyped(dtype, rows * hidden, 1, 2.f);
      const auto weight = RandomFloats(hidden, 2);
      std::vector<float> expected(rows * hidden);
      reference::RmsNorm(x.as_f32.data(), weight.data(), expected.data(), rows, hidden, 1e-5f);

      void *d_x, *d_out;
      float* d_weight;
      ASSERT_EQ(cudaMalloc(&d_x, x.bytes.size()), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&d_out, x.bytes.size()), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&d_weight, hidden * 4), cudaSuccess);
      cudaMemcpy(d_x, x.bytes.data(), x.bytes.size(), cudaMemcpyHostToDevice);
      cudaMemcpy(d_weight, weight.data(), hidden * 4, cudaMemcpyHostToDevice);
      ASSERT_TRUE(LaunchRmsNorm(dtype, d_out, d_x, d_weight, rows, hidden, 1e-5f, nullptr).ok());
      std::vector<uint8_t> out_bytes(x.bytes.size());
      ASSERT_EQ(cudaMemcpy(out_bytes.data(), d_out, out_bytes.size(), cudaMemcpyDeviceToHost), cudaSuccess);
      cudaFree(d_x);
      cudaFree(d_out);
      cudaFree(d_weight);
      std::vector<float> actual(rows * hidden);
      ConvertToF32(dtype, out_bytes.data(), actual.data(), rows * hidden);
      // bf16 output: two roundings (after normalizing, after the weight) of 2^-8 relative each.
      const ixc::testing::Tolerance tolerance = dtype == DType::kF32 ? ixc::testing::Tolerance{1e-5f, 1e-5f} : ixc::testing::Tolerance{1e-2f, 1.6e-2f};
      EXPECT_TRUE(AllClose(actual, expected, tolerance)) << DTypeName(dtype) << " " << rows << "x" << hidden;
    }
  }
}

TEST_F(CudaTest, RmsNormRejectsBadShapes) {
  EXPECT_EQ(LaunchRmsNorm(DType::kF32, nullptr, nullptr, nullptr, 2, 30, 1e-5f, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CudaDeviceTest, ProbeSaysWhyWhenThereIsNoDevice) {
  auto device = ProbeCudaDevice();
  if (device.ok()) {
    EXPECT_GT(device->count, 0);
    EXPECT_FALSE(device->name.empty());
  } else {
    EXPECT_NE(device.status().message().find("no CUDA device is usable"), std::string::npos);
  }
}

}  // namespace
}  // namespace ixc::kernels::cuda
