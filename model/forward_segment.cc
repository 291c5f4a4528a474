#include "model/forward_segment.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace ixc::model {
namespace {

absl::Status CheckInput(const LlmWeights& weights, const ForwardInput& input) {
  const LlmConfig& c = weights.config;
  if (input.ids.empty() == input.embeddings.empty()) {
    return absl::InvalidArgumentError("a forward call takes either token ids or input embeddings");
  }
  if (!input.embeddings.empty() && input.embeddings.size() % c.hidden_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("input embeddings hold ", input.embeddings.size(),
                                                   " values, not a multiple of hidden_size ", c.hidden_size));
  }
  const int64_t tokens = input.tokens(c.hidden_size);
  if (!input.image_mask.empty() && static_cast<int64_t>(input.image_mask.size()) != tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("image mask has ", input.image_mask.size(), " entries for ", tokens, " tokens"));
  }
  if (!input.image_mask.empty() && !weights.has_plora &&
      std::any_of(input.image_mask.begin(), input.image_mask.end(), [](uint8_t m) { return m != 0; })) {
    return absl::InvalidArgumentError("image rows need PLoRA weights, which this checkpoint does not have");
  }
  if (input.lora == LoraMode::kWeb && !weights.has_web_lora) {
    return absl::InvalidArgumentError("LoRA mode 'web' needs the lora_web tensors, which this checkpoint lacks");
  }
  if (input.lora == LoraMode::kWrite && !weights.has_write_lora) {
    return absl::InvalidArgumentError(
        "LoRA mode 'write' needs the lora_sft and lora_dpo tensors, which this checkpoint lacks");
  }
  return absl::OkStatus();
}

}  // namespace

kernels::RopeParams RopeFor(const LlmConfig& c, int64_t seq_len) {
  kernels::RopeParams rope;
  rope.head_dim = c.head_dim;
  switch (c.rope_scaling) {
    case RopeScaling::kNone:
      rope.base = static_cast<float>(c.rope_theta);
      break;
    case RopeScaling::kLinear:
      rope.base = static_cast<float>(c.rope_theta);
      rope.position_scale = static_cast<float>(1.0 / c.rope_scaling_factor);
      break;
    case RopeScaling::kDynamic:
      rope.base = static_cast<float>(kernels::DynamicNtkBase(c.rope_theta, c.rope_scaling_factor,
                                                             c.max_position_embeddings, seq_len, c.head_dim));
      break;
  }
  return rope;
}

absl::Status PrepareSegment(const LlmWeights& weights, const ForwardInput& input, SequenceKv& seq, KvCache& cache,
                     Segment& segment) {
  IXC_RETURN_IF_ERROR(CheckInput(weights, input));
  segment.tokens = input.tokens(weights.config.hidden_size);
  if (segment.tokens == 0 && input.sp_attention != SpAttention::kRing) {
    return absl::InvalidArgumentError("a forward call needs at least one token");
  }
  segment.positions.resize(segment.tokens);
  if (input.positions.empty()) {
    const int64_t next = seq.positions.empty() ? 0 : seq.positions.back() + 1;
    for (int64_t t = 0; t < segment.tokens; ++t) segment.positions[t] = static_cast<int32_t>(next + t);
  } else {
    std::copy(input.positions.begin(), input.positions.end(), segment.positions.begin());
  }
  segment.context_length = input.context_length > 0 ? input.context_length
                                                    : (segment.tokens > 0 ? segment.positions.back() + 1 : 0);
  for (int64_t t = 0; t < segment.tokens; ++t) {
    if (input.store_kv.empty() || input.store_kv[t]) segment.stored.push_back(t);
  }
  segment.past = seq.length;
  IXC_RETURN_IF_ERROR(cache.Reserve(seq, segment.past + static_cast<int64_t>(segment.stored.size())));
  for (int64_t t : segment.stored) seq.positions.push_back(segment.positions[t]);
  seq.length = segment.past + static_cast<int64_t>(segment.stored.size());
  segment.rope = RopeFor(weights.config, segment.context_length);
  return absl::OkStatus();
}

absl::StatusOr<int64_t> PrepareSegments(const LlmWeights& weights, std::vector<BatchEntry>& batch, KvCache& cache,
                                        std::vector<Segment>& segments) {
  segments.assign(batch.size(), Segment{});
  int64_t rows = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    Segment& segment = segments[i];
    segment.input = &batch[i].input;
    segment.seq = batch[i].seq;
    segment.logits = batch[i].logits;
    segment.choice = batch[i].choice;
    segment.first_row = rows;
    IXC_RETURN_IF_ERROR(PrepareSegment(weights, batch[i].input, *batch[i].seq, cache, segment));
    rows += segment.tokens;
  }
  return rows;
}

RowMasks RowMasksOf(const std::vector<Segment>& segments, int64_t rows) {
  RowMasks masks;
  masks.image.assign(rows, 0);
  masks.web.assign(rows, 0);
  masks.write.assign(rows, 0);
  for (const Segment& segment : segments) {
    const ForwardInput& input = *segment.input;
    for (int64_t t = 0; t < segment.tokens; ++t) {
      const int64_t row = segment.first_row + t;
      masks.image[row] = !input.image_mask.empty() && input.image_mask[t];
      masks.web[row] = input.lora == LoraMode::kWeb;
      masks.write[row] = input.lora == LoraMode::kWrite;
      masks.any_image |= masks.image[row] != 0;
      masks.any_web |= masks.web[row] != 0;
      masks.any_write |= masks.write[row] != 0;
    }
  }
  return masks;
}

RowMasks RowMasksOfRows(const RowMasks& masks, const std::vector<int64_t>& rows) {
  RowMasks picked;
  for (int64_t row : rows) {
    picked.image.push_back(masks.image[row]);
    picked.web.push_back(masks.web[row]);
    picked.write.push_back(masks.write[row]);
    picked.any_image |= masks.image[row] != 0;
    picked.any_web |= masks.web[row] != 0;
    picked.any_write |= masks.write[row] != 0;
  }
  return picked;
}

std::vector<int64_t> LogitTokens(const Segment& segment) {
  std::vector<int64_t> tokens;
  const bool ring = segment.input->sp_attention == SpAttention::kRing;
  for (int64_t t = 0; t < segment.tokens; ++t) {
    const bool last = ring ? segment.positions[t] == segment.context_length - 1 : t == segment.tokens - 1;
    if (segment.input->all_logits || last) tokens.push_back(t);
  }
  return tokens;
}

}  // namespace ixc::model
