// Mapping: the layout arithmetic of architecture section 1 on concrete rank examples, and the validation messages.
#include "parallel/mapping.h"
#include "tests/test_util.h"

#include <algorithm>

namespace ixc::parallel {
namespace {

TEST(MappingTest, TwelveRanksOfTheHeaderExample) {
  const Layout layout{1, 3, 4, 2};
  EXPECT_EQ(Mapping::Create(12, 0, layout)->role(), Role::kCoordinator);
  EXPECT_EQ(Mapping::Create(12, 2, layout)->role(), Role::kVision);
  EXPECT_EQ(Mapping::Create(12, 2, layout)->vision_index(), 1);
  const Mapping m = *Mapping::Create(12, 9, layout);
  EXPECT_EQ(m.role(), Role::kLlm);
  EXPECT_EQ(m.tp_rank(), 1);
  EXPECT_EQ(m.sp_rank(), 1);
  EXPECT_EQ(m.TpGroup(), (std::vector<int>{8, 9, 10, 11}));
  EXPECT_EQ(m.SpGroup(), (std::vector<int>{5, 9}));
  EXPECT_EQ(m.VisionRanks(), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(m.LlmRanks().size(), 8u);
  EXPECT_EQ(m.ToString(), "rank 9/12 llm tp 1/4 sp 1/2");
}

TEST(MappingTest, LlmOnlyJobs) {
  const Mapping m = *Mapping::Create(2, 1, {0, 0, 2, 1});
  EXPECT_EQ(m.role(), Role::kLlm);
  EXPECT_EQ(m.tp_rank(), 1);
  EXPECT_EQ(m.TpGroup(), (std::vector<int>{0, 1}));
}

// A TP group split over two machines is named with its ranks and machines; SP groups and vision ranks may span.
TEST(MappingTest, TpGroupsSpanningMachinesAreWarnedOf) {
  const Layout layout{1, 1, 2, 2};  // ranks: 0 coordinator, 1 vision, 2-3 sp 0, 4-5 sp 1
  EXPECT_TRUE(TpGroupsSpanningMachines(layout, {"a", "a", "a", "a", "b", "b"}).empty());  // SP across machines
  EXPECT_TRUE(TpGroupsSpanningMachines(layout, {"a", "b", "a", "a", "a", "a"}).empty());  // the vision rank too
  const std::vector<std::string> split = TpGroupsSpanningMachines(layout, {"a", "a", "a", "b", "b", "b"});
  ASSERT_EQ(split.size(), 1u);
  EXPECT_NE(split[0].find("ranks 2-3 (sp 0) spans the machines a, b"), std::string::npos) << split[0];
  EXPECT_EQ(TpGroupsSpanningMachines(layout, {"a", "a", "a", "b", "a", "b"}).size(), 2u);
}

TEST(MappingTest, MismatchesAreNamed) {
  EXPECT_TRUE(Mapping::Create(6, 0, {1, 1, 2, 2}).ok());
  const auto bad = Mapping::Create(5, 0, {1, 1, 2, 2});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("the job has 5 ranks but the layout needs 6 = 1 coordinator + 1 vision + 2 "
                                        "(tp) x 2 (sp) LLM ranks"),
            std::string::npos)
      << bad.status();
  EXPECT_FALSE(Mapping::Create(4, 4, {1, 1, 2, 1}).ok());
  EXPECT_FALSE(Mapping::Create(3, 0, {1, 1, 0, 1}).ok());
  const Mapping m = *Mapping::Create(4, 1, {0, 0, 4, 1});
  EXPECT_NE(std::string(m.CheckModel(2, 512).message()).find("tp 4 does not divide the model's 2 KV heads"),
            std::string::npos);
  EXPECT_NE(std::string(m.CheckModel(8, 510).message()).find("vocabulary of 510"), std::string::npos);
  EXPECT_TRUE(m.CheckModel(8, 92544).ok());
}

}  // namespace
}  // namespace ixc::parallel

#include "parallel/sequence_shard.h"

namespace ixc::parallel {
namespace {

// Block-cyclic shards partition the sequence by KV block, the same for every length (a prefix keeps its layout). A
// prompt, or what follows a cached prefix, with a block for every rank (RingPrefill) is prefilled in them; a shorter
// one whole on every rank. PrefilledRows agrees with PrefillPositions on every image range.
TEST(SequenceShardTest, BlockCyclicShardsPartitionAndPrefilledRowsAgree) {
  constexpr int kBlockSize = 4;
  for (int size : {1, 2, 3, 4}) {
    for (int64_t length : {1, 3, 7, 8, 12, 16, 64, 101}) {
      std::vector<int> owner(length, -1);
      for (int rank = 0; rank < size; ++rank) {
        const std::vector<int32_t> positions = OwnedPositions(length, rank, size, kBlockSize);
        EXPECT_TRUE(std::is_sorted(positions.begin(), positions.end()));
        for (int32_t p : positions) {
          EXPECT_EQ(owner[p], -1) << "position " << p << " owned twice";
          EXPECT_EQ(KvOwner(p, kBlockSize, size), rank);
          owner[p] = rank;
        }
        // A longer sequence keeps this one's positions where they were.
        const std::vector<int32_t> longer = OwnedPositions(length + 37, rank, size, kBlockSize);
        EXPECT_TRUE(std::equal(positions.begin(), positions.end(), longer.begin()));
        EXPECT_LE(static_cast<int64_t>(positions.size()), LongestShard(length, size, kBlockSize));
        const bool ring = RingPrefill(length, size, kBlockSize);
        EXPECT_EQ(ring, size > 1 && length >= size * kBlockSize);
        if (ring) {
          EXPECT_FALSE(positions.empty()) << "rank " << rank << " of " << size << ", " << length << " tokens";
        }
        for (int64_t cached : {int64_t{0}, int64_t{kBlockSize}, length / 2 / kBlockSize * kBlockSize}) {
          if (cached >= length) continue;
          const std::vector<int32_t> prefilled = PrefillPositions(cached, length, rank, size, kBlockSize);
          if (RingPrefill(length - cached, size, kBlockSize)) {
            std::vector<int32_t> after;
            for (int32_t p : positions) {
              if (p >= cached) after.push_back(p);
            }
            EXPECT_EQ(prefilled, after);
            EXPECT_FALSE(prefilled.empty());
          } else {
            EXPECT_EQ(prefilled.size(), static_cast<size_t>(length - cached));
            EXPECT_EQ(prefilled.front(), cached);
          }
          // Whole, inside, and running past the end (a chunk's end cuts an image).
          for (auto [first, count] :
               {std::pair<int64_t, int64_t>{0, length}, {length / 3, length / 2}, {length / 2, length}}) {
            int64_t covered = 0;
            for (auto [begin, end] : PrefilledRows(cached, length, rank, size, kBlockSize, first, count)) {
              for (int64_t p = begin; p < end; ++p) {
                EXPECT_NE(std::find(prefilled.begin(), prefilled.end(), p), prefilled.end());
              }
              covered += end - begin;
            }
            const int64_t expected = std::count_if(prefilled.begin(), prefilled.end(),
                                                   [&](int32_t p) { return p >= first && p < first + count; });
            EXPECT_EQ(covered, expected);
          }
        }
      }
      EXPECT_EQ(std::count(owner.begin(), owner.end(), -1), 0);
    }
  }
  EXPECT_EQ(KvOwner(17, 4, 3), 1);  // block 4 of size 4, round-robin over 3 ranks
}

// LongestShard bounds every rank's shard of every prompt up to the length.
TEST(SequenceShardTest, LongestShardBoundsEveryShorterPrompt) {
  for (int size : {1, 2, 3, 4}) {
    int64_t longest_seen = 0;
    for (int64_t length = 0; length <= 50; ++length) {
      for (int rank = 0; rank < size; ++rank) {
        longest_seen =
            std::max(longest_seen, static_cast<int64_t>(OwnedPositions(length, rank, size, 4).size()));
      }
      EXPECT_GE(LongestShard(length, size, 4), longest_seen) << length << " over " << size;
      EXPECT_LE(LongestShard(length, size, 4), longest_seen + 4) << length << " over " << size;
    }
  }
  EXPECT_EQ(LongestShard(98303, 2, 16), 49152);  // the default --max-context's longest prompt over 2 ranks
}

// GPUs of one machine: an LLM rank each, in order; vision ranks take the spare ones or share round-robin.
TEST(WorkerGpuTest, LlmRanksOwnTheirGpusAndVisionRanksShare) {
  // One GPU, one vision rank and one LLM rank: both on GPU 0.
  EXPECT_EQ(*WorkerGpu({0, 2, 1}, Role::kVision, 1), 0);
  EXPECT_EQ(*WorkerGpu({1, 2, 1}, Role::kLlm, 1), 0);
  // Eight GPUs, one vision rank, TP 8: LLM ranks on 0-7, the vision rank beside the first.
  for (int l = 0; l < 8; ++l) EXPECT_EQ(*WorkerGpu({1 + l, 9, 1}, Role::kLlm, 8), l);
  EXPECT_EQ(*WorkerGpu({0, 9, 1}, Role::kVision, 8), 0);
  // Eight GPUs, two vision ranks, four LLM ranks: the vision ranks get spare GPUs 4 and 5.
  EXPECT_EQ(*WorkerGpu({0, 6, 2}, Role::kVision, 8), 4);
  EXPECT_EQ(*WorkerGpu({1, 6, 2}, Role::kVision, 8), 5);
  EXPECT_EQ(*WorkerGpu({2, 6, 2}, Role::kLlm, 8), 0);
  // Three vision ranks beside two LLM ranks on two GPUs: round-robin.
  EXPECT_EQ(*WorkerGpu({0, 5, 3}, Role::kVision, 2), 0);
  EXPECT_EQ(*WorkerGpu({1, 5, 3}, Role::kVision, 2), 1);
  EXPECT_EQ(*WorkerGpu({2, 5, 3}, Role::kVision, 2), 0);
}

// The vision handoff goes over NCCL only where every vision rank's GPU is its own (NCCL: one rank per GPU).
TEST(WorkerGpuTest, AVisionRankOwnsItsGpuOnlyWhereOneIsLeftOver) {
  EXPECT_FALSE(HasGpuOfItsOwn({0, 2, 1}, Role::kVision, 1));  // beside the LLM rank on the one GPU
  EXPECT_TRUE(HasGpuOfItsOwn({1, 2, 1}, Role::kLlm, 1));
  EXPECT_TRUE(HasGpuOfItsOwn({0, 2, 1}, Role::kVision, 2));
  EXPECT_FALSE(HasGpuOfItsOwn({0, 9, 1}, Role::kVision, 8));  // TP 8 on eight GPUs
  EXPECT_TRUE(HasGpuOfItsOwn({0, 6, 2}, Role::kVision, 8));   // GPUs 4 and 5 spare
  EXPECT_TRUE(HasGpuOfItsOwn({1, 6, 2}, Role::kVision, 8));
  EXPECT_TRUE(HasGpuOfItsOwn({0, 5, 3}, Role::kVision, 5));
  EXPECT_TRUE(HasGpuOfItsOwn({2, 5, 3}, Role::kVision, 5));
  EXPECT_FALSE(HasGpuOfItsOwn({2, 5, 3}, Role::kVision, 4));  // the third vision rank shares
  EXPECT_FALSE(HasGpuOfItsOwn({-1, 5, 3}, Role::kCoordinator, 8));
}

TEST(WorkerGpuTest, MoreLlmRanksThanGpusIsAnError) {
  const auto gpu = WorkerGpu({1, 3, 1}, Role::kLlm, 1);
  ASSERT_FALSE(gpu.ok());
  EXPECT_NE(gpu.status().message().find("2 LLM ranks but 1 GPUs"), std::string::npos) << gpu.status();
  EXPECT_FALSE(WorkerGpu({-1, 3, 1}, Role::kCoordinator, 1).ok());
}

}  // namespace
}  // namespace ixc::parallel
