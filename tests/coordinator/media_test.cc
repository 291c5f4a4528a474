// Image decoding, the HD transform and the crops against Pillow and torch (tools/reference/image_goldens.py), and
// the errors for inputs that are not images. Golden PNGs are decoded by our PNG path, itself checked here on the
// PNG colour types against Pillow.
#include <algorithm>
#include <fstream>

#include "coordinator/media/hd_transform.h"
#include "coordinator/media/image.h"
#include "core/npy.h"
#include "nlohmann/json.hpp"
#include "tests/test_util.h"

namespace ixc::coordinator {
namespace {

const std::string kImages = std::string(IXC_SOURCE_DIR) + "/tests/data/images/";
const std::string kGolden = std::string(IXC_SOURCE_DIR) + "/tests/data/golden/images/";

const nlohmann::json& Goldens() {
  static const nlohmann::json goldens = [] {
    std::ifstream file(kGolden + "images.json");
    return nlohmann::json::parse(file);
  }();
  return goldens;
}

Image Load(const std::string& path) {
  auto image = DecodeImageFile(path, ImageLimits{});
  EXPECT_TRUE(image.ok()) << image.status();
  return image.ok() ? *image : Image{};
}

int MaxDifference(const Image& a, const Image& b) {
  if (a.width != b.width || a.height != b.height) return 1000;
  int worst = 0;
  for (size_t i = 0; i < a.rgb.size(); ++i) worst = std::max(worst, std::abs(a.rgb[i] - b.rgb[i]));
  return worst;
}

TEST(ImageDecodeTest, EveryFormatAndModeMatchesPillow) {
  int checked = 0;
  for (const auto& c : Goldens()["cases"]) {
    if (!c.contains("decoded")) continue;
    SCOPED_TRACE(c["input"].get<std::string>());
    const Image ours = Load(kImages + c["input"].get<std::string>());
    const Image pillow = Load(kGolden + c["decoded"].get<std::string>());
    EXPECT_EQ(ours.width, c["size"][0].get<int>());
    EXPECT_EQ(ours.height, c["size"][1].get<int>());
    EXPECT_LE(MaxDifference(ours, pillow), 1);
    ++checked;
  }
  EXPECT_GE(checked, 15);
}

TEST(HdTransformTest, GeometryAndPixelsMatchTheReference) {
  int pixel_checks = 0;
  for (const auto& c : Goldens()["cases"]) {
    const std::string input = c["input"].get<std::string>();
    const Image image = Load(kImages + input);
    for (const auto& hd : c["hd"]) {
      SCOPED_TRACE(input + " hd_num " + std::to_string(hd["hd_num"].get<int>()));
      HdGeometry geometry;
      const absl::StatusOr<Image> transformed = HdTransform(image, hd["hd_num"].get<int>(), kIxcTileSize, &geometry);
      ASSERT_TRUE(transformed.ok()) << transformed.status();
      const Image& padded = *transformed;
      EXPECT_EQ(geometry.resized_width, hd["resized"][0].get<int>());
      EXPECT_EQ(geometry.resized_height, hd["resized"][1].get<int>());
      EXPECT_EQ(padded.width, hd["padded"][0].get<int>());
      EXPECT_EQ(padded.height, hd["padded"][1].get<int>());
      EXPECT_EQ(geometry.rows, hd["grid"][0].get<int>());
      EXPECT_EQ(geometry.cols, hd["grid"][1].get<int>());
      EXPECT_LE(geometry.rows * geometry.cols, hd["hd_num"].get<int>());
      if (hd.contains("pixels")) {
        EXPECT_LE(MaxDifference(padded, Load(kGolden + hd["pixels"].get<std::string>())), 1);
        ++pixel_checks;
      }
    }
  }
  EXPECT_GE(pixel_checks, 8);
}

TEST(HdTransformTest, TooNarrowAnImageIsAnError) {
  // 100000 x 1 is within the pixel limit, but its short side would be resized to int(13440 / 100000) = 0 pixels
  // (once a crash; the reference's resize fails alike). Either orientation.
  for (const auto& [width, height] : {std::pair{100000, 1}, std::pair{1, 100000}}) {
    Image image;
    image.width = width;
    image.height = height;
    image.rgb.assign(static_cast<size_t>(width) * height * 3, 128);
    HdGeometry geometry;
    const absl::StatusOr<Image> padded = HdTransform(image, 24, kIxcTileSize, &geometry);
    ASSERT_FALSE(padded.ok());
    EXPECT_NE(padded.status().message().find("too narrow for the HD transform"), std::string::npos) << padded.status();
  }
}

TEST(HdTransformTest, CropsMatchTorch) {
  for (const auto& c : Goldens()["crops"]) {
    SCOPED_TRACE(c["crops"].get<std::string>());
    HdGeometry geometry;
    const int tile = c["tile"].get<int>();
    const absl::StatusOr<Image> padded =
        HdTransform(Load(kImages + c["input"].get<std::string>()), c["hd_num"].get<int>(), tile, &geometry);
    ASSERT_TRUE(padded.ok()) << padded.status();
    const VisionCrops crops = MakeCrops(*padded, tile);
    auto golden = ReadNpy(kGolden + c["crops"].get<std::string>());
    ASSERT_TRUE(golden.ok()) << golden.status();
    ASSERT_EQ(golden->shape, (std::vector<int64_t>{crops.count(), 3, tile, tile}));
    EXPECT_TRUE(testing::AllClose(crops.pixels, golden->floats, {2e-6f, 1e-6f}));
  }
  // The real 560-pixel tile, checked at sampled positions.
  const auto& sampled = Goldens()["sampled_crops"];
  HdGeometry geometry;
  const absl::StatusOr<Image> padded = HdTransform(Load(kImages + sampled["input"].get<std::string>()),
                                                   sampled["hd_num"].get<int>(), kIxcTileSize, &geometry);
  ASSERT_TRUE(padded.ok()) << padded.status();
  const VisionCrops crops = MakeCrops(*padded, kIxcTileSize);
  ASSERT_EQ(crops.count(), sampled["shape"][0].get<int>());
  std::vector<float> ours, theirs;
  for (size_t i = 0; i < sampled["index"].size(); ++i) {
    const auto& at = sampled["index"][i];
    const size_t offset =
        ((at[0].get<size_t>() * 3 + at[1].get<size_t>()) * kIxcTileSize + at[2].get<size_t>()) * kIxcTileSize +
        at[3].get<size_t>();
    ours.push_back(crops.pixels[offset]);
    theirs.push_back(sampled["values"][i].get<float>());
  }
  EXPECT_TRUE(testing::AllClose(ours, theirs, {2e-6f, 1e-6f}));
}

TEST(HdTransformTest, TokenCountsOfTheSpec) {
  EXPECT_EQ(VisionTokenCount(1, 1, 20), 841);
  EXPECT_EQ(VisionTokenCount(2, 3, 20), 2861);
  EXPECT_EQ(VisionTokenCount(4, 6, 20), 10101);
  EXPECT_EQ(VisionTokenCount(20, 1, 20), 8821);
  EXPECT_EQ(VisionTokenCount(1, 20, 20), 8441);
}

// ---- bad input: a clear error naming the input, never a crash ----

std::string ErrorOf(const std::vector<uint8_t>& bytes, ImageLimits limits = {}) {
  auto image = DecodeImage(bytes, "upload.bin", limits);
  EXPECT_FALSE(image.ok());
  const std::string message(image.status().message());
  EXPECT_NE(message.find("upload.bin"), std::string::npos) << message;
  return message;
}

std::vector<uint8_t> FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

TEST(ImageDecodeTest, BadInputsGiveClearErrors) {
  EXPECT_NE(ErrorOf({}).find("empty"), std::string::npos);
  EXPECT_NE(ErrorOf({'h', 'e', 'l', 'l', 'o'}).find("not an image"), std::string::npos);
  for (const char* name : {"synthetic/baseline.jpg", "synthetic/rgba.png", "synthetic/lossy.webp",
                           "synthetic/animated.gif", "synthetic/rgb24.bmp"}) {
    SCOPED_TRACE(name);
    std::vector<uint8_t> bytes = FileBytes(kImages + name);
    // Cut inside the header and inside the data.
    for (size_t keep : {size_t{12}, bytes.size() / 2}) {
      std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + keep);
      auto image = DecodeImage(cut, "upload.bin", ImageLimits{});
      // Every format refuses a cut file, JPEG too (as Pillow does unless LOAD_TRUNCATED_IMAGES is set).
      ASSERT_FALSE(image.ok());
      EXPECT_NE(std::string(image.status().message()).find("upload.bin"), std::string::npos);
    }
    // Corrupt bytes in the middle must not crash.
    std::vector<uint8_t> noisy = bytes;
    for (size_t i = bytes.size() / 3; i < bytes.size() / 3 + 64 && i < bytes.size(); ++i) noisy[i] ^= 0x5A;
    (void)DecodeImage(noisy, "upload.bin", ImageLimits{});
  }
}

TEST(ImageDecodeTest, PixelLimitIsCheckedBeforeDecoding) {
  const std::vector<uint8_t> dubai = FileBytes(kImages + "dubai.png");
  ImageLimits limits;
  limits.max_pixels = 1200 * 4679 - 1;
  EXPECT_NE(ErrorOf(dubai, limits).find("1200x4679 pixels, more than the limit of 5614799"), std::string::npos);
  limits = {};
  limits.max_bytes = 1000;
  EXPECT_NE(ErrorOf(dubai, limits).find("more than the limit of 1000"), std::string::npos);
  // A PNG header that claims 100000 x 100000 pixels and nothing else: refused without allocating 30 GB.
  EXPECT_NE(ErrorOf(FileBytes(kImages + "bad/bomb.png")).find("100000x100000"), std::string::npos);
  // One of 4294967295 x 4294967295, whose pixel count overflows 64 bits (a fuzzer's find: UBSan, in the asan preset,
  // stopped at the product).
  std::vector<uint8_t> huge = FileBytes(kImages + "bad/bomb.png");
  std::fill(huge.begin() + 16, huge.begin() + 24, 0xff);
  EXPECT_NE(ErrorOf(huge).find("4294967295x4294967295 pixels, more than the limit"), std::string::npos);
  EXPECT_EQ(DecodeImageFile("/nonexistent.png", {}).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace ixc::coordinator
