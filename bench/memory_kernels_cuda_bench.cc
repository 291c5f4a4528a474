// The GPU's memory-bound kernels at IXC-2.5's sizes (a 32K-token prefill; the ViT on an HD-25 image's 26 crops),
// each in TB/s of the bytes it must read and write, next to the datasheet bandwidth and this card's measured copy.
// These are the kernels between the GEMMs and attention (kernels_cuda_bench): at 80% of HBM or better they cost a
// small share of a layer.
//   ./memory_kernels_cuda_bench
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "bench/gpu_limits.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/norm.h"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/vision.h"
#include "kernels/ops.h"

namespace ixc::bench {
namespace {

namespace kc = ::ixc::kernels::cuda;

constexpr int64_t kTokens = 32768, kHidden = 4096, kFfn = 14336, kHeads = 32, kKvHeads = 8, kHeadDim = 128;
constexpr int64_t kVocab = 92544, kCrops = 26, kVitTokens = 1601, kVitHidden = 1024, kImageTokens = 10541;

// One kernel's line; a launch that fails prints why instead of a time.
void Row(const GpuLimits& limits, const char* name, const char* shape, double bytes,
         const std::function<absl::Status()>& launch) {
  if (const absl::Status status = launch(); !status.ok()) {
    std::printf("%-20s %-26s FAILED: %s\n", name, shape, std::string(status.message()).c_str());
    return;
  }
  const double ms = MedianMs([&] { (void)launch(); }, nullptr);
  const double tbytes = bytes / (ms * 1e-3) / 1e12;
  std::printf("%-20s %-26s %9.4f %8.2f %6.0f%% %6.0f%%\n", name, shape, ms, tbytes,
              100 * tbytes / limits.datasheet_tbytes, 100 * tbytes / limits.measured_tbytes);
}

void Run(const GpuLimits& limits) {
  std::printf("\nMemory-bound kernels (bf16 activations unless noted)\n%-20s %-26s %9s %8s %7s %7s\n", "kernel",
              "shape", "ms", "TB/s", "% HBM", "% copy");
  const int64_t n = kTokens * kHidden, big = kTokens * kFfn;
  void* a = DeviceRandom(big * 2, 1);  // bf16 (tokens, ffn) and smaller views of it
  void* b = DeviceRandom(big * 2, 2);
  void* c = DeviceRandom(big * 2, 3);
  float* f32 = static_cast<float*>(DeviceRandom(n * 4, 4));  // (tokens, hidden) f32
  float* f32_b = static_cast<float*>(DeviceRandom(n * 4, 5));
  float* weight = static_cast<float*>(DeviceRandom(kHidden * 4, 6));  // small values: any f32 bits are fine here
  std::vector<float> ones(kHidden, 1.f);
  cudaMemcpy(weight, ones.data(), kHidden * 4, cudaMemcpyHostToDevice);
  float* bias = static_cast<float*>(DeviceRandom(kFfn * 4, 7));
  cudaMemset(bias, 0, kFfn * 4);

  Row(limits, "RmsNorm", "32768 x 4096", 2.0 * n * 2,
      [&] { return kc::LaunchRmsNorm(DType::kBF16, b, a, weight, kTokens, kHidden, 1e-5f, nullptr); });
  Row(limits, "AddRmsNorm", "32768 x 4096, f32 residual", n * (4.0 + 4 + 4 + 2), [&] {
    return kc::LaunchAddRmsNorm(f32, f32_b, nullptr, weight, DType::kBF16, a, kTokens, kHidden, 1e-5f, nullptr);
  });
  Row(limits, "SwiGlu", "32768 x 14336", 3.0 * big * 2,
      [&] { return kc::LaunchSwiGlu(DType::kBF16, a, b, c, big, nullptr); });
  Row(limits, "AddBias", "32768 x 6144", 2.0 * kTokens * 6144 * 2,
      [&] { return kc::LaunchAddBias(DType::kBF16, a, bias, kTokens, 6144, nullptr); });
  {
    std::vector<int32_t> ids(kTokens);
    for (int64_t i = 0; i < kTokens; ++i) ids[i] = static_cast<int32_t>((i * 7919) % kVocab);
    int32_t* d_ids = DeviceInts(ids);
    void* table = DeviceRandom(kVocab * kHidden * 2, 8);
    Row(limits, "EmbeddingGather", "32768 ids x 4096 -> f32", n * (2.0 + 4), [&] {
      return kc::LaunchEmbeddingGather(table, DType::kBF16, kVocab, kHidden, d_ids, ids.data(), kTokens, f32, nullptr);
    });
    cudaFree(table);
    cudaFree(d_ids);
  }
  {
    const int64_t rank = 256;  // PLoRA's rank: the rows of text tokens zeroed
    uint8_t* mask = nullptr;
    cudaMalloc(&mask, kTokens);
    cudaMemset(mask, 0, kTokens);
    Row(limits, "ZeroRows", "32768 x 256 (all masked)", kTokens * (rank * 2.0 + 1),
        [&] { return kc::LaunchZeroRows(DType::kBF16, a, mask, kTokens, rank, nullptr); });
    cudaFree(mask);
  }
  {
    // Prefill RoPE + KV store: qkv rows in, rotated q and the cache's K/V out.
    const int64_t qkv = (kHeads + 2 * kKvHeads) * kHeadDim;
    std::vector<int32_t> positions(kTokens);
    for (int64_t i = 0; i < kTokens; ++i) positions[i] = static_cast<int32_t>(i);
    int32_t* d_positions = DeviceInts(positions);
    const kc::DeviceKvPools pools{b, c, DType::kBF16, 16, static_cast<int>(kKvHeads), static_cast<int>(kHeadDim)};
    const kernels::RopeParams rope{static_cast<int>(kHeadDim), 1e6f, 1.f};
    void* q = f32;  // (tokens, heads, head_dim) bf16 fits in the f32 buffer
    Row(limits, "RopeAndStoreKv", "32768 x (32 + 2 x 8) x 128",
        kTokens * (qkv + kHeads * kHeadDim + 2 * kKvHeads * kHeadDim) * 2.0, [&] {
          return kc::LaunchRopeAndStoreKv(a, d_positions, d_positions, kTokens, kHeads / kKvHeads, rope, q, pools,
                                          nullptr);
        });
    // A decode step's: one token at position 32767, each row split over blocks (latency, not bandwidth).
    Row(limits, "RopeAndStoreKv", "1 x (32 + 2 x 8) x 128 (decode)",
        (qkv + kHeads * kHeadDim + 2 * kKvHeads * kHeadDim) * 2.0, [&] {
          return kc::LaunchRopeAndStoreKv(a, d_positions + kTokens - 1, d_positions + kTokens - 1, 1,
                                          kHeads / kKvHeads, rope, q, pools, nullptr);
        });
    cudaFree(d_positions);
  }
  {
    const int64_t head_rows = kTokens * kHeads;
    float* lse_a = static_cast<float*>(DeviceRandom(head_rows * 4, 9));
    float* lse_b = static_cast<float*>(DeviceRandom(head_rows * 4, 10));
    cudaMemset(lse_a, 0, head_rows * 4);
    cudaMemset(lse_b, 0, head_rows * 4);
    Row(limits, "MergeAttention", "32768 x 32 x 128", head_rows * (kHeadDim * 2 * 3.0 + 4 * 3),
        [&] { return kc::LaunchMergeAttention(DType::kBF16, a, lse_a, b, lse_b, kTokens, kHeads, kHeadDim, nullptr); });
    cudaFree(lse_a);
    cudaFree(lse_b);
  }
  {
    const int64_t rows = 64;  // a decode batch's logits
    float* logits = static_cast<float*>(DeviceRandom(rows * kVocab * 4, 11));
    (void)kc::LaunchFillUniform(DType::kF32, logits, rows * kVocab, 11, 8.f, nullptr);
    int32_t* ids = DeviceInts(std::vector<int32_t>(rows, 0));
    Row(limits, "Argmax", "64 x 92544 f32", rows * kVocab * 4.0,
        [&] { return kc::LaunchArgmax(logits, rows, kVocab, ids, nullptr); });
    Row(limits, "TopKTopPSample", "1 x 92544 f32, k 50, p 0.8", kVocab * 4.0,
        [&] { return kc::LaunchTopKTopPSample(logits, kVocab, 50, 0.8f, 0.5, ids, nullptr); });
    Row(limits, "TopKTopPSample", "1 x 92544 f32, p 0.9 alone", kVocab * 4.0,
        [&] { return kc::LaunchTopKTopPSample(logits, kVocab, 0, 0.9f, 0.5, ids, nullptr); });
    cudaFree(logits);
    cudaFree(ids);
  }

  // The vision tower's: 26 crops of 560 px, 1601 tokens of width 1024, MLP 4096; the image's 10,541 tokens.
  const int64_t vit_rows = kCrops * kVitTokens, vit_n = vit_rows * kVitHidden;
  Row(limits, "LayerNorm", "41626 x 1024, f32 -> bf16", vit_n * (4.0 + 2), [&] {
    return kc::LaunchLayerNorm(DType::kF32, f32, weight, bias, DType::kBF16, a, vit_rows, kVitHidden, 1e-5f, nullptr);
  });
  Row(limits, "QuickGelu", "41626 x 4096", 2.0 * vit_rows * 4096 * 2,
      [&] { return kc::LaunchQuickGelu(DType::kBF16, a, nullptr, a, vit_rows, 4096, nullptr); });
  Row(limits, "Gelu", "10541 x 4096 (vision_proj)", 2.0 * kImageTokens * 4096 * 2,
      [&] { return kc::LaunchGelu(DType::kBF16, a, nullptr, a, kImageTokens, 4096, nullptr); });
  {
    const int64_t pixels = kCrops * 3 * 560 * 560, patch_rows = kCrops * 1600, width = 592;
    Row(limits, "PatchColumns", "26 x 3 x 560^2 -> 41600 x 592", pixels * 4.0 + patch_rows * width * 2.0,
        [&] { return kc::LaunchPatchColumns(f32, kCrops, 560, 14, DType::kBF16, a, width, nullptr); });
    Row(limits, "VitEmbeddings", "41600 x 1024 -> 41626 x 1024", patch_rows * kVitHidden * 4.0 + vit_n * 8.0,
        [&] { return kc::LaunchVitEmbeddings(f32, bias, f32_b, kCrops, 1600, kVitHidden, f32_b + vit_n, nullptr); });
  }
  {
    std::vector<int32_t> sources(kImageTokens * 4);
    for (int64_t i = 0; i < kImageTokens * 4; ++i) {
      sources[i] = i % 84 == 83 ? kernels::kSubSeparatorSource : static_cast<int32_t>((i * 37) % vit_rows);
    }
    int32_t* d_sources = DeviceInts(sources);
    Row(limits, "AssembleImageTokens", "10541 x 4 x 1024 -> bf16", kImageTokens * 4 * kVitHidden * (4.0 + 2), [&] {
      return kc::LaunchAssembleImageTokens(f32, vit_rows, d_sources, bias, bias, DType::kBF16, a, kImageTokens,
                                           kVitHidden, nullptr);
    });
    cudaFree(d_sources);
  }
  for (void* p : {a, b, c, static_cast<void*>(f32), static_cast<void*>(f32_b), static_cast<void*>(weight),
                  static_cast<void*>(bias)}) {
    cudaFree(p);
  }
}

}  // namespace
}  // namespace ixc::bench

int main() {
  ixc::bench::Run(ixc::bench::MeasureGpuLimits());
  const cudaError_t error = cudaDeviceSynchronize();
  if (error != cudaSuccess) {
    std::fprintf(stderr, "CUDA error: %s\n", cudaGetErrorString(error));
    return 1;
  }
  return 0;
}
