// File: kernels/ops.h
//
// The operations of the IXC-2.5 language model, on host memory. Two implementations share these declarations:
//   ixc::kernels::reference  plain loops, fp32, no threads, no SIMD (kernels/reference/): the definition of each op
//   ixc::kernels             the CPU path the model runs (kernels/cpu/): BLAS GEMMs, OpenMP threads, AVX2
// Every op of the second kind is tested against the first on awkward shapes (tests/kernels/).
//
// Conventions: activations are f32, row-major; a "row" is one token. Linear weights are (out_features, in_features)
// in the checkpoint's dtype (f32, bf16 or f16) and are converted to f32 as they are used. Preconditions (matching
// sizes, valid pointers) are checked by the caller at the model's API boundary; these functions assume them.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "core/tensor_view.h"

namespace ixc::kernels {

// Rotary embedding parameters for one forward call: rotate-half (GPT-NeoX) with inv_freq[j] = 1 / base^(2j/head_dim),
// computed in f32 as the reference does. Positions are multiplied by `position_scale` (1/factor for linear scaling).
struct RopeParams {
  int head_dim = 0;
  float base = 10000.f;
  float position_scale = 1.f;
};

// The RoPE base for a sequence of `seq_len` tokens under dynamic NTK scaling (spec 6): unchanged up to
// `max_position_embeddings`, else theta * ((factor * seq_len / max_pos) - (factor - 1))^(d / (d - 2)).
double DynamicNtkBase(double theta, double factor, int max_position_embeddings, int64_t seq_len, int head_dim);

// Where one sequence's keys and values live: a paged pool of fixed-size blocks and the sequence's block table.
// Pool layout: (num_blocks, block_size, kv_heads, head_dim) f32, one pool for K and one for V.
// Key j sits in block block_table[j / block_size], slot j % block_size.
//
// Which keys a query sees: without key_positions, key j is the token at position j and a query at position p sees
// keys 0..p. With key_positions (ascending; num_keys of them), key j is at key_positions[j] and a query at p sees the
// keys at positions <= p: a rank's shard of a sequence split across sequence-parallel ranks.
struct PagedKv {
  const float* k_pool = nullptr;
  const float* v_pool = nullptr;
  const int32_t* block_table = nullptr;
  int block_size = 0;
  int kv_heads = 0;
  int head_dim = 0;
  const int32_t* key_positions = nullptr;  // (num_keys) or null
  int64_t num_keys = 0;
};

struct AttentionShape {
  int tokens = 0;  // query rows
  int heads = 0;   // query heads; head h reads KV head h / (heads / kv_heads)
  float scale = 0.f;
};

// Token sampling. temperature == 0 (or top_k == 1) is greedy. Filters run in Hugging Face's order: repetition
// penalty, temperature, top-k, top-p; then one draw from the remaining distribution with `rng`.
struct SamplingParams {
  float temperature = 0.f;
  int top_k = 0;        // 0: off
  float top_p = 1.f;    // 1: off
  float repetition_penalty = 1.f;  // 1: off
};

// The two separator rows of an image's sequence in an AssembleImageTokens source table (feature rows are >= 0).
constexpr int32_t kSubSeparatorSource = -1;     // plora_sub_GN: ends every row of merged tokens
constexpr int32_t kGlobalSeparatorSource = -2;  // plora_glb_GN: between the global view and the tiles

namespace reference {
#include "kernels/ops_list.inc"
}  // namespace reference

#include "kernels/ops_list.inc"

}  // namespace ixc::kernels
