// The metadata of a GPU forward call (model/batch_metadata.h), laid out on the host: each row's position, cache slot,
// id and last visible key; the decode runs with their block-table offsets; the masks; the tables last, so that a
// decode batch of one shape keeps every other part at the same offsets from step to step (what a replayed CUDA graph
// needs). Checked against the KV cache's own block tables on batches of prefills, decodes and SP shards.
#include "model/batch_metadata.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "parallel/sequence_shard.h"
#include "tests/model/gather_merge_input.h"

namespace ixc::model {
namespace {

constexpr int kBlock = 4;

LlmWeights Shapes() {
  LlmWeights weights;  // a forward's bookkeeping reads the config only
  weights.config.hidden_size = 8;
  weights.config.num_layers = 1;
  weights.config.num_heads = 2;
  weights.config.num_kv_heads = 1;
  weights.config.head_dim = 4;
  weights.config.vocab_size = 100;
  weights.has_plora = true;
  weights.has_web_lora = true;
  weights.has_write_lora = true;
  weights.shard = weights.config;
  return weights;
}

class BatchMetadataTest : public ::testing::Test {
 protected:
  // Prepares `inputs` over `seqs` as one batch, and lays it out.
  BatchMetadata LayOut(std::vector<ForwardInput> inputs, std::vector<SequenceKv*> seqs,
                       BatchLayoutOptions options = {.block_size = kBlock}) {
    inputs_ = std::move(inputs);
    batch_.clear();
    logits_.resize(inputs_.size());
    for (size_t i = 0; i < inputs_.size(); ++i) batch_.push_back({inputs_[i], seqs[i], &logits_[i]});
    auto rows = PrepareSegments(weights_, batch_, cache_, segments_);
    EXPECT_TRUE(rows.ok()) << rows.status();
    rows_ = rows.ok() ? *rows : 0;
    return LayOutBatch(segments_, rows_, options);
  }
  // Row r's value of the (rows) part at `at`.
  int32_t At(const BatchMetadata& m, int64_t at, int64_t r) const { return m.ints[at + r]; }
  // `run` starts at first_row, its rows see `visible` keys and find the block tables `tables` (their first entries
  // past `skip` blocks each) through their offsets.
  void ExpectRun(const BatchMetadata& m, const DecodeRunLayout& run, int64_t first_row,
                 const std::vector<int32_t>& visible, const std::vector<const SequenceKv*>& tables, int skip) const {
    EXPECT_EQ(run.first_row, first_row);
    ASSERT_EQ(run.rows, static_cast<int64_t>(visible.size()));
    EXPECT_EQ(run.max_visible, *std::max_element(visible.begin(), visible.end()));
    for (size_t r = 0; r < visible.size(); ++r) {
      EXPECT_EQ(At(m, run.visible_at, r), visible[r]) << r;
      const size_t block = std::min<size_t>(skip, tables[r]->block_table.size() - 1);
      EXPECT_EQ(m.ints[At(m, run.table_offsets_at, r) + block], tables[r]->block_table[block]) << r;
    }
  }
  // Prefills `tokens` ids into `seq`.
  void Prefill(SequenceKv& seq, int tokens) {
    ids_.emplace_back(tokens, 7);
    ForwardInput input;
    input.ids = ids_.back();
    LayOut({input}, {&seq});
  }

  LlmWeights weights_ = Shapes();
  KvCache cache_{weights_.config, kBlock, 64};
  std::vector<ForwardInput> inputs_;
  std::vector<BatchEntry> batch_;
  std::vector<std::vector<float>> logits_;
  std::vector<Segment> segments_;
  std::vector<std::vector<int32_t>> ids_;
  int64_t rows_ = 0;
};

TEST_F(BatchMetadataTest, PrefillAndDecodesInOneBatch) {
  SequenceKv a, b, c;
  Prefill(b, 5);
  Prefill(c, 3);
  const std::vector<int32_t> prompt = {11, 12, 13, 14, 15, 16}, b_token = {21}, c_token = {31};
  const std::vector<uint8_t> image = {0, 1, 1, 0, 0, 0};
  ForwardInput pa, db, dc;
  pa.ids = prompt;
  pa.image_mask = image;
  db.ids = b_token;
  dc.ids = c_token;
  dc.lora = LoraMode::kBase;
  const BatchMetadata m = LayOut({pa, db, dc}, {&a, &b, &c});
  ASSERT_EQ(rows_, 8);
  const std::vector<int32_t> positions = {0, 1, 2, 3, 4, 5, 5, 3};
  for (int64_t r = 0; r < 8; ++r) {
    EXPECT_EQ(At(m, m.positions_at, r), positions[r]) << r;
    EXPECT_EQ(At(m, m.last_key_at, r), positions[r]) << r;  // every key is here: the last visible is its own
  }
  // Slots from the cache's block tables: a's 6 tokens, b's sixth, c's fourth.
  for (int64_t t = 0; t < 6; ++t) EXPECT_EQ(At(m, m.slots_at, t), a.block_table[t / kBlock] * kBlock + t % kBlock);
  EXPECT_EQ(At(m, m.slots_at, 6), b.block_table[1] * kBlock + 1);
  EXPECT_EQ(At(m, m.slots_at, 7), c.block_table[0] * kBlock + 3);
  EXPECT_EQ(At(m, m.ids_at, 0), 11);
  EXPECT_EQ(At(m, m.ids_at, 7), 31);
  // The two decodes are one run; each row's table offset finds its sequence's table in the upload.
  ASSERT_EQ(m.decode_runs.size(), 1u);
  ExpectRun(m, m.decode_runs[0], 6, {6, 4}, {&b, &c}, 1);
  for (size_t i = 0; i < 3; ++i) {
    const SequenceKv& seq = *segments_[i].seq;
    EXPECT_EQ(std::vector<int32_t>(m.ints.begin() + m.tables_at[i], m.ints.begin() + m.tables_at[i] +
                                                                         seq.block_table.size()),
              seq.block_table);
  }
  // Image rows 1 and 2 in the mask bytes; the logits of each segment's last row.
  const auto* masks = reinterpret_cast<const uint8_t*>(m.ints.data() + m.masks_at);
  EXPECT_EQ(std::vector<uint8_t>(masks, masks + 8), (std::vector<uint8_t>{0, 1, 1, 0, 0, 0, 0, 0}));
  EXPECT_TRUE(m.masks.any_image);
  EXPECT_EQ(m.logit_rows, (std::vector<int64_t>{5, 6, 7}));
  // The logit rows as one run of their compacted indices: a's last row, then the decodes, each in its own table.
  ASSERT_EQ(m.logit_runs.size(), 1u);
  ExpectRun(m, m.logit_runs[0], 0, {6, 6, 4}, {&a, &b, &c}, 1);
  // The logit rows' own masks after every row's: neither is an image row, all are in base mode.
  const auto* logit_masks = reinterpret_cast<const uint8_t*>(m.ints.data() + m.logit_masks_at);
  EXPECT_GE(m.logit_masks_at * 4, m.masks_at * 4 + 3 * 8);
  EXPECT_LE(m.logit_masks_at * 4 + 3 * 3, m.tables_at[0] * 4);
  EXPECT_EQ(std::vector<uint8_t>(logit_masks, logit_masks + 9), std::vector<uint8_t>(9, 0));
  EXPECT_FALSE(m.logit_masks.any_image);
}

TEST_F(BatchMetadataTest, LogitRowsKeepTheirMasks) {
  SequenceKv a, b;
  Prefill(b, 5);
  // a: a web-mode prompt whose last row is an image row (its logits wanted); b: a write-mode decode row.
  const std::vector<int32_t> prompt = {11, 12, 13, 14}, b_token = {21};
  const std::vector<uint8_t> image = {1, 0, 0, 1};
  ForwardInput pa, db;
  pa.ids = prompt;
  pa.image_mask = image;
  pa.lora = LoraMode::kWeb;
  db.ids = b_token;
  db.lora = LoraMode::kWrite;
  const BatchMetadata m = LayOut({pa, db}, {&a, &b});
  ASSERT_EQ(m.logit_rows, (std::vector<int64_t>{3, 4}));
  const auto* bytes = reinterpret_cast<const uint8_t*>(m.ints.data() + m.logit_masks_at);
  EXPECT_EQ(std::vector<uint8_t>(bytes, bytes + 6), (std::vector<uint8_t>{1, 0, /*web*/ 1, 0, /*write*/ 0, 1}));
  EXPECT_EQ(m.logit_masks.image, (std::vector<uint8_t>{1, 0}));
  EXPECT_TRUE(m.logit_masks.any_image && m.logit_masks.any_web && m.logit_masks.any_write);
  // Every row's masks are where they were.
  const auto* all = reinterpret_cast<const uint8_t*>(m.ints.data() + m.masks_at);
  EXPECT_EQ(std::vector<uint8_t>(all, all + 5), (std::vector<uint8_t>{1, 0, 0, 1, 0}));
}

TEST_F(BatchMetadataTest, DecodeStepsKeepTheirLayoutAsTheTablesGrow) {
  SequenceKv a, b;
  Prefill(a, 3);
  Prefill(b, 9);
  std::vector<BatchMetadata> steps;
  const std::vector<int32_t> token = {5};
  for (int step = 0; step < 3; ++step) {  // a's fourth token fills its block; its fifth starts a new one
    ForwardInput da, db;
    da.ids = token;
    db.ids = token;
    steps.push_back(LayOut({da, db}, {&a, &b}, {.block_size = kBlock, .bucket_decode = true}));
  }
  EXPECT_EQ(steps[0].tables_at[0], steps[2].tables_at[0]);
  EXPECT_LT(steps[0].tables_at[1], steps[2].tables_at[1]);  // a's table grew by a block
  for (const BatchMetadata& m : steps) {
    EXPECT_EQ(m.masks_at, steps[0].masks_at);
    ASSERT_EQ(m.decode_runs.size(), 1u);
    EXPECT_EQ(m.decode_runs[0].table_offsets_at, steps[0].decode_runs[0].table_offsets_at);
    EXPECT_EQ(m.decode_runs[0].visible_at, steps[0].decode_runs[0].visible_at);
    EXPECT_EQ(m.decode_runs[0].max_visible, 256);  // bucketed: the same graph serves every step
  }
  EXPECT_EQ(At(steps[2], steps[2].decode_runs[0].visible_at, 0), 6);
}

TEST_F(BatchMetadataTest, ShardedKeysLimitWhatEachRowSees) {
  // A sequence-parallel rank that keeps the tokens at positions 0, 1, 4 and 5 of six, then 7 of a chunk at 6 and 7.
  SequenceKv seq;
  const std::vector<int32_t> head_ids(6, 3), head_positions = {0, 1, 2, 3, 4, 5}, chunk_ids = {4, 4};
  const std::vector<int32_t> chunk_positions = {6, 7};
  const std::vector<uint8_t> head_keep = {1, 1, 0, 0, 1, 1}, chunk_keep = {0, 1};
  LayOut({GatherMergeInput(head_ids, head_positions, head_keep)}, {&seq});
  const BatchMetadata m =
      LayOut({GatherMergeInput(chunk_ids, chunk_positions, chunk_keep)}, {&seq}, {.block_size = kBlock});
  EXPECT_EQ(seq.positions, (std::vector<int32_t>{0, 1, 4, 5, 7}));
  EXPECT_EQ(At(m, m.last_key_at, 0), 3);  // position 6 sees the keys at 0, 1, 4, 5
  EXPECT_EQ(At(m, m.last_key_at, 1), 4);  // position 7 also its own
  EXPECT_EQ(At(m, m.slots_at, 0), -1);    // not kept here
  EXPECT_EQ(At(m, m.slots_at, 1), seq.block_table[1] * kBlock + 0);
  ASSERT_EQ(m.decode_runs.size(), 1u);     // two tokens: the decode kernel, seeing 4 and 5 keys
  EXPECT_EQ(At(m, m.decode_runs[0].visible_at, 0), 4);
  EXPECT_EQ(At(m, m.decode_runs[0].visible_at, 1), 5);
}

TEST_F(BatchMetadataTest, ARankWithoutKeysSeesNone) {
  // A short prompt whole on every SP rank (parallel::RingPrefill): this rank keeps none of its three tokens, so its
  // rows see no key (the all-gather merge weighs its part nothing); the next step's token is its first.
  SequenceKv seq;
  const std::vector<int32_t> ids(3, 5), positions = {0, 1, 2}, step_ids = {6}, step_position = {3};
  const std::vector<uint8_t> keep_none(3, 0), keep = {1};
  const BatchMetadata m = LayOut({GatherMergeInput(ids, positions, keep_none)}, {&seq}, {.block_size = kBlock});
  EXPECT_TRUE(seq.positions.empty());
  EXPECT_TRUE(seq.block_table.empty());
  ASSERT_EQ(m.decode_runs.size(), 1u);
  for (int t = 0; t < 3; ++t) {
    EXPECT_EQ(At(m, m.last_key_at, t), -1);
    EXPECT_EQ(At(m, m.slots_at, t), -1);
    EXPECT_EQ(At(m, m.decode_runs[0].visible_at, t), 0);
  }
  EXPECT_EQ(m.decode_runs[0].max_visible, 0);
  const BatchMetadata next = LayOut({GatherMergeInput(step_ids, step_position, keep)}, {&seq}, {.block_size = kBlock});
  EXPECT_EQ(seq.positions, (std::vector<int32_t>{3}));
  EXPECT_EQ(At(next, next.slots_at, 0), seq.block_table[0] * kBlock);
  EXPECT_EQ(At(next, next.decode_runs[0].visible_at, 0), 1);
}

TEST_F(BatchMetadataTest, RingPrefillWantsThePromptsLastPositionOnly) {
  SequenceKv seq;
  const std::vector<int32_t> ids(4, 9), positions = {0, 1, 6, 7};  // rank 0 of 2 in an 8-token zig-zag
  ForwardInput shard;
  shard.ids = ids;
  shard.positions = positions;
  shard.context_length = 8;
  shard.sp_attention = SpAttention::kRing;
  const BatchMetadata m = LayOut({shard}, {&seq}, {.block_size = kBlock});
  EXPECT_EQ(m.logit_rows, (std::vector<int64_t>{3}));
  SequenceKv other;
  const std::vector<int32_t> other_positions = {2, 3, 4, 5};  // rank 1: no last position, no logits
  shard.positions = other_positions;
  EXPECT_TRUE(LayOut({shard}, {&other}, {.block_size = kBlock}).logit_rows.empty());
}

TEST_F(BatchMetadataTest, DecodeRunsAreCappedAndContiguous) {
  std::vector<SequenceKv> seqs(5);
  for (SequenceKv& seq : seqs) Prefill(seq, 2);
  const std::vector<int32_t> token = {1}, prompt(6, 2);
  std::vector<ForwardInput> inputs(5);
  std::vector<SequenceKv*> pointers;
  for (int i = 0; i < 5; ++i) {
    inputs[i].ids = i == 2 ? std::span<const int32_t>(prompt) : std::span<const int32_t>(token);
    pointers.push_back(&seqs[i]);
  }
  // Rows: 0, 1 (decodes), 2-7 (a 6-token chunk: flash), 8, 9 (decodes); at most 1 row per run.
  const BatchMetadata m = LayOut(inputs, pointers, {.block_size = kBlock, .decode_rows_per_launch = 1});
  ASSERT_EQ(m.decode_runs.size(), 4u);
  EXPECT_EQ(m.decode_runs[0].first_row, 0);
  EXPECT_EQ(m.decode_runs[1].first_row, 1);
  EXPECT_EQ(m.decode_runs[2].first_row, 8);
  EXPECT_EQ(m.decode_runs[3].first_row, 9);
  for (const DecodeRunLayout& run : m.decode_runs) EXPECT_EQ(run.rows, 1);
  // The logit rows (0, 1, 7, 8, 9) as runs of their compacted indices, capped alike; the chunk's last row sees its 8
  // keys (2 cached, 6 new).
  ASSERT_EQ(m.logit_runs.size(), 5u);
  for (int64_t j = 0; j < 5; ++j) {
    EXPECT_EQ(m.logit_runs[j].first_row, j);
    EXPECT_EQ(m.logit_runs[j].rows, 1);
  }
  EXPECT_EQ(At(m, m.logit_runs[2].visible_at, 0), 8);
  EXPECT_EQ(m.ints[At(m, m.logit_runs[2].table_offsets_at, 0)], seqs[2].block_table[0]);
}

// Every rank's queries against every rank's block-cyclic shard: the keys each sees are exactly those at or before it.
TEST(RingLastKeysTest, CountsTheKeysAtOrBeforeEachQuery) {
  const int64_t length = 23;
  const int size = 3;
  std::vector<std::vector<int32_t>> blocks;
  for (int rank = 0; rank < size; ++rank) blocks.push_back(parallel::OwnedPositions(length, rank, size, 4));
  for (int rank = 0; rank < size; ++rank) {
    const std::vector<int32_t>& queries = blocks[rank];
    const std::vector<int32_t> last_keys = RingLastKeys(blocks, queries);
    ASSERT_EQ(last_keys.size(), size * queries.size());
    int64_t seen = 0;
    for (int source = 0; source < size; ++source) {
      for (size_t q = 0; q < queries.size(); ++q) {
        const int32_t last = last_keys[source * queries.size() + q];
        int32_t expected = -1;
        for (size_t k = 0; k < blocks[source].size(); ++k) {
          if (blocks[source][k] <= queries[q]) expected = static_cast<int32_t>(k);
        }
        EXPECT_EQ(last, expected) << "rank " << rank << " block " << source << " query " << queries[q];
        seen += last + 1;
      }
    }
    // Over all blocks, each query sees its position + 1 keys: causal attention over the whole prompt.
    int64_t causal = 0;
    for (int32_t p : queries) causal += p + 1;
    EXPECT_EQ(seen, causal);
  }
}

}  // namespace
}  // namespace ixc::model
