// The image cache (coordinator/image_cache.h): each distinct image is one entry, its features held until assembled
// and its embeddings while requests use it, or, with caching, until evicted for room, least recently used first; an
// image seen again is a hit and is not encoded again; requests fit beside the entries in use, or alone.
#include "coordinator/image_cache.h"

#include <gtest/gtest.h>

#include <array>

namespace ixc::coordinator {
namespace {

constexpr int64_t kFeaturesPerCrop = 100, kEmbeddingPerRow = 10;

// A request with one image per (grid rows, grid cols, token rows, content): 1 + rows * cols crops.
Request WithImages(std::initializer_list<std::array<int, 4>> images) {
  Request request;
  for (const auto& [rows, cols, token_rows, content] : images) {
    ImageInPrompt image;
    image.prepared.crops.rows = rows;
    image.prepared.crops.cols = cols;
    image.prepared.key = {0, static_cast<uint64_t>(content)};
    image.rows = token_rows;
    request.images.push_back(image);
  }
  return request;
}

// Takes every image of `request` as the engine dispatches it; returns how many were new.
int TakeAll(ImageCache& cache, Request& request) {
  int fresh = 0;
  for (ImageInPrompt& image : request.images) {
    bool is_new = false;
    image.tag = cache.Take(image, &is_new).tag;
    fresh += is_new;
  }
  return fresh;
}

TEST(ImageCacheTest, FeaturesLeaveAtAssemblyEmbeddingsWhenTheLastUserEnds) {
  ImageCache cache(/*budget_bytes=*/10000, kFeaturesPerCrop, kEmbeddingPerRow, /*caching=*/false);
  Request request = WithImages({{2, 3, 50, 1}, {1, 1, 20, 2}});  // 7 and 2 crops
  EXPECT_EQ(cache.NewBytesOf(request), 7 * 100 + 50 * 10 + 2 * 100 + 20 * 10);
  EXPECT_EQ(TakeAll(cache, request), 2);
  EXPECT_EQ(cache.used(), 1600);
  cache.Assembled(request.images[0].tag);
  EXPECT_EQ(cache.used(), 1600 - 700);
  cache.Assembled(request.images[1].tag);
  EXPECT_EQ(cache.used(), 500 + 200);  // the embeddings
  cache.Release(request);
  EXPECT_EQ(cache.used(), 0);  // no caching: they leave with the request, and the owner is told
  EXPECT_EQ(cache.TakeEvicted().size(), 2u);
  EXPECT_TRUE(cache.idle());
  // Without caching the same image again is encoded again.
  Request again = WithImages({{2, 3, 50, 1}});
  EXPECT_EQ(TakeAll(cache, again), 1);
  cache.Release(again);
}

TEST(ImageCacheTest, AnImageSeenAgainIsAHitUntilEvicted) {
  ImageCache cache(/*budget_bytes=*/1500, kFeaturesPerCrop, kEmbeddingPerRow, /*caching=*/true);
  Request first = WithImages({{1, 1, 30, 1}, {1, 1, 30, 1}});  // the same image twice: one entry
  EXPECT_EQ(cache.NewBytesOf(first), 200 + 300);
  EXPECT_EQ(TakeAll(cache, first), 1);
  EXPECT_EQ(first.images[0].tag, first.images[1].tag);
  cache.Assembled(first.images[0].tag);
  EXPECT_EQ(cache.used(), 300);
  Request second = WithImages({{1, 1, 30, 1}});  // while the first still uses it
  EXPECT_EQ(cache.NewBytesOf(second), 0);
  EXPECT_EQ(TakeAll(cache, second), 0);
  EXPECT_TRUE(cache.ByTag(second.images[0].tag)->encoded);
  cache.Release(first);
  cache.Release(second);
  EXPECT_TRUE(cache.idle());
  EXPECT_EQ(cache.used(), 300);  // cached, unused
  EXPECT_TRUE(cache.TakeEvicted().empty());
  EXPECT_EQ(cache.queries(), 3);
  EXPECT_EQ(cache.hits(), 2);
  // Two other images of 800 each (features not yet assembled): the first fits beside it, the second evicts it.
  Request other = WithImages({{1, 1, 60, 2}, {1, 1, 60, 3}});
  EXPECT_TRUE(cache.Fits(other));
  Request third = WithImages({{1, 1, 60, 2}});
  TakeAll(cache, third);
  EXPECT_EQ(cache.used(), 300 + 800);
  Request fourth = WithImages({{1, 1, 60, 3}});
  TakeAll(cache, fourth);
  EXPECT_EQ(cache.used(), 1600);
  EXPECT_EQ(cache.TakeEvicted(), std::vector<int>{first.images[0].tag});
  Request back = WithImages({{1, 1, 30, 1}});
  EXPECT_EQ(cache.NewBytesOf(back), 500);  // evicted: encoded again
  cache.Release(third);
  cache.Release(fourth);
  EXPECT_TRUE(cache.idle());
}

TEST(ImageCacheTest, RequestsFitBesideWhatIsInUseOrAlone) {
  ImageCache cache(/*budget_bytes=*/1000, kFeaturesPerCrop, kEmbeddingPerRow, /*caching=*/true);
  Request big = WithImages({{3, 3, 100, 1}});  // 10 crops, 100 rows: 2000 bytes, over the budget
  EXPECT_TRUE(cache.Fits(big));                // alone: nothing is in use
  TakeAll(cache, big);
  Request small = WithImages({{0, 0, 1, 2}});  // 1 crop, 1 row: 110 bytes
  EXPECT_FALSE(cache.Fits(small));
  cache.Assembled(big.images[0].tag);  // 1000 left, the embeddings
  EXPECT_FALSE(cache.Fits(small));
  cache.Release(big);  // unused now: evicted for the next one
  EXPECT_TRUE(cache.Fits(small));
  TakeAll(cache, small);
  EXPECT_EQ(cache.used(), 110);
  EXPECT_EQ(cache.TakeEvicted().size(), 1u);
  Request other = WithImages({{2, 2, 39, 3}});  // 500 + 390 = 890: 1000 with the small one's 110
  EXPECT_TRUE(cache.Fits(other));
  other.images[0].rows = 40;  // 1010
  EXPECT_FALSE(cache.Fits(other));
  // A request that ends before its images are assembled frees their features with the rest (here: caches them).
  cache.Release(small);
  EXPECT_TRUE(cache.idle());
}

}  // namespace
}  // namespace ixc::coordinator
