// Prefill and decode throughput of the language model on this CPU, next to this machine's limits:
//   prefill limit = measured sgemm peak / FLOPs per prompt token (linears + causal attention)
//   decode limit  = measured read bandwidth / bytes read per step (every weight once + the KV cache)
//   build/cpu/bench/llm_bench --model DIR [--prompt-tokens 512] [--decode-tokens 128]
#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/machine_limits.h"
#include "model/language_model.h"

ABSL_FLAG(std::string, model, "", "checkpoint directory");
ABSL_FLAG(int, prompt_tokens, 512, "prompt length of the prefill measurement");
ABSL_FLAG(int, decode_tokens, 128, "decode steps measured after the prefill");

namespace ixc::bench {
namespace {

int Run() {
  auto weights = model::LoadLlmWeights(absl::GetFlag(FLAGS_model));
  if (!weights.ok()) {
    std::fprintf(stderr, "%s\n", std::string(weights.status().message()).c_str());
    return 1;
  }
  const model::LlmConfig& c = weights->config;
  const int prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens), decode_tokens = absl::GetFlag(FLAGS_decode_tokens);
  const MachineLimits limits = MeasureMachineLimits();

  model::KvCache cache(c, 16, (prompt_tokens + decode_tokens) / 16 + 2);
  model::SequenceKv seq;
  {
    // Warm up: touch every weight page of the mapping once, so the timings do not include first-touch page faults.
    const std::vector<int32_t> few = {1, 2, 3, 4, 5, 6, 7, 8};
    model::ForwardInput warm;
    warm.ids = few;
    std::vector<float> ignored;
    if (auto s = model::LanguageModelForward(*weights, warm, seq, cache, &ignored); !s.ok()) return 1;
    cache.Release(seq);
  }
  std::vector<int32_t> prompt(prompt_tokens);
  for (int i = 0; i < prompt_tokens; ++i) prompt[i] = (i * 7919 + 11) % c.vocab_size;
  std::vector<float> logits;
  model::ForwardInput input;
  input.ids = prompt;
  auto start = std::chrono::steady_clock::now();
  if (auto s = model::LanguageModelForward(*weights, input, seq, cache, &logits); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 1;
  }
  const double prefill_seconds = Seconds(start);
  start = std::chrono::steady_clock::now();
  for (int step = 0; step < decode_tokens; ++step) {
    const int32_t token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    model::ForwardInput next;
    next.ids = std::span<const int32_t>(&token, 1);
    if (auto s = model::LanguageModelForward(*weights, next, seq, cache, &logits); !s.ok()) return 1;
  }
  const double decode_seconds = Seconds(start);

  const double layer_params = static_cast<double>(c.qkv_size()) * c.hidden_size +
                              static_cast<double>(c.hidden_size) * c.hidden_size +
                              3.0 * c.hidden_size * c.intermediate_size;
  const double weight_bytes = DTypeSize(weights->layers[0].attn_qkv.weight.dtype);
  // Prefill: every linear per token, causal QK^T and PV (half the square), the LM head on the last token only.
  const double prefill_flops = 2.0 * c.num_layers * layer_params * prompt_tokens +
                               2.0 * c.num_layers * prompt_tokens * prompt_tokens * c.num_heads * c.head_dim +
                               2.0 * c.vocab_size * c.hidden_size;
  const double mean_context = prompt_tokens + decode_tokens / 2.0;
  const double step_bytes = (c.num_layers * layer_params + static_cast<double>(c.vocab_size) * c.hidden_size) *
                                weight_bytes +
                            2.0 * c.num_layers * mean_context * c.num_kv_heads * c.head_dim * 4;
  const double prefill_rate = prompt_tokens / prefill_seconds, decode_rate = decode_tokens / decode_seconds;
  const double prefill_limit = limits.sgemm_gflops * 1e9 / (prefill_flops / prompt_tokens);
  const double decode_limit = limits.read_gbytes * 1e9 / step_bytes;
  std::printf("model: %s (%d layers, hidden %d, heads %d/%d, ffn %d, vocab %d, %s weights), %d threads\n",
              absl::GetFlag(FLAGS_model).c_str(), c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads,
              c.intermediate_size, c.vocab_size, DTypeName(weights->layers[0].attn_qkv.weight.dtype), limits.threads);
  std::printf("machine: sgemm peak %.1f GFLOP/s, memory read %.1f GB/s\n", limits.sgemm_gflops, limits.read_gbytes);
  std::printf("prefill %d tokens: %.3f s, %.1f tok/s, %.1f GFLOP/s; limit %.1f tok/s (%.0f%%)\n", prompt_tokens,
              prefill_seconds, prefill_rate, prefill_flops / prefill_seconds / 1e9, prefill_limit,
              100 * prefill_rate / prefill_limit);
  std::printf("decode %d steps: %.3f s, %.1f tok/s, %.1f GB/s; limit %.1f tok/s (%.0f%%)\n", decode_tokens,
              decode_seconds, decode_rate, step_bytes * decode_rate / 1e9, decode_limit,
              100 * decode_rate / decode_limit);
  return 0;
}

}  // namespace
}  // namespace ixc::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return ixc::bench::Run();
}
