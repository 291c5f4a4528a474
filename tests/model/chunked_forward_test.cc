// How a forward call is cut into backend calls within CallLimits (model/chunked_forward.h), seen by a backend that
// records each call and writes each row's id as its logits: the calls' shapes, the chunks' inputs (their ids, image
// rows and the whole prompt's context length), the all_logits rows concatenated in order, the choice on the last
// chunk alone. That the chunks give the model's own logits is LanguageModelGoldenTest.LongPromptsInChunksMatchOneCall.
#include "model/chunked_forward.h"

#include <gtest/gtest.h>

#include <numeric>

#include "tests/model/gather_merge_input.h"

namespace ixc::model {
namespace {

constexpr int64_t kVocab = 2;

struct Recorded {
  std::vector<int64_t> tokens;  // per entry of the call
  std::vector<int64_t> context_lengths;
  std::vector<bool> chose;
};

TEST(ChunkedForwardTest, CallsStayWithinTheLimitsAndEntriesGetTheirLogits) {
  LlmWeights weights;
  weights.config.hidden_size = 8;
  std::vector<int32_t> decode_ids = {100}, scored_ids(10), prompt_ids(9), last_ids = {200};
  std::iota(scored_ids.begin(), scored_ids.end(), 0);
  std::iota(prompt_ids.begin(), prompt_ids.end(), 50);
  std::vector<uint8_t> image(9, 0);
  image[7] = 1;
  ForwardInput decode, scored, prompt, last;
  decode.ids = decode_ids;
  scored.ids = scored_ids;
  scored.all_logits = true;
  prompt.ids = prompt_ids;
  prompt.image_mask = image;
  last.ids = last_ids;
  SequenceKv seqs[4];
  seqs[2].positions = {0, 1, 2};  // three tokens cached before: the prompt ends at position 11
  std::vector<float> logits[4];
  TokenChoice choice;
  std::vector<BatchEntry> batch = {{decode, &seqs[0], &logits[0]},
                                   {scored, &seqs[1], &logits[1]},
                                   {prompt, &seqs[2], &logits[2], &choice},
                                   {last, &seqs[3], &logits[3]}};
  std::vector<Recorded> calls;
  std::vector<uint8_t> seen_image;
  const BackendCall backend = [&](std::vector<BatchEntry>& call) {
    Recorded& recorded = calls.emplace_back();
    for (BatchEntry& entry : call) {
      const int64_t tokens = static_cast<int64_t>(entry.input.ids.size());
      recorded.tokens.push_back(tokens);
      recorded.context_lengths.push_back(entry.input.context_length);
      recorded.chose.push_back(entry.choice != nullptr);
      if (entry.seq == &seqs[2]) {
        seen_image.insert(seen_image.end(), entry.input.image_mask.begin(), entry.input.image_mask.end());
      }
      entry.logits->clear();
      for (int64_t t = entry.input.all_logits ? 0 : tokens - 1; t < tokens; ++t) {
        entry.logits->insert(entry.logits->end(), kVocab, static_cast<float>(entry.input.ids[t]));
      }
    }
    return absl::OkStatus();
  };
  ASSERT_TRUE(ForwardInChunks(weights, batch, {.rows = 6, .logit_rows = 4}, backend).ok());
  // The decode alone (the scored prompt does not fit beside it); the scored prompt in chunks of 4 (its logit rows);
  // the prompt in chunks of 6 rows; the last decode.
  std::vector<std::vector<int64_t>> shapes;
  for (const Recorded& call : calls) shapes.push_back(call.tokens);
  EXPECT_EQ(shapes, (std::vector<std::vector<int64_t>>{{1}, {4}, {4}, {2}, {6}, {3}, {1}}));
  for (int c : {1, 2, 3}) EXPECT_EQ(calls[c].context_lengths[0], 10) << "call " << c;
  for (int c : {4, 5}) EXPECT_EQ(calls[c].context_lengths[0], 12) << "call " << c;
  EXPECT_EQ(calls[0].context_lengths[0], 0);  // an entry in one piece goes as it came
  EXPECT_FALSE(calls[4].chose[0]);
  EXPECT_TRUE(calls[5].chose[0]);
  EXPECT_EQ(seen_image, image);
  // Every row of the scored prompt, in order; the others their last row's.
  std::vector<float> every_row;
  for (int32_t id : scored_ids) every_row.insert(every_row.end(), kVocab, static_cast<float>(id));
  EXPECT_EQ(logits[1], every_row);
  EXPECT_EQ(logits[0], std::vector<float>(kVocab, 100.f));
  EXPECT_EQ(logits[2], std::vector<float>(kVocab, 58.f));
  EXPECT_EQ(logits[3], std::vector<float>(kVocab, 200.f));
}

// Entries go together while their rows, and their logit rows, fit a call.
TEST(ChunkedForwardTest, EntriesThatFitGoTogether) {
  LlmWeights weights;
  weights.config.hidden_size = 8;
  std::vector<int32_t> ids = {1, 2, 3};
  ForwardInput input;
  input.ids = ids;
  SequenceKv seqs[3];
  std::vector<float> logits[3];
  std::vector<BatchEntry> batch = {
      {input, &seqs[0], &logits[0]}, {input, &seqs[1], &logits[1]}, {input, &seqs[2], &logits[2]}};
  std::vector<size_t> sizes;
  const BackendCall backend = [&](std::vector<BatchEntry>& call) {
    sizes.push_back(call.size());
    return absl::OkStatus();
  };
  ASSERT_TRUE(ForwardInChunks(weights, batch, {.rows = 7}, backend).ok());
  EXPECT_EQ(sizes, (std::vector<size_t>{2, 1}));
  // The same by their logit rows: every row's logits wanted, 7 such rows a call.
  sizes.clear();
  for (BatchEntry& entry : batch) entry.input.all_logits = true;
  ASSERT_TRUE(ForwardInChunks(weights, batch, {.rows = 100, .logit_rows = 7}, backend).ok());
  EXPECT_EQ(sizes, (std::vector<size_t>{2, 1}));
}

// With sequence parallelism: a gather-merge chunk is cut like a local prompt, its positions and the rows whose K/V
// this rank keeps sliced with it; a ring prefill's shard goes as it is, whatever its length.
TEST(ChunkedForwardTest, GatherMergeChunksAreCutRingShardsAreNot) {
  LlmWeights weights;
  weights.config.hidden_size = 8;
  std::vector<int32_t> ids(5, 7), positions = {10, 11, 12, 13, 14};
  std::vector<uint8_t> keep = {1, 1, 0, 0, 1};
  const ForwardInput chunk = GatherMergeInput(ids, positions, keep);
  SequenceKv seq;
  std::vector<float> logits;
  std::vector<BatchEntry> batch = {{chunk, &seq, &logits}};
  std::vector<std::vector<int32_t>> seen_positions;
  std::vector<uint8_t> seen_keep;
  std::vector<int64_t> context_lengths;
  const BackendCall backend = [&](std::vector<BatchEntry>& call) {
    const ForwardInput& input = call[0].input;
    seen_positions.emplace_back(input.positions.begin(), input.positions.end());
    seen_keep.insert(seen_keep.end(), input.store_kv.begin(), input.store_kv.end());
    context_lengths.push_back(input.context_length);
    call[0].logits->assign(kVocab, 0.f);
    return absl::OkStatus();
  };
  ASSERT_TRUE(ForwardInChunks(weights, batch, {.rows = 2}, backend).ok());
  EXPECT_EQ(seen_positions, (std::vector<std::vector<int32_t>>{{10, 11}, {12, 13}, {14}}));
  EXPECT_EQ(seen_keep, keep);
  EXPECT_EQ(context_lengths, (std::vector<int64_t>{15, 15, 15}));

  seen_positions.clear();
  batch[0].input.sp_attention = SpAttention::kRing;
  ASSERT_TRUE(ForwardInChunks(weights, batch, {.rows = 2}, backend).ok());
  EXPECT_EQ(seen_positions, (std::vector<std::vector<int32_t>>{positions}));
}

}  // namespace
}  // namespace ixc::model
