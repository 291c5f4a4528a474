#include "core/content_hash.h"

#include <cstdio>

#include "xxhash.h"

namespace ixc {

std::string ContentKey::Hex() const {
  char text[33];
  std::snprintf(text, sizeof(text), "%016llx%016llx", static_cast<unsigned long long>(high),
                static_cast<unsigned long long>(low));
  return text;
}

ContentHasher::ContentHasher() : state_(XXH3_createState()) { XXH3_128bits_reset(static_cast<XXH3_state_t*>(state_)); }

ContentHasher::~ContentHasher() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }

ContentHasher& ContentHasher::Add(std::span<const uint8_t> bytes) {
  XXH3_128bits_update(static_cast<XXH3_state_t*>(state_), bytes.data(), bytes.size());
  return *this;
}

ContentHasher& ContentHasher::AddInt(int64_t value) {
  XXH3_128bits_update(static_cast<XXH3_state_t*>(state_), &value, sizeof(value));
  return *this;
}

ContentHasher& ContentHasher::AddKey(const ContentKey& key) {
  AddInt(static_cast<int64_t>(key.high));
  return AddInt(static_cast<int64_t>(key.low));
}

ContentKey ContentHasher::Finish() const {
  const XXH128_hash_t hash = XXH3_128bits_digest(static_cast<XXH3_state_t*>(state_));
  return {hash.high64, hash.low64};
}

}  // namespace ixc
