#include "model/cuda/scratch_plan.h"

#include <algorithm>
#include <numeric>

#include "kernels/cuda/attention.h"
#include "model/cuda/device_resources.h"

namespace ixc::model {

std::array<int64_t, ScratchPlan::kBuffers> ScratchPlan::Sizes(int64_t rows, int64_t logit_rows) const {
  const LlmConfig& c = shard;
  const int64_t e = DTypeSize(dtype), hidden = c.hidden_size, attention_width = c.num_heads * c.head_dim;
  const int64_t tp_vocab = c.vocab_size;  // this rank's slice
  return {
      rows * hidden * 4,                                      // x_
      rows * hidden * 4,                                      // delta_
      rows * hidden * e,                                      // normed_
      rows * c.qkv_size() * e,                                // qkv_
      rows * attention_width * e,                             // q_
      rows * attention_width * e,                             // attention_
      rows * c.intermediate_size * e,                         // gate_
      rows * c.intermediate_size * e,                         // up_
      2 * rows * std::max<int64_t>(max_lora_rank, 1) * e,     // low_rank_
      logit_rows * hidden * e,                                // head_in_
      logit_rows * tp_vocab * 4,                              // logits_
      tp_size > 1 ? tp_size * logit_rows * tp_vocab * 4 : 0,  // gathered_: the TP group's logits
      rows * c.num_heads * 4,                                 // lse_
      DecodeWorkspaceFloats(rows) * 4,                        // decode_workspace_
  };
}

int64_t ScratchPlan::DecodeWorkspaceFloats(int64_t rows) const {
  return kernels::cuda::DecodeWorkspaceFloats(std::min(rows, kDecodeRowsPerLaunch), shard.num_heads, shard.head_dim);
}

int64_t ScratchPlan::Bytes(int64_t rows, int64_t logit_rows) const {
  int64_t total = 0;
  for (int64_t size : Sizes(rows, logit_rows)) total += AlignUp(size);
  return total;
}

CallLimits ScratchPlan::Limits(int64_t reserve_bytes) const {
  const int64_t budget = reserve_bytes / 2;
  // The share of `rows` rows, `logit_rows` of them with logits, without the decode workspace (a fixed size, small
  // beside the budget).
  auto share = [&](int64_t rows, int64_t logit_rows) {
    std::array<int64_t, kBuffers> sizes = Sizes(rows, logit_rows);
    sizes.back() = 0;
    return std::accumulate(sizes.begin(), sizes.end(), int64_t{0});
  };
  // The scratch keeps the most rows and the most logit rows any call has brought (EnsureScratch grows each on its
  // own), so the two limits split the budget: three quarters for the rows, a quarter for the logits.
  const int64_t rows = budget / 4 * 3 / share(1, 0), logit_rows = budget / 4 / (share(1, 1) - share(1, 0));
  return {std::max(kMinCallRows, rows), std::max(kMinCallLogitRows, std::min(logit_rows, rows))};
}

ScratchPlan::RingBuffers ScratchPlan::RingBufferBytes(int64_t capacity, int64_t rows) const {
  const LlmConfig& c = shard;
  const int64_t e = DTypeSize(dtype);
  return {2 * capacity * c.num_kv_heads * c.head_dim * e, rows * c.num_heads * c.head_dim * e, rows * c.num_heads * 4};
}

int64_t ScratchPlan::ReserveBytes(int64_t reserve_bytes, int64_t ring_rows, int64_t input_rows) const {
  const int64_t inputs = AlignUp(std::max<int64_t>(input_rows, 0) * shard.hidden_size * 4);
  reserve_bytes = std::max(reserve_bytes, 2 * Bytes(kMinCallRows, kMinCallLogitRows));
  if (ring_rows <= 0) return reserve_bytes + inputs;
  // The call's scratch with one logit row (the last position's), and PlanRing's buffers.
  const RingBuffers buffers = RingBufferBytes(ring_rows, ring_rows);
  const int64_t ring = Bytes(ring_rows, 1) + 2 * AlignUp(buffers.block) + AlignUp(buffers.out) + AlignUp(buffers.lse);
  return std::max(reserve_bytes, ring + reserve_bytes / 2) + inputs;
}

}  // namespace ixc::model
