#include "model/chunked_forward.h"

#include <algorithm>

#include "core/status_macros.h"

namespace ixc::model {
namespace {

// Tokens first..first+count-1 of `input` (ids or embeddings, and the per-token spans that are set).
ForwardInput Slice(const ForwardInput& input, int64_t first, int64_t count, int64_t hidden) {
  ForwardInput piece = input;
  if (!input.ids.empty()) piece.ids = input.ids.subspan(first, count);
  if (!input.embeddings.empty()) piece.embeddings = input.embeddings.subspan(first * hidden, count * hidden);
  if (!input.image_mask.empty()) piece.image_mask = input.image_mask.subspan(first, count);
  if (!input.positions.empty()) piece.positions = input.positions.subspan(first, count);
  if (!input.store_kv.empty()) piece.store_kv = input.store_kv.subspan(first, count);
  return piece;
}

// The sequence's length after all of `input` (PrepareSegment's context_length of one call), before any chunk of it.
int64_t FinalLength(const ForwardInput& input, const SequenceKv& seq, int64_t tokens) {
  if (input.context_length > 0) return input.context_length;
  if (!input.positions.empty()) return input.positions.back() + 1;
  return (seq.positions.empty() ? 0 : seq.positions.back() + 1) + tokens;
}

// `entry`'s prompt in chunks of max_rows, one backend call each.
absl::Status ForwardEntryInChunks(const LlmWeights& weights, const BatchEntry& entry, int64_t max_rows,
                                  const BackendCall& backend) {
  if (max_rows < 1) return absl::InvalidArgumentError("a forward call's chunks need at least one row each");
  const ForwardInput& input = entry.input;
  const int64_t hidden = weights.config.hidden_size, tokens = input.tokens(hidden);
  const int64_t final_length = FinalLength(input, *entry.seq, tokens);
  if (input.all_logits && entry.logits != nullptr) entry.logits->clear();
  for (int64_t first = 0; first < tokens; first += max_rows) {
    const int64_t count = std::min(max_rows, tokens - first);
    const bool last = first + count == tokens;
    BatchEntry piece = entry;
    piece.input = Slice(input, first, count, hidden);
    piece.input.context_length = final_length;
    std::vector<float> piece_logits;
    if (!last || input.all_logits || entry.logits == nullptr) piece.logits = &piece_logits;
    if (!last) piece.choice = nullptr;  // the next token follows the last chunk
    std::vector<BatchEntry> call = {piece};
    IXC_RETURN_IF_ERROR(backend(call));
    if (input.all_logits && entry.logits != nullptr) {
      entry.logits->insert(entry.logits->end(), piece_logits.begin(), piece_logits.end());
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ForwardInChunks(const LlmWeights& weights, std::vector<BatchEntry>& batch, const CallLimits& limits,
                             const BackendCall& backend) {
  const int64_t hidden = weights.config.hidden_size;
  std::vector<BatchEntry> call;
  int64_t call_rows = 0, call_logit_rows = 0;
  auto flush = [&]() -> absl::Status {
    if (call.empty()) return absl::OkStatus();
    const absl::Status status = backend(call);
    call.clear();
    call_rows = call_logit_rows = 0;
    return status;
  };
  for (const BatchEntry& entry : batch) {
    const int64_t rows = entry.input.tokens(hidden), logit_rows = entry.input.all_logits ? rows : 1;
    if (call_rows + rows <= limits.rows && call_logit_rows + logit_rows <= limits.logit_rows) {
      call.push_back(entry);
      call_rows += rows;
      call_logit_rows += logit_rows;
      continue;
    }
    IXC_RETURN_IF_ERROR(flush());
    const bool too_long = rows > limits.rows || logit_rows > limits.logit_rows;
    if (too_long && entry.input.sp_attention != SpAttention::kRing) {
      const int64_t chunk = entry.input.all_logits ? std::min(limits.rows, limits.logit_rows) : limits.rows;
      IXC_RETURN_IF_ERROR(ForwardEntryInChunks(weights, entry, chunk, backend));
      continue;
    }
    call.push_back(entry);
    call_rows = rows;
    call_logit_rows = logit_rows;
  }
  return flush();
}

}  // namespace ixc::model
