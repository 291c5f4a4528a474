// File: kernels/cuda/attention.h
//
// The language model's attention on the GPU, over a paged KV cache on the device (the CPU cache's layout:
// per layer (num_blocks, block_size, kv_heads, head_dim), here in bf16 or f16). References: kernels::reference::
// ApplyRope and PagedAttention and MergeAttention, which tests/gpu/attention_cuda_test.cc holds each kernel to.
//
//   LaunchRopeAndStoreKv      fused qkv rows -> rotated q, and rotated k / v written into their cache slots
//   LaunchFlashAttention      prefill: causal, GQA, tensor cores (mma.sync m16n8k16, f32 accumulation), online
//                             softmax over 64-key tiles double-buffered by cp.async; returns the log-sum-exp (on
//                             sm_90 at head dims 64 and 128, the wgmma kernel: kernels/cuda/flash_wgmma.h)
//   LaunchBatchedFlashAttention  the same over equal-length sequences in one launch (the vision tower's crops)
//   LaunchPagedDecodeAttention  a few query rows per sequence (decode, short chunks), batched across sequences;
//                             split-KV so long contexts fill the GPU, then a log-sum-exp combine
//                             (kernels/cuda/decode_attention.cu; tensor cores at head dims that are a multiple
//                             of 32)
//   LaunchMergeAttention      merges two partial attentions by their log-sum-exp (the sequence-parallel merge)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "kernels/ops.h"

namespace ixc::kernels::cuda {

// One layer's pools and their geometry. Pools are (num_blocks, block_size, kv_heads, head_dim) in `dtype`.
struct DeviceKvPools {
  void* k = nullptr;
  void* v = nullptr;
  DType dtype = DType::kBF16;
  int block_size = 0;
  int kv_heads = 0;
  int head_dim = 0;
};

// qkv (tokens, kv_heads * (group + 2) * head_dim): per KV group `group` query heads, then its K head, then its V
// head (spec 1.3). Writes q (tokens, kv_heads * group, head_dim) rotated at positions[t] (device), and the rotated K
// and the V of token t at cache slot slots[t] (device; slot = block * block_size + offset; negative: not stored).
absl::Status LaunchRopeAndStoreKv(const void* qkv, const int32_t* positions, const int32_t* slots, int64_t tokens,
                                  int group, const RopeParams& rope, void* q, const DeviceKvPools& pools,
                                  cudaStream_t stream);

// Causal attention of q (tokens, heads, head_dim) over the keys 0..num_keys-1 of one sequence (key j in block
// block_table[j / block_size]; block_table on the device): query t sees keys 0..positions[t] (device, ascending).
// Where key j is the token at position j that is the query's position; where the keys are a shard of the sequence
// (sequence parallelism) it is the index of the last key at or before the query's position (-1: none). out
// (tokens, heads, head_dim) in the pools' dtype; lse (tokens, heads) natural-log log-sum-exp of the scaled scores,
// or null. head_dim 16, 32, 64 or 128.
absl::Status LaunchFlashAttention(const void* q, const int32_t* positions, int64_t tokens, int heads,
                                  const DeviceKvPools& pools, const int32_t* block_table, int64_t num_keys,
                                  int64_t max_position, float scale, void* out, float* lse, cudaStream_t stream);

// LaunchFlashAttention over `sequences` sequences of `tokens` rows each in one launch (the vision tower's crops):
// sequence s's q, out and lse rows follow sequence s - 1's, and its block table starts at block_tables + s *
// table_stride; positions, num_keys and max_position are the same for all. At most 65535 sequences.
absl::Status LaunchBatchedFlashAttention(const void* q, const int32_t* positions, int64_t tokens, int sequences,
                                         int heads, const DeviceKvPools& pools, const int32_t* block_tables,
                                         int64_t table_stride, int64_t num_keys, int64_t max_position, float scale,
                                         void* out, float* lse, cudaStream_t stream);

// Query rows of possibly different sequences: row r sees keys [0, visible_keys[r]) of the sequence whose block table
// starts at block_tables[table_offsets[r]] (all on the device). `max_visible` (host) bounds visible_keys and sets
// how many splits the keys are cut into; any upper bound gives the same result.
struct DecodeRows {
  const int32_t* block_tables = nullptr;
  const int32_t* table_offsets = nullptr;  // (rows)
  const int32_t* visible_keys = nullptr;   // (rows)
  int64_t rows = 0;
  int64_t max_visible = 0;
};

// How many splits of the keys LaunchPagedDecodeAttention gives each (row, KV head): as many as one wave of blocks at
// `blocks_per_sm` per multiprocessor holds, no more than the longest row's keys have pieces of `min_keys`, 1 to 128.
int DecodeSplits(int64_t rows, int kv_heads, int64_t max_visible, int num_sms, int blocks_per_sm, int min_keys);

// f32 scratch the decode kernel needs for `rows` x `heads`; pass at least this many floats, zeroed before the
// first launch that uses them (the split counters of FewerDecodeKernelsRequested, which each launch leaves zero).
int64_t DecodeWorkspaceFloats(int64_t rows, int heads, int head_dim);

// Where a launch of `rows` rows puts things in a workspace of `workspace_floats` (offsets in floats): the split
// counters first, sized for the most rows the workspace holds, so that they sit where no launch of any row count
// writes anything else; then the partial outputs (rows, heads, splits, head_dim), 16-byte aligned; then their lse
// (rows, heads, splits).
struct DecodeWorkspaceLayout {
  int64_t counters = 0, partial_out = 0, partial_lse = 0, end = 0;
};
DecodeWorkspaceLayout LayOutDecodeWorkspace(int64_t workspace_floats, int64_t rows, int heads, int head_dim);

// q, out (rows, heads, head_dim) in the pools' dtype; lse (rows, heads) or null. heads / kv_heads <= 8. `num_sms`:
// the device's multiprocessors, to size the split. Probabilities stay in f32, unless DecodeMmaSelected.
absl::Status LaunchPagedDecodeAttention(const void* q, int heads, const DeviceKvPools& pools, const DecodeRows& rows,
                                        float scale, void* out, float* lse, float* workspace,
                                        int64_t workspace_floats, int num_sms, cudaStream_t stream);

// Whether LaunchPagedDecodeAttention takes the tensor-core kernel for this head dim: a multiple of 32, and no
// IXC_FALLBACK_KERNELS=1 (kernels/cuda/device.h). That kernel rounds the probabilities to the pools' dtype before
// P V, as the flash kernels do.
bool DecodeMmaSelected(int head_dim);

// In place into (out_a, lse_a): out (rows, heads, head_dim) in dtype, lse (rows, heads) f32.
absl::Status LaunchMergeAttention(DType dtype, void* out_a, float* lse_a, const void* out_b, const float* lse_b,
                                  int64_t rows, int heads, int head_dim, cudaStream_t stream);

}  // namespace ixc::kernels::cuda
