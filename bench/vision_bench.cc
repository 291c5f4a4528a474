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
#include "coordinator/media/hd_transform.h"
#include "coordinator/media/resize.h"
#include "model/vision_encoder.h"
#include "tests/test_util.h"

ABSL_FLAG(int, real_tiles, 1, "crops through the real-size ViT (each about 1.2 TFLOP)");

namespace ixc::bench {
namespace {

// Random vision weights of the given shape, owned by `storage` (f32).
model::VisionWeights RandomVision(const model::VisionConfig& c, int llm_hidden, std::vector<std::vector<float>>& storage) {
  uint64_t seed = 1;
  auto tensor = [&](std::initializer_list<int64_t> dims, float scale) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    storage.push_back(testing::RandomFloats(n, seed++, scale));
    return TensorView(storage.back().data(), DType::kF32, dims);
  };
  auto vec = [&](int64_t n, float scale) { return testing::RandomFloats(n, seed++, scale); };
  model::VisionWeights w;
  w.config = c;
  w.llm_hidden = llm_hidden;
  const int64_t hv = c.hidden_size, positions = c.grid() * c.grid() + 1;
  w.patch_embedding = tensor({hv, 3 * c.patch_size * c.patch_size}, 0.05f);
  w.class_embedding = vec(hv, 1.f);
  w.position_embedding = vec(positions * hv, 0.5f);
  w.pre_ln_weight = std::vector<float>(hv, 1.f);
  w.pre_ln_bias = std::vector<float>(hv, 0.f);
  for (int i = 0; i < c.num_layers; ++i) {
    model::VitLayerWeights l;
    l.ln1_weight = l.ln2_weight = std::vector<float>(hv, 1.f);
    l.ln1_bias = l.ln2_bias = l.q_bias = l.k_bias = l.v_bias = l.out_bias = l.fc2_bias = std::vector<float>(hv, 0.f);
    l.q = tensor({hv, hv}, 0.03f);
    l.k = tensor({hv, hv}, 0.03f);
    l.v = tensor({hv, hv}, 0.03f);
    l.out = tensor({hv, hv}, 0.03f);
    l.fc1 = tensor({c.intermediate_size, hv}, 0.03f);
    l.fc1_bias = std::vector<float>(c.intermediate_size, 0.f);
    l.fc2 = tensor({hv, c.intermediate_size}, 0.015f);
    w.layers.push_back(std::move(l));
  }
  return w;
}

// FLOPs of one crop through the ViT: patch embedding, per layer q/k/v/out and the MLP, and attention.
double FlopsPerTile(const model::VisionConfig& c) {
  const double tokens = c.grid() * c.grid() + 1, hv = c.hidden_size;
  const double patch = 2.0 * (tokens - 1) * hv * 3 * c.patch_size * c.patch_size;
  const double layer = 2.0 * tokens * (4 * hv * hv + 2 * hv * c.intermediate_size) + 4.0 * tokens * tokens * hv;
  return patch + c.num_layers * layer;
}

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
  const coordinator::VisionCrops crops =
      coordinator::MakeCrops(coordinator::HdTransform(image, 24, coordinator::kIxcTileSize, &geometry),
                             coordinator::kIxcTileSize);
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
  absl::ParseCommandLine(argc, argv);
  return ixc::bench::Run();
}
