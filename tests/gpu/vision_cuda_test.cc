// The vision tower on the GPU against the CPU path (itself held to transformers' CLIP by the multimodal goldens) on
// the tiny multimodal checkpoints (ViT head dims 16 and the real 64): the ViT features of 10 crops (two passes of
// the GPU's 8), the assembly and vision_proj from given features, and a whole 3x3 image, each within 3% of the
// values' range (bf16 on the GPU, as model_cuda_test); and the same image kept in device buffers (the NCCL handoff)
// against host buffers.
// Also the image-token assembly kernel alone against the reference op, on the real geometry's source table.
// Skipped without a GPU.
//   IXC_GOLDEN_MODELS=/path/to/models ./vision_cuda_test   (tests/make_golden_models.py builds them)
#include "kernels/cuda/vision.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "model/cuda/cuda_vision_model.h"
#include "model/placement.h"
#include "tests/gpu/cuda_test_util.h"
#include "tests/test_util.h"

namespace ixc::model {
namespace {

using ixc::testing::CudaTest;
using ixc::testing::DeviceBuffer;
using ixc::testing::RelativeError;

// The tiny multimodal checkpoints: head dim 16, and 64 as the real ViT-L's.
constexpr const char* kCheckpoints[] = {"multimodal_one_image", "multimodal_vit_d64_one_image"};
std::string ModelDir(const std::string& checkpoint = kCheckpoints[0]) {
  return ixc::testing::GoldenModelsDir() + "/" + checkpoint;
}

TEST_F(CudaTest, AssembleImageTokensMatchesReference) {
  const VisionConfig real;  // 40x40 patches, 20x20 merged tokens; a narrow width keeps the test small
  const int rows = 2, cols = 3, crops = 1 + rows * cols;
  const int64_t hidden = 24, tokens_per_crop = 1601;
  const std::vector<int32_t> sources = ImageTokenSources(real, rows, cols, tokens_per_crop, 1);
  const int64_t tokens = static_cast<int64_t>(sources.size()) / 4;
  const auto features = ixc::testing::RandomFloats(crops * tokens_per_crop * hidden, 1);
  const auto sub = ixc::testing::RandomFloats(4 * hidden, 2), global = ixc::testing::RandomFloats(4 * hidden, 3);
  std::vector<float> expected(tokens * 4 * hidden);
  kernels::reference::AssembleImageTokens(features.data(), sources.data(), sub.data(), global.data(), expected.data(),
                                          tokens, hidden);
  DeviceBuffer<float> d_features(features), d_sub(sub), d_global(global);
  DeviceBuffer<int32_t> d_sources(sources);
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    DeviceBuffer<uint8_t> d_out(expected.size() * DTypeSize(dtype));
    ASSERT_TRUE(kernels::cuda::LaunchAssembleImageTokens(d_features.data, crops * tokens_per_crop, d_sources.data,
                                                         d_sub.data, d_global.data, dtype, d_out.data, tokens, hidden,
                                                         nullptr)
                    .ok());
    const std::vector<float> actual = ixc::testing::Widen(dtype, d_out.Read());
    EXPECT_TRUE(ixc::testing::AllClose(
        actual, expected,
        dtype == DType::kF32 ? ixc::testing::Tolerance{0.f, 0.f} : ixc::testing::Tolerance{0.f, 8e-3f}))
        << DTypeName(dtype);
  }
}

class CudaVisionTest : public CudaTest, public ::testing::WithParamInterface<const char*> {
 protected:
  void SetUp() override {
    CudaTest::SetUp();
    if (IsSkipped()) return;
    const std::string dir = ModelDir(GetParam());
    auto llm = LoadLlmConfig(dir);
    ASSERT_TRUE(llm.ok()) << llm.status();
    auto cpu = LoadVisionWeights(dir, llm->hidden_size);
    auto gpu = LoadVisionWeights(dir, llm->hidden_size);
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    cpu_ = std::make_unique<VisionWeights>(std::move(*cpu));
    gpu_ = std::make_unique<VisionWeights>(std::move(*gpu));
    const absl::Status attached = AttachCudaVision(*gpu_, {});
    ASSERT_TRUE(attached.ok()) << attached;
  }
  // Normalized-pixel-like values for `count` crops.
  std::vector<float> Crops(int count, uint64_t seed) const {
    const int64_t size = cpu_->config.image_size;
    return ixc::testing::RandomFloats(count * 3 * size * size, seed, 1.2f);
  }

  std::unique_ptr<VisionWeights> cpu_, gpu_;
};

// 10 crops: two passes of 5 at the default 8 per pass, four (3, 3, 2, 2) at 3, one at 32 (a vision rank's own GPU).
TEST_P(CudaVisionTest, EncodeCropsMatchesTheCpu) {
  const int count = 10;
  const std::vector<float> crops = Crops(count, 4);
  auto cpu = EncodeCrops(*cpu_, crops.data(), count);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  for (int per_pass : {8, 3, 32}) {
    if (per_pass != 8) {
      const absl::Status attached = AttachCudaVision(*gpu_, {.max_crops_per_pass = per_pass});
      ASSERT_TRUE(attached.ok()) << attached;
    }
    auto gpu = EncodeCrops(*gpu_, crops.data(), count);
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    EXPECT_LT(RelativeError(*gpu, *cpu), 0.03) << per_pass << " crops per pass";
  }
}

TEST_P(CudaVisionTest, AssembleImageMatchesTheCpu) {
  const int rows = 2, cols = 1;
  const std::vector<float> crops = Crops(1 + rows * cols, 5);
  auto features = EncodeCrops(*cpu_, crops.data(), 1 + rows * cols);
  ASSERT_TRUE(features.ok()) << features.status();
  auto cpu = AssembleImage(*cpu_, *features, rows, cols);
  auto gpu = AssembleImage(*gpu_, *features, rows, cols);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  EXPECT_LT(RelativeError(*gpu, *cpu), 0.03);
}

TEST_P(CudaVisionTest, EmbedImageMatchesTheCpu) {
  for (auto [rows, cols] : {std::pair{3, 3}, std::pair{1, 2}}) {  // 10 crops (two passes), then 3 (scratch reused)
    const std::vector<float> crops = Crops(1 + rows * cols, 6 + rows);
    auto cpu = EmbedImage(*cpu_, crops.data(), rows, cols);
    auto gpu = EmbedImage(*gpu_, crops.data(), rows, cols);
    ASSERT_TRUE(cpu.ok()) << cpu.status();
    ASSERT_TRUE(gpu.ok()) << gpu.status();
    EXPECT_EQ(gpu->size(), cpu->size());
    EXPECT_LT(RelativeError(*gpu, *cpu), 0.03) << rows << "x" << cols;
  }
  // A bad grid is refused before the GPU sees it.
  EXPECT_EQ(EmbedImage(*gpu_, nullptr, 0, 2).status().code(), absl::StatusCode::kInvalidArgument);
}

// The NCCL vision handoff keeps an image on the GPU from crops to embeddings (model::NewFloats): the same values as
// the host buffers, bit for bit (the same kernels; only where the results land differs). Two ranks' parts meet in
// one device buffer as the worker gathers them.
TEST_P(CudaVisionTest, DeviceBuffersHoldWhatHostBuffersHold) {
  const int rows = 1, cols = 2, crops = 1 + rows * cols;
  const std::vector<float> pixels = Crops(crops, 9);
  auto host_features = EncodeCrops(*gpu_, pixels.data(), crops);
  ASSERT_TRUE(host_features.ok()) << host_features.status();
  auto host = AssembleImage(*gpu_, *host_features, rows, cols);
  ASSERT_TRUE(host.ok()) << host.status();

  const int64_t per_crop = static_cast<int64_t>(host_features->size()) / crops;
  const int64_t crop_floats = 3 * int64_t{cpu_->config.image_size} * cpu_->config.image_size;
  auto first = NewFloats(per_crop, 0), rest = NewFloats((crops - 1) * per_crop, 0);
  auto features = NewFloats(crops * per_crop, 0);
  auto embeddings = NewFloats(ImageTokenCount(gpu_->config, rows, cols) * gpu_->llm_hidden, 0);
  for (auto* floats : {&first, &rest, &features, &embeddings}) {
    ASSERT_TRUE(floats->ok()) << floats->status();
    ASSERT_TRUE((*floats)->on_device());
  }
  ASSERT_TRUE(EncodeCropsInto(*gpu_, pixels.data(), 1, first->data()).ok());
  ASSERT_TRUE(EncodeCropsInto(*gpu_, pixels.data() + crop_floats, crops - 1, rest->data()).ok());
  ASSERT_TRUE(CopyFloats(features->data(), first->data(), per_crop, 0).ok());
  ASSERT_TRUE(CopyFloats(features->data() + per_crop, rest->data(), rest->size(), 0).ok());
  ASSERT_TRUE(AssembleImageInto(*gpu_, features->data(), rows, cols, embeddings->data()).ok());

  std::vector<float> device_features(features->size()), device_embeddings(embeddings->size());
  ASSERT_TRUE(CopyFloats(device_features.data(), features->data(), features->size(), 0).ok());
  ASSERT_TRUE(CopyFloats(device_embeddings.data(), embeddings->data(), embeddings->size(), 0).ok());
  EXPECT_EQ(device_features, *host_features);
  EXPECT_EQ(device_embeddings, *host);
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, CudaVisionTest, ::testing::ValuesIn(kCheckpoints));

// --device cuda for the vision ranks: starts where a GPU is usable, says why where none is.
TEST(CudaVisionStartTest, AttachStartsOrSaysWhy) {
  auto llm = LoadLlmConfig(ModelDir());
  ASSERT_TRUE(llm.ok()) << llm.status();
  auto weights = LoadVisionWeights(ModelDir(), llm->hidden_size);
  ASSERT_TRUE(weights.ok()) << weights.status();
  const absl::Status status = AttachCudaVision(*weights, {});
  if (kernels::cuda::ProbeCudaDevice().ok()) {
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_NE(weights->device, nullptr);
  } else {
    EXPECT_NE(status.message().find("no CUDA device is usable"), std::string::npos) << status;
    EXPECT_EQ(weights->device, nullptr);
  }
  // A pass of no crops is refused before any GPU is asked for.
  const absl::Status none = AttachCudaVision(*weights, {.max_crops_per_pass = 0});
  EXPECT_EQ(none.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(none.message().find("at least one crop per pass"), std::string::npos) << none;
}

}  // namespace
}  // namespace ixc::model
