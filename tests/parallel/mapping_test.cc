// Mapping: the layout arithmetic of architecture section 1 on concrete rank examples, and the validation messages.
#include "parallel/mapping.h"
#include "tests/test_util.h"

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
