// Beam search's cost per step against greedy decoding's, on one process: the prompt is prefilled, then B beams decode
// in one batched step each (model/beam_search.h: GenerateBeams), against Generate's one sequence. No EOS ends a beam,
// so every run takes the same number of steps. A step reads every weight once whatever B is, plus each beam's K/V:
// its limit is that many bytes at this machine's read bandwidth, and the goal is at most B times greedy's time per
// step (docs/composition.md). Beside each search, a batch of B plain greedy sequences: what B rows cost by themselves.
//   build/cpu/bench/beam_bench --model DIR [--prompt-tokens 256] [--new-tokens 64] [--beams 2,3] [--rounds 3]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/machine_limits.h"
#include "kernels/cpu/blas_kernels.h"
#include "model/beam_search.h"
#include "model/generation.h"

ABSL_FLAG(std::string, model, "", "checkpoint directory");
ABSL_FLAG(int, prompt_tokens, 256, "prompt length");
ABSL_FLAG(int, new_tokens, 64, "steps of each search and of greedy decoding");
ABSL_FLAG(std::string, beams, "2,3", "beam counts to measure");
ABSL_FLAG(int, rounds, 3, "runs of each; the median is reported");
ABSL_FLAG(float, repetition_penalty, 3.0f, "the webpage tasks' penalty");

namespace ixc::bench {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "%s\n", std::string(status.message()).c_str());
  return 1;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

int Run() {
  auto weights = model::LoadLlmWeights(absl::GetFlag(FLAGS_model));
  if (!weights.ok()) return Fail(weights.status());
  const model::LlmConfig& c = weights->config;
  const int prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens), steps = absl::GetFlag(FLAGS_new_tokens);
  std::vector<int> beam_counts;
  for (absl::string_view piece : absl::StrSplit(absl::GetFlag(FLAGS_beams), ',', absl::SkipWhitespace())) {
    int beams = 0;
    if (!absl::SimpleAtoi(piece, &beams) || beams < 2 || beams > model::kMaxBeams) {
      return Fail(absl::InvalidArgumentError("--beams: a list of beam counts in [2, 16]"));
    }
    beam_counts.push_back(beams);
  }
  const MachineLimits limits = MeasureMachineLimits();
  std::vector<int32_t> prompt(prompt_tokens);
  for (int i = 0; i < prompt_tokens; ++i) prompt[i] = (i * 7919 + 11) % c.vocab_size;
  model::ForwardInput input;
  input.ids = prompt;
  const int max_beams = *std::max_element(beam_counts.begin(), beam_counts.end());
  const int block = 16;
  model::KvCache cache(c, block, (max_beams + 1) * ((prompt_tokens + steps) / block + 3));

  // A step's bytes: every weight once, and the K/V of each sequence at the run's mean context.
  const double layer_params = static_cast<double>(c.qkv_size()) * c.hidden_size +
                              static_cast<double>(c.hidden_size) * c.hidden_size +
                              3.0 * c.hidden_size * c.intermediate_size;
  const double weight_bytes = (c.num_layers * layer_params + static_cast<double>(c.vocab_size) * c.hidden_size) *
                              DTypeSize(weights->layers[0].attn_qkv.weight.dtype);
  const double kv_bytes = 2.0 * c.num_layers * (prompt_tokens + steps / 2.0) * c.num_kv_heads * c.head_dim * 4;
  auto step_limit = [&](int sequences) { return (weight_bytes + sequences * kv_bytes) / (limits.read_gbytes * 1e9); };

  std::printf("model: %s (%d layers, hidden %d, vocab %d, %s weights), prompt %d, %d steps, %d threads\n",
              absl::GetFlag(FLAGS_model).c_str(), c.num_layers, c.hidden_size, c.vocab_size,
              DTypeName(weights->layers[0].attn_qkv.weight.dtype), prompt_tokens, steps, limits.threads);
  std::printf("machine: memory read %.1f GB/s\n", limits.read_gbytes);
  std::printf("%-8s %12s %12s %14s %14s %10s\n", "search", "ms/step", "x greedy", "goal (x B)", "limit ms/step",
              "of limit");

  // Decode seconds per step of greedy (1) or of B beams.
  auto per_step = [&](int beams) -> absl::StatusOr<double> {
    std::vector<double> runs;
    for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
      model::GenerationResult result;
      if (beams == 1) {
        model::GenerationOptions options;
        options.max_new_tokens = steps;
        options.sampling.repetition_penalty = absl::GetFlag(FLAGS_repetition_penalty);
        auto out = model::Generate(*weights, input, options, cache);
        if (!out.ok()) return out.status();
        result = std::move(*out);
      } else {
        model::BeamGenerationOptions options;
        options.num_beams = beams;
        options.max_new_tokens = steps;
        options.repetition_penalty = absl::GetFlag(FLAGS_repetition_penalty);
        auto out = model::GenerateBeams(*weights, input, options, cache);
        if (!out.ok()) return out.status();
        result = std::move(*out);
      }
      // Greedy's first token comes from the prefill; beams' first step expands the prompt's candidates. Both then
      // decode steps - 1 times.
      runs.push_back(result.decode_seconds / (steps - 1));
    }
    return Median(runs);
  };
  // The same batch without the search: B sequences forked from the prompt, each decoding greedily. What a step of
  // B rows costs by itself; the rest of a beam step is the search's (candidates, forks).
  auto batch_step = [&](int sequences) -> absl::StatusOr<double> {
    std::vector<double> runs;
    for (int round = 0; round < absl::GetFlag(FLAGS_rounds); ++round) {
      std::vector<model::SequenceKv> seqs(sequences);
      auto logits = model::Prefill(*weights, input, false, seqs[0], cache, nullptr);
      if (!logits.ok()) return logits.status();
      for (int b = 1; b < sequences; ++b) {
        if (auto copy = cache.Fork(seqs[0], seqs[b]); !copy.ok()) return copy.status();
      }
      std::vector<std::vector<int32_t>> generated(sequences);
      std::vector<int32_t> tokens(sequences, 1);
      const auto start = std::chrono::steady_clock::now();
      for (int step = 1; step < steps; ++step) {
        std::vector<model::TokenChoice> choices(sequences);
        std::vector<model::DecodeItem> items;
        for (int b = 0; b < sequences; ++b) {
          choices[b].params.repetition_penalty = absl::GetFlag(FLAGS_repetition_penalty);
          choices[b].previous = generated[b];
          items.push_back({tokens[b], prompt_tokens + step - 1, model::LoraMode::kBase, &seqs[b], {}, &choices[b]});
        }
        if (auto s = model::DecodeSteps(*weights, items, cache, nullptr); !s.ok()) return s;
        for (int b = 0; b < sequences; ++b) generated[b].push_back(tokens[b] = choices[b].token);
      }
      runs.push_back(Seconds(start) / (steps - 1));
      for (model::SequenceKv& seq : seqs) cache.Release(seq);
    }
    return Median(runs);
  };
  auto greedy = per_step(1);
  if (!greedy.ok()) return Fail(greedy.status());
  std::printf("%-8s %12.2f %12.2f %14s %14.2f %9.0f%%\n", "greedy", *greedy * 1e3, 1.0, "-", step_limit(1) * 1e3,
              100 * step_limit(1) / *greedy);
  for (int beams : beam_counts) {
    auto batch = batch_step(beams);
    if (!batch.ok()) return Fail(batch.status());
    std::printf("%-8s %12.2f %12.2f %14s %14.2f %9.0f%%\n", (std::to_string(beams) + " seqs").c_str(), *batch * 1e3,
                *batch / *greedy, "-", step_limit(beams) * 1e3, 100 * step_limit(beams) / *batch);
    auto seconds = per_step(beams);
    if (!seconds.ok()) return Fail(seconds.status());
    std::printf("%-8s %12.2f %12.2f %14d %14.2f %9.0f%%  %s\n", ("B=" + std::to_string(beams)).c_str(),
                *seconds * 1e3, *seconds / *greedy, beams, step_limit(beams) * 1e3,
                100 * step_limit(beams) / *seconds, *seconds <= beams * *greedy ? "goal met" : "GOAL MISSED");
  }
  return 0;
}

}  // namespace
}  // namespace ixc::bench

int main(int argc, char** argv) {
  ixc::kernels::RestartForBetterBlasKernels(argv);
  absl::ParseCommandLine(argc, argv);
  return ixc::bench::Run();
}
