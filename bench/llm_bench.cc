// Prefill and decode throughput of the language model on this CPU, next to this machine's limits:
//   prefill limit = measured sgemm peak / FLOPs per prompt token (linears + causal attention)
//   decode limit  = measured read bandwidth / bytes read per step (every weight once + the KV cache)
// Decode is measured from an empty context (as llama-bench -n) and after the prompt; then a decode step's parts are
// timed one by one on the model's own tensors (bench/decode_parts.h), to show where a step's time goes.
//   build/cpu/bench/llm_bench --model DIR [--prompt-tokens 512] [--decode-tokens 128]
#include <chrono>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "bench/decode_parts.h"
#include "bench/machine_limits.h"
#include "core/status_macros.h"
#include "kernels/cpu/blas_kernels.h"
#include "model/language_model.h"

ABSL_FLAG(std::string, model, "", "checkpoint directory");
ABSL_FLAG(int, prompt_tokens, 512, "prompt length of the prefill measurement");
ABSL_FLAG(int, decode_tokens, 128, "decode steps measured after the prefill");

namespace ixc::bench {
namespace {

// Seconds for `steps` greedy decode steps of `seq`, each from the previous step's logits.
absl::StatusOr<double> DecodeSeconds(const model::LlmWeights& weights, model::SequenceKv& seq, model::KvCache& cache,
                                     std::vector<float>& logits, int steps) {
  const auto start = std::chrono::steady_clock::now();
  for (int step = 0; step < steps; ++step) {
    const int32_t token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    model::ForwardInput next;
    next.ids = std::span<const int32_t>(&token, 1);
    IXC_RETURN_IF_ERROR(model::LanguageModelForward(weights, next, seq, cache, &logits));
  }
  return Seconds(start);
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
  return 1;
}

int Run() {
  auto weights = model::LoadLlmWeights(absl::GetFlag(FLAGS_model));
  if (!weights.ok()) return Fail(weights.status());
  const model::LlmConfig& c = weights->config;
  const int prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens), decode_tokens = absl::GetFlag(FLAGS_decode_tokens);
  const MachineLimits limits = MeasureMachineLimits();

  model::KvCache cache(c, 16, 2 * ((prompt_tokens + decode_tokens) / 16 + 2));
  std::vector<float> logits;
  // Decode from an empty context, as llama-bench -n: the first token, then decode_tokens - 1 steps. The first pass
  // also touches every weight page of the mapping, so that no later timing pays first-touch page faults.
  model::SequenceKv fresh;
  const int32_t bos = 1;
  model::ForwardInput first;
  first.ids = std::span<const int32_t>(&bos, 1);
  if (auto s = model::LanguageModelForward(*weights, first, fresh, cache, &logits); !s.ok()) return Fail(s);
  cache.Release(fresh);
  auto start = std::chrono::steady_clock::now();
  if (auto s = model::LanguageModelForward(*weights, first, fresh, cache, &logits); !s.ok()) return Fail(s);
  const double first_seconds = Seconds(start);
  auto fresh_seconds = DecodeSeconds(*weights, fresh, cache, logits, decode_tokens - 1);
  if (!fresh_seconds.ok()) return Fail(fresh_seconds.status());
  const double empty_context_seconds = first_seconds + *fresh_seconds;
  cache.Release(fresh);

  model::SequenceKv seq;
  std::vector<int32_t> prompt(prompt_tokens);
  for (int i = 0; i < prompt_tokens; ++i) prompt[i] = (i * 7919 + 11) % c.vocab_size;
  model::ForwardInput input;
  input.ids = prompt;
  start = std::chrono::steady_clock::now();
  if (auto s = model::LanguageModelForward(*weights, input, seq, cache, &logits); !s.ok()) return Fail(s);
  const double prefill_seconds = Seconds(start);
  auto decode_seconds = DecodeSeconds(*weights, seq, cache, logits, decode_tokens);
  if (!decode_seconds.ok()) return Fail(decode_seconds.status());

  const double layer_params = static_cast<double>(c.qkv_size()) * c.hidden_size +
                              static_cast<double>(c.hidden_size) * c.hidden_size +
                              3.0 * c.hidden_size * c.intermediate_size;
  const double weight_bytes = DTypeSize(weights->layers[0].attn_qkv.weight.dtype);
  // Prefill: every linear per token, causal QK^T and PV (half the square), the LM head on the last token only.
  const double prefill_flops = 2.0 * c.num_layers * layer_params * prompt_tokens +
                               2.0 * c.num_layers * prompt_tokens * prompt_tokens * c.num_heads * c.head_dim +
                               2.0 * c.vocab_size * c.hidden_size;
  // A decode step reads every weight once and the K/V of its context.
  const auto step_bytes = [&](double mean_context) {
    return (c.num_layers * layer_params + static_cast<double>(c.vocab_size) * c.hidden_size) * weight_bytes +
           2.0 * c.num_layers * mean_context * c.num_kv_heads * c.head_dim * 4;
  };
  const double prefill_rate = prompt_tokens / prefill_seconds;
  const double prefill_limit = limits.sgemm_gflops * 1e9 / (prefill_flops / prompt_tokens);
  std::printf("model: %s (%d layers, hidden %d, heads %d/%d, ffn %d, vocab %d, %s weights), %d threads\n",
              absl::GetFlag(FLAGS_model).c_str(), c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads,
              c.intermediate_size, c.vocab_size, DTypeName(weights->layers[0].attn_qkv.weight.dtype), limits.threads);
  std::printf("machine: sgemm peak %.1f GFLOP/s, memory read %.1f GB/s\n", limits.sgemm_gflops, limits.read_gbytes);
  std::printf("prefill %d tokens: %.3f s, %.1f tok/s, %.1f GFLOP/s; limit %.1f tok/s (%.0f%%)\n", prompt_tokens,
              prefill_seconds, prefill_rate, prefill_flops / prefill_seconds / 1e9, prefill_limit,
              100 * prefill_rate / prefill_limit);
  const auto print_decode = [&](const char* what, double seconds, double mean_context) {
    const double rate = decode_tokens / seconds, limit = limits.read_gbytes * 1e9 / step_bytes(mean_context);
    std::printf("decode %d steps %s: %.3f s, %.1f tok/s, %.1f GB/s; limit %.1f tok/s (%.0f%%)\n", decode_tokens, what,
                seconds, rate, step_bytes(mean_context) * rate / 1e9, limit, 100 * rate / limit);
  };
  print_decode("from an empty context", empty_context_seconds, decode_tokens / 2.0);
  print_decode(("after the prompt (context " + std::to_string(prompt_tokens) + ")").c_str(), *decode_seconds,
               prompt_tokens + decode_tokens / 2.0);

  const double step = *decode_seconds / decode_tokens;
  std::printf("a decode step after the prompt, %.1f us, taken apart (each part alone from cold caches, per step):\n", step * 1e6);
  double parts_total = 0;
  for (const DecodePart& part : TimeDecodeParts(*weights, cache, seq)) {
    parts_total += part.seconds;
    std::printf("  %-36s %3d calls %8.1f us %5.1f%%", part.name.c_str(), part.calls, part.seconds * 1e6,
                100 * part.seconds / step);
    if (part.bytes > 0) std::printf("   %5.1f GB/s", part.bytes / part.seconds / 1e9);
    std::printf("\n");
  }
  std::printf("  %-36s           %8.1f us %5.1f%%\n", "the rest (the forward's own code)*", (step - parts_total) * 1e6,
              100 * (step - parts_total) / step);
  std::printf("  * less what the step finds in the caches that its parts, timed cold, read from memory\n");
  return 0;
}

}  // namespace
}  // namespace ixc::bench

int main(int argc, char** argv) {
  ixc::kernels::RestartForBetterBlasKernels(argv);
  absl::ParseCommandLine(argc, argv);
  return ixc::bench::Run();
}
