// --device, --dtype and the KV pool's size as model/placement reads them: the CPU gets a cache of exactly
// --kv-blocks blocks (else enough for the context), a bad device or dtype is named, and cuda stops with the reason
// where it cannot run (a build without the backend, or a machine without a GPU).
#include "model/placement.h"

#include <gtest/gtest.h>

namespace ixc::model {
namespace {

LlmWeights TinyShapes() {
  LlmWeights weights;  // the shapes only: a KvCache reads nothing else
  weights.config.hidden_size = 64;
  weights.config.num_layers = 2;
  weights.config.num_heads = 4;
  weights.config.num_kv_heads = 2;
  weights.config.head_dim = 16;
  weights.shard = weights.config;
  return weights;
}

TEST(PlacementTest, CpuCacheHoldsTheContextOrExactlyTheBlocksAskedFor) {
  LlmWeights weights = TinyShapes();
  auto cache = PlaceModel(weights, {.device = "cpu", .block_size = 16}, /*context_tokens=*/100);
  ASSERT_TRUE(cache.ok()) << cache.status();
  EXPECT_EQ(cache->num_blocks(), 7);  // 100 tokens and the next one
  auto exact = PlaceModel(weights, {.device = "cpu", .block_size = 16, .kv_blocks = 40}, 100);
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->num_blocks(), 40);
  EXPECT_EQ(weights.device, nullptr);
  VisionWeights vision;
  EXPECT_TRUE(PlaceVision(vision, {.device = "cpu"}).ok());
  EXPECT_EQ(vision.device, nullptr);
}

TEST(PlacementTest, BadDeviceOrDtypeIsNamed) {
  LlmWeights weights = TinyShapes();
  VisionWeights vision;
  auto tpu = PlaceModel(weights, {.device = "tpu"}, 10);
  EXPECT_EQ(tpu.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(tpu.status().message().find("--device must be cpu or cuda, not 'tpu'"), std::string::npos);
  EXPECT_EQ(PlaceVision(vision, {.device = "tpu"}).code(), absl::StatusCode::kInvalidArgument);
  auto f32 = PlaceModel(weights, {.device = "cuda", .dtype = "f32"}, 10);
  EXPECT_NE(f32.status().message().find("--dtype must be bf16 or f16 on cuda"), std::string::npos) << f32.status();
}

TEST(PlacementTest, CudaSaysWhyItCannotRun) {
  LlmWeights weights = TinyShapes();
  auto cache = PlaceModel(weights, {.device = "cuda"}, 10);
  if (cache.ok()) GTEST_SKIP() << "a GPU is usable here";
  const std::string message(cache.status().message());
  EXPECT_TRUE(message.find("this build has no CUDA backend") != std::string::npos ||
              message.find("no CUDA device is usable") != std::string::npos)
      << message;
  VisionWeights vision;
  const absl::Status status = PlaceVision(vision, {.device = "cuda"});
  EXPECT_FALSE(status.ok());
}

// The vision handoff's buffers: on the host they are zeroed vectors and copy as such; on a GPU they need one.
TEST(PlacementTest, HandoffBuffersOnTheHostAndWhyNotOnAGpu) {
  auto host = NewFloats(6, /*gpu=*/-1);
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_FALSE(host->on_device());
  ASSERT_EQ(host->size(), 6);
  EXPECT_EQ(std::vector<float>(host->data(), host->data() + 6), std::vector<float>(6, 0.f));
  const std::vector<float> values = {1.f, -2.f, 3.5f};
  ASSERT_TRUE(CopyFloats(host->data() + 2, values.data(), 3, -1).ok());
  EXPECT_EQ(std::vector<float>(host->data(), host->data() + 6), (std::vector<float>{0.f, 0.f, 1.f, -2.f, 3.5f, 0.f}));
  EXPECT_EQ(NewFloats(-1, -1).status().code(), absl::StatusCode::kInvalidArgument);
  auto device = NewFloats(6, /*gpu=*/0);
  if (device.ok()) GTEST_SKIP() << "a GPU is usable here";
  const std::string message(device.status().message());
  EXPECT_TRUE(message.find("this build has no CUDA backend") != std::string::npos ||
              message.find("cudaSetDevice") != std::string::npos)  // the cuda build on a machine without a GPU
      << message;
}

}  // namespace
}  // namespace ixc::model
