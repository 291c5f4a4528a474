// File: model/forward_segment.h
//
// One sequence's part of a (batched) forward call, shared by the CPU forward (model/language_model.cc) and the GPU
// one (model/cuda/): the checks on its input, its positions, which of its tokens this rank caches, the cache blocks
// it reserves and the RoPE parameters of its length.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/ops.h"
#include "model/language_model.h"

namespace ixc::model {

// One sequence's part of a (batched) forward call.
struct Segment {
  const ForwardInput* input = nullptr;
  SequenceKv* seq = nullptr;
  std::vector<float>* logits = nullptr;
  TokenChoice* choice = nullptr;     // the entry's, if it wants its next token chosen
  int64_t first_row = 0;             // its rows in the batch: [first_row, first_row + tokens)
  int64_t tokens = 0;
  std::vector<int32_t> positions;    // (tokens)
  int64_t context_length = 0;
  std::vector<int64_t> stored;       // its tokens whose K/V this rank keeps
  int64_t past = 0;                  // cache slots before this call
  kernels::RopeParams rope;
};

// Checks `input` against the weights, fills `segment` (positions, stored tokens, RoPE), reserves its cache blocks
// and appends the stored tokens' positions to `seq`. The caller sets input, logits and first_row.
absl::Status PrepareSegment(const LlmWeights& weights, const ForwardInput& input, SequenceKv& seq, KvCache& cache,
                            Segment& segment);

// PrepareSegment for every entry of `batch`, their rows laid out one after another; returns the batch's rows.
absl::StatusOr<int64_t> PrepareSegments(const LlmWeights& weights, std::vector<BatchEntry>& batch, KvCache& cache,
                                        std::vector<Segment>& segments);

// Which rows of a batch get which low-rank terms: PLoRA on image rows, the web LoRA on the rows of web requests,
// the sft and dpo LoRAs on the rows of write requests. (rows) each, 1 where the term applies.
struct RowMasks {
  std::vector<uint8_t> image, web, write;
  bool any_image = false, any_web = false, any_write = false;
};
RowMasks RowMasksOf(const std::vector<Segment>& segments, int64_t rows);
// `masks` of the rows `rows` alone, in their order.
RowMasks RowMasksOfRows(const RowMasks& masks, const std::vector<int64_t>& rows);

// The segment's tokens whose logits are wanted: every one with all_logits, else the last; in a ring prefill the one
// at the prompt's last position, if this rank has it.
std::vector<int64_t> LogitTokens(const Segment& segment);

// The RoPE parameters for a sequence of `seq_len` tokens (dynamic NTK: spec 6).
kernels::RopeParams RopeFor(const LlmConfig& c, int64_t seq_len);

}  // namespace ixc::model
