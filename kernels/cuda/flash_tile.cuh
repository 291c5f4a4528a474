// File: kernels/cuda/flash_tile.cuh
//
// What the flash-attention kernels share (attention.cu's mma.sync kernel, flash_wgmma.cu's Hopper one): the
// tile loads (cp.async from the paged pools), and FlashRowTile, the online softmax of one 16-row MMA tile as a
// thread holds it. Both kernels keep their scores and outputs in the m16n8 accumulator layout: per 8-column block
// j, a thread (lane 4g + t) holds columns 8j + 2t and 8j + 2t + 1 of rows g ([j][0], [j][1]) and g + 8 ([j][2],
// [j][3]). Scores are scaled into the log2 domain so the softmax uses exp2; the log-sum-exp handed back is
// converted to natural log, as the reference returns it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/async_copy.cuh"
#include "kernels/cuda/attention.h"

namespace ixc::kernels::cuda {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <typename T>
__device__ inline uint32_t PackPair(float lo, float hi);
template <>
__device__ inline uint32_t PackPair<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&pair);
}
template <>
__device__ inline uint32_t PackPair<__half>(float lo, float hi) {
  __half2 pair = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&pair);
}

// 2^x by the SFU alone (ex2.approx, flushing denormals): a softmax weight needs no more, and exp2f without fast math
// adds a range reduction around it.
__device__ inline float FastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// log2 of a power-of-two block size, else -1: SlotOf's `block_shift`.
__device__ inline int PowerOfTwoShift(int block_size) {
  return (block_size & (block_size - 1)) == 0 ? __ffs(block_size) - 1 : -1;
}

// Key `key`'s slot in the paged pool. `block_shift`: log2 of a power-of-two block size (the usual 16), else -1; a
// shift replaces the integer division that otherwise dominates a tile load's address arithmetic.
__device__ inline int64_t SlotOf(const int32_t* block_table, int key, int block_size, int block_shift) {
  if (block_shift >= 0) {
    return (static_cast<int64_t>(block_table[key >> block_shift]) << block_shift) | (key & (block_size - 1));
  }
  return static_cast<int64_t>(block_table[key / block_size]) * block_size + key % block_size;
}

// The batched launch's sequence blockIdx.z: its rows of q, out and lse follow the previous sequence's, its block
// table starts table_stride entries on.
template <int D, typename T>
__device__ void SelectSequence(const T*& q, T*& out, float*& lse, const int32_t*& block_table, int tokens, int heads,
                               int64_t table_stride) {
  const int64_t sequence = blockIdx.z;
  q += sequence * tokens * heads * D;
  out += sequence * tokens * heads * D;
  if (lse != nullptr) lse += sequence * tokens * heads;
  block_table += sequence * table_stride;
}

__device__ inline int WarpMin(int value) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) value = min(value, __shfl_xor_sync(0xffffffff, value, offset));
  return value;
}

// The keys a block of query rows first_row.. (`rows`) attends to: up to its last row's last visible key.
__device__ inline int BlockKeys(const int32_t* positions, int first_row, int rows, int tokens, int num_keys) {
  return min(num_keys, positions[min(first_row + rows, tokens) - 1] + 1);
}

// The double-buffered tile pipeline's step `it` of `tiles`: starts loading tile it + 1 into the other stage (one
// cp.async group) and waits for tile it's group; with no tile at all, leaves no copy in flight.
template <typename LoadTile>
__device__ void PrefetchAndWait(int it, int tiles, LoadTile load_tile) {
  if (it + 1 < tiles) {
    load_tile(it + 1, (it + 1) & 1);
    CpAsyncWait<1>();
  } else {
    if (tiles == 0) CpAsyncCommit();
    CpAsyncWait<0>();
  }
}

// The block's query rows first_row.. (`rows` of them; zeros past `tokens`) of `head`, 16 bytes per cp.async, each
// to where dst(row, chunk) says (the kernel's shared-memory layout). Uncommitted: they join the next group.
template <int D, int kThreads, typename T, typename Dst>
__device__ void LoadQueryRows(const T* q, int first_row, int rows, int tokens, int heads, int head, Dst dst) {
  constexpr int kChunks = D / 8;  // 16-byte pieces per row
  for (int c = threadIdx.x; c < rows * kChunks; c += kThreads) {
    const int r = c / kChunks, chunk = c % kChunks;
    const bool valid = first_row + r < tokens;
    const int64_t row = valid ? first_row + r : 0;
    CpAsync16(dst(r, chunk), q + (row * heads + head) * D + chunk * 8, valid);
  }
}

// Keys first_key.. (`rows` of them; zeros from `keys` on) of KV head `kv_head` from the paged pools, 16 bytes per
// cp.async, to k_dst(row, chunk) and v_dst(row, chunk); then one commit.
template <int D, int kThreads, typename T, typename KDst, typename VDst>
__device__ void LoadKeyTile(const T* k_pool, const T* v_pool, const int32_t* block_table, int block_size,
                            int block_shift, int kv_heads, int kv_head, int first_key, int rows, int keys, KDst k_dst,
                            VDst v_dst) {
  constexpr int kChunks = D / 8;
  for (int c = threadIdx.x; c < rows * kChunks; c += kThreads) {
    const int r = c / kChunks, chunk = c % kChunks;
    const int key = first_key + r;
    const bool valid = key < keys;
    int64_t offset = 0;
    if (valid) offset = (SlotOf(block_table, key, block_size, block_shift) * kv_heads + kv_head) * D + chunk * 8;
    CpAsync16(k_dst(r, chunk), k_pool + offset, valid);
    CpAsync16(v_dst(r, chunk), v_pool + offset, valid);
  }
  CpAsyncCommit();
}

// Both flash kernels' parameters, and their launch: a block per `rows` query rows, per head, per sequence.
template <typename T>
using FlashKernelFn = void (*)(const T* q, const int32_t* positions, int tokens, int heads, int group, const T* k_pool,
                               const T* v_pool, const int32_t* block_table, int64_t table_stride, int block_size,
                               int kv_heads, int num_keys, float scale_log2, T* out, float* lse);
template <typename T>
cudaError_t LaunchFlashGrid(FlashKernelFn<T> kernel, int rows, int threads, int smem, const void* q,
                            const int32_t* positions, int64_t tokens, int sequences, int heads,
                            const DeviceKvPools& pools, const int32_t* block_tables, int64_t table_stride,
                            int64_t num_keys, float scale, void* out, float* lse, cudaStream_t stream) {
  const dim3 grid(static_cast<unsigned>((tokens + rows - 1) / rows), static_cast<unsigned>(heads),
                  static_cast<unsigned>(sequences));
  kernel<<<grid, threads, smem, stream>>>(
      static_cast<const T*>(q), positions, static_cast<int>(tokens), heads, heads / pools.kv_heads,
      static_cast<const T*>(pools.k), static_cast<const T*>(pools.v), block_tables, table_stride, pools.block_size,
      pools.kv_heads, static_cast<int>(num_keys), scale * kLog2e, static_cast<T*>(out), lse);
  return cudaGetLastError();
}

// Rows g and g + 8 of a 16-row tile (rows first_row + g and first_row + g + 8 of the sequence), as one thread
// (lane 4g + t) sees them through a flash kernel. The rows themselves are not kept (registers are short there).
struct FlashRowTile {
  int pos_lo = -1, pos_hi = -1;  // the rows' last visible keys (-1 past the end: they see none)
  float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.f, l_hi = 0.f;  // running max (log2 domain) and sum

  __device__ void Start(const int32_t* positions, int tokens, int first_row, int g) {
    pos_lo = first_row + g < tokens ? positions[first_row + g] : -1;
    pos_hi = first_row + g + 8 < tokens ? positions[first_row + g + 8] : -1;
  }

  // What the running max's rise asks of the output accumulated so far: o's rows g and g + 8 times lo and hi.
  struct Correction {
    float lo, hi;
  };

  // One key tile's step: mask the raw scores s (keys first_key.. of the tile; only where the tile reaches past a
  // row's last visible key, else `whole_tile`), fold the tile's maxima into the running max, rescale o and the sum,
  // and turn s into the probabilities P (the scale, positive, applied inside the exponent: one FFMA per score).
  template <int kKeyBlocks, int kOutBlocks>
  __device__ void Step(float (&s)[kKeyBlocks][4], float (&o)[kOutBlocks][4], int first_key, int keys, bool whole_tile,
                       float scale_log2, int t) {
    Rescale(o, Scores(s, first_key, keys, whole_tile, scale_log2, t));
  }

  // Step without touching o, for a kernel whose o is still being accumulated by an asynchronous MMA: the correction
  // to apply to it afterwards (Rescale).
  template <int kKeyBlocks>
  __device__ Correction Scores(float (&s)[kKeyBlocks][4], int first_key, int keys, bool whole_tile, float scale_log2,
                               int t) {
    float tile_max_lo = -INFINITY, tile_max_hi = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kKeyBlocks; ++nt) {
      if (!whole_tile) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = first_key + nt * 8 + 2 * t + (e & 1);
          const int pos = e < 2 ? pos_lo : pos_hi;
          if (key > pos || key >= keys) s[nt][e] = -INFINITY;
        }
      }
      tile_max_lo = fmaxf(tile_max_lo, fmaxf(s[nt][0], s[nt][1]));
      tile_max_hi = fmaxf(tile_max_hi, fmaxf(s[nt][2], s[nt][3]));
    }
#pragma unroll
    for (int offset = 1; offset < 4; offset *= 2) {
      tile_max_lo = fmaxf(tile_max_lo, __shfl_xor_sync(0xffffffff, tile_max_lo, offset));
      tile_max_hi = fmaxf(tile_max_hi, __shfl_xor_sync(0xffffffff, tile_max_hi, offset));
    }
    const float new_lo = fmaxf(m_lo, tile_max_lo * scale_log2), new_hi = fmaxf(m_hi, tile_max_hi * scale_log2);
    // A row that has seen no key yet keeps max -inf; subtract 0 then, so exp2 gives 0 rather than NaN.
    const float base_lo = new_lo == -INFINITY ? 0.f : new_lo, base_hi = new_hi == -INFINITY ? 0.f : new_hi;
    const float correction_lo = FastExp2(m_lo - base_lo), correction_hi = FastExp2(m_hi - base_hi);
    m_lo = new_lo;
    m_hi = new_hi;
    l_lo *= correction_lo;
    l_hi *= correction_hi;
#pragma unroll
    for (int nt = 0; nt < kKeyBlocks; ++nt) {
      s[nt][0] = FastExp2(fmaf(s[nt][0], scale_log2, -base_lo));
      s[nt][1] = FastExp2(fmaf(s[nt][1], scale_log2, -base_lo));
      s[nt][2] = FastExp2(fmaf(s[nt][2], scale_log2, -base_hi));
      s[nt][3] = FastExp2(fmaf(s[nt][3], scale_log2, -base_hi));
      l_lo += s[nt][0] + s[nt][1];
      l_hi += s[nt][2] + s[nt][3];
    }
    return {correction_lo, correction_hi};
  }

  template <int kOutBlocks>
  __device__ static void Rescale(float (&o)[kOutBlocks][4], Correction correction) {
#pragma unroll
    for (int i = 0; i < kOutBlocks; ++i) {
      o[i][0] *= correction.lo;
      o[i][1] *= correction.lo;
      o[i][2] *= correction.hi;
      o[i][3] *= correction.hi;
    }
  }

  // The A fragment of P's 16-key slice kc: the accumulators of 8-key blocks 2kc and 2kc + 1, rounded to T.
  template <typename T, int kKeyBlocks>
  __device__ static void PackP(const float (&p)[kKeyBlocks][4], int kc, uint32_t (&a)[4]) {
    a[0] = PackPair<T>(p[2 * kc][0], p[2 * kc][1]);
    a[1] = PackPair<T>(p[2 * kc][2], p[2 * kc][3]);
    a[2] = PackPair<T>(p[2 * kc + 1][0], p[2 * kc + 1][1]);
    a[3] = PackPair<T>(p[2 * kc + 1][2], p[2 * kc + 1][3]);
  }

  // o / sum to out (tokens, heads, D) and the natural-log lse to lse (tokens, heads), rows past `tokens` skipped.
  template <typename T, int kOutBlocks>
  __device__ void Write(const float (&o)[kOutBlocks][4], int first_row, int tokens, int heads, int head, T* out,
                        float* lse, int g, int t) {
    constexpr int D = 8 * kOutBlocks;
    const int row_lo = first_row + g, row_hi = row_lo + 8;
    float sum_lo = l_lo, sum_hi = l_hi;
#pragma unroll
    for (int offset = 1; offset < 4; offset *= 2) {
      sum_lo += __shfl_xor_sync(0xffffffff, sum_lo, offset);
      sum_hi += __shfl_xor_sync(0xffffffff, sum_hi, offset);
    }
    const float inv_lo = sum_lo > 0.f ? 1.f / sum_lo : 0.f, inv_hi = sum_hi > 0.f ? 1.f / sum_hi : 0.f;
#pragma unroll
    for (int i = 0; i < kOutBlocks; ++i) {
      const int col = i * 8 + 2 * t;
      if (row_lo < tokens) {
        *reinterpret_cast<uint32_t*>(out + (static_cast<int64_t>(row_lo) * heads + head) * D + col) =
            PackPair<T>(o[i][0] * inv_lo, o[i][1] * inv_lo);
      }
      if (row_hi < tokens) {
        *reinterpret_cast<uint32_t*>(out + (static_cast<int64_t>(row_hi) * heads + head) * D + col) =
            PackPair<T>(o[i][2] * inv_hi, o[i][3] * inv_hi);
      }
    }
    if (lse != nullptr && t == 0) {
      if (row_lo < tokens) lse[row_lo * heads + head] = sum_lo > 0.f ? (m_lo + log2f(sum_lo)) * kLn2 : -INFINITY;
      if (row_hi < tokens) lse[row_hi * heads + head] = sum_hi > 0.f ? (m_hi + log2f(sum_hi)) * kLn2 : -INFINITY;
    }
  }
};

}  // namespace ixc::kernels::cuda
