// Video input against tools/reference/video_goldens.py (decord for frames, Pillow for resize and the frame2img
// composite with the same font): frame selection, frame pixels, the composite with its labels and separators; and
// the errors for inputs that are not usable videos.
#include <fstream>

#include "coordinator/media/hd_transform.h"
#include "coordinator/media/video.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ixc::coordinator {
namespace {

const std::string kVideos = std::string(IXC_SOURCE_DIR) + "/tests/data/videos/";
const std::string kGolden = std::string(IXC_SOURCE_DIR) + "/tests/data/golden/videos/";

const nlohmann::json& Goldens() {
  static const nlohmann::json goldens = [] {
    std::ifstream file(kGolden + "videos.json");
    return nlohmann::json::parse(file);
  }();
  return goldens;
}

TEST(VideoTest, FramesAndCompositeMatchTheReference) {
  auto font = LabelFont::Load(Goldens()["font"].get<std::string>(), 40);
  ASSERT_TRUE(font.ok()) << font.status();
  int composites = 0;
  for (const auto& c : Goldens()["cases"]) {
    SCOPED_TRACE(c["input"].get<std::string>());
    auto video = LoadVideoFrames(kVideos + c["input"].get<std::string>(), kIxcTileSize, {});
    ASSERT_TRUE(video.ok()) << video.status();
    EXPECT_DOUBLE_EQ(video->fps, c["fps"].get<double>());
    EXPECT_EQ(video->total_frames, c["total_frames"].get<int64_t>());
    EXPECT_EQ(video->indices, c["indices"].get<std::vector<int64_t>>());
    const Image composite = CompositeFrames(video->frames, **font);
    EXPECT_EQ(composite.width, c["composite_size"][0].get<int>());
    EXPECT_EQ(composite.height, c["composite_size"][1].get<int>());
    if (!c.contains("composite")) continue;
    auto expected = DecodeImageFile(kGolden + c["composite"].get<std::string>(), {});
    ASSERT_TRUE(expected.ok());
    ASSERT_EQ(expected->rgb.size(), composite.rgb.size());
    int worst = 0;
    for (size_t i = 0; i < composite.rgb.size(); ++i) worst = std::max(worst, std::abs(composite.rgb[i] - expected->rgb[i]));
    EXPECT_LE(worst, 1) << "composite pixels, labels included";
    ++composites;
  }
  EXPECT_GE(composites, 3);
}

TEST(VideoTest, LongVideosKeepThirtyTwoFramesAsAStrip) {
  auto video = LoadVideoFrames(kVideos + "many_frames.mkv", kIxcTileSize, {});
  ASSERT_TRUE(video.ok()) << video.status();
  EXPECT_EQ(video->frames.size(), 32u);
  auto font = LabelFont::Load(kDefaultLabelFont, 40);
  HdGeometry geometry;
  const Image strip = VideoTransform(CompositeFrames(video->frames, **font), kIxcTileSize, &geometry);
  // 32 frames of 1120x630 stacked: 1120 x 21760 -> 560 x 10880 -> padded to 560 x 11200: a 20 x 1 strip (spec 4).
  EXPECT_EQ(strip.width, 560);
  EXPECT_EQ(strip.height, 11200);
  EXPECT_EQ(geometry.rows, 20);
  EXPECT_EQ(geometry.cols, 1);
  EXPECT_EQ(VisionTokenCount(geometry.rows, geometry.cols, 20), 8821);
}

TEST(VideoTest, UnusableVideosGiveClearErrors) {
  const std::pair<const char*, const char*> cases[] = {
      {"audio_only.mka", "has no video stream"},
      {"variable_rate.mkv", "variable frame rate"},
      {"truncated.mp4", "truncated.mp4"},
      {"empty.mp4", "not a readable video"},
      {"narrow.mkv", "frames of 1200x1 pixels are too narrow"},  // once a crash
  };
  for (const auto& [name, message] : cases) {
    auto video = LoadVideoFrames(kVideos + name, kIxcTileSize, {});
    ASSERT_FALSE(video.ok()) << name;
    EXPECT_NE(std::string(video.status().message()).find(message), std::string::npos) << video.status();
    EXPECT_NE(std::string(video.status().message()).find(name), std::string::npos) << video.status();
  }
  EXPECT_EQ(LoadVideoFrames(kVideos + "absent.mp4", kIxcTileSize, {}).status().code(), absl::StatusCode::kNotFound);
  VideoLimits limits;
  limits.max_frame_pixels = 320 * 180 - 1;
  EXPECT_NE(std::string(LoadVideoFrames(kVideos + "landscape.mp4", kIxcTileSize, limits).status().message())
                .find("exceed the limit"),
            std::string::npos);
  // Text is not a video.
  EXPECT_FALSE(LoadVideoFrames(std::string(IXC_SOURCE_DIR) + "/README.md", kIxcTileSize, {}).ok());
  EXPECT_FALSE(LabelFont::Load("/nonexistent.ttf", 40).ok());
}

}  // namespace
}  // namespace ixc::coordinator
