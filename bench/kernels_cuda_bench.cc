// GPU kernels at IXC-2.5's shapes, each against the card's limits:
//   GEMMs (cuBLASLt) for every linear layer at prefill sizes (TFLOP/s) and decode sizes (TB/s of weights read), and
//   decode's fused w1 + w3 + SwiGLU (TB/s)
//   flash prefill attention, causal, 32 heads over 8 KV heads, head dim 128 (TFLOP/s, causal FLOPs only)
//   split-KV decode attention over long contexts (TB/s of K/V read)
//   one ViT pass of the vision tower: its GEMMs and its batched attention (TFLOP/s)
// Goals (issue 5, H100): GEMMs with M >= 4096 >= 70% of peak; flash >= 450 TFLOP/s; decode attention and small-M
// GEMMs >= 80% of HBM bandwidth.
//   ./kernels_cuda_bench          everything
//   ./kernels_cuda_bench flash    flash prefill alone (wgmma on sm_90; with IXC_FALLBACK_KERNELS=1, mma.sync)
//   ./kernels_cuda_bench decode   decode attention alone (tensor cores; with IXC_FALLBACK_KERNELS=1, scalar)
//   ./kernels_cuda_bench gemm     the GEMMs alone
//   ./kernels_cuda_bench vit      one ViT pass's GEMMs and attention (the vision tower)
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "bench/gpu_limits.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/flash_wgmma.h"
#include "kernels/cuda/gemm.h"

namespace ixc::bench {
namespace {

namespace kc = ::ixc::kernels::cuda;

void GemmShapes(const GpuLimits& limits) {
  // cuBLASLt's heuristic's first choice, and (for the decode batches it tunes) the fastest of its candidates.
  auto gemm = kc::Gemm::Create(kc::Gemm::kDefaultWorkspaceBytes, /*tune=*/false);
  auto tuned = kc::Gemm::Create(kc::Gemm::kDefaultWorkspaceBytes, /*tune=*/true);
  if (!gemm.ok() || !tuned.ok()) {
    std::fprintf(stderr, "Gemm::Create: %s %s\n", gemm.status().ToString().c_str(), tuned.status().ToString().c_str());
    return;
  }
  struct Layer {
    const char* name;
    int64_t n, k;
  };
  const Layer layers[] = {{"wqkv", 6144, 4096},  {"wo", 4096, 4096},        {"w1/w3", 14336, 4096},
                          {"w2", 4096, 14336},   {"output", 92544, 4096}};
  std::printf(
      "\nGEMM (bf16 in, f32 accumulate, bf16 out), IXC-2.5 7B layers; up to 64 rows timed from HBM (the L2 "
      "holding clean lines of another buffer before each run)\n");
  std::printf("%-7s %6s %6s %6s %10s %10s %8s %8s %-13s %s\n", "layer", "M", "N", "K", "ms", "TFLOP/s", "TB/s",
              "% limit", "", "kernel");
  for (const Layer& layer : layers) {
    for (int64_t m : {1, 8, 32, 64, 4096, 8192}) {
      void* x = DeviceRandom(m * layer.k * 2, 1);
      void* w = DeviceRandom(layer.n * layer.k * 2, 2);
      void* y = DeviceRandom(m * layer.n * 2, 3);
      const kc::LinearArgs args{x, w, y, m, layer.n, layer.k, DType::kBF16, DType::kBF16};
      const bool streams = kc::Gemm::StreamsWeights(m, layer.k);
      for (kc::Gemm* g : {gemm->get(), tuned->get()}) {
        if (g == tuned->get() && (streams || m > 64)) continue;  // the same kernel as above
        const auto run = [&] { (void)g->Linear(args, nullptr); };
        const double ms = m <= 64 ? MedianMsFromHbm(run, nullptr) : MedianMs(run, nullptr);
        const double tflops = 2.0 * m * layer.n * layer.k / (ms * 1e-3) / 1e12;
        const double tbytes = (m * layer.k + layer.n * layer.k + m * layer.n) * 2.0 / (ms * 1e-3) / 1e12;
        // Small M is bound by reading the weights, large M by the tensor cores.
        const double percent =
            m <= 64 ? 100 * tbytes / limits.datasheet_tbytes : 100 * tflops / limits.datasheet_tflops;
        std::string kernel = streams ? "weight streaming" : "cuBLASLt";
        if (g == tuned->get()) {
          kernel = "cuBLASLt, fastest of " + std::to_string(g->Candidates(args, nullptr).value_or(0)) + " candidates";
        }
        std::printf("%-7s %6lld %6lld %6lld %10.4f %10.1f %8.2f %7.0f%% %-13s %s\n", layer.name,
                    static_cast<long long>(m), static_cast<long long>(layer.n), static_cast<long long>(layer.k), ms,
                    tflops, tbytes, percent, m <= 64 ? "of HBM" : "of bf16 peak", kernel.c_str());
      }
      cudaFree(x);
      cudaFree(w);
      cudaFree(y);
    }
  }
}

// Decode's feed-forward first half: both 14336 x 4096 weights read in one pass, SwiGLU applied on the way out.
void SwiGluShapes(const GpuLimits& limits) {
  auto gemm = kc::Gemm::Create();
  const int64_t n = 14336, k = 4096;
  std::printf("\nw1 + w3 with SwiGLU in one weight pass (bf16), the decode rows of IXC-2.5 7B, from HBM\n");
  std::printf("%6s %6s %6s %10s %8s %8s\n", "M", "N", "K", "ms", "TB/s", "% HBM");
  for (int64_t m : {1, 2}) {
    void* x = DeviceRandom(m * k * 2, 1);
    void* gate = DeviceRandom(n * k * 2, 2);
    void* up = DeviceRandom(n * k * 2, 3);
    void* out = DeviceRandom(m * n * 2, 4);
    const kc::SwiGluArgs args{x, gate, up, out, m, n, k, DType::kBF16};
    const double ms = MedianMsFromHbm([&] { (void)(*gemm)->SwiGluLinear(args, nullptr); }, nullptr);
    const double tbytes = (m * k + 2 * n * k + m * n) * 2.0 / (ms * 1e-3) / 1e12;
    std::printf("%6lld %6lld %6lld %10.4f %8.2f %7.0f%%\n", static_cast<long long>(m), static_cast<long long>(n),
                static_cast<long long>(k), ms, tbytes, 100 * tbytes / limits.datasheet_tbytes);
    for (void* buffer : {x, gate, up, out}) cudaFree(buffer);
  }
}

// One sequence of `tokens` in a paged pool, block size 16, blocks in order.
struct Pools {
  Pools(int64_t keys, int kv_heads, int d) {
    const int64_t blocks = (keys + 15) / 16;
    k = DeviceRandom(blocks * 16 * kv_heads * d * 2, 5);
    v = DeviceRandom(blocks * 16 * kv_heads * d * 2, 6);
    std::vector<int32_t> host(blocks);
    std::iota(host.begin(), host.end(), 0);
    table = DeviceInts(host);
    view = {k, v, DType::kBF16, 16, kv_heads, d};
  }
  ~Pools() {
    cudaFree(k);
    cudaFree(v);
    cudaFree(table);
  }
  void *k, *v;
  int32_t* table = nullptr;
  kc::DeviceKvPools view;
};

void FlashPrefill(const GpuLimits& limits) {
  const int heads = 32, kv_heads = 8, d = 128;
  std::printf("\nFlash prefill attention, causal, %d heads / %d KV heads, head dim %d, bf16, %s\n", heads, kv_heads, d,
              kc::FlashKernelName(d));
  std::printf("%8s %10s %10s %8s\n", "tokens", "ms", "TFLOP/s", "% peak");
  for (int64_t tokens : {2048, 8192, 32768}) {
    Pools pools(tokens, kv_heads, d);
    void* q = DeviceRandom(tokens * heads * d * 2, 7);
    void* out = DeviceRandom(tokens * heads * d * 2, 8);
    std::vector<int32_t> host(tokens);
    std::iota(host.begin(), host.end(), 0);
    int32_t* positions = DeviceInts(host);
    const double ms = MedianMs(
        [&] {
          (void)kc::LaunchFlashAttention(q, positions, tokens, heads, pools.view, pools.table, tokens, tokens - 1,
                                         0.0884f, out, nullptr, nullptr);
        },
        nullptr, 2, 5);
    // QK^T and PV over the causal half: 4 * d FLOPs per (query, key) pair, tokens^2 / 2 pairs per head.
    const double flops = 4.0 * d * heads * (static_cast<double>(tokens) * tokens / 2);
    const double tflops = flops / (ms * 1e-3) / 1e12;
    std::printf("%8lld %10.3f %10.1f %7.0f%%\n", static_cast<long long>(tokens), ms, tflops,
                100 * tflops / limits.datasheet_tflops);
    cudaFree(q);
    cudaFree(out);
    cudaFree(positions);
  }
}

// One ViT-L/14 pass of the vision tower (model/cuda/cuda_vision_model.cc): 8 crops of 1601 tokens, width 1024, MLP
// 4096, 16 heads of 64. Its GEMMs (q, k, v and fc1 to bf16; out and fc2 added onto the f32 residual stream) and its
// attention, every crop's queries over that crop's keys, in one batched launch.
void VitPassShapes(const GpuLimits& limits) {
  constexpr int kCrops = 8, kTokens = 1601, kWidth = 1024, kMlp = 4096, kHeads = 16, kHeadDim = 64;
  const int64_t rows = int64_t{kCrops} * kTokens;
  auto gemm = kc::Gemm::Create();
  std::printf("\nOne ViT pass of the vision tower: %d crops x %d tokens, bf16 in, f32 accumulate\n", kCrops, kTokens);
  std::printf("%-18s %6s %6s %6s %10s %10s %8s\n", "op", "M", "N", "K", "ms", "TFLOP/s", "% peak");
  struct Shape {
    const char* name;
    int64_t n, k;
    DType out;
    bool accumulate, bias;  // the bias: in cuBLASLt's epilogue (f32 out)
  };
  float* bias = nullptr;
  cudaMalloc(&bias, kMlp * 4);
  cudaMemset(bias, 0, kMlp * 4);
  for (const Shape& s : {Shape{"q, k or v", kWidth, kWidth, DType::kBF16, false, false},
                         Shape{"out (+= f32)", kWidth, kWidth, DType::kF32, true, false},
                         Shape{"out (+= f32, bias)", kWidth, kWidth, DType::kF32, true, true},
                         Shape{"fc1", kMlp, kWidth, DType::kBF16, false, false},
                         Shape{"fc2 (+= f32, bias)", kWidth, kMlp, DType::kF32, true, true}}) {
    void* x = DeviceRandom(rows * s.k * 2, 11);
    void* w = DeviceRandom(s.n * s.k * 2, 12);
    void* y = DeviceRandom(rows * s.n * DTypeSize(s.out), 13);
    const kc::LinearArgs args{x, w, y, rows, s.n, s.k, DType::kBF16, s.out, s.accumulate, s.bias ? bias : nullptr};
    const double ms = MedianMs([&] { (void)(*gemm)->Linear(args, nullptr); }, nullptr);
    const double tflops = 2.0 * rows * s.n * s.k / (ms * 1e-3) / 1e12;
    std::printf("%-18s %6lld %6lld %6lld %10.4f %10.1f %7.0f%%\n", s.name, static_cast<long long>(rows),
                static_cast<long long>(s.n), static_cast<long long>(s.k), ms, tflops,
                100 * tflops / limits.datasheet_tflops);
    for (void* buffer : {x, w, y}) cudaFree(buffer);
  }
  // Crop c's keys are block c of the pool, and every query sits at the last position: it sees all of its crop.
  Pools pools(rows, kHeads, kHeadDim);
  pools.view.block_size = kTokens;
  std::vector<int32_t> tables(kCrops);
  std::iota(tables.begin(), tables.end(), 0);
  int32_t* d_tables = DeviceInts(tables);
  int32_t* d_positions = DeviceInts(std::vector<int32_t>(kTokens, kTokens - 1));
  void* q = DeviceRandom(rows * kHeads * kHeadDim * 2, 14);
  void* out = DeviceRandom(rows * kHeads * kHeadDim * 2, 15);
  const double ms = MedianMs(
      [&] {
        (void)kc::LaunchBatchedFlashAttention(q, d_positions, kTokens, kCrops, kHeads, pools.view, d_tables, 1,
                                              kTokens, kTokens - 1, 0.125f, out, nullptr, nullptr);
      },
      nullptr);
  // Every (query, key) pair of a crop: 4 * head dim FLOPs each.
  const double tflops = 4.0 * kHeadDim * kHeads * kCrops * double{kTokens} * kTokens / (ms * 1e-3) / 1e12;
  std::printf("%-18s %6lld %6d %6d %10.4f %10.1f %7.0f%%  (%s)\n", "attention", static_cast<long long>(rows), kTokens,
              kHeadDim, ms, tflops, 100 * tflops / limits.datasheet_tflops, kc::FlashKernelName(kHeadDim));
  for (void* buffer :
       {q, out, static_cast<void*>(d_tables), static_cast<void*>(d_positions), static_cast<void*>(bias)}) {
    cudaFree(buffer);
  }
}

void DecodeAttention(const GpuLimits& limits) {
  const int heads = 32, kv_heads = 8, d = 128;
  std::printf(
      "\nSplit-KV paged decode attention, %d heads / %d KV heads, head dim %d, bf16, %s, %s, from HBM\n", heads,
      kv_heads, d, kc::DecodeMmaSelected(d) ? "tensor cores" : "scalar",
      kc::FewerDecodeKernelsRequested() ? "splits merged by the last block" : "splits merged by a second kernel");
  std::printf("%6s %8s %10s %8s %8s\n", "rows", "context", "ms", "TB/s", "% HBM");
  for (auto [rows, context] : {std::pair<int64_t, int64_t>{1, 8192}, {1, 32768}, {1, 98304}, {16, 8192}, {64, 4096}}) {
    // Each row its own sequence: rows x context keys in the pool.
    Pools pools(rows * context, kv_heads, d);
    const int64_t blocks_per_row = context / 16;
    std::vector<int32_t> offsets(rows), visible(rows, static_cast<int32_t>(context));
    for (int64_t r = 0; r < rows; ++r) offsets[r] = static_cast<int32_t>(r * blocks_per_row);
    int32_t* d_offsets = DeviceInts(offsets);
    int32_t* d_visible = DeviceInts(visible);
    void* q = DeviceRandom(rows * heads * d * 2, 9);
    void* out = DeviceRandom(rows * heads * d * 2, 10);
    const int64_t workspace_floats = kc::DecodeWorkspaceFloats(rows, heads, d);
    float* workspace;
    cudaMalloc(&workspace, workspace_floats * 4);
    cudaMemset(workspace, 0, workspace_floats * 4);  // the split counters
    const kc::DecodeRows decode{pools.table, d_offsets, d_visible, rows, context};
    const double ms = MedianMsFromHbm(
        [&] {
          (void)kc::LaunchPagedDecodeAttention(q, heads, pools.view, decode, 0.0884f, out, nullptr, workspace,
                                               workspace_floats, limits.sms, nullptr);
        },
        nullptr);
    const double bytes = 2.0 * rows * context * kv_heads * d * 2;  // K and V, bf16
    const double tbytes = bytes / (ms * 1e-3) / 1e12;
    std::printf("%6lld %8lld %10.4f %8.2f %7.0f%%\n", static_cast<long long>(rows), static_cast<long long>(context),
                ms, tbytes, 100 * tbytes / limits.datasheet_tbytes);
    cudaFree(q);
    cudaFree(out);
    cudaFree(workspace);
    cudaFree(d_offsets);
    cudaFree(d_visible);
  }
}

}  // namespace
}  // namespace ixc::bench

int main(int argc, char** argv) {
  const std::string only = argc > 1 ? argv[1] : "";
  if (argc > 2 || (only != "" && only != "flash" && only != "decode" && only != "gemm" && only != "vit")) {
    std::fprintf(stderr, "usage: %s [flash|decode|gemm|vit]\n", argv[0]);
    return 2;
  }
  const ixc::bench::GpuLimits limits = ixc::bench::MeasureGpuLimits();
  if (only.empty() || only == "gemm") ixc::bench::GemmShapes(limits);
  if (only.empty()) ixc::bench::SwiGluShapes(limits);
  if (only.empty() || only == "flash") ixc::bench::FlashPrefill(limits);
  if (only.empty() || only == "decode") ixc::bench::DecodeAttention(limits);
  if (only.empty() || only == "vit") ixc::bench::VitPassShapes(limits);
  const cudaError_t error = cudaDeviceSynchronize();
  if (error != cudaSuccess) {
    std::fprintf(stderr, "CUDA error: %s\n", cudaGetErrorString(error));
    return 1;
  }
  return 0;
}
