// File: model/sp_attention.h
//
// The two sequence-parallel attention paths of architecture section 4, for one layer:
//   RingAttention: each SP rank holds a zig-zag shard of the prompt; the K/V of the shards travel around the ring,
//     the next block in flight while the current one is attended to, and partial results merge by log-sum-exp.
//   GatherMergeAttention: every SP rank holds the same queries and attends them to its cached shard; one
//     all-gather of (out, lse) and a merge give attention over the whole sequence on every rank.
// Both are exact: the merge rule reassembles the softmax over the union of the key sets.
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "kernels/ops.h"
#include "parallel/device_comm.h"

namespace ixc::model {

// q (tokens, heads, d) at `positions`; this rank's new keys/values k, v (tokens, kv_heads, d) at the same positions.
// out (tokens, heads, d).
absl::Status RingAttention(const float* q, const float* k, const float* v, std::span<const int32_t> positions,
                           int kv_heads, int head_dim, const kernels::AttentionShape& shape,
                           parallel::DeviceComm& comm, float* out);

// q (tokens, heads, d) at `positions`, the same on every SP rank; `local` this rank's cached shard. out as above.
absl::Status GatherMergeAttention(const float* q, std::span<const int32_t> positions, const kernels::PagedKv& local,
                                  const kernels::AttentionShape& shape, parallel::DeviceComm& comm, float* out);

}  // namespace ixc::model
