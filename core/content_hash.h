// File: core/content_hash.h
//
// 128-bit content keys (xxHash's XXH3-128): what the prefix cache and the image-embedding cache name their entries by
// (coordinator/prefix_cache.h). Two inputs share a key only if they are equal, short of a 2^-64 collision.
//   ContentHasher hasher;
//   hasher.Add(pixels);  hasher.AddInt(hd_num);
//   const ContentKey key = hasher.Finish();
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace ixc {

struct ContentKey {
  uint64_t high = 0, low = 0;

  bool empty() const { return high == 0 && low == 0; }
  friend bool operator==(const ContentKey&, const ContentKey&) = default;
  friend auto operator<=>(const ContentKey&, const ContentKey&) = default;
  template <typename H>
  friend H AbslHashValue(H state, const ContentKey& key) {
    return H::combine(std::move(state), key.high, key.low);
  }
  std::string Hex() const;
};

class ContentHasher {
 public:
  ContentHasher();
  ~ContentHasher();
  ContentHasher(const ContentHasher&) = delete;
  ContentHasher& operator=(const ContentHasher&) = delete;

  ContentHasher& Add(std::span<const uint8_t> bytes);
  ContentHasher& AddInt(int64_t value);
  ContentHasher& AddKey(const ContentKey& key);
  ContentKey Finish() const;

 private:
  void* state_;  // XXH3_state_t, kept out of this header
};

}  // namespace ixc
