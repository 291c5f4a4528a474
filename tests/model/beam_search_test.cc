// BeamSearch's rules on hand-made candidates (the goldens, tests/parallel/parallel_golden_test.cc, check it against
// transformers end to end), BeamCandidatesOf, and KvCache::Fork.
#include "model/beam_search.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace ixc::model {
namespace {

BeamCandidates Candidates(std::vector<std::pair<int32_t, float>> pairs) {
  BeamCandidates c;
  for (auto [id, logprob] : pairs) {
    c.ids.push_back(id);
    c.logprobs.push_back(logprob);
  }
  return c;
}

// Pads a beam's candidates to the count a step needs with unlikely tokens 100, 101, ...
BeamCandidates Padded(std::vector<std::pair<int32_t, float>> pairs, int count) {
  for (int32_t id = 100; static_cast<int>(pairs.size()) < count; ++id) pairs.push_back({id, -50.f});
  return Candidates(pairs);
}

TEST(BeamSearchTest, FirstStepExpandsBeamZeroAndEosPastTheTopBEndsNothing) {
  BeamSearch search({.num_beams = 2, .eos_ids = {2, 9}, .max_new_tokens = 5});
  EXPECT_EQ(search.live_beams(), 1);
  EXPECT_EQ(search.candidates_per_beam(), 6);  // (1 + 2 EOS ids) x 2
  // Ranks: 5, 7 continue; EOS 2 at rank 2 (>= B) ends nothing.
  auto next = search.Step({Padded({{5, -1.f}, {7, -1.5f}, {2, -2.f}}, 6)});
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->parent, (std::vector<int>{0, 0}));
  EXPECT_EQ(next->token, (std::vector<int32_t>{5, 7}));
  EXPECT_EQ(search.History(1), (std::vector<int32_t>{1, 7}));
  // Beam 1's EOS 9 ranks first: a hypothesis [7] scored (-1.5 - 0.1) / 2; beams 0 and 1 continue with 3 and 4.
  next = search.Step({Padded({{3, -1.f}}, 6), Padded({{9, -0.1f}, {4, -0.2f}}, 6)});
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->parent, (std::vector<int>{1, 0}));
  EXPECT_EQ(next->token, (std::vector<int32_t>{4, 3}));
  EXPECT_FALSE(search.done()) << "one hypothesis of two";
  // Beam 1 ([5, 3], -2) ends on EOS 9 first: [5, 3] scores -2.1 / 3, better than [7]. The best candidate was that EOS
  // itself (-2.1 / 4 beats the worst kept, -0.8), so the search goes on.
  next = search.Step({Padded({{6, -20.f}}, 6), Padded({{9, -0.1f}, {8, -20.5f}}, 6)});
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->parent, (std::vector<int>{0, 1}));
  EXPECT_FALSE(search.done());
  // Now the best running sum over its length (-22.7 / 5) cannot beat the worst kept hypothesis (-0.8): done.
  next = search.Step({Padded({{10, -1.f}}, 6), Padded({{11, -1.f}}, 6)});
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_TRUE(search.done());
  const BeamSearch::Result best = search.Finish();
  EXPECT_EQ(best.ids, (std::vector<int32_t>{5, 3, 2})) << "ended on EOS 9, written back as the first EOS id";
  EXPECT_EQ(best.finish_reason, "stop");
  EXPECT_DOUBLE_EQ(best.score, static_cast<double>(-2.f + -0.1f) / 3);
}

TEST(BeamSearchTest, RunningBeamsCompeteWhenTheStepsRunOut) {
  BeamSearch search({.num_beams = 2, .eos_ids = {}, .max_new_tokens = 2});
  EXPECT_EQ(search.candidates_per_beam(), 4);  // max(2, 1) x 2
  ASSERT_TRUE(search.Step({Padded({{5, -1.f}, {6, -1.1f}}, 4)}).ok());
  ASSERT_TRUE(search.Step({Padded({{7, -3.f}}, 4), Padded({{8, -0.5f}}, 4)}).ok());
  EXPECT_TRUE(search.done());
  const BeamSearch::Result best = search.Finish();
  EXPECT_EQ(best.ids, (std::vector<int32_t>{6, 8}));
  EXPECT_EQ(best.finish_reason, "length");
  EXPECT_FALSE(search.Step({Padded({}, 4), Padded({}, 4)}).ok()) << "no step after the end";
}

TEST(BeamSearchTest, RefusesTooFewCandidates) {
  BeamSearch search({.num_beams = 3, .eos_ids = {2}, .max_new_tokens = 4});
  auto next = search.Step({Padded({}, 5)});
  EXPECT_FALSE(next.ok());
  EXPECT_NE(next.status().message().find("needs 6"), std::string::npos) << next.status();
}

TEST(BeamSearchTest, CandidatesAreLogSoftmaxThenThePenalty) {
  LlmWeights weights;
  weights.config.vocab_size = 4;
  const std::vector<float> logits = {1.f, 3.f, 2.f, 3.f};
  auto c = BeamCandidatesOf(weights, logits, /*repetition_penalty=*/2.f, std::vector<int32_t>{3, 3}, 3, nullptr);
  ASSERT_TRUE(c.ok()) << c.status();
  const double log_sum = std::log(std::exp(1.0) + 2 * std::exp(3.0) + std::exp(2.0));
  // Token 3's log-probability (negative) doubles: it falls from first place (tied with 1) to second.
  EXPECT_EQ(c->ids, (std::vector<int32_t>{1, 3, 2}));
  EXPECT_NEAR(c->logprobs[0], 3 - log_sum, 1e-6);
  EXPECT_NEAR(c->logprobs[1], 2 * (3 - log_sum), 1e-6);
  EXPECT_NEAR(c->logprobs[2], 2 - log_sum, 1e-6);
}

// On a vocabulary of 1003 (groups of eight and a tail), penalties above and below 1 and a history that repeats:
// the same candidates as log-softmax, the penalty and a full sort, written out plainly here.
TEST(BeamSearchTest, CandidatesMatchAFullSort) {
  LlmWeights weights;
  weights.config.vocab_size = 1003;
  std::mt19937 random(7);
  std::normal_distribution<float> normal(0.f, 3.f);
  std::vector<float> logits(1003);
  for (float& x : logits) x = normal(random);
  const std::vector<int32_t> history = {1, 40, 999, 40, 1002, 7};
  for (float penalty : {1.f, 1.3f, 0.5f}) {
    for (int count : {1, 6, 9}) {
      auto got = BeamCandidatesOf(weights, logits, penalty, history, count, nullptr);
      ASSERT_TRUE(got.ok()) << got.status();
      const float max = *std::max_element(logits.begin(), logits.end());
      double sum = 0;
      for (float x : logits) sum += std::exp(static_cast<double>(x) - max);
      std::vector<std::pair<float, int32_t>> all;
      for (int32_t id = 0; id < 1003; ++id) {
        float value = (logits[id] - max) - static_cast<float>(std::log(sum));
        if (penalty != 1.f && std::find(history.begin(), history.end(), id) != history.end()) {
          value = value < 0 ? value * penalty : value / penalty;
        }
        all.push_back({value, id});
      }
      std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : a.second < b.second;
      });
      for (int i = 0; i < count; ++i) {
        EXPECT_EQ(got->ids[i], all[i].second) << "penalty " << penalty << " rank " << i;
        EXPECT_NEAR(got->logprobs[i], all[i].first, 1e-5f);
      }
    }
  }
}

TEST(KvCacheForkTest, ChildSharesWholeBlocksAndCopiesThePartlyFilledOne) {
  LlmConfig config;
  config.num_layers = 1;
  config.num_kv_heads = 1;
  config.head_dim = 2;
  KvCache cache(config, /*block_size=*/2, /*num_blocks=*/8);
  SequenceKv parent;
  ASSERT_TRUE(cache.Reserve(parent, 3).ok());
  parent.length = 3;
  for (int64_t t = 0; t < 3; ++t) *cache.KeySlot(0, parent, t) = static_cast<float>(10 + t);
  SequenceKv child;
  auto copy = cache.Fork(parent, child);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(child.block_table[0], parent.block_table[0]) << "the full block is shared";
  EXPECT_NE(child.block_table[1], parent.block_table[1]) << "the partly filled one is copied";
  EXPECT_EQ(copy->from, parent.block_table[1]);
  EXPECT_EQ(copy->to, child.block_table[1]);
  EXPECT_EQ(*cache.KeySlot(0, child, 2), 12.f);
  *cache.KeySlot(0, child, 3) = 99.f;  // the child's next token does not reach the parent's block
  EXPECT_EQ(cache.free_blocks(), 5);
  cache.Release(parent);
  EXPECT_EQ(cache.free_blocks(), 6) << "the shared block stays with the child";
  EXPECT_EQ(*cache.KeySlot(0, child, 0), 10.f);
  cache.Release(child);
  EXPECT_EQ(cache.free_blocks(), 8);

  SequenceKv full, forked;  // a full last block: nothing to copy
  ASSERT_TRUE(cache.Reserve(full, 4).ok());
  full.length = 4;
  copy = cache.Fork(full, forked);
  ASSERT_TRUE(copy.ok());
  EXPECT_EQ(copy->to, -1);
  EXPECT_EQ(forked.block_table, full.block_table);
}

TEST(KvCacheForkTest, AssignedBlocksTakeTheCallersCopyTarget) {
  LlmConfig config;
  config.num_layers = 1;
  config.num_kv_heads = 1;
  config.head_dim = 1;
  KvCache cache(config, 4, 4);
  cache.UseAssignedBlocks();
  SequenceKv parent, child;
  ASSERT_TRUE(cache.Assign(parent, std::vector<int32_t>{2}).ok());
  parent.length = 1;
  EXPECT_FALSE(cache.Fork(parent, child).ok()) << "no target named";
  auto copy = cache.Fork(parent, child, 3);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(child.block_table, (std::vector<int32_t>{3}));
}

}  // namespace
}  // namespace ixc::model
