// File: coordinator/image_cache.h
//
// What the vision ranks hold for the requests the coordinator has dispatched, summed over them: each image's ViT
// features (f32, crops x patches x vision width) from dispatch until the image is assembled, and its embeddings
// (f32, rows x LLM width) until its request finishes (kept for recomputation after preemption). On a vision rank's
// GPU with the NCCL handoff, else in host memory: without a bound a burst of image requests fills either. The engine
// dispatches requests in arrival order while they fit; one alone may exceed the budget, so that every request runs.
//   ImageCache cache(/*budget_bytes=*/8ll << 30, feature_bytes_per_crop, embedding_bytes_per_row);
//   if (cache.Fits(request)) { cache.Charge(request); dispatch... }
//   cache.Assembled(request, image);   // its features are gone
//   cache.Release(request);            // finished: the rest
#pragma once

#include <cstdint>

#include "coordinator/request.h"

namespace ixc::coordinator {

class ImageCache {
 public:
  ImageCache(int64_t budget_bytes, int64_t feature_bytes_per_crop, int64_t embedding_bytes_per_row)
      : budget_(budget_bytes),
        feature_bytes_per_crop_(feature_bytes_per_crop),
        embedding_bytes_per_row_(embedding_bytes_per_row) {}

  // The features and embeddings of `request`'s images.
  int64_t BytesOf(const Request& request) const;
  // Whether `request` may be dispatched now: it fits beside what is held, or nothing is held.
  bool Fits(const Request& request) const { return used_ == 0 || used_ + BytesOf(request) <= budget_; }
  // `request` dispatched: its images' bytes are held from now (request.image_bytes, image.feature_bytes).
  void Charge(Request& request);
  // `image` of `request` assembled: its features are freed.
  void Assembled(Request& request, ImageInPrompt& image);
  // `request` done: all it still holds is freed.
  void Release(Request& request);

  int64_t used() const { return used_; }

 private:
  int64_t budget_, feature_bytes_per_crop_, embedding_bytes_per_row_;
  int64_t used_ = 0;
};

}  // namespace ixc::coordinator
