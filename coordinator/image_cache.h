// File: coordinator/image_cache.h
//
// What the vision ranks hold for images, and the image-embedding cache over it. Each distinct image (by content key:
// its decoded pixels and hd_num, media/vision_input.h) is one entry, encoded once under a vision tag on its owner
// rank: its ViT features (f32, crops x patches x vision width) from dispatch until the image is assembled, then its
// embeddings (f32, rows x LLM width). Requests reference the entries of their images until they finish (a
// recomputation after preemption takes the embeddings again). With caching, an entry nobody references stays, and an
// image seen again skips the ViT; such entries are evicted, least recently used first, when the budget needs room.
// Without caching an entry leaves with its last request. On a vision rank's GPU with the NCCL handoff, else in host
// memory: without a bound a burst of images fills either. Requests are dispatched in arrival order while their new
// images fit; one alone may exceed the budget, so that every request runs.
//   ImageCache cache(/*budget_bytes=*/8ll << 30, feature_bytes_per_crop, embedding_bytes_per_row, /*caching=*/true);
//   if (cache.Fits(request)) {
//     for (image : request.images) if (ImageCache::Entry* entry = cache.Take(image, &is_new); is_new) dispatch...
//   }
//   cache.Assembled(tag);            // its features are gone
//   cache.Release(request);          // finished: its references
//   for (int tag : cache.TakeEvicted()) tell the owner to drop it
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <map>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "coordinator/request.h"

namespace ixc::coordinator {

class ImageCache {
 public:
  struct Entry {
    ContentKey key;
    int tag = 0;
    int owner = -1;                          // the vision rank that assembles it and keeps its embeddings
    std::vector<std::array<int, 3>> parts;   // (vision rank, first crop, crop count): crops spread over the ranks
    int parts_pending = 0;                   // parts not yet encoded
    bool encoded = false;
    int64_t bytes = 0;                       // held on the vision ranks now
    int64_t embedding_bytes = 0;
    int references = 0;                      // requests that use it
    std::list<int>::iterator unused_at;      // where it is among the unused entries (references == 0)
  };

  ImageCache(int64_t budget_bytes, int64_t feature_bytes_per_crop, int64_t embedding_bytes_per_row, bool caching);

  // What `request`'s images not held now would add (an image twice in it counts once).
  int64_t NewBytesOf(const Request& request) const;
  // Whether `request` may be dispatched now: its new images fit beside the entries in use (unused ones are evicted
  // for them), or no entry is in use.
  bool Fits(const Request& request) const;
  // `image`'s entry, referenced for its request: the held one with its key (a hit: *is_new false), or a new one
  // under a fresh tag that the caller dispatches, evicting unused entries to make room.
  Entry& Take(const ImageInPrompt& image, bool* is_new);
  // The entry under `tag`, or null.
  Entry* ByTag(int tag);
  // The image under `tag` is assembled: its features are freed.
  void Assembled(int tag);
  // `request` is done: its references are dropped.
  void Release(const Request& request);
  // The tags evicted or dropped since the last call: their owners drop their embeddings.
  std::vector<int> TakeEvicted();

  int64_t used() const { return used_; }
  int64_t in_use() const { return used_ - unused_bytes_; }  // of used(), the entries requests reference
  int64_t queries() const { return queries_; }  // images looked up
  int64_t hits() const { return hits_; }        // of them, found held
  // Whether no entry is referenced: what every request's end must leave.
  bool idle() const;

 private:
  void Evict(int tag);

  int64_t budget_, feature_bytes_per_crop_, embedding_bytes_per_row_;
  bool caching_;
  int64_t used_ = 0;
  int64_t unused_bytes_ = 0;  // of used_, the unused entries' (kept as they change: the engine reads it every turn)
  int64_t queries_ = 0, hits_ = 0;
  int next_tag_ = 0;
  std::map<int, Entry> entries_;                       // by tag
  absl::flat_hash_map<ContentKey, int> tag_of_;        // key -> tag
  std::list<int> unused_;                              // tags of unreferenced entries, least recently used first
  std::vector<int> evicted_;
};

}  // namespace ixc::coordinator
