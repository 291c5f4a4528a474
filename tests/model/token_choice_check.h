// File: tests/model/token_choice_check.h
//
// The check of TokenChoice (model/language_model.h), for the CPU (tests/model/) and the GPU (tests/gpu/): a batch
// of decode steps that choose their own next tokens gives the tokens SampleNext picks from the logits of the same
// batch run without a choice. Both batches hold copies of the same sequences, so their logits are identical and
// every sampling rule (greedy, repetition penalty, temperature with top-k and top-p, several seeds) must land on the
// same token. On the CPU the choice goes through SampleNext itself; on the GPU through the device kernels. The rows
// that ask for log-probabilities get those of a plain log-softmax of the same logits (in double, over the whole
// vocabulary). With `comm` every rank of a TP x SP layout calls it alike.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "model/generation.h"

namespace ixc::testing {

// A choice's log-probabilities against the log-softmax of its raw logits (whole rows).
inline void ExpectLogprobs(const std::vector<float>& logits, const model::TokenChoice& choice, int top_n) {
  double max = *std::max_element(logits.begin(), logits.end()), sum = 0;
  for (float x : logits) sum += std::exp(x - max);
  const double log_z = max + std::log(sum);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  EXPECT_NEAR(choice.logprobs.chosen, logits[choice.token] - log_z, 1e-5) << "token " << choice.token;
  ASSERT_EQ(choice.logprobs.top_ids.size(), static_cast<size_t>(top_n));
  ASSERT_EQ(choice.logprobs.top_logprobs.size(), static_cast<size_t>(top_n));
  for (int k = 0; k < top_n; ++k) {
    EXPECT_EQ(choice.logprobs.top_ids[k], order[k]) << "rank " << k;
    EXPECT_NEAR(choice.logprobs.top_logprobs[k], logits[order[k]] - log_z, 1e-5) << "rank " << k;
  }
}

inline void ExpectChoicesMatchHostSampling(const model::LlmWeights& weights, model::KvCache& cache,
                                           const std::vector<int32_t>& prompt, parallel::DeviceComm* comm = nullptr) {
  using model::DecodeItem;
  const std::vector<kernels::SamplingParams> rules = {
      {},                     // greedy
      {0.f, 0, 1.f, 1.3f},    // greedy with a repetition penalty
      {0.8f, 20, 0.9f, 1.f},  // top-k and top-p
      {1.2f, 0, 0.7f, 1.1f},  // top-p with a penalty
      {0.6f, 5, 1.f, 1.f},    // top-k alone
      {1.f, 0, 1.f, 1.f},     // the whole distribution
  };
  const int n = static_cast<int>(rules.size());
  // Per rule, in steps 2 and 3 (the first two keep the GPU's own choice, which such rows leave to the host): -1 asks
  // for no log-probabilities; 0 for the chosen token's alone.
  constexpr int kTopLogprobs[] = {3, -1, 5, 0, -1, 20};
  std::vector<model::SequenceKv> chosen(n), plain(n);
  std::vector<std::vector<int32_t>> generated(n);
  for (int i = 0; i < n; ++i) {
    model::ForwardInput input;
    input.ids = std::span<const int32_t>(prompt.data(), prompt.size() - i % 3);  // lengths differ
    for (model::SequenceKv* seq : {&chosen[i], &plain[i]}) {
      const auto logits = model::Prefill(weights, input, false, *seq, cache, comm);
      ASSERT_TRUE(logits.ok()) << logits.status();
    }
    generated[i] = {prompt[i], prompt[2 * i + 1], prompt[i]};  // ids for the penalty, one repeated
  }
  int differing_from_greedy = 0;
  for (int step = 0; step < 4; ++step) {
    std::vector<model::TokenChoice> choices(n);
    std::vector<DecodeItem> with_choice, with_logits;
    for (int i = 0; i < n; ++i) {
      const int32_t position = static_cast<int32_t>(prompt.size() - i % 3 + step);
      const int32_t token = generated[i].back();
      choices[i] = {rules[i], generated[i], /*seed=*/1000u + i, static_cast<int64_t>(generated[i].size())};
      if (step >= 2) choices[i].top_logprobs = kTopLogprobs[i];
      with_choice.push_back({token, position, model::LoraMode::kBase, &chosen[i], {}, &choices[i]});
      with_logits.push_back({token, position, model::LoraMode::kBase, &plain[i], {}, nullptr});
    }
    const absl::Status chose = model::DecodeSteps(weights, with_choice, cache, comm);
    ASSERT_TRUE(chose.ok()) << chose;
    const absl::Status computed = model::DecodeSteps(weights, with_logits, cache, comm);  // whole logits everywhere
    ASSERT_TRUE(computed.ok()) << computed;
    for (int i = 0; i < n; ++i) {
      std::vector<float> logits = with_logits[i].logits;
      ASSERT_EQ(static_cast<int64_t>(logits.size()), weights.config.vocab_size);
      const int32_t greedy = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      auto expected = model::SampleNext(weights, logits, rules[i], generated[i], 1000u + i,
                                        static_cast<int64_t>(generated[i].size()), nullptr);
      ASSERT_TRUE(expected.ok()) << expected.status();
      EXPECT_EQ(choices[i].token, *expected) << "rule " << i << " step " << step;
      if (choices[i].top_logprobs >= 0) ExpectLogprobs(with_logits[i].logits, choices[i], kTopLogprobs[i]);
      differing_from_greedy += *expected != greedy;
      generated[i].push_back(*expected);
    }
  }
  // The sampling rules were exercised, not only argmax.
  EXPECT_GT(differing_from_greedy, 0);
  for (int i = 0; i < n; ++i) {
    cache.Release(chosen[i]);
    cache.Release(plain[i]);
  }
}

}  // namespace ixc::testing
