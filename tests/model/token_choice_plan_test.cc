// PlanTokenChoices: what the GPU is told to do for each row, against SampleToken's rules: the penalty once per
// distinct id in the vocabulary, no temperature where the row is greedy, top-k >= vocab as no top-k, and the draw
// TokenRng(seed, index) makes for DrawFromAscending.
#include "model/token_choice_plan.h"

#include <random>

#include "model/generation.h"
#include "tests/test_util.h"

namespace ixc::model {
namespace {

TEST(TokenChoicePlanTest, FollowsSampleTokensRules) {
  const std::vector<int32_t> previous = {7, 3, 7, -1, 500, 3, 9};  // repeats, one negative, one past the vocabulary
  TokenChoice greedy, penalized, drawn, wide, top1;
  penalized.params.repetition_penalty = 1.3f;
  penalized.previous = previous;
  drawn.params = {0.7f, 40, 0.9f, 1.1f};
  drawn.previous = previous;
  drawn.seed = 1234;
  drawn.index = 5;
  wide.params = {1.2f, 100, 1.f, 1.f};  // k >= vocab: every token stays
  top1.params = {0.9f, 1, 1.f, 1.f};    // k = 1 is greedy whatever the temperature
  const std::vector<const TokenChoice*> rows = {&greedy, &penalized, &drawn, &wide, &top1};
  auto plan = PlanTokenChoices(rows, /*vocab=*/100);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->offsets, (std::vector<int32_t>{0, 0, 3, 6, 6, 6}));
  EXPECT_EQ(plan->penalized, (std::vector<int32_t>{7, 3, 9, 7, 3, 9}));
  EXPECT_EQ(plan->penalties, (std::vector<float>{1.f, 1.3f, 1.1f, 1.f, 1.f}));
  EXPECT_EQ(plan->temperatures, (std::vector<float>{1.f, 1.f, 0.7f, 1.2f, 1.f}));
  EXPECT_TRUE(plan->adjusts);
  ASSERT_EQ(plan->draws.size(), 2u);
  EXPECT_EQ(plan->draws[0].row, 2);
  EXPECT_EQ(plan->draws[0].top_k, 40);
  EXPECT_EQ(plan->draws[0].top_p, 0.9f);
  std::mt19937_64 rng = TokenRng(1234, 5);
  EXPECT_EQ(plan->draws[0].uniform, std::uniform_real_distribution<double>(0.0, 1.0)(rng));
  EXPECT_EQ(plan->draws[1].row, 3);
  EXPECT_EQ(plan->draws[1].top_k, 0);

  // All greedy and unpenalized: nothing to adjust, nothing to draw.
  const std::vector<const TokenChoice*> plain = {&greedy, &top1};
  auto quiet = PlanTokenChoices(plain, 100);
  ASSERT_TRUE(quiet.ok());
  EXPECT_FALSE(quiet->adjusts);
  EXPECT_TRUE(quiet->draws.empty());
}

TEST(TokenChoicePlanTest, RefusesOutOfRangeParameters) {
  TokenChoice bad;
  bad.params = {0.8f, 0, 0.f, 1.f};  // top_p 0 keeps nothing
  const std::vector<const TokenChoice*> rows = {&bad};
  auto plan = PlanTokenChoices(rows, 100);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(plan.status().message().find("top_p 0"), std::string::npos) << plan.status();
  bad.params = {0.8f, -2, 0.5f, 1.f};
  EXPECT_FALSE(PlanTokenChoices(rows, 100).ok());
  bad.params = {0.8f, 0, 0.5f, 0.f};
  EXPECT_FALSE(PlanTokenChoices(rows, 100).ok());
}

}  // namespace
}  // namespace ixc::model
