// File: model/batch_metadata.h
//
// The host side of a forward call on an accelerator: every per-row and per-sequence number its kernels read, laid
// out as one array of int32s for one upload (model/cuda/cuda_forward.cc), with where each part starts. The parts
// whose size depends on the rows alone come first, so a decode batch of one shape finds them at the same offsets at
// every step (what a replayed CUDA graph needs); the block tables, whose length grows with the sequences, come last.
//
//   BatchMetadata metadata = LayOutBatch(segments, rows, {.block_size = 16});
//   ... upload metadata.ints; device + metadata.slots_at is each row's cache slot ...
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/forward_segment.h"

namespace ixc::model {

struct BatchLayoutOptions {
  int block_size = 16;
  int64_t decode_max_tokens = 4;        // segments up to this long attend through the decode kernel
  int64_t decode_rows_per_launch = 64;  // a decode run's rows at most
  bool bucket_decode = false;           // round each run's max_visible up to a power of two from 256
};

// Consecutive short segments whose rows attend through one decode launch.
struct DecodeRunLayout {
  int64_t first_row = 0, rows = 0;
  int64_t max_visible = 0;       // the most keys a row sees (rounded up with bucket_decode)
  int64_t table_offsets_at = 0;  // (rows) each row's block table, as an offset into the upload
  int64_t visible_at = 0;        // (rows) the keys each row sees
};

struct BatchMetadata {
  std::vector<int32_t> ints;  // the upload
  // (rows) each: position; cache slot (block * block_size + offset; -1 where this rank does not keep the token);
  // token id (-1 for embedding rows); the index of the last cached key the row sees (its position where all the
  // sequence's keys are here, an earlier index where this rank holds a shard of them).
  int64_t positions_at = 0, slots_at = 0, ids_at = 0, last_key_at = 0;
  std::vector<DecodeRunLayout> decode_runs;
  // The logit rows as decode runs, each row's first_row its index among them: the last layer of a prefill attends
  // from those rows alone, compacted (model/cuda/cuda_forward.cc).
  std::vector<DecodeRunLayout> logit_runs;
  int64_t masks_at = 0;  // 3 x rows bytes from this int on: the image, web and write rows (RowMasksOf)
  RowMasks masks;
  // The same of the logit rows alone, in their order (3 x logit rows bytes): the last layer of a prefill computes
  // past its K and V on those rows only (model/cuda/cuda_forward.cc).
  int64_t logit_masks_at = 0;
  RowMasks logit_masks;
  std::vector<int64_t> tables_at;           // per segment, where its block table starts
  std::vector<int64_t> logit_rows;          // the rows whose logits are wanted, in order
  std::vector<std::vector<int64_t>> wanted;  // per segment, its tokens among them
};

// `segments` as PrepareSegments made them (their K/V slots reserved), `rows` in all. The rows that give logits are
// each segment's LogitTokens (model/forward_segment.h).
BatchMetadata LayOutBatch(const std::vector<Segment>& segments, int64_t rows, const BatchLayoutOptions& options);

// A ring prefill's key limits: for each SP rank's block of keys (its shard's positions, ascending) and each of this
// rank's queries (at `positions`), the index of the last key of that block at or before the query's position (-1:
// none). (blocks, queries), row-major.
std::vector<int32_t> RingLastKeys(const std::vector<std::vector<int32_t>>& block_positions,
                                  std::span<const int32_t> positions);

}  // namespace ixc::model
