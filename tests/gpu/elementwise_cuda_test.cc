// CUDA SwiGLU, RoPE and embedding gather against the reference ops, on awkward sizes. Skipped without a GPU.
#include <cuda_runtime.h>

#include <numeric>

#include "kernels/cuda/device.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/ops.h"
#include "tests/test_util.h"

namespace ixc::kernels::cuda {
namespace {

using ixc::testing::AllClose;
using ixc::testing::RandomFloats;
using ixc::testing::RandomTyped;

// Device copy of a host vector, freed with the object.
template <typename T>
struct DeviceBuffer {
  explicit DeviceBuffer(const std::vector<T>& host) : size(host.size()) {
    cudaMalloc(&data, host.size() * sizeof(T));
    cudaMemcpy(data, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  ~DeviceBuffer() { cudaFree(data); }
  std::vector<T> Read() const {
    std::vector<T> host(size);
    cudaMemcpy(host.data(), data, size * sizeof(T), cudaMemcpyDeviceToHost);
    return host;
  }
  T* data = nullptr;
  size_t size;
};

class CudaElementwiseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto device = ProbeCudaDevice();
    if (!device.ok()) GTEST_SKIP() << device.status().message();
  }
};

TEST_F(CudaElementwiseTest, SwiGluMatchesReference) {
  const auto gate = RandomFloats(100003, 1, 4.f), up = RandomFloats(100003, 2);
  std::vector<float> expected(gate.size());
  reference::SwiGlu(gate.data(), up.data(), expected.data(), gate.size());
  DeviceBuffer<float> d_gate(gate), d_up(up), d_out(std::vector<float>(gate.size()));
  ASSERT_TRUE(LaunchSwiGlu(d_gate.data, d_up.data, d_out.data, gate.size(), nullptr).ok());
  EXPECT_TRUE(AllClose(d_out.Read(), expected, {1e-6f, 1e-5f}));
}

TEST_F(CudaElementwiseTest, RopeMatchesReference) {
  for (float base : {10000.f, 1e6f}) {
    const int64_t tokens = 37;
    const int heads = 5, head_dim = 128;
    std::vector<int32_t> positions(tokens);
    std::iota(positions.begin(), positions.end(), 250);
    auto expected = RandomFloats(tokens * heads * head_dim, 3);
    DeviceBuffer<float> d_x(expected);
    DeviceBuffer<int32_t> d_positions(positions);
    const RopeParams rope{head_dim, base, 1.f};
    reference::ApplyRope(expected.data(), positions.data(), tokens, heads, rope);
    ASSERT_TRUE(LaunchApplyRope(d_x.data, d_positions.data, tokens, heads, rope, nullptr).ok());
    // Angles up to ~290 rad: a last-bit difference in inv_freq moves them by ~1e-4.
    EXPECT_TRUE(AllClose(d_x.Read(), expected, {2e-4f, 1e-4f})) << base;
  }
}

TEST_F(CudaElementwiseTest, EmbeddingGatherMatchesReferenceAndChecksIds) {
  auto table = RandomTyped(DType::kBF16, 300 * 96, 4);
  const TensorView view(table.bytes.data(), DType::kBF16, {300, 96});
  const std::vector<int32_t> ids = {0, 299, 17, 17, 5};
  std::vector<float> expected(ids.size() * 96);
  ASSERT_TRUE(reference::EmbeddingGather(view, ids.data(), ids.size(), expected.data()).ok());
  DeviceBuffer<uint8_t> d_table(table.bytes);
  DeviceBuffer<int32_t> d_ids(ids);
  DeviceBuffer<float> d_out(std::vector<float>(expected.size()));
  ASSERT_TRUE(LaunchEmbeddingGather(d_table.data, DType::kBF16, 300, 96, d_ids.data, ids.data(), ids.size(),
                                    d_out.data, nullptr)
                  .ok());
  EXPECT_EQ(d_out.Read(), expected);
  const std::vector<int32_t> bad = {3, 300};
  EXPECT_EQ(LaunchEmbeddingGather(d_table.data, DType::kBF16, 300, 96, d_ids.data, bad.data(), bad.size(),
                                  d_out.data, nullptr)
                .code(),
            absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace ixc::kernels::cuda
