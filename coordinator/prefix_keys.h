// File: coordinator/prefix_keys.h
//
// The key of a KV block (coordinator/block_manager.h): everything its K/V depends on, chained through the blocks
// before it (a block's K/V depends on every earlier position):
//   - the token ids;
//   - for image and video rows, the medium's content key (its decoded pixels and hd_num, media/vision_input.h) and
//     which of its rows they are;
//   - the LoRA mode (web and write change every row's K/V; PLoRA is part of the image rows already);
//   - the RoPE base the K/V were rotated with. With dynamic NTK (spec 6) a sequence longer than
//     max_position_embeddings rotates by its length, so a prefill of L positions writes K/V that only a prefill of L
//     reproduces, and decode steps past that length write each token with another base: such blocks get no key.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "core/content_hash.h"
#include "coordinator/request.h"

namespace ixc::coordinator {

struct KeyRules {
  int block_size = 16;
  // Sequences up to this length rotate with the fixed base (max_position_embeddings with dynamic NTK).
  int64_t rope_fixed_up_to = std::numeric_limits<int64_t>::max();
};

// Extends `keys`, the keys of the first keys.size() whole blocks of `request`'s positions (prompt, then generated),
// to its whole blocks within [0, length), where the first `prefill_length` positions are written by one prefill and
// the rest by decode steps. Stops before the first block whose K/V no later prefill reproduces (the RoPE rule above);
// `keys` is then final for this prefill.
void ExtendBlockKeys(const Request& request, const KeyRules& rules, int64_t prefill_length, int64_t length,
                     std::vector<ContentKey>& keys);

}  // namespace ixc::coordinator
