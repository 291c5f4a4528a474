// cuBLASLt linear layers against reference::Linear: bf16 and f16 inputs, f32 and 16-bit outputs, accumulation,
// awkward shapes (one row, odd sizes, LoRA ranks), and the plan cache. Skipped without a GPU.
#include "kernels/cuda/gemm.h"

#include <cmath>

#include "kernels/ops.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/test_util.h"

namespace ixc::kernels::cuda {
namespace {

using ixc::testing::AllClose;
using ixc::testing::CudaTest;
using ixc::testing::DeviceBuffer;
using ixc::testing::RandomTyped;
using ixc::testing::Widen;

struct Shape {
  int64_t m, n, k;
};

TEST_F(CudaTest, LinearMatchesReference) {
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  for (DType in : {DType::kBF16, DType::kF16}) {
    for (DType out : {DType::kF32, in}) {
      for (Shape s : {Shape{1, 4096, 512}, Shape{7, 300, 136}, Shape{129, 512, 1024}, Shape{33, 16, 768},
                      Shape{65, 1000, 8}}) {
        auto x = RandomTyped(in, s.m * s.k, 1), w = RandomTyped(in, s.n * s.k, 2, 0.05f);
        auto previous = RandomTyped(out, s.m * s.n, 3);
        for (bool accumulate : {false, true}) {
          std::vector<float> expected = previous.as_f32;
          reference::Linear(x.as_f32.data(), TensorView(w.bytes.data(), in, {s.n, s.k}), expected.data(), s.m,
                            accumulate);
          DeviceBuffer<uint8_t> d_x(x.bytes), d_w(w.bytes), d_out(previous.bytes);
          ASSERT_TRUE(
              (*gemm)->Linear({d_x.data, d_w.data, d_out.data, s.m, s.n, s.k, in, out, accumulate}, nullptr).ok());
          // Exact products, f32 sums in another order: ~sqrt(k) 2^-24 relative; a 16-bit output adds its rounding.
          const ixc::testing::Tolerance tolerance =
              out == DType::kF32 ? ixc::testing::Tolerance{2e-4f, 1e-4f} : ixc::testing::Tolerance{2e-2f, 1e-2f};
          EXPECT_TRUE(AllClose(Widen(out, d_out.Read()), expected, tolerance))
              << DTypeName(in) << "->" << DTypeName(out) << " " << s.m << "x" << s.n << "x" << s.k
              << (accumulate ? " accumulate" : "");
        }
      }
    }
  }
  // One plan per (shape, types, accumulate), chosen once.
  const int64_t plans = (*gemm)->cached_algorithms();
  DeviceBuffer<uint8_t> x(7 * 136 * 2), w(300 * 136 * 2), out(7 * 300 * 4);
  ASSERT_TRUE((*gemm)->Linear({x.data, w.data, out.data, 7, 300, 136, DType::kBF16, DType::kF32}, nullptr).ok());
  EXPECT_EQ((*gemm)->cached_algorithms(), plans);
}

TEST_F(CudaTest, LinearRejectsF32InputsAndMixedOutputs) {
  auto gemm = Gemm::Create();
  ASSERT_TRUE(gemm.ok()) << gemm.status();
  EXPECT_EQ((*gemm)->Linear({nullptr, nullptr, nullptr, 2, 2, 2, DType::kF32, DType::kF32}, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*gemm)->Linear({nullptr, nullptr, nullptr, 2, 2, 2, DType::kBF16, DType::kF16}, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ixc::kernels::cuda
