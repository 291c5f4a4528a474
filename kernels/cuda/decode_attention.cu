// Paged decode attention (split-KV) and the combine of its splits. Scores are scaled into the log2 domain so the
// softmax uses exp2; the log-sum-exp handed back is natural log, as the reference returns it (flash_tile.cuh).
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_dispatch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/flash_tile.cuh"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/warp_sum.cuh"

namespace ixc::kernels::cuda {
namespace {

constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = 32 * kDecodeWarps;
constexpr int kMaxGroup = 8;
constexpr int kMaxSplits = 128;
constexpr int64_t kWorkspacePad = 4;  // floats

// The decode workspace's floats per row (LaunchDecode): the split counters, the partial outputs, their lse.
int64_t WorkspaceFloatsPerRow(int heads, int head_dim) { return int64_t{heads} * (1 + kMaxSplits * (head_dim + 1)); }

// How a warp walks a head of D dims: each lane holds 8 dims (16 bytes) of a K or V row, so one row takes D / 8
// lanes and a warp reads 32 / (D / 8) keys per step; a chunk is enough steps for 8 keys, all loaded before any is
// used.
template <int D>
struct DecodeWalk {
  static constexpr int kLanesPerKey = D / 8;
  static constexpr int kKeysPerStep = 32 / kLanesPerKey;
  static constexpr int kSteps = kKeysPerStep >= 8 ? 1 : 8 / kKeysPerStep;
  static constexpr int kChunkKeys = kSteps * kKeysPerStep;
  static_assert(kLanesPerKey >= 1 && kLanesPerKey <= 32);
};

// Sums (or maxes) over the lanes that hold the same 8 dims of different keys.
template <int kLanesPerKey>
__device__ float AcrossKeys(float value, bool take_max) {
#pragma unroll
  for (int offset = kLanesPerKey; offset < 32; offset *= 2) {
    const float other = __shfl_xor_sync(0xffffffff, value, offset);
    value = take_max ? fmaxf(value, other) : value + other;
  }
  return value;
}

// The keys [begin, end) of this block's split (blockIdx.x of gridDim.x) of a row that sees `visible` keys: pieces
// of a multiple of 16 keys, each row balanced on its own length. Nothing depends on the launch's longest row but the
// split count, so a captured graph replays for any lengths.
struct KeyRange {
  int begin = 0, end = 0;
};
__device__ inline KeyRange SplitOf(int visible) {
  const int splits = gridDim.x;
  const int split_keys = ((visible + splits - 1) / splits + 15) / 16 * 16;
  const int begin = blockIdx.x * split_keys;
  return {begin, min(visible, begin + split_keys)};
}

// Each warp's online-softmax state of the block's query heads over its share of the split's keys, and their merge
// by the maxima into the split's result: with one split the final output and lse, else the split's partial ones
// (CombineSplitsKernel merges those).
template <int D, int kGroup>
struct DecodeWarpStates {
  float m[kDecodeWarps][kGroup], l[kDecodeWarps][kGroup];  // running max (log2 domain) and sum
  float acc[kDecodeWarps][kGroup][D];                      // the unnormalized outputs

  // After a barrier past every warp's writes; the block's threads share the group's (head, dim) values.
  template <typename T>
  __device__ void MergeAndWrite(int group, int64_t first_head_row, float* partial_out, float* partial_lse, T* out,
                                float* lse) const {
    const int split = blockIdx.x, splits = gridDim.x;
    for (int i = threadIdx.x; i < group * D; i += kDecodeThreads) {
      const int h = i / D, d = i % D;
      float top = -INFINITY;
      for (int w = 0; w < kDecodeWarps; ++w) top = fmaxf(top, m[w][h]);
      float total = 0.f, weight = 0.f;
      if (top != -INFINITY) {  // else no warp had a key: the split is empty
        for (int w = 0; w < kDecodeWarps; ++w) {
          const float rescale = exp2f(m[w][h] - top);
          total += rescale * acc[w][h][d];
          weight += rescale * l[w][h];
        }
      }
      const float value = weight > 0.f ? total / weight : 0.f;
      const float head_lse = weight > 0.f ? (top + log2f(weight)) * kLn2 : -INFINITY;
      const int64_t head_row = first_head_row + h;
      if (splits == 1) {
        out[head_row * D + d] = FromFloat<T>(value);
        if (lse != nullptr && d == 0) lse[head_row] = head_lse;
      } else {
        partial_out[(head_row * splits + split) * D + d] = value;
        if (d == 0) partial_lse[head_row * splits + split] = head_lse;
      }
    }
  }
};

// Block (row, head): the splits' partial results merged by their log-sum-exp. One warp turns the lse into weights;
// then slices of the block each sum a share of the splits (four dims per thread, all loads independent) and the
// slices are added.
constexpr int kCombineThreads = 256;

// Head row `head_row`'s splits merged into out and lse by a block of kThreads threads. The partial results are read
// from L2 (__ldcg): in MergeSplitsInLastBlock other blocks wrote them during this kernel.
template <typename T, int D, int kThreads>
__device__ void CombineSplits(int64_t head_row, const float* partial_out, const float* partial_lse, int splits, T* out,
                              float* lse) {
  constexpr int kQuads = D / 4, kSlices = kThreads / kQuads;
  __shared__ float weight_s[kMaxSplits];
  __shared__ float total_weight_s, max_s;
  __shared__ __align__(16) float sums_s[kSlices][D];  // written as float4
  const float* lses = partial_lse + head_row * splits;
  if (threadIdx.x < 32) {
    float top = -INFINITY;
    for (int s = threadIdx.x; s < splits; s += 32) top = fmaxf(top, __ldcg(lses + s));
    for (int offset = 16; offset > 0; offset /= 2) top = fmaxf(top, __shfl_xor_sync(0xffffffff, top, offset));
    float total = 0.f;
    for (int s = threadIdx.x; s < splits; s += 32) {
      const float split_lse = __ldcg(lses + s);
      const float w = split_lse == -INFINITY ? 0.f : expf(split_lse - top);
      weight_s[s] = w;
      total += w;
    }
    total = WarpSum(total);
    if (threadIdx.x == 0) {
      total_weight_s = total;
      max_s = top;
    }
  }
  __syncthreads();
  const int slice = threadIdx.x / kQuads, quad = threadIdx.x % kQuads;
  float4 sum = {0.f, 0.f, 0.f, 0.f};
  for (int s = slice; s < splits; s += kSlices) {
    const float w = weight_s[s];
    const float4 part = __ldcg(reinterpret_cast<const float4*>(partial_out + (head_row * splits + s) * D + quad * 4));
    sum.x += w * part.x;
    sum.y += w * part.y;
    sum.z += w * part.z;
    sum.w += w * part.w;
  }
  *reinterpret_cast<float4*>(&sums_s[slice][quad * 4]) = sum;
  __syncthreads();
  const float total_weight = total_weight_s;
  for (int d = threadIdx.x; d < D; d += kThreads) {
    float value = 0.f;
    for (int s = 0; s < kSlices; ++s) value += sums_s[s][d];
    out[head_row * D + d] = FromFloat<T>(total_weight > 0.f ? value / total_weight : 0.f);
  }
  if (lse != nullptr && threadIdx.x == 0) {
    lse[head_row] = total_weight > 0.f ? max_s + logf(total_weight) : -INFINITY;
  }
  __syncthreads();  // the shared sums are free for the next head row
}

template <typename T, int D>
__global__ void __launch_bounds__(kCombineThreads)
    CombineSplitsKernel(const float* partial_out, const float* partial_lse, int splits, T* out, float* lse) {
  AllowNextKernel();  // the weight-streaming GEMV after this one may start its loads
  WaitForPriorKernel();
  CombineSplits<T, D, kCombineThreads>(blockIdx.x, partial_out, partial_lse, splits, out, lse);
}

// Where the decode kernel merges its own splits (split_counters, FewerDecodeKernelsRequested): after a block has
// written its split's partial results it counts itself in its (row, KV head)'s counter, and the block that counts
// last merges the group's heads, as CombineSplitsKernel would, and sets the counter back to 0 for the next launch.
// The fence before the count makes each block's partial results visible to the one that merges (the pattern of the
// CUDA samples' threadFenceReduction).
template <typename T, int D>
__device__ void MergeSplitsInLastBlock(int group, int64_t first_head_row, const float* partial_out,
                                       const float* partial_lse, int* split_counters, T* out, float* lse) {
  if (gridDim.x == 1) return;  // MergeAndWrite wrote the result itself
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    int* counter = split_counters + static_cast<int64_t>(blockIdx.z) * gridDim.y + blockIdx.y;
    last = atomicAdd(counter, 1) == static_cast<int>(gridDim.x) - 1;
    if (last) *counter = 0;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  for (int h = 0; h < group; ++h) {
    CombineSplits<T, D, kDecodeThreads>(first_head_row + h, partial_out, partial_lse, gridDim.x, out, lse);
  }
}

// Block (split, kv head, row): the group's query heads over the split's keys. Each warp takes every
// kDecodeWarps-th chunk of the split and keeps its own online softmax in registers (no block barrier in the loop);
// a chunk's K and V rows are all requested before the first score, and the warps' states are merged at the end.
// With one split the block writes the final output and log-sum-exp; otherwise its partial result and lse.
template <typename T, int D, int kGroup>
__global__ void __launch_bounds__(kDecodeThreads, kGroup <= 4 ? 4 : 2)
    DecodeKernel(const T* q, int heads, int group, const T* k_pool, const T* v_pool, int block_size, int kv_heads,
                 DecodeRows rows, float scale_log2, float* partial_out, float* partial_lse, int* split_counters, T* out,
                 float* lse) {
  AllowNextKernel();  // the weight-streaming GEMV after this one may start its loads
  WaitForPriorKernel();
  using Walk = DecodeWalk<D>;
  const int kv_head = blockIdx.y, row = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int piece = lane % Walk::kLanesPerKey, key_in_step = lane / Walk::kLanesPerKey;
  const int64_t first_head_row = static_cast<int64_t>(row) * heads + kv_head * group;

  float q_r[kGroup][8];  // this lane's 8 dims of each query head, scaled into the log2 domain
#pragma unroll
  for (int h = 0; h < kGroup; ++h) {
    uint4 raw = {0, 0, 0, 0};
    if (h < group) raw = *reinterpret_cast<const uint4*>(q + (first_head_row + h) * D + piece * 8);
    const T* q8 = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int e = 0; e < 8; ++e) q_r[h][e] = ToFloat(q8[e]) * scale_log2;
  }
  const int visible = rows.visible_keys[row];
  const int32_t* table = rows.block_tables + rows.table_offsets[row];
  const KeyRange split_range = SplitOf(visible);
  const int begin = split_range.begin, end = split_range.end;

  float m[kGroup], l[kGroup], acc[kGroup][8];
#pragma unroll
  for (int h = 0; h < kGroup; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[h][e] = 0.f;
  }
  // Chunks start at multiples of their size; where the KV block size is one too, a chunk lies in one block and one
  // table lookup per chunk gives every key's address (the integer work otherwise dominates the issue slots).
  const bool chunks_in_one_block = block_size % Walk::kChunkKeys == 0;
  const int block_shift = PowerOfTwoShift(block_size);
  const int64_t key_stride = static_cast<int64_t>(kv_heads) * D;  // between consecutive slots of a block
  for (int base = begin + warp * Walk::kChunkKeys; base < end; base += kDecodeWarps * Walk::kChunkKeys) {
    uint4 k_raw[Walk::kSteps], v_raw[Walk::kSteps];
    const int64_t first_slot = SlotOf(table, base, block_size, block_shift);
    const int64_t first_offset = (first_slot * kv_heads + kv_head) * D + piece * 8;
#pragma unroll
    for (int s = 0; s < Walk::kSteps; ++s) {
      const int key = base + s * Walk::kKeysPerStep + key_in_step;
      k_raw[s] = v_raw[s] = uint4{0, 0, 0, 0};
      if (key < end) {
        int64_t offset = first_offset + (key - base) * key_stride;
        if (!chunks_in_one_block) {
          offset = (SlotOf(table, key, block_size, block_shift) * kv_heads + kv_head) * D + piece * 8;
        }
        k_raw[s] = __ldg(reinterpret_cast<const uint4*>(k_pool + offset));
        v_raw[s] = __ldg(reinterpret_cast<const uint4*>(v_pool + offset));
      }
    }
    float p[Walk::kSteps][kGroup];  // scores, then probabilities
#pragma unroll
    for (int s = 0; s < Walk::kSteps; ++s) {
      const T* k8 = reinterpret_cast<const T*>(&k_raw[s]);
      const bool valid = base + s * Walk::kKeysPerStep + key_in_step < end;
#pragma unroll
      for (int h = 0; h < kGroup; ++h) {
        float dot = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) dot += q_r[h][e] * ToFloat(k8[e]);
#pragma unroll
        for (int offset = 1; offset < Walk::kLanesPerKey; offset *= 2) dot += __shfl_xor_sync(0xffffffff, dot, offset);
        p[s][h] = valid ? dot : -INFINITY;
      }
    }
#pragma unroll
    for (int h = 0; h < kGroup; ++h) {
      float chunk_max = p[0][h];
#pragma unroll
      for (int s = 1; s < Walk::kSteps; ++s) chunk_max = fmaxf(chunk_max, p[s][h]);
      // Finite: the chunk's first key is below `end`.
      const float new_max = fmaxf(m[h], AcrossKeys<Walk::kLanesPerKey>(chunk_max, true));
      const float correction = FastExp2(m[h] - new_max);
      float sum = 0.f;
#pragma unroll
      for (int s = 0; s < Walk::kSteps; ++s) {
        p[s][h] = FastExp2(p[s][h] - new_max);
        sum += p[s][h];
      }
      l[h] = l[h] * correction + AcrossKeys<Walk::kLanesPerKey>(sum, false);
      m[h] = new_max;
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[h][e] *= correction;
    }
#pragma unroll
    for (int s = 0; s < Walk::kSteps; ++s) {
      const T* v8 = reinterpret_cast<const T*>(&v_raw[s]);
#pragma unroll
      for (int h = 0; h < kGroup; ++h) {
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[h][e] += p[s][h] * ToFloat(v8[e]);
      }
    }
  }

  __shared__ DecodeWarpStates<D, kGroup> states;
#pragma unroll
  for (int h = 0; h < kGroup; ++h) {
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[h][e] = AcrossKeys<Walk::kLanesPerKey>(acc[h][e], false);
    if (lane < Walk::kLanesPerKey) {
#pragma unroll
      for (int e = 0; e < 8; ++e) states.acc[warp][h][piece * 8 + e] = acc[h][e];
    }
    if (lane == 0) {
      states.m[warp][h] = m[h];
      states.l[warp][h] = l[h];
    }
  }
  __syncthreads();
  states.MergeAndWrite(group, first_head_row, partial_out, partial_lse, out, lse);
  if (split_counters != nullptr) {
    MergeSplitsInLastBlock<T, D>(group, first_head_row, partial_out, partial_lse, split_counters, out, lse);
  }
}

// The tensor-core decode kernel, for head dims that are a multiple of 32 (DecodeMmaSelected). DecodeKernel spends
// 1 + group lane instructions on each K or V element, about the issue slots a multiprocessor has while HBM delivers
// that element: 51% of HBM at 16 rows x 8K keys on the H200, where this kernel reaches 69%. Here the group's query
// heads are the n = 8 columns of m16n8k16 MMAs and a warp's 16-key tile their rows: S^T (keys x heads) = K Q^T is
// D / 16 MMAs and O^T (dims x heads) += V^T P^T another D / 16, with D / 4 + 2 movmatrix to turn V and P around. K
// and V come from the pools straight into registers, 16 bytes per load: lane 4g + t reads pieces 4i + t (8 dims
// each) of the tile's keys g and g + 8, which serve as S^T's A fragments as they are, Q's pieces read alike as its B
// fragments (MmaPiecesRound). Probabilities are rounded to T for the P V product, as the flash kernels and the
// reference model's matmul do.
constexpr int kDecodeMmaBlocksPerSm = 3;
constexpr int kDecodeMmaTileKeys = 16;

template <typename T, int D>
__global__ void __launch_bounds__(kDecodeThreads, kDecodeMmaBlocksPerSm)
    DecodeMmaKernel(const T* q, int heads, int group, const T* k_pool, const T* v_pool, int block_size, int kv_heads,
                    DecodeRows rows, float scale_log2, float* partial_out, float* partial_lse, int* split_counters,
                    T* out, float* lse) {
  AllowNextKernel();  // the weight-streaming GEMV after this one may start its loads
  WaitForPriorKernel();
  constexpr int kRounds = D / 32;  // 16-byte pieces per lane of a row: four lanes share one
  const int kv_head = blockIdx.y, row = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int64_t first_head_row = static_cast<int64_t>(row) * heads + kv_head * group;

  uint4 q_pieces[kRounds];  // query head g's pieces 4i + t: its B fragments (zeros past the group)
#pragma unroll
  for (int i = 0; i < kRounds; ++i) {
    q_pieces[i] = uint4{0, 0, 0, 0};
    if (g < group) q_pieces[i] = *reinterpret_cast<const uint4*>(q + (first_head_row + g) * D + (4 * i + t) * 8);
  }
  const int visible = rows.visible_keys[row];
  const int32_t* table = rows.block_tables + rows.table_offsets[row];
  const KeyRange range = SplitOf(visible);

  // O^T's m-tile 2i + j: rows r and r + 8 (r < 8) are dims 8 (4i + r / 2) + 4j + r % 2 and that + 2 (see below).
  float o[D / 16][4];
#pragma unroll
  for (int mt = 0; mt < D / 16; ++mt) o[mt][0] = o[mt][1] = o[mt][2] = o[mt][3] = 0.f;
  // Query heads 2t and 2t + 1: running max (log2 domain), and the sum over this lane's keys g and g + 8 alone.
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  // Tiles start at multiples of 16 keys: with a block size that is one too, a tile lies in one block.
  const bool tiles_in_one_block = block_size % kDecodeMmaTileKeys == 0;
  const int block_shift = PowerOfTwoShift(block_size);
  const int64_t key_stride = static_cast<int64_t>(kv_heads) * D;  // between consecutive slots
  for (int base = range.begin + warp * kDecodeMmaTileKeys; base < range.end;
       base += kDecodeWarps * kDecodeMmaTileKeys) {
    const bool valid_lo = base + g < range.end, valid_hi = base + g + 8 < range.end;
    int64_t offset_lo = 0, offset_hi = 0;
    if (tiles_in_one_block) {
      offset_lo = (SlotOf(table, base, block_size, block_shift) * kv_heads + kv_head) * D + g * key_stride;
      offset_hi = offset_lo + 8 * key_stride;
    } else {
      if (valid_lo) offset_lo = (SlotOf(table, base + g, block_size, block_shift) * kv_heads + kv_head) * D;
      if (valid_hi) offset_hi = (SlotOf(table, base + g + 8, block_size, block_shift) * kv_heads + kv_head) * D;
    }
    uint4 k_lo[kRounds], k_hi[kRounds], v_lo[kRounds], v_hi[kRounds];  // zeros past the split: no NaN in P V
#pragma unroll
    for (int i = 0; i < kRounds; ++i) {
      const int piece = (4 * i + t) * 8;
      k_lo[i] = v_lo[i] = k_hi[i] = v_hi[i] = uint4{0, 0, 0, 0};
      if (valid_lo) {
        k_lo[i] = __ldg(reinterpret_cast<const uint4*>(k_pool + offset_lo + piece));
        v_lo[i] = __ldg(reinterpret_cast<const uint4*>(v_pool + offset_lo + piece));
      }
      if (valid_hi) {
        k_hi[i] = __ldg(reinterpret_cast<const uint4*>(k_pool + offset_hi + piece));
        v_hi[i] = __ldg(reinterpret_cast<const uint4*>(v_pool + offset_hi + piece));
      }
    }

    // S^T: this lane holds keys g ([0], [1]) and g + 8 ([2], [3]) of query heads 2t, 2t + 1.
    float s[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int i = 0; i < kRounds; ++i) MmaPiecesRound<T>(s, k_lo[i], k_hi[i], q_pieces[i]);
    if (!valid_lo) s[0] = s[1] = -INFINITY;
    if (!valid_hi) s[2] = s[3] = -INFINITY;
    // The online softmax of heads 2t, 2t + 1: a head's 16 keys are on the eight lanes of one t.
    float correction[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      float tile_max = fmaxf(s[e], s[2 + e]);
#pragma unroll
      for (int offset = 4; offset < 32; offset *= 2)
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffff, tile_max, offset));
      const float new_max = fmaxf(m[e], tile_max * scale_log2);  // finite: key `base` is in the split
      correction[e] = FastExp2(m[e] - new_max);
      m[e] = new_max;
      s[e] = FastExp2(fmaf(s[e], scale_log2, -new_max));
      s[2 + e] = FastExp2(fmaf(s[2 + e], scale_log2, -new_max));
      l[e] = l[e] * correction[e] + s[e] + s[2 + e];
    }
#pragma unroll
    for (int mt = 0; mt < D / 16; ++mt) {
      o[mt][0] *= correction[0];
      o[mt][1] *= correction[1];
      o[mt][2] *= correction[0];
      o[mt][3] *= correction[1];
    }
    // P^T's B fragment: keys 2t, 2t + 1 (and 2t + 8, 2t + 9) of head g, P's (key, head pair) rows transposed.
    const uint32_t p_lo = MovMatrixTrans(PackPair<T>(s[0], s[1]));
    const uint32_t p_hi = MovMatrixTrans(PackPair<T>(s[2], s[3]));
    // O^T += V^T P^T. Pair q of the pieces 4i + t of keys 0-7 is an 8x8 matrix whose column c is dim
    // 8 (4i + c / 2) + 2q + c % 2; transposed, lane 4g + t holds that dim's keys 2t, 2t + 1: the A fragment's row g.
#pragma unroll
    for (int i = 0; i < kRounds; ++i) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const uint32_t a[4] = {MovMatrixTrans(PairOf(v_lo[i], 2 * j)), MovMatrixTrans(PairOf(v_lo[i], 2 * j + 1)),
                               MovMatrixTrans(PairOf(v_hi[i], 2 * j)), MovMatrixTrans(PairOf(v_hi[i], 2 * j + 1))};
        Mma<T>(o[2 * i + j], a, p_lo, p_hi);
      }
    }
  }

#pragma unroll
  for (int e = 0; e < 2; ++e) {
#pragma unroll
    for (int offset = 4; offset < 32; offset *= 2) l[e] += __shfl_xor_sync(0xffffffff, l[e], offset);
  }
  __shared__ DecodeWarpStates<D, kMaxGroup> states;
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int head = 2 * t + e;
    if (g == 0) {
      states.m[warp][head] = m[e];
      states.l[warp][head] = l[e];
    }
#pragma unroll
    for (int i = 0; i < kRounds; ++i) {
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int dim = 8 * (4 * i + g / 2) + 4 * j + g % 2;
        states.acc[warp][head][dim] = o[2 * i + j][e];
        states.acc[warp][head][dim + 2] = o[2 * i + j][2 + e];
      }
    }
  }
  __syncthreads();
  states.MergeAndWrite(group, first_head_row, partial_out, partial_lse, out, lse);
  if (split_counters != nullptr) {
    MergeSplitsInLastBlock<T, D>(group, first_head_row, partial_out, partial_lse, split_counters, out, lse);
  }
}

template <typename T>
using DecodeKernelFn = void (*)(const T* q, int heads, int group, const T* k_pool, const T* v_pool, int block_size,
                                int kv_heads, DecodeRows rows, float scale_log2, float* partial_out, float* partial_lse,
                                int* split_counters, T* out, float* lse);

// `kernel` over (splits, kv heads, rows) blocks, then the combine where there is more than one split: a kernel of
// its own, or the last block of each (row, KV head) with FewerDecodeKernelsRequested.
template <typename T, int D>
absl::Status LaunchDecode(DecodeKernelFn<T> kernel, int splits, const void* q, int heads, const DeviceKvPools& pools,
                          const DecodeRows& rows, float scale, void* out, float* lse, float* workspace,
                          int64_t workspace_floats, cudaStream_t stream) {
  const int group = heads / pools.kv_heads;
  const DecodeWorkspaceLayout layout = LayOutDecodeWorkspace(workspace_floats, rows.rows, heads, D);
  int* split_counters = FewerDecodeKernelsRequested() ? reinterpret_cast<int*>(workspace + layout.counters) : nullptr;
  float* partial_out = workspace + layout.partial_out;
  float* partial_lse = workspace + layout.partial_lse;
  const dim3 grid(splits, pools.kv_heads, static_cast<unsigned>(rows.rows));
  const bool programmatic = DependentLaunchSupported();
  IXC_CUDA_RETURN_IF_ERROR(
      LaunchAfterPrior(programmatic, kernel, grid, kDecodeThreads, stream, static_cast<const T*>(q), heads, group,
                       static_cast<const T*>(pools.k), static_cast<const T*>(pools.v), pools.block_size, pools.kv_heads,
                       rows, scale * kLog2e, partial_out, partial_lse, split_counters, static_cast<T*>(out), lse));
  if (splits > 1 && split_counters == nullptr) {
    IXC_CUDA_RETURN_IF_ERROR(LaunchAfterPrior(programmatic, CombineSplitsKernel<T, D>,
                                              static_cast<unsigned>(rows.rows * heads), kCombineThreads, stream,
                                              partial_out, partial_lse, splits, static_cast<T*>(out), lse));
  }
  return absl::OkStatus();
}

}  // namespace

// Rounded down: a few blocks more than the wave holds would run as a second wave of their own, each as long as a
// block of the first (1 row x 8 KV heads on an H200: 50 splits made 400 blocks for 396 places, 49 make 392).
int DecodeSplits(int64_t rows, int kv_heads, int64_t max_visible, int num_sms, int blocks_per_sm, int min_keys) {
  const int64_t blocks_per_split = rows * kv_heads;
  int64_t splits = blocks_per_sm * static_cast<int64_t>(num_sms) / blocks_per_split;
  splits = std::min<int64_t>(splits, (max_visible + min_keys - 1) / min_keys);
  return static_cast<int>(std::clamp<int64_t>(splits, 1, kMaxSplits));
}

bool DecodeMmaSelected(int head_dim) {
  return !FallbackKernelsRequested() && head_dim % 32 == 0;
}

DecodeWorkspaceLayout LayOutDecodeWorkspace(int64_t workspace_floats, int64_t rows, int heads, int head_dim) {
  const int64_t capacity = (workspace_floats - kWorkspacePad) / WorkspaceFloatsPerRow(heads, head_dim);
  DecodeWorkspaceLayout layout;
  layout.partial_out = (capacity * heads + 3) / 4 * 4;  // after capacity x heads counters (one per row and KV head)
  layout.partial_lse = layout.partial_out + rows * heads * kMaxSplits * head_dim;
  layout.end = layout.partial_lse + rows * heads * kMaxSplits;
  return layout;
}

int64_t DecodeWorkspaceFloats(int64_t rows, int heads, int head_dim) {
  return rows * WorkspaceFloatsPerRow(heads, head_dim) + kWorkspacePad;  // the pad aligns the partial outputs
}

absl::Status LaunchPagedDecodeAttention(const void* q, int heads, const DeviceKvPools& pools, const DecodeRows& rows,
                                        float scale, void* out, float* lse, float* workspace, int64_t workspace_floats,
                                        int num_sms, cudaStream_t stream) {
  IXC_RETURN_IF_ERROR(CheckPools(pools, heads, "PagedDecodeAttention"));
  const int group = heads / pools.kv_heads;
  if (group > kMaxGroup) {
    return absl::InvalidArgumentError(
        absl::StrCat("PagedDecodeAttention: ", group, " query heads per KV head (built for at most ", kMaxGroup, ")"));
  }
  if (workspace_floats < DecodeWorkspaceFloats(rows.rows, heads, pools.head_dim)) {
    return absl::InvalidArgumentError(absl::StrCat("PagedDecodeAttention: workspace of ", workspace_floats,
                                                   " floats, needs ",
                                                   DecodeWorkspaceFloats(rows.rows, heads, pools.head_dim)));
  }
  if (rows.rows == 0) return absl::OkStatus();
  absl::Status status;
  IXC_RETURN_IF_ERROR(DispatchHalfDType(pools.dtype, "PagedDecodeAttention", [&](auto tag) {
    using T = decltype(tag);
    status.Update(DispatchHeadDim(pools.head_dim, "PagedDecodeAttention", [&](auto dim) {
      constexpr int D = decltype(dim)::value;
      auto launch = [&](DecodeKernelFn<T> kernel, int blocks_per_sm, int min_keys) {
        const int splits = DecodeSplits(rows.rows, pools.kv_heads, rows.max_visible, num_sms, blocks_per_sm, min_keys);
        return LaunchDecode<T, D>(kernel, splits, q, heads, pools, rows, scale, out, lse, workspace, workspace_floats,
                                  stream);
      };
      if constexpr (D % 32 == 0) {
        if (DecodeMmaSelected(D))
          return launch(DecodeMmaKernel<T, D>, kDecodeMmaBlocksPerSm, kDecodeWarps * kDecodeMmaTileKeys);
      }
      // Registers sized for the group: IXC-2.5 has 4 query heads per KV head. At least a chunk per warp and split.
      constexpr int kMinKeys = kDecodeWarps * DecodeWalk<D>::kChunkKeys;
      if (group <= 2) return launch(DecodeKernel<T, D, 2>, 4, kMinKeys);
      if (group <= 4) return launch(DecodeKernel<T, D, 4>, 4, kMinKeys);
      return launch(DecodeKernel<T, D, kMaxGroup>, 4, kMinKeys);
    }));
  }));
  return status;
}

}  // namespace ixc::kernels::cuda
