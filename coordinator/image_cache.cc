#include "coordinator/image_cache.h"

#include <set>

namespace ixc::coordinator {

ImageCache::ImageCache(int64_t budget_bytes, int64_t feature_bytes_per_crop, int64_t embedding_bytes_per_row,
                       bool caching)
    : budget_(budget_bytes),
      feature_bytes_per_crop_(feature_bytes_per_crop),
      embedding_bytes_per_row_(embedding_bytes_per_row),
      caching_(caching) {}

int64_t ImageCache::NewBytesOf(const Request& request) const {
  int64_t bytes = 0;
  std::set<ContentKey> counted;
  for (const ImageInPrompt& image : request.images) {
    if (caching_ && (tag_of_.contains(image.prepared.key) || !counted.insert(image.prepared.key).second)) continue;
    bytes += image.prepared.crops.count() * feature_bytes_per_crop_ + image.rows * embedding_bytes_per_row_;
  }
  return bytes;
}

bool ImageCache::Fits(const Request& request) const {
  const int64_t in_use = used_ - unused_bytes_;
  return in_use == 0 || in_use + NewBytesOf(request) <= budget_;
}

ImageCache::Entry& ImageCache::Take(const ImageInPrompt& image, bool* is_new) {
  ++queries_;
  if (caching_) {
    if (auto found = tag_of_.find(image.prepared.key); found != tag_of_.end()) {
      Entry& entry = entries_.at(found->second);
      if (entry.references++ == 0) {
        unused_.erase(entry.unused_at);
        entry.unused_at = unused_.end();
        unused_bytes_ -= entry.bytes;
      }
      ++hits_;
      *is_new = false;
      return entry;
    }
  }
  const int64_t features = image.prepared.crops.count() * feature_bytes_per_crop_;
  const int64_t embeddings = image.rows * embedding_bytes_per_row_;
  while (!unused_.empty() && used_ + features + embeddings > budget_) Evict(unused_.front());
  int tag = next_tag_;
  while (entries_.contains(tag)) tag = (tag + 1) & 0x7fffffff;  // tags are ints on the wire
  next_tag_ = (tag + 1) & 0x7fffffff;
  Entry& entry = entries_[tag];
  entry.key = image.prepared.key;
  entry.tag = tag;
  entry.bytes = features + embeddings;
  entry.embedding_bytes = embeddings;
  entry.references = 1;
  entry.unused_at = unused_.end();
  used_ += entry.bytes;
  if (caching_) tag_of_[entry.key] = tag;
  *is_new = true;
  return entry;
}

ImageCache::Entry* ImageCache::ByTag(int tag) {
  auto it = entries_.find(tag);
  return it == entries_.end() ? nullptr : &it->second;
}

void ImageCache::Assembled(int tag) {
  Entry* entry = ByTag(tag);
  if (entry == nullptr) return;
  used_ -= entry->bytes - entry->embedding_bytes;
  entry->bytes = entry->embedding_bytes;
  entry->encoded = true;
}

void ImageCache::Release(const Request& request) {
  for (const ImageInPrompt& image : request.images) {
    Entry* entry = ByTag(image.tag);
    if (entry == nullptr || entry->references == 0) continue;  // never taken (a request that ended first)
    if (--entry->references > 0) continue;
    if (caching_) {
      entry->unused_at = unused_.insert(unused_.end(), entry->tag);
      unused_bytes_ += entry->bytes;
    } else {
      Evict(entry->tag);
    }
  }
}

void ImageCache::Evict(int tag) {
  Entry& entry = entries_.at(tag);
  if (entry.unused_at != unused_.end()) {
    unused_.erase(entry.unused_at);
    unused_bytes_ -= entry.bytes;
  }
  if (auto found = tag_of_.find(entry.key); found != tag_of_.end() && found->second == tag) tag_of_.erase(found);
  used_ -= entry.bytes;
  evicted_.push_back(tag);
  entries_.erase(tag);
}

std::vector<int> ImageCache::TakeEvicted() {
  std::vector<int> tags;
  tags.swap(evicted_);
  return tags;
}

bool ImageCache::idle() const {
  for (const auto& [tag, entry] : entries_) {
    if (entry.references != 0) return false;
  }
  return true;
}

}  // namespace ixc::coordinator
