// File: model/cuda/scratch_plan.h
//
// The device memory a forward call of the GPU's language model takes beside the KV pool (CudaLanguageModel's
// scratch: its buffers in one allocation, each at a 256-byte boundary), and what follows from it: the rows a call
// may take in half the reserve (CallLimits, where longer prompts go in chunks) and the reserve that also holds a
// ring prefill of the longest prompt's shard, which is not cut. Host arithmetic, the same on every rank of a group.
//
//   const ScratchPlan plan{shard, DType::kBF16, tp_size, max_lora_rank};
//   const CallLimits limits = plan.Limits(int64_t{4} << 30);   // the 7B: 12K rows, 1.4K of them with logits
#pragma once

#include <array>
#include <cstdint>

#include "core/dtype.h"
#include "model/config.h"
#include "model/language_model.h"

namespace ixc::model {

// Rows of one decode attention launch at most; the split-KV workspace is sized for them.
inline constexpr int64_t kDecodeRowsPerLaunch = 64;

struct ScratchPlan {
  static constexpr int kBuffers = 14;
  // The smallest limits a call gets, whatever the reserve: rows, and rows with logits among them.
  static constexpr int64_t kMinCallRows = 1024, kMinCallLogitRows = 64;

  LlmConfig shard;             // this rank's TP slice
  DType dtype = DType::kBF16;  // activations' (the residual stream and the logits are f32)
  int tp_size = 1;
  int64_t max_lora_rank = 0;  // the largest LoRA rank of any linear layer (its A products' scratch)

  // Each buffer's bytes for `rows` rows, `logit_rows` of them giving logits, in CudaLanguageModel's order: x_,
  // delta_, normed_, qkv_, q_, attention_, gate_, up_, low_rank_, head_in_, logits_, gathered_, lse_,
  // decode_workspace_.
  std::array<int64_t, kBuffers> Sizes(int64_t rows, int64_t logit_rows) const;
  // The decode attention's split-KV workspace for a call of `rows` rows, in floats.
  int64_t DecodeWorkspaceFloats(int64_t rows) const;
  // The one allocation: every buffer at a 256-byte boundary.
  int64_t Bytes(int64_t rows, int64_t logit_rows) const;
  // The rows of a call, and the rows among them that give logits, such that a scratch grown to both fits in half of
  // `reserve_bytes` (the other half is for cuBLASLt's workspace, NCCL's buffers, the decode graphs and a vision tower
  // beside; the NCCL handoff's input rows have room of their own, ReserveBytes); at least kMinCallRows and
  // kMinCallLogitRows.
  CallLimits Limits(int64_t reserve_bytes) const;
  // A ring prefill's own buffers (PlanRing) for this rank's `rows` rows when the largest shard of the group has
  // `capacity`: each of the two K/V blocks (in hand, in flight), the partial attention, its log-sum-exp.
  struct RingBuffers {
    int64_t block = 0, out = 0, lse = 0;
  };
  RingBuffers RingBufferBytes(int64_t capacity, int64_t rows) const;
  // The device memory the KV pool leaves free: `reserve_bytes`, at least twice a call at the smallest limits (so even
  // a reserve of 0 holds one), and where a ring prefill of `ring_rows` rows needs more, its scratch and the ring's own
  // buffers (two K/V blocks in flight, the partial attention and its log-sum-exp) beside half of that; plus
  // `input_rows` f32 rows of input embeddings kept on the device (the NCCL handoff's image prompts).
  int64_t ReserveBytes(int64_t reserve_bytes, int64_t ring_rows, int64_t input_rows = 0) const;
};

}  // namespace ixc::model
