// CUDA RMSNorm, the fused residual add + RMSNorm and LayerNorm against the reference ops, on awkward row counts.
// Skipped without a GPU.
#include "kernels/cuda/norm.h"
#include "kernels/ops.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/test_util.h"

namespace ixc::kernels::cuda {
namespace {

using ixc::testing::AllClose;
using ixc::testing::CudaTest;
using ixc::testing::DeviceBuffer;
using ixc::testing::RandomFloats;
using ixc::testing::RandomTyped;
using ixc::testing::Tolerance;
using ixc::testing::Widen;

const std::pair<int64_t, int64_t> kShapes[] = {{1, 4096}, {19, 500}, {99, 1024}, {989, 128}};

TEST_F(CudaTest, RmsNormMatchesReference) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (auto [rows, hidden] : kShapes) {
      auto x = RandomTyped(dtype, rows * hidden, 1, 2.f);
      const auto weight = RandomFloats(hidden, 2);
      std::vector<float> expected(rows * hidden);
      reference::RmsNorm(x.as_f32.data(), weight.data(), expected.data(), rows, hidden, 1e-5f);
      DeviceBuffer<uint8_t> d_x(x.bytes), d_out(x.bytes.size());
      DeviceBuffer<float> d_weight(weight);
      ASSERT_TRUE(LaunchRmsNorm(dtype, d_out.data, d_x.data, d_weight.data, rows, hidden, 1e-5f, nullptr).ok());
      // 16-bit output: two roundings (after normalizing, after the weight) of 2^-8 (bf16) relative each.
      const Tolerance tolerance = dtype == DType::kF32 ? Tolerance{1e-5f, 1e-5f} : Tolerance{1e-2f, 1.6e-2f};
      EXPECT_TRUE(AllClose(Widen(dtype, d_out.Read()), expected, tolerance)) << DTypeName(dtype) << " " << rows;
    }
  }
}

TEST_F(CudaTest, AddRmsNormUpdatesTheResidualAndNormalizes) {
  for (DType out_dtype : {DType::kF32, DType::kBF16}) {
    for (auto [rows, hidden] : kShapes) {
      // With a delta and a bias; with the delta alone; with neither (the first layer's norm).
      for (int terms : {2, 1, 0}) {
        const auto residual = RandomFloats(rows * hidden, 3), delta = RandomFloats(rows * hidden, 4);
        const auto bias = RandomFloats(hidden, 5), weight = RandomFloats(hidden, 6);
        std::vector<float> sum(rows * hidden), expected(rows * hidden);
        for (int64_t i = 0; i < rows * hidden; ++i) {
          sum[i] = residual[i] + (terms >= 1 ? delta[i] : 0.f) + (terms == 2 ? bias[i % hidden] : 0.f);
        }
        reference::RmsNorm(sum.data(), weight.data(), expected.data(), rows, hidden, 1e-5f);
        DeviceBuffer<float> d_residual(residual), d_delta(delta), d_bias(bias), d_weight(weight);
        DeviceBuffer<uint8_t> d_out(rows * hidden * DTypeSize(out_dtype));
        ASSERT_TRUE(LaunchAddRmsNorm(d_residual.data, terms >= 1 ? d_delta.data : nullptr,
                                     terms == 2 ? d_bias.data : nullptr, d_weight.data, out_dtype, d_out.data, rows,
                                     hidden, 1e-5f, nullptr)
                        .ok());
        EXPECT_TRUE(AllClose(d_residual.Read(), sum, {1e-6f, 1e-6f}));
        const Tolerance tolerance = out_dtype == DType::kF32 ? Tolerance{1e-5f, 1e-5f} : Tolerance{1e-2f, 8e-3f};
        EXPECT_TRUE(AllClose(Widen(out_dtype, d_out.Read()), expected, tolerance))
            << rows << "x" << hidden << ", terms " << terms;
      }
    }
  }
}

TEST_F(CudaTest, LayerNormMatchesReference) {
  // Same dtype in and out, and the ViT's f32 residual in, 16-bit out.
  for (auto [dtype, out_dtype] : {std::pair{DType::kF32, DType::kF32}, std::pair{DType::kBF16, DType::kBF16},
                                  std::pair{DType::kF32, DType::kBF16}, std::pair{DType::kF32, DType::kF16}}) {
    for (auto [rows, hidden] : kShapes) {
      auto x = RandomTyped(dtype, rows * hidden, 7, 3.f);
      const auto weight = RandomFloats(hidden, 8), bias = RandomFloats(hidden, 9);
      std::vector<float> expected(rows * hidden);
      reference::LayerNorm(x.as_f32.data(), weight.data(), bias.data(), expected.data(), rows, hidden, 1e-5f);
      DeviceBuffer<uint8_t> d_x(x.bytes), d_out(rows * hidden * DTypeSize(out_dtype));
      DeviceBuffer<float> d_weight(weight), d_bias(bias);
      ASSERT_TRUE(LaunchLayerNorm(dtype, d_x.data, d_weight.data, d_bias.data, out_dtype, d_out.data, rows, hidden,
                                  1e-5f, nullptr)
                      .ok());
      const Tolerance tolerance = out_dtype == DType::kF32 ? Tolerance{2e-5f, 1e-5f} : Tolerance{2e-2f, 8e-3f};
      EXPECT_TRUE(AllClose(Widen(out_dtype, d_out.Read()), expected, tolerance))
          << DTypeName(dtype) << " -> " << DTypeName(out_dtype) << " " << rows;
      if (dtype == out_dtype) {  // in place, as the ViT's first LayerNorm runs
        ASSERT_TRUE(
            LaunchLayerNorm(dtype, d_x.data, d_weight.data, d_bias.data, dtype, d_x.data, rows, hidden, 1e-5f, nullptr)
                .ok());
        EXPECT_TRUE(AllClose(Widen(dtype, d_x.Read()), expected, tolerance)) << DTypeName(dtype) << " in place";
      }
    }
  }
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
