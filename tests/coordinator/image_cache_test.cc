// The image cache's accounting (coordinator/image_cache.h): a request's images hold their features until assembled
// and their embeddings until the request finishes; requests fit beside what is held, or alone.
#include "coordinator/image_cache.h"

#include <gtest/gtest.h>

#include <array>

namespace ixc::coordinator {
namespace {

constexpr int64_t kFeaturesPerCrop = 100, kEmbeddingPerRow = 10;

// A request with one image per (grid rows, grid cols, token rows): 1 + rows * cols crops.
Request WithImages(std::initializer_list<std::array<int, 3>> images) {
  Request request;
  for (const auto& [rows, cols, token_rows] : images) {
    ImageInPrompt image;
    image.prepared.crops.rows = rows;
    image.prepared.crops.cols = cols;
    image.rows = token_rows;
    request.images.push_back(image);
  }
  return request;
}

TEST(ImageCacheTest, FeaturesLeaveAtAssemblyEmbeddingsAtTheEnd) {
  ImageCache cache(/*budget_bytes=*/10000, kFeaturesPerCrop, kEmbeddingPerRow);
  Request request = WithImages({{2, 3, 50}, {1, 1, 20}});  // 7 and 2 crops
  EXPECT_EQ(cache.BytesOf(request), 7 * 100 + 50 * 10 + 2 * 100 + 20 * 10);
  cache.Charge(request);
  EXPECT_EQ(cache.used(), 1600);
  cache.Assembled(request, request.images[0]);
  EXPECT_EQ(cache.used(), 1600 - 700);
  cache.Assembled(request, request.images[1]);
  EXPECT_EQ(cache.used(), 500 + 200);  // the embeddings
  EXPECT_EQ(request.image_bytes, 700);
  cache.Release(request);
  EXPECT_EQ(cache.used(), 0);
  EXPECT_EQ(request.image_bytes, 0);
}

TEST(ImageCacheTest, RequestsFitBesideWhatIsHeldOrAlone) {
  ImageCache cache(/*budget_bytes=*/1000, kFeaturesPerCrop, kEmbeddingPerRow);
  Request big = WithImages({{3, 3, 100}});  // 10 crops, 100 rows: 2000 bytes, over the budget
  EXPECT_TRUE(cache.Fits(big));             // alone: nothing is held
  cache.Charge(big);
  Request small = WithImages({{0, 0, 1}});  // 1 crop, 1 row: 110 bytes
  EXPECT_FALSE(cache.Fits(small));
  cache.Assembled(big, big.images[0]);  // 1000 left, the embeddings
  EXPECT_FALSE(cache.Fits(small));
  cache.Release(big);
  EXPECT_TRUE(cache.Fits(small));
  cache.Charge(small);
  Request other = WithImages({{2, 2, 39}});  // 500 + 390 = 890: 1000 with the small one's 110
  EXPECT_TRUE(cache.Fits(other));
  other.images[0].rows = 40;  // 1010
  EXPECT_FALSE(cache.Fits(other));
  // A request that ends before its images are assembled (a refused prompt) frees its features with the rest.
  cache.Release(small);
  EXPECT_EQ(cache.used(), 0);
}

}  // namespace
}  // namespace ixc::coordinator
