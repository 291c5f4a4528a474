// The IXC-2.5 vision tower (CLIP ViT-L/14 at 560 px, 2x2 merge, separators, vision_proj to 4096) on one GPU with
// seeded random bf16 weights: an HD-25 image (5x5 tiles + the global view, 26 crops, 10,541 tokens) from host crops
// to host embeddings (ixc-generate's path: a new 172 MB vector each time, so host page faults and a pageable copy
// are in the figure), in seconds, crops/s and TFLOP/s next to the GPU's bf16 peak. Then a vision rank's path for the
// same image by where its buffers live: features and embeddings on the host (the MPI handoff as it was), features
// on the GPU and embeddings on the host (the MPI handoff), both on the GPU (the NCCL handoff: the tower's own speed,
// with only the crops' upload beside it), and the last again in the ViT passes a vision rank with a GPU of its own
// takes (model/placement.h: kOwnGpuCropsPerPass).
//   ./vision_cuda_bench
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "bench/gpu_limits.h"
#include "bench/machine_limits.h"
#include "bench/random_vision.h"
#include "model/cuda/cuda_vision_model.h"
#include "model/placement.h"
#include "tests/test_util.h"

namespace ixc::bench {
namespace {

int Run() {
  const GpuLimits limits = MeasureGpuLimits();
  const model::VisionConfig c;  // IXC-2.5's ViT
  const int llm_hidden = 4096, rows = 5, cols = 5, crops = 1 + rows * cols;
  std::vector<std::vector<float>> storage;
  model::VisionWeights weights = RandomVision(c, llm_hidden, storage);
  auto upload_start = std::chrono::steady_clock::now();
  if (auto status = model::AttachCudaVision(weights, {}); !status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    return 1;
  }
  std::printf("\nViT-L/14 560 px + vision_proj, bf16 random weights: uploaded in %.1f s\n", Seconds(upload_start));

  const std::vector<float> pixels = testing::RandomFloats(int64_t{crops} * 3 * c.image_size * c.image_size, 3);
  const double tokens = (rows * cols + 1) * 400.0 + 1 + (rows + 1) * 20;
  const double flops =
      crops * FlopsPerTile(c) + 2 * tokens * (4.0 * c.hidden_size * llm_hidden + double{llm_hidden} * llm_hidden);
  for (int run = 0; run < 3; ++run) {  // the first run sizes the scratch and picks the GEMM plans
    const auto start = std::chrono::steady_clock::now();
    auto embeddings = model::EmbedImage(weights, pixels.data(), rows, cols);
    const double seconds = Seconds(start);
    if (!embeddings.ok()) {
      std::fprintf(stderr, "EmbedImage: %s\n", embeddings.status().ToString().c_str());
      return 1;
    }
    std::printf(
        "HD-25 image, %d crops -> %.0f tokens (run %d): %.1f ms, %.0f crops/s, %.0f TFLOP/s (%.0f%% of %.0f "
        "bf16 peak)\n",
        crops, tokens, run + 1, seconds * 1e3, crops / seconds, flops / seconds / 1e12,
        100 * flops / seconds / 1e12 / limits.datasheet_tflops, limits.datasheet_tflops);
  }
  // The vision rank's encode and assembly (worker/vision_worker.cc) with its buffers in each place.
  const int64_t feature_floats = int64_t{crops} * c.grid() * c.grid() * c.hidden_size;
  const int64_t embedding_floats = model::ImageTokenCount(c, rows, cols) * llm_hidden;
  struct Where {
    const char* name;
    int features_gpu, embeddings_gpu;  // -1: the host
    int crops_per_pass;
  };
  // The last: the NCCL handoff's vision rank, which has a GPU of its own, as the worker places it (larger passes).
  int crops_per_pass = model::kSharedGpuCropsPerPass;  // as attached above
  for (const Where& where :
       {Where{"features and embeddings on the host (MPI handoff, before)", -1, -1, model::kSharedGpuCropsPerPass},
        Where{"features on the GPU, embeddings on the host (MPI handoff)", 0, -1, model::kSharedGpuCropsPerPass},
        Where{"features and embeddings on the GPU (NCCL handoff)", 0, 0, model::kSharedGpuCropsPerPass},
        Where{"features and embeddings on the GPU (NCCL handoff)", 0, 0, model::kOwnGpuCropsPerPass}}) {
    if (where.crops_per_pass != crops_per_pass) {
      crops_per_pass = where.crops_per_pass;
      const absl::Status status = model::AttachCudaVision(weights, {.max_crops_per_pass = crops_per_pass});
      if (!status.ok()) {
        std::fprintf(stderr, "%s\n", status.ToString().c_str());
        return 1;
      }
    }
    auto features = model::NewFloats(feature_floats, where.features_gpu);
    auto embeddings = model::NewFloats(embedding_floats, where.embeddings_gpu);
    if (!features.ok() || !embeddings.ok()) {
      std::fprintf(stderr, "buffers: %s %s\n", features.status().ToString().c_str(),
                   embeddings.status().ToString().c_str());
      return 1;
    }
    double best = 1e30;
    for (int run = 0; run < 3; ++run) {
      const auto start = std::chrono::steady_clock::now();
      absl::Status status = model::EncodeCropsInto(weights, pixels.data(), crops, features->data());
      if (status.ok()) status = model::AssembleImageInto(weights, features->data(), rows, cols, embeddings->data());
      if (!status.ok()) {
        std::fprintf(stderr, "%s: %s\n", where.name, status.ToString().c_str());
        return 1;
      }
      best = std::min(best, Seconds(start));
    }
    std::printf(
        "vision rank, %s, ViT passes of %d crops at most: %.1f ms, %.0f TFLOP/s (%.0f%% of peak; features %.0f MB, "
        "embeddings %.0f MB)\n",
        where.name, crops_per_pass, best * 1e3, flops / best / 1e12,
        100 * flops / best / 1e12 / limits.datasheet_tflops, feature_floats * 4 / 1e6, embedding_floats * 4 / 1e6);
  }
  return 0;
}

}  // namespace
}  // namespace ixc::bench

int main() { return ixc::bench::Run(); }
