// CUDA elementwise ops against the reference ops on awkward sizes, in f32 and bf16. Skipped without a GPU.
#include <algorithm>
#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"
#include "kernels/cuda/elementwise.h"
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

Tolerance For(DType dtype) { return dtype == DType::kF32 ? Tolerance{1e-6f, 2e-6f} : Tolerance{1e-3f, 8e-3f}; }

// Sizes that are a multiple of 4 take one wide access per 4 elements; the others one access per element.
TEST_F(CudaTest, SwiGluMatchesReference) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (const int64_t n : {100003, 100000}) {
      auto gate = RandomTyped(dtype, n, 1, 4.f), up = RandomTyped(dtype, n, 2);
      std::vector<float> expected(n);
      reference::SwiGlu(gate.as_f32.data(), up.as_f32.data(), expected.data(), n);
      DeviceBuffer<uint8_t> d_gate(gate.bytes), d_up(up.bytes);
      ASSERT_TRUE(LaunchSwiGlu(dtype, d_gate.data, d_up.data, d_gate.data, n, nullptr).ok());  // in place
      EXPECT_TRUE(AllClose(Widen(dtype, d_gate.Read()), expected, For(dtype))) << DTypeName(dtype) << " n " << n;
    }
  }
}

TEST_F(CudaTest, GeluAndQuickGeluMatchReference) {
  struct Shape {
    int64_t rows, cols;
  };
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    for (const Shape s : {Shape{3, 1367}, Shape{4, 1024}}) {  // one element per access, and four
      const int64_t n = s.rows * s.cols;
      auto x = RandomTyped(dtype, n, 3, 3.f);
      const std::vector<float> bias = RandomFloats(s.cols, 4);
      DeviceBuffer<uint8_t> d_x(x.bytes), d_out(x.bytes.size());
      DeviceBuffer<float> d_bias(bias);
      for (const bool with_bias : {false, true}) {
        std::vector<float> input = x.as_f32, gelu(n), quick(n);
        if (with_bias) {
          for (int64_t i = 0; i < n; ++i) input[i] += bias[i % s.cols];
        }
        reference::Gelu(input.data(), gelu.data(), n);
        reference::QuickGelu(input.data(), quick.data(), n);
        const float* b = with_bias ? d_bias.data : nullptr;
        const std::string what = absl::StrCat(DTypeName(dtype), " ", s.rows, " x ", s.cols, with_bias ? " bias" : "");
        ASSERT_TRUE(LaunchGelu(dtype, d_x.data, b, d_out.data, s.rows, s.cols, nullptr).ok());
        EXPECT_TRUE(AllClose(Widen(dtype, d_out.Read()), gelu, For(dtype))) << what;
        ASSERT_TRUE(LaunchQuickGelu(dtype, d_x.data, b, d_out.data, s.rows, s.cols, nullptr).ok());
        EXPECT_TRUE(AllClose(Widen(dtype, d_out.Read()), quick, For(dtype))) << what;
      }
    }
  }
}

TEST_F(CudaTest, EmbeddingGatherMatchesReferenceAndChecksIds) {
  for (DType dtype : {DType::kF32, DType::kBF16, DType::kF16}) {
    for (const int64_t hidden : {96, 98}) {
      auto table = RandomTyped(dtype, 300 * hidden, 4);
      const TensorView view(table.bytes.data(), dtype, {300, hidden});
      const std::vector<int32_t> ids = {0, 299, 17, 17, 5};
      std::vector<float> expected(ids.size() * hidden);
      ASSERT_TRUE(reference::EmbeddingGather(view, ids.data(), ids.size(), expected.data()).ok());
      DeviceBuffer<uint8_t> d_table(table.bytes);
      DeviceBuffer<int32_t> d_ids(ids);
      DeviceBuffer<float> d_out(expected.size());
      ASSERT_TRUE(LaunchEmbeddingGather(d_table.data, dtype, 300, hidden, d_ids.data, ids.data(), ids.size(),
                                        d_out.data, nullptr)
                      .ok());
      EXPECT_EQ(d_out.Read(), expected) << DTypeName(dtype) << " hidden " << hidden;
      const std::vector<int32_t> bad = {3, 300};
      EXPECT_EQ(LaunchEmbeddingGather(d_table.data, dtype, 300, hidden, d_ids.data, bad.data(), bad.size(), d_out.data,
                                      nullptr)
                    .code(),
                absl::StatusCode::kOutOfRange);
    }
  }
}

TEST_F(CudaTest, AddBiasAndZeroRows) {
  for (const int64_t cols : {131, 132}) {
    const int64_t rows = 7;
    const auto y = RandomFloats(rows * cols, 5), bias = RandomFloats(cols, 6);
    const std::vector<uint8_t> mask = {1, 0, 0, 1, 1, 0, 1};
    std::vector<float> expected(y);
    for (int64_t i = 0; i < rows * cols; ++i) expected[i] = mask[i / cols] ? y[i] + bias[i % cols] : 0.f;
    DeviceBuffer<float> d_y(y), d_bias(bias);
    DeviceBuffer<uint8_t> d_mask(mask);
    ASSERT_TRUE(LaunchAddBias(DType::kF32, d_y.data, d_bias.data, rows, cols, nullptr).ok());
    ASSERT_TRUE(LaunchZeroRows(DType::kF32, d_y.data, d_mask.data, rows, cols, nullptr).ok());
    EXPECT_TRUE(AllClose(d_y.Read(), expected, {1e-6f, 1e-6f})) << "cols " << cols;
  }
  // bf16, with more rows than a grid has in y (65535): the rows loop past it.
  const int64_t rows = 70000, cols = 8;
  auto y = RandomTyped(DType::kBF16, rows * cols, 7);
  const auto bias = RandomFloats(cols, 8);
  std::vector<float> expected(rows * cols);
  for (int64_t i = 0; i < rows * cols; ++i) expected[i] = y.as_f32[i] + bias[i % cols];
  DeviceBuffer<uint8_t> d_y(y.bytes);
  DeviceBuffer<float> d_bias(bias);
  ASSERT_TRUE(LaunchAddBias(DType::kBF16, d_y.data, d_bias.data, rows, cols, nullptr).ok());
  EXPECT_TRUE(AllClose(Widen(DType::kBF16, d_y.Read()), expected, {1e-2f, 8e-3f}));
}

TEST_F(CudaTest, FillUniformIsSeededAndInRange) {
  const int64_t n = 1 << 20;
  DeviceBuffer<float> a(n, NAN), b(n, NAN), c(n, NAN);
  ASSERT_TRUE(LaunchFillUniform(DType::kF32, a.data, n, 7, 0.5f, nullptr).ok());
  ASSERT_TRUE(LaunchFillUniform(DType::kF32, b.data, n, 7, 0.5f, nullptr).ok());
  ASSERT_TRUE(LaunchFillUniform(DType::kF32, c.data, n, 8, 0.5f, nullptr).ok());
  const auto va = a.Read();
  EXPECT_EQ(va, b.Read());
  EXPECT_NE(va, c.Read());
  double mean = 0;
  for (float v : va) {
    ASSERT_TRUE(v >= -0.5f && v < 0.5f) << v;
    mean += v / n;
  }
  EXPECT_NEAR(mean, 0.0, 2e-3);
}

}  // namespace
}  // namespace ixc::kernels::cuda
