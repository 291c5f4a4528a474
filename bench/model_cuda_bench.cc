// The IXC-2.5 7B language model on one GPU with seeded random bf16 weights (no checkpoint): batch-1 decode
// tokens/s against the weight-streaming roofline, in the base mode and in the article mode (its two LoRAs on every
// linear layer), batch-32 decode with the tokens chosen on the GPU and on the host,
// and the prefill time of a long prompt. Goals (issue 5, H100):
// decode >= 190 tokens/s (roofline 228), kernel by kernel and as replayed CUDA graphs; 32K-token prefill <= 1.4 s.
//   ./model_cuda_bench [prefill tokens, default 32768] [prefill|decode]    (the long prefill alone, or the decodes)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>

#include "bench/gpu_limits.h"
#include "bench/machine_limits.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/flash_wgmma.h"
#include "model/cuda/cuda_language_model.h"
#include "model/generation.h"

namespace ixc::bench {
namespace {

// Prefills a 512-token prompt (ids spread over the vocabulary, shifted by `shift`) into `seq`; its greedy next
// token, or -1 after printing why the prefill failed.
int32_t PrefillPrompt(model::LlmWeights& weights, model::KvCache& cache, model::SequenceKv& seq, int shift) {
  std::vector<int32_t> prompt(512);
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = static_cast<int32_t>((i * 7919 + shift) % 92544);
  model::ForwardInput input;
  input.ids = prompt;
  auto logits = model::Prefill(weights, input, false, seq, cache, nullptr);
  if (!logits.ok()) {
    std::fprintf(stderr, "prefill: %s\n", logits.status().ToString().c_str());
    return -1;
  }
  return static_cast<int32_t>(std::max_element(logits->begin(), logits->end()) - logits->begin());
}

// Batch-1 decode after a 512-token prompt, greedy on the GPU, kernel by kernel and as CUDA graphs, in `mode`
// (bytes_per_token: the weights a step of that mode reads).
int Decode(model::LlmWeights& weights, model::CudaLanguageModel& gpu, model::KvCache& cache, const GpuLimits& limits,
           model::LoraMode mode, double bytes_per_token) {
  model::SequenceKv seq;
  int32_t token = PrefillPrompt(weights, cache, seq, 0);
  if (token < 0) return 1;
  const double roofline = limits.datasheet_tbytes * 1e12 / bytes_per_token;
  for (const bool graphs : {false, true}) {  // kernel by kernel, then replayed CUDA graphs
    gpu.set_decode_graphs(graphs);
    const int warmup = 8, steps = 128;
    std::chrono::steady_clock::time_point start;
    for (int step = 0; step < warmup + steps; ++step) {
      if (step == warmup) start = std::chrono::steady_clock::now();
      model::TokenChoice greedy;  // chosen on the GPU: one id comes back
      std::vector<model::DecodeItem> items = {{token, static_cast<int32_t>(seq.length), mode, &seq, {}, &greedy}};
      if (const absl::Status status = model::DecodeSteps(weights, items, cache, nullptr); !status.ok()) {
        std::fprintf(stderr, "decode: %s\n", status.ToString().c_str());
        return 1;
      }
      token = greedy.token;
    }
    const double decode_s = Seconds(start) / steps;
    std::printf(
        "batch-1 decode%s%s at context ~%lld: %.2f ms/token, %.1f tokens/s; weight-streaming roofline %.0f "
        "tokens/s at %.2f TB/s (%.0f%%), %.0f at the measured %.2f TB/s; H100 goal 190 (roofline 228)\n",
        mode == model::LoraMode::kWrite ? ", write mode (sft + dpo LoRAs, rank 2 x 256)" : "",
        graphs ? " (CUDA graphs)" : "", static_cast<long long>(seq.length), decode_s * 1e3, 1 / decode_s, roofline,
        limits.datasheet_tbytes, 100 / decode_s / roofline, limits.measured_tbytes * 1e12 / bytes_per_token,
        limits.measured_tbytes);
  }
  cache.Release(seq);
  return 0;
}

// Decode steps of kBatch sequences (continuous batching, graphs on), each sequence's next token chosen on the GPU
// (TokenChoice) and, for comparison, from its logits copied to the host (what every step did before).
int BatchedDecode(model::LlmWeights& weights, model::KvCache& cache) {
  constexpr int kBatch = 32, kSteps = 32;
  std::vector<model::SequenceKv> seqs(kBatch);
  std::vector<int32_t> tokens(kBatch);
  for (int b = 0; b < kBatch; ++b) {
    tokens[b] = PrefillPrompt(weights, cache, seqs[b], b * 31);
    if (tokens[b] < 0) return 1;
  }
  for (const bool on_device : {true, false}) {
    std::chrono::steady_clock::time_point start;
    for (int step = 0; step < 2 + kSteps; ++step) {  // the first two capture the graph
      if (step == 2) start = std::chrono::steady_clock::now();
      std::vector<model::TokenChoice> choices(kBatch);
      std::vector<model::DecodeItem> items;
      for (int b = 0; b < kBatch; ++b) {
        items.push_back({tokens[b], static_cast<int32_t>(seqs[b].length), model::LoraMode::kBase, &seqs[b], {},
                         on_device ? &choices[b] : nullptr});
      }
      if (const absl::Status status = model::DecodeSteps(weights, items, cache, nullptr); !status.ok()) {
        std::fprintf(stderr, "batched decode: %s\n", status.ToString().c_str());
        return 1;
      }
      for (int b = 0; b < kBatch; ++b) {
        const std::vector<float>& logits = items[b].logits;
        tokens[b] = on_device ? choices[b].token
                              : static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      }
    }
    const double step_s = Seconds(start) / kSteps;
    std::printf("batch-%d decode (CUDA graphs, %s decode attention), greedy %s: %.2f ms/step, %.0f tokens/s\n",
                kBatch, kernels::cuda::DecodeMmaSelected(128) ? "tensor-core" : "scalar",
                on_device ? "on the GPU (one id per sequence to the host)" : "on the host (every logit row copied)",
                step_s * 1e3, kBatch / step_s);
  }
  for (model::SequenceKv& seq : seqs) cache.Release(seq);
  return 0;
}

int Run(int64_t prefill_tokens, bool prefill, bool decode) {
  const GpuLimits limits = MeasureGpuLimits();
  model::LlmWeights weights;  // the shapes only: the tensors live on the GPU
  weights.config = weights.shard = model::Ixc25SevenBConfig();
  model::CudaModelOptions options;
  options.kv_reserve_bytes = int64_t{12} << 30;  // scratch of a 32K prefill
  // The article mode's two LoRAs on every linear layer (rank 256 each, the size of IXC-2.5's PLoRA).
  constexpr int64_t kWriteLoraRank = 2 * 256;
  auto gpu = model::CudaLanguageModel::Random(weights.config, options, 1234, kWriteLoraRank);
  if (!gpu.ok()) {
    std::fprintf(stderr, "%s\n", gpu.status().ToString().c_str());
    return 1;
  }
  weights.device = *gpu;
  weights.has_write_lora = true;
  model::KvCache cache = model::KvCache::BlocksOnly(weights.shard, options.block_size, (*gpu)->num_kv_blocks());
  const model::LlmConfig& c = weights.config;
  const double layers = c.num_layers, hidden = c.hidden_size, qkv = c.qkv_size(), ffn = c.intermediate_size;
  // Per layer: the LoRA's A (rank, in) and B (out, rank) of qkv, wo, w1, w3 and w2, bf16.
  const double lora_bytes = layers * kWriteLoraRank * ((hidden + qkv) + (hidden + hidden) + 3 * (hidden + ffn)) * 2;
  const double weight_gb = ((*gpu)->weight_bytes() - lora_bytes) / 1e9;
  const double embedding_bytes = static_cast<double>(c.vocab_size) * hidden * 2;  // read one row a token
  std::printf(
      "\n7B shape, bf16 random weights: %.2f GB of weights (embedding table included; decode reads %.2f GB "
      "per token; write-mode LoRAs %.2f GB more), KV pool %.1f GB (%d blocks of 16)\n",
      weight_gb, weight_gb - embedding_bytes / 1e9, lora_bytes / 1e9, (*gpu)->kv_bytes() / 1e9,
      (*gpu)->num_kv_blocks());

  const double bytes_per_token = weight_gb * 1e9 - embedding_bytes;  // every weight but the embedding table
  if (decode && (Decode(weights, **gpu, cache, limits, model::LoraMode::kBase, bytes_per_token) != 0 ||
                 Decode(weights, **gpu, cache, limits, model::LoraMode::kWrite, bytes_per_token + lora_bytes) != 0 ||
                 BatchedDecode(weights, cache) != 0)) {
    return 1;
  }
  if (!prefill) return 0;

  // Long prefill: one sequence of prefill_tokens, logits of the last position.
  std::vector<int32_t> long_prompt(prefill_tokens);
  for (int64_t i = 0; i < prefill_tokens; ++i) long_prompt[i] = static_cast<int32_t>((i * 104729) % 92544);
  model::ForwardInput input;
  input.ids = long_prompt;
  // The FLOPs the prefill does (2 per weight per row): every layer's qkv and causal attention for every token but the
  // last layer's, whose attention output, feed-forward and attention, and the head, are for the logit row alone
  // (CudaLanguageModel: the last layer on the logit rows).
  const double n = static_cast<double>(prefill_tokens);
  const double rest_weights = hidden * hidden + 3.0 * ffn * hidden;  // wo, w1, w3, w2
  const double linear_flops = 2 * (layers * qkv * hidden * n + (layers - 1) * rest_weights * n + rest_weights +
                                   static_cast<double>(c.vocab_size) * hidden);
  const double per_key = 4.0 * c.head_dim * c.num_heads;  // Q K^T and P V of one query row and key
  const double attention_flops = per_key * ((layers - 1) * n * n / 2 + n);
  for (int run = 0; run < 2; ++run) {  // the first run allocates the scratch and picks the GEMM plans
    model::SequenceKv long_seq;
    cudaDeviceSynchronize();
    const auto prefill_start = std::chrono::steady_clock::now();
    auto prefill = model::Prefill(weights, input, false, long_seq, cache, nullptr);
    const double seconds = Seconds(prefill_start);
    if (!prefill.ok()) {
      std::fprintf(stderr, "prefill %lld: %s\n", static_cast<long long>(prefill_tokens),
                   prefill.status().ToString().c_str());
      return 1;
    }
    std::printf(
        "prefill of %lld tokens (run %d, %s flash): %.3f s, %.0f tokens/s, %.0f TFLOP/s (%.0f%% of %.0f); "
        "H100 goal 32K in <= 1.4 s\n",
        static_cast<long long>(prefill_tokens), run + 1, kernels::cuda::FlashKernelName(128), seconds,
        prefill_tokens / seconds, (linear_flops + attention_flops) / seconds / 1e12,
        100 * (linear_flops + attention_flops) / seconds / 1e12 / limits.datasheet_tflops, limits.datasheet_tflops);
    cache.Release(long_seq);
  }
  return 0;
}

}  // namespace
}  // namespace ixc::bench

int main(int argc, char** argv) {
  const int64_t tokens = argc > 1 ? std::atoll(argv[1]) : 32768;
  const std::string only = argc > 2 ? argv[2] : "";
  if (argc > 3 || tokens <= 0 || (only != "" && only != "prefill" && only != "decode")) {
    std::fprintf(stderr, "usage: %s [prefill tokens] [prefill|decode]\n", argv[0]);
    return 2;
  }
  return ixc::bench::Run(tokens, only != "decode", only != "prefill");
}
