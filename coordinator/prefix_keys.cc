#include "coordinator/prefix_keys.h"

#include <algorithm>

namespace ixc::coordinator {
namespace {

// What the RoPE base of position `p` depends on: 0 for the fixed base, else the length it was rotated for; -1 where
// that is a decode step's own (no prefill rotates so).
int64_t RopeKey(const KeyRules& rules, int64_t prefill_length, int64_t p) {
  if (p < prefill_length) return prefill_length <= rules.rope_fixed_up_to ? 0 : prefill_length;
  return p + 1 <= rules.rope_fixed_up_to ? 0 : -1;
}

}  // namespace

void ExtendBlockKeys(const Request& request, const KeyRules& rules, int64_t prefill_length, int64_t length,
                     std::vector<ContentKey>& keys) {
  const int64_t block = rules.block_size, prompt = static_cast<int64_t>(request.prompt.size());
  auto token = [&](int64_t p) { return p < prompt ? request.prompt[p] : request.generated[p - prompt]; };
  for (int64_t g = static_cast<int64_t>(keys.size()); (g + 1) * block <= length; ++g) {
    const int64_t begin = g * block, end = begin + block;
    const int64_t rope = RopeKey(rules, prefill_length, begin);
    for (int64_t p = begin; p < end; ++p) {
      if (RopeKey(rules, prefill_length, p) != rope || rope < 0) return;
    }
    ContentHasher hasher;
    if (g > 0) hasher.AddKey(keys[g - 1]);
    hasher.AddInt(static_cast<int64_t>(request.lora)).AddInt(rope);
    for (int64_t p = begin; p < end; ++p) hasher.AddInt(token(p));
    for (const ImageInPrompt& image : request.images) {
      const int64_t from = std::max<int64_t>(begin, image.first_row);
      const int64_t to = std::min<int64_t>(end, image.first_row + image.rows);
      if (from < to) {
        hasher.AddKey(image.prepared.key).AddInt(from - begin).AddInt(from - image.first_row).AddInt(to - from);
      }
    }
    keys.push_back(hasher.Finish());
  }
}

}  // namespace ixc::coordinator
