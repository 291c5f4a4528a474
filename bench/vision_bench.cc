// The vision stage on this CPU: preprocessing time (decode, HD transform, crops) of dubai.png (1200x4679) and of a
// 3840x2160 image, and ViT throughput in tiles per second for the real ViT-L/14 at 560 px (random weights) and the
// tiny test tower, each with the FLOPs per tile and the achieved GFLOP/s next to the measured sgemm peak.
//   build/cpu/bench/vision_bench [--real_tiles 1]
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/machine_limits.h"
#include "bench/random_vision.h"
#include "coordinator/media/hd_transform.h"
#include "coordinator/media/resize.h"
#include "kernels/cpu/blas_kernels.h"
#include "model/vision_encoder.h"
#include "tests/test_util.h"

ABSL_FLAG(int, real_tiles, 1, "crops through the real-size ViT (each about 1.2 TFLOP)");

namespace ixc::bench {
namespace {

void BenchVit(const char* name, const model::VisionConfig& c, int tiles, const MachineLimits& limits) {
  std::vector<std::vector<float>> storage;
  const model::VisionWeights weights = RandomVision(c, 4 * c.hidden_size, storage);
  const std::vector<float> crops = testing::RandomFloats(static_cast<int64_t>(tiles) * 3 * c.image_size * c.image_size, 9);
  (void)model::EncodeCrops(weights, crops.data(), 1);  // warm up
  const auto start = std::chrono::steady_clock::now();
  (void)model::EncodeCrops(weights, crops.data(), tiles);
  const double seconds = Seconds(start);
  const double flops = FlopsPerTile(c);
  std::printf("ViT %-22s %d tiles: %.3f s, %.2f tiles/s, %.3f TFLOP per tile, %.1f GFLOP/s (%.0f%% of sgemm peak)\n",
              name, tiles, seconds, tiles / seconds, flops / 1e12, flops * tiles / seconds / 1e9,
              100 * flops * tiles / seconds / 1e9 / limits.sgemm_gflops);
}

void BenchPreprocess(const char* name, const coordinator::Image& image) {
  const auto start = std::chrono::steady_clock::now();
  coordinator::HdGeometry geometry;
  const coordinator::VisionCrops crops = coordinator::MakeCrops(
      coordinator::HdTransform(image, 24, coordinator::kIxcTileSize, &geometry).value(), coordinator::kIxcTileSize);
  std::printf("preprocess %-28s %dx%d -> grid %dx%d, %d crops: %.1f ms (HD transform + crops, decode excluded)\n",
              name, image.width, image.height, geometry.rows, geometry.cols, crops.count(), Seconds(start) * 1e3);
}

int Run() {
  const MachineLimits limits = MeasureMachineLimits();
  std::printf("machine: %d threads, sgemm peak %.1f GFLOP/s\n", limits.threads, limits.sgemm_gflops);
  const std::string dubai_path = std::string(IXC_SOURCE_DIR) + "/tests/data/images/dubai.png";
  auto start = std::chrono::steady_clock::now();
  auto dubai = coordinator::DecodeImageFile(dubai_path, {});
  if (!dubai.ok()) return 1;
  std::printf("decode dubai.png (PNG, 1200x4679): %.1f ms\n", Seconds(start) * 1e3);
  BenchPreprocess("dubai.png", *dubai);
  BenchPreprocess("3840x2160 (upscaled dubai)", coordinator::ResizeBilinear(*dubai, 3840, 2160));

  model::VisionConfig tiny;
  tiny.hidden_size = 32, tiny.intermediate_size = 64, tiny.num_layers = 2, tiny.num_heads = 2, tiny.image_size = 56;
  BenchVit("tiny (56 px, 2 layers)", tiny, 256, limits);
  BenchVit("ViT-L/14 at 560 px", model::VisionConfig{}, absl::GetFlag(FLAGS_real_tiles), limits);
  return 0;
}

}  // namespace
}  // namespace ixc::bench

int main(int argc, char** argv) {
  ixc::kernels::RestartForBetterBlasKernels(argv);
  absl::ParseCommandLine(argc, argv);
  return ixc::bench::Run();
}
