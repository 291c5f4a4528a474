#include "bench/decode_parts.h"

#include <omp.h>

#include <chrono>
#include <functional>
#include <vector>

#include "bench/machine_limits.h"
#include "kernels/ops.h"
#include "model/forward_segment.h"

namespace ixc::bench {
namespace {

constexpr int kRepeats = 10;

// Reads twice the last-level cache's worth of memory, so that the part timed next starts from cold caches, as within
// a step whose weights and K/V together outgrow them (here a step's parts timed warm ran twice as fast as the step).
void ScrubCaches() {
  static std::vector<float> buffer(512 << 20 >> 2, 1.f);  // 512 MiB
  float sum = 0.f;
#pragma omp parallel for reduction(+ : sum)
  for (int64_t i = 0; i < static_cast<int64_t>(buffer.size()); i += 16) sum += buffer[i];
  volatile float sink = sum;
  (void)sink;
}

// Seconds per call of `run` from cold caches, the mean of kRepeats after one warm-up.
double SecondsPerCall(const std::function<void()>& run) {
  run();
  double seconds = 0;
  for (int i = 0; i < kRepeats; ++i) {
    ScrubCaches();
    const auto start = std::chrono::steady_clock::now();
    run();
    seconds += Seconds(start);
  }
  return seconds / kRepeats;
}

// The GEMV of every layer's `linear`, as a step runs them.
DecodePart LayerGemv(const model::LlmWeights& w, const char* name,
                     const std::function<const model::LinearWeights&(const model::LayerWeights&)>& linear) {
  const int64_t in = linear(w.layers[0]).weight.dim(1), out = linear(w.layers[0]).weight.dim(0);
  std::vector<float> x(in, 0.5f), y(out);
  DecodePart part{name, static_cast<int>(w.layers.size())};
  part.seconds = SecondsPerCall([&] {
    for (const model::LayerWeights& layer : w.layers) kernels::Linear(x.data(), linear(layer).weight, y.data(), 1, false);
  });
  for (const model::LayerWeights& layer : w.layers) part.bytes += linear(layer).weight.nbytes();
  return part;
}

}  // namespace

std::vector<DecodePart> TimeDecodeParts(const model::LlmWeights& w, const model::KvCache& cache,
                                        const model::SequenceKv& seq) {
  const model::LlmConfig& c = w.config;
  const int layers = c.num_layers, d = c.head_dim;
  std::vector<DecodePart> parts;
  parts.push_back(LayerGemv(w, "GEMV wqkv", [](const model::LayerWeights& l) -> const auto& { return l.attn_qkv; }));
  parts.push_back(LayerGemv(w, "GEMV wo", [](const model::LayerWeights& l) -> const auto& { return l.attn_out; }));
  parts.push_back(LayerGemv(w, "GEMV w1 (gate)", [](const model::LayerWeights& l) -> const auto& { return l.ffn_gate; }));
  parts.push_back(LayerGemv(w, "GEMV w3 (up)", [](const model::LayerWeights& l) -> const auto& { return l.ffn_up; }));
  parts.push_back(LayerGemv(w, "GEMV w2 (down)", [](const model::LayerWeights& l) -> const auto& { return l.ffn_down; }));
  {
    std::vector<float> x(c.hidden_size, 0.5f), logits(c.vocab_size);
    DecodePart head{"GEMV LM head", 1};
    head.seconds = SecondsPerCall([&] { kernels::Linear(x.data(), w.output, logits.data(), 1, false); });
    head.bytes = w.output.nbytes();
    parts.push_back(head);
  }
  {
    std::vector<float> q(c.num_heads * d, 0.1f), out(c.num_heads * d);
    const int32_t position = static_cast<int32_t>(seq.length - 1);
    const kernels::AttentionShape shape{1, c.num_heads, 1.f / std::sqrt(static_cast<float>(d))};
    DecodePart attention{"attention over " + std::to_string(seq.length) + " positions", layers};
    attention.seconds = SecondsPerCall([&] {
      for (int layer = 0; layer < layers; ++layer) {
        kernels::PagedAttention(q.data(), &position, cache.View(layer, seq), shape, out.data(), nullptr);
      }
    });
    parts.push_back(attention);
  }
  {
    // Two norms, q and k rotations and SwiGLU per layer, the final norm: the element-wise work of one row.
    std::vector<float> x(c.hidden_size, 0.5f), normed(c.hidden_size), q(c.num_heads * d, 0.1f),
        k(c.num_kv_heads * d, 0.1f), gate(c.intermediate_size, 0.3f), up(c.intermediate_size, 0.2f);
    const int32_t position = static_cast<int32_t>(seq.length);
    const kernels::RopeParams rope = model::RopeFor(c, seq.length + 1);
    DecodePart elementwise{"RMSNorm, RoPE, SwiGLU", 5 * layers + 1};
    elementwise.seconds = SecondsPerCall([&] {
      for (int layer = 0; layer < layers; ++layer) {
        kernels::RmsNorm(x.data(), w.layers[layer].attn_norm.data(), normed.data(), 1, c.hidden_size, c.rms_norm_eps);
        kernels::ApplyRope(q.data(), &position, 1, c.num_heads, rope);
        kernels::ApplyRope(k.data(), &position, 1, c.num_kv_heads, rope);
        kernels::RmsNorm(x.data(), w.layers[layer].ffn_norm.data(), normed.data(), 1, c.hidden_size, c.rms_norm_eps);
        kernels::SwiGlu(gate.data(), up.data(), gate.data(), c.intermediate_size);
      }
      kernels::RmsNorm(x.data(), w.final_norm.data(), normed.data(), 1, c.hidden_size, c.rms_norm_eps);
    });
    parts.push_back(elementwise);
  }
  {
    // Each GEMV and each attention call is one parallel region: what starting and joining them costs alone.
    DecodePart fork_join{"OpenMP fork/join (empty regions)", 6 * layers + 1};
    volatile int sink = 0;
    fork_join.seconds = SecondsPerCall([&] {
      for (int region = 0; region < fork_join.calls; ++region) {
#pragma omp parallel
        sink = sink + omp_get_thread_num();
      }
    });
    parts.push_back(fork_join);
  }
  return parts;
}

}  // namespace ixc::bench
