// The image-token layout (spec 3.4-3.5) as ImageTokenSources writes it, checked at the real IXC-2.5 geometry
// (40x40 patches, 20x20 merged tokens per crop) against the spec's count and positions. The values it leads to are
// held to transformers' CLIP by tests/model/multimodal_golden_test.cc.
#include <gtest/gtest.h>

#include "kernels/ops.h"
#include "model/vision_encoder.h"

namespace ixc::model {
namespace {

constexpr int64_t kGrid = 40, kPatches = kGrid * kGrid;

const VisionConfig kRealVision;  // the defaults are IXC-2.5's: 560 px, 14-px patches

// The four sources of token t.
std::vector<int32_t> Token(const std::vector<int32_t>& sources, int64_t t) {
  return {sources.begin() + 4 * t, sources.begin() + 4 * t + 4};
}

TEST(ImageTokenSourcesTest, FollowsTheSpecLayout) {
  const int rows = 2, cols = 3;
  const std::vector<int32_t> sources = ImageTokenSources(kRealVision, rows, cols, kPatches, 0);
  ASSERT_EQ(sources.size(), 2861u * 4);  // (h w + 1) 400 + 1 + (h + 1) 20 tokens
  // Global view: merged token (0, 0) is patches (0,0), (0,1), (1,0), (1,1); 20 tokens then sub_GN per row.
  EXPECT_EQ(Token(sources, 0), (std::vector<int32_t>{0, 1, 40, 41}));
  EXPECT_EQ(Token(sources, 1), (std::vector<int32_t>{2, 3, 42, 43}));
  const std::vector<int32_t> sub(4, kernels::kSubSeparatorSource), global(4, kernels::kGlobalSeparatorSource);
  EXPECT_EQ(Token(sources, 20), sub);
  EXPECT_EQ(Token(sources, 21), (std::vector<int32_t>{80, 81, 120, 121}));  // global row 1
  EXPECT_EQ(Token(sources, 419), sub);
  EXPECT_EQ(Token(sources, 420), global);
  // Local block: rows of 60 tokens across tiles 1, 2, 3, then sub_GN.
  const int64_t local = 421;
  EXPECT_EQ(Token(sources, local), (std::vector<int32_t>{kPatches, kPatches + 1, kPatches + 40, kPatches + 41}));
  EXPECT_EQ(Token(sources, local + 20), (std::vector<int32_t>{2 * kPatches, 2 * kPatches + 1, 2 * kPatches + 40,
                                                              2 * kPatches + 41}));  // tile (0, 1)
  EXPECT_EQ(Token(sources, local + 60), sub);
  // Row 20 of the stitched grid starts tile (1, 0), crop 4.
  EXPECT_EQ(Token(sources, local + 20 * 61),
            (std::vector<int32_t>{4 * kPatches, 4 * kPatches + 1, 4 * kPatches + 40, 4 * kPatches + 41}));
  // The last merged token: tile (1, 2) = crop 6, merged (19, 19) = patches (38, 38)...(39, 39).
  EXPECT_EQ(Token(sources, 2859), (std::vector<int32_t>{6 * kPatches + 38 * 40 + 38, 6 * kPatches + 38 * 40 + 39,
                                                        6 * kPatches + 39 * 40 + 38, 6 * kPatches + 39 * 40 + 39}));
  EXPECT_EQ(Token(sources, 2860), sub);
}

// The rows of an image's embeddings, which the vision ranks allocate before assembling it: the spec's count,
// (h w + 1) 400 + 1 + (h + 1) 20 at the real geometry.
TEST(ImageTokenSourcesTest, ImageTokenCountIsTheSpecCount) {
  EXPECT_EQ(ImageTokenCount(kRealVision, 2, 3), 2861);
  EXPECT_EQ(ImageTokenCount(kRealVision, 1, 1), 2 * 400 + 1 + 2 * 20);
  EXPECT_EQ(ImageTokenCount(kRealVision, 5, 5), 26 * 400 + 1 + 6 * 20);  // HD-25
}

TEST(ImageTokenSourcesTest, SkipsTheClsRowsWhenAsked) {
  const std::vector<int32_t> plain = ImageTokenSources(kRealVision, 1, 1, kPatches, 0);
  const std::vector<int32_t> with_cls = ImageTokenSources(kRealVision, 1, 1, kPatches + 1, 1);
  ASSERT_EQ(plain.size(), with_cls.size());
  for (size_t i = 0; i < plain.size(); ++i) {
    if (plain[i] < 0) {
      EXPECT_EQ(with_cls[i], plain[i]);
    } else {
      EXPECT_EQ(with_cls[i], plain[i] + plain[i] / kPatches + 1);  // one CLS row before each crop's patches
    }
  }
}

}  // namespace
}  // namespace ixc::model
