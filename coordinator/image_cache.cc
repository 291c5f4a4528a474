#include "coordinator/image_cache.h"

namespace ixc::coordinator {

int64_t ImageCache::BytesOf(const Request& request) const {
  int64_t bytes = 0;
  for (const ImageInPrompt& image : request.images) {
    bytes += image.prepared.crops.count() * feature_bytes_per_crop_ + image.rows * embedding_bytes_per_row_;
  }
  return bytes;
}

void ImageCache::Charge(Request& request) {
  for (ImageInPrompt& image : request.images) {
    image.feature_bytes = image.prepared.crops.count() * feature_bytes_per_crop_;
  }
  request.image_bytes = BytesOf(request);
  used_ += request.image_bytes;
}

void ImageCache::Assembled(Request& request, ImageInPrompt& image) {
  used_ -= image.feature_bytes;
  request.image_bytes -= image.feature_bytes;
  image.feature_bytes = 0;
}

void ImageCache::Release(Request& request) {
  used_ -= request.image_bytes;
  request.image_bytes = 0;
  for (ImageInPrompt& image : request.images) image.feature_bytes = 0;
}

}  // namespace ixc::coordinator
