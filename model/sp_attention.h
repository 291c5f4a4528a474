// File: model/sp_attention.h
//
// The two sequence-parallel attention paths of architecture section 4, for one layer:
//   RingAttention: each SP rank holds its block-cyclic shard of the prompt's new rows; every rank's K/V of the
//     sequence (a cached prefix's and the new rows') travel around the ring, the next block in flight while the
//     current one is attended to, and partial results merge by log-sum-exp.
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

// q (tokens, heads, d) at `positions`; `local` this rank's cached K/V of the sequence, the new rows' included.
// out (tokens, heads, d).
absl::Status RingAttention(const float* q, std::span<const int32_t> positions, const kernels::PagedKv& local,
                           const kernels::AttentionShape& shape, parallel::DeviceComm& comm, float* out);

// q (tokens, heads, d) at `positions`, the same on every SP rank; `local` this rank's cached shard. out as above.
absl::Status GatherMergeAttention(const float* q, std::span<const int32_t> positions, const kernels::PagedKv& local,
                                  const kernels::AttentionShape& shape, parallel::DeviceComm& comm, float* out);

}  // namespace ixc::model
