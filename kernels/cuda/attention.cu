// Attention kernels. Scores are scaled into the log2 domain (s * scale * log2(e)) so the softmax uses exp2; the
// log-sum-exp handed back is converted to natural log, as the reference returns it (kernels/cuda/flash_tile.cuh).
#include <climits>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/flash_tile.cuh"
#include "kernels/cuda/flash_wgmma.h"
#include "kernels/cuda/grid_stride.cuh"

namespace ixc::kernels::cuda {
namespace {

// ---- RoPE and KV store ----

constexpr int kRopeThreads = 256;
constexpr int kRopeMaxHalf = 256;  // head_dim <= 512

// A block per token (grid-stride over tokens) and per `heads_per_block` packed heads of its row (blockIdx.y). The
// block computes the token's cos / sin of each pair index i < half once into shared memory, then rotates every
// (packed head, i) of its heads with them (q and k heads) or copies it (v): the angle's sincosf, exact and slow for
// the large angles of long positions, runs once per (token, i) and block instead of once per head. Long prompts
// take whole rows per block; a few decode tokens split their rows over blocks, so the step stays one wave deep.
template <typename T>
__global__ void __launch_bounds__(kRopeThreads)
    RopeStoreKernel(const T* qkv, const int32_t* positions, const int32_t* slots, int64_t tokens, int kv_heads,
                    int group, int head_dim, int heads_per_block, float base, float position_scale, T* q, T* k_pool,
                    T* v_pool) {
  AllowNextKernel();
  WaitForPriorKernel();
  __shared__ float cos_s[kRopeMaxHalf], sin_s[kRopeMaxHalf];
  const int half = head_dim / 2, per_kv = group + 2, packed = kv_heads * per_kv;
  const int first_pair = blockIdx.y * heads_per_block * half;
  const int end_pair = min(packed, static_cast<int>(blockIdx.y + 1) * heads_per_block) * half;
  for (int64_t token = blockIdx.x; token < tokens; token += gridDim.x) {
    const float position = static_cast<float>(positions[token]) * position_scale;
    __syncthreads();  // the previous token's readers are done
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
      // As the reference: inv_freq = 1 / base^(2i/d) and the angle in f32.
      const float inv_freq = 1.f / powf(base, static_cast<float>(2 * i) / static_cast<float>(head_dim));
      sincosf(position * inv_freq, &sin_s[i], &cos_s[i]);
    }
    __syncthreads();
    const int64_t slot = slots[token];
    const T* row = qkv + token * packed * head_dim;
    for (int pair = first_pair + threadIdx.x; pair < end_pair; pair += blockDim.x) {
      const int p = pair / half, i = pair - p * half;
      const int kv_head = p / per_kv, r = p - kv_head * per_kv;
      const T a = row[p * head_dim + i], b = row[p * head_dim + i + half];
      const int64_t cache_offset = (slot * kv_heads + kv_head) * head_dim;
      if (r == group + 1) {  // V: stored as it is
        if (slot >= 0) {
          v_pool[cache_offset + i] = a;
          v_pool[cache_offset + i + half] = b;
        }
        continue;
      }
      const float c = cos_s[i], s = sin_s[i];
      const float fa = ToFloat(a), fb = ToFloat(b);
      const T ra = FromFloat<T>(fa * c - fb * s), rb = FromFloat<T>(fb * c + fa * s);
      if (r < group) {
        T* dst = q + (token * kv_heads * group + kv_head * group + r) * head_dim;
        dst[i] = ra;
        dst[i + half] = rb;
      } else if (slot >= 0) {
        k_pool[cache_offset + i] = ra;
        k_pool[cache_offset + i + half] = rb;
      }
    }
  }
}

// ---- tensor-core helpers (sm_80+) ----

// d (16x8 f32) += a (16x16, row) . b (16x8, col).
template <typename T>
__device__ inline void Mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ inline void Mma<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ inline void Mma<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 b16 matrices from shared memory (lane l gives the address of row l % 8 of matrix l / 8): as stored, lane
// 4g + t receives elements 2t and 2t + 1 of row g of each; transposed, of column g.
__device__ inline void LdMatrixX4(uint32_t (&r)[4], const void* smem_row) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}
__device__ inline void LdMatrixX4Trans(uint32_t (&r)[4], const void* smem_row) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// ---- flash attention (prefill) ----

constexpr int kFlashRowTiles = 2;                        // 16-row MMA tiles per warp
constexpr int kFlashThreads = 128;                       // 4 warps
constexpr int kFlashRows = 4 * 16 * kFlashRowTiles;      // query rows per block
constexpr int kFlashKeys = 64;                           // keys per tile

template <int D>
constexpr int FlashSmemBytes() {
  return (kFlashRows /*Q*/ + 2 /*K, V*/ * 2 /*stages*/ * kFlashKeys) * (D + 8) * 2;
}

// Block (query tile, head, sequence). Each warp owns 32 consecutive query rows as two 16-row MMA tiles: S = Q K^T and
// O += P V on tensor cores, every K and V fragment read from shared memory once for both tiles (half the shared
// memory traffic per MMA of one tile per warp), the row statistics of the online softmax in registers (a thread
// holds rows g and g + 8 of each tile, g = lane / 4). Q waits in shared memory, K and V tiles double-buffered by
// cp.async; rows are padded by 8 elements so the fragment loads hit 32 distinct banks.
template <typename T, int D>
__global__ void __launch_bounds__(kFlashThreads, 2) FlashKernel(const T* q, const int32_t* positions, int tokens,
                                                             int heads, int group, const T* k_pool, const T* v_pool,
                                                             const int32_t* block_table, int64_t table_stride,
                                                             int block_size, int kv_heads, int num_keys,
                                                             float scale_log2, T* out, float* lse) {
  constexpr int kStride = D + 8;
  constexpr int kTiles = kFlashRowTiles;
  SelectSequence<D>(q, out, lse, block_table, tokens, heads, table_stride);
  extern __shared__ __align__(16) unsigned char smem[];
  T* q_tile = reinterpret_cast<T*>(smem);             // [kFlashRows][kStride]
  T* k_tiles = q_tile + kFlashRows * kStride;         // [2][kFlashKeys][kStride]
  T* v_tiles = k_tiles + 2 * kFlashKeys * kStride;    // [2][kFlashKeys][kStride]

  const int tile = gridDim.x - 1 - blockIdx.x;  // the longest rows (most keys) start first
  const int block_shift = PowerOfTwoShift(block_size);
  const int head = blockIdx.y, kv_head = head / group;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int first_row = tile * kFlashRows, warp_first = warp * 16 * kTiles;  // warp_first: within the block
  FlashRowTile rows[kTiles];
  int warp_min_pos = INT_MAX;  // key tiles up to here need no mask for any row of the warp
#pragma unroll
  for (int mt = 0; mt < kTiles; ++mt) {
    rows[mt].Start(positions, tokens, first_row + warp_first + mt * 16, g);
    warp_min_pos = min(warp_min_pos, min(rows[mt].pos_lo, rows[mt].pos_hi));
  }
  warp_min_pos = WarpMin(warp_min_pos);
  const int keys = BlockKeys(positions, first_row, kFlashRows, tokens, num_keys);
  const int key_tiles = (keys + kFlashKeys - 1) / kFlashKeys;

  // The block's Q rows: in the first cp.async group, with K/V tile 0. Rows padded to kStride elements.
  LoadQueryRows<D, kFlashThreads>(q, first_row, kFlashRows, tokens, heads, head,
                                  [&](int r, int chunk) { return q_tile + r * kStride + chunk * 8; });
  auto load_tile = [&](int key_tile, int stage) {
    T* k_dst = k_tiles + stage * kFlashKeys * kStride;
    T* v_dst = v_tiles + stage * kFlashKeys * kStride;
    LoadKeyTile<D, kFlashThreads>(
        k_pool, v_pool, block_table, block_size, block_shift, kv_heads, kv_head, key_tile * kFlashKeys, kFlashKeys,
        keys, [=](int r, int chunk) { return k_dst + r * kStride + chunk * 8; },
        [=](int r, int chunk) { return v_dst + r * kStride + chunk * 8; });
  };

  float o[kTiles][D / 8][4];
#pragma unroll
  for (int mt = 0; mt < kTiles; ++mt) {
#pragma unroll
    for (int i = 0; i < D / 8; ++i) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
  }
  if (key_tiles > 0) load_tile(0, 0);
  if (key_tiles == 0) PrefetchAndWait(0, 0, load_tile);  // nothing reads Q, but no copy is left in flight
  const int matrix = lane / 8;  // which of ldmatrix's four 8x8 matrices this lane addresses
  for (int it = 0; it < key_tiles; ++it) {
    const int stage = it & 1;
    PrefetchAndWait(it, key_tiles, load_tile);
    __syncthreads();
    const T* k_tile = k_tiles + stage * kFlashKeys * kStride;
    const T* v_tile = v_tiles + stage * kFlashKeys * kStride;

    float s[kTiles][kFlashKeys / 8][4];
#pragma unroll
    for (int mt = 0; mt < kTiles; ++mt) {
#pragma unroll
      for (int nt = 0; nt < kFlashKeys / 8; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
    }
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      // Each tile's A fragment of this 16-wide slice: matrices (rows 0-7 | 8-15) x (columns 0-7 | 8-15).
      uint32_t a[kTiles][4];
#pragma unroll
      for (int mt = 0; mt < kTiles; ++mt) {
        LdMatrixX4(a[mt], q_tile + (warp_first + mt * 16 + (matrix & 1) * 8 + lane % 8) * kStride + kk * 16 +
                              (matrix >> 1) * 8);
      }
      // K rows as stored are the B fragments of S = Q K^T: one ldmatrix gives two 8-key tiles' worth.
#pragma unroll
      for (int nt = 0; nt < kFlashKeys / 8; nt += 2) {
        uint32_t b[4];
        LdMatrixX4(b, k_tile + ((nt + (matrix >> 1)) * 8 + lane % 8) * kStride + kk * 16 + (matrix & 1) * 8);
#pragma unroll
        for (int mt = 0; mt < kTiles; ++mt) {
          Mma<T>(s[mt][nt], a[mt], b[0], b[1]);
          Mma<T>(s[mt][nt + 1], a[mt], b[2], b[3]);
        }
      }
    }
    // The online softmax of each tile (masks only on key tiles that reach past a row's last visible key).
    const bool whole_tile = (it + 1) * kFlashKeys - 1 <= warp_min_pos && (it + 1) * kFlashKeys <= keys;
#pragma unroll
    for (int mt = 0; mt < kTiles; ++mt) rows[mt].Step(s[mt], o[mt], it * kFlashKeys, keys, whole_tile, scale_log2, t);
    // O += P V: the S accumulators of two adjacent 8-key tiles are exactly the A fragment of a 16-key slice of P.
#pragma unroll
    for (int kc = 0; kc < kFlashKeys / 16; ++kc) {
      uint32_t p[kTiles][4];
#pragma unroll
      for (int mt = 0; mt < kTiles; ++mt) FlashRowTile::PackP<T>(s[mt], kc, p[mt]);
      const T* v_row = v_tile + (kc * 16 + (matrix & 1) * 8 + lane % 8) * kStride + (matrix >> 1) * 8;
#pragma unroll
      for (int dt = 0; dt < D / 8; dt += 2) {
        uint32_t b[4];
        LdMatrixX4Trans(b, v_row + dt * 8);
#pragma unroll
        for (int mt = 0; mt < kTiles; ++mt) {
          Mma<T>(o[mt][dt], p[mt], b[0], b[1]);
          Mma<T>(o[mt][dt + 1], p[mt], b[2], b[3]);
        }
      }
    }
    __syncthreads();  // the next iteration's load overwrites the stage just read
  }

#pragma unroll
  for (int mt = 0; mt < kTiles; ++mt) {
    rows[mt].Write<T>(o[mt], first_row + warp_first + mt * 16, tokens, heads, head, out, lse, g, t);
  }
}

template <typename T, int D>
absl::Status LaunchFlash(const void* q, const int32_t* positions, int64_t tokens, int sequences, int heads,
                         const DeviceKvPools& pools, const int32_t* block_tables, int64_t table_stride,
                         int64_t num_keys, float scale, void* out, float* lse, cudaStream_t stream) {
  constexpr int kSmem = FlashSmemBytes<D>();
  auto kernel = FlashKernel<T, D>;
  // Above 48 KiB of shared memory needs the kernel's opt-in: once per instantiation (a process drives one
  // device), not on every launch.
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  IXC_CUDA_RETURN_IF_ERROR(opt_in);
  IXC_CUDA_RETURN_IF_ERROR(LaunchFlashGrid<T>(kernel, kFlashRows, kFlashThreads, kSmem, q, positions, tokens,
                                                sequences, heads, pools, block_tables, table_stride, num_keys, scale,
                                                out, lse, stream));
  return absl::OkStatus();
}

// ---- paged decode attention (split-KV) ----

constexpr int kDecodeWarps = 4;
constexpr int kDecodeThreads = 32 * kDecodeWarps;
constexpr int kMaxGroup = 8;
constexpr int kMaxSplits = 128;

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

// Block (split, kv head, row): the group's query heads over the split's keys. Each warp takes every
// kDecodeWarps-th chunk of the split and keeps its own online softmax in registers (no block barrier in the loop);
// a chunk's K and V rows are all requested before the first score, and the warps' states are merged at the end.
// With one split the block writes the final output and log-sum-exp; otherwise its partial result and lse.
template <typename T, int D, int kGroup>
__global__ void __launch_bounds__(kDecodeThreads, kGroup <= 4 ? 4 : 2)
    DecodeKernel(const T* q, int heads, int group, const T* k_pool, const T* v_pool, int block_size, int kv_heads,
                 DecodeRows rows, float scale_log2, float* partial_out, float* partial_lse, T* out, float* lse) {
  AllowNextKernel();  // the weight-streaming GEMV after this one may start its loads
  WaitForPriorKernel();
  using Walk = DecodeWalk<D>;
  const int split = blockIdx.x, kv_head = blockIdx.y, row = blockIdx.z, splits = gridDim.x;
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
  // This row's keys cut into `splits` chunks of a multiple of 16: each row balanced on its own length, and nothing
  // here depends on the launch's longest row but the split count (a captured graph replays for any lengths).
  const int split_keys = ((visible + splits - 1) / splits + 15) / 16 * 16;
  const int begin = split * split_keys, end = min(visible, begin + split_keys);

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

  // The warps' states, merged by their maxima.
  __shared__ float m_s[kDecodeWarps][kGroup], l_s[kDecodeWarps][kGroup];
  __shared__ float acc_s[kDecodeWarps][kGroup][D];
#pragma unroll
  for (int h = 0; h < kGroup; ++h) {
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[h][e] = AcrossKeys<Walk::kLanesPerKey>(acc[h][e], false);
    if (lane < Walk::kLanesPerKey) {
#pragma unroll
      for (int e = 0; e < 8; ++e) acc_s[warp][h][piece * 8 + e] = acc[h][e];
    }
    if (lane == 0) {
      m_s[warp][h] = m[h];
      l_s[warp][h] = l[h];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < group * D; i += kDecodeThreads) {
    const int h = i / D, d = i % D;
    float top = -INFINITY;
    for (int w = 0; w < kDecodeWarps; ++w) top = fmaxf(top, m_s[w][h]);
    float total = 0.f, weight = 0.f;
    if (top != -INFINITY) {  // else no warp had a key: the split is empty
      for (int w = 0; w < kDecodeWarps; ++w) {
        const float rescale = exp2f(m_s[w][h] - top);
        total += rescale * acc_s[w][h][d];
        weight += rescale * l_s[w][h];
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

// Block (row, head): the splits' partial results merged by their log-sum-exp. One warp turns the lse into weights;
// then slices of the block each sum a share of the splits (four dims per thread, all loads independent) and the
// slices are added.
constexpr int kCombineThreads = 256;

template <typename T, int D>
__global__ void __launch_bounds__(kCombineThreads)
    CombineSplitsKernel(const float* partial_out, const float* partial_lse, int splits, T* out, float* lse) {
  AllowNextKernel();  // the weight-streaming GEMV after this one may start its loads
  WaitForPriorKernel();
  constexpr int kQuads = D / 4, kSlices = kCombineThreads / kQuads;
  __shared__ float weight_s[kMaxSplits];
  __shared__ float total_weight_s, max_s;
  __shared__ __align__(16) float sums_s[kSlices][D];  // written as float4
  const int64_t head_row = blockIdx.x;
  const float* lses = partial_lse + head_row * splits;
  if (threadIdx.x < 32) {
    float top = -INFINITY;
    for (int s = threadIdx.x; s < splits; s += 32) top = fmaxf(top, lses[s]);
    for (int offset = 16; offset > 0; offset /= 2) top = fmaxf(top, __shfl_xor_sync(0xffffffff, top, offset));
    float total = 0.f;
    for (int s = threadIdx.x; s < splits; s += 32) {
      const float w = lses[s] == -INFINITY ? 0.f : expf(lses[s] - top);
      weight_s[s] = w;
      total += w;
    }
    for (int offset = 16; offset > 0; offset /= 2) total += __shfl_xor_sync(0xffffffff, total, offset);
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
    const float4 part = *reinterpret_cast<const float4*>(partial_out + (head_row * splits + s) * D + quad * 4);
    sum.x += w * part.x;
    sum.y += w * part.y;
    sum.z += w * part.z;
    sum.w += w * part.w;
  }
  *reinterpret_cast<float4*>(&sums_s[slice][quad * 4]) = sum;
  __syncthreads();
  const float total_weight = total_weight_s;
  for (int d = threadIdx.x; d < D; d += kCombineThreads) {
    float value = 0.f;
    for (int s = 0; s < kSlices; ++s) value += sums_s[s][d];
    out[head_row * D + d] = FromFloat<T>(total_weight > 0.f ? value / total_weight : 0.f);
  }
  if (lse != nullptr && threadIdx.x == 0) {
    lse[head_row] = total_weight > 0.f ? max_s + logf(total_weight) : -INFINITY;
  }
}

// Enough blocks for one wave at four per multiprocessor, but at least one chunk of keys per warp in each split.
template <int D>
int DecodeSplits(int64_t rows, int kv_heads, int64_t max_visible, int num_sms) {
  const int64_t blocks_per_split = rows * kv_heads;
  int64_t splits = (4 * static_cast<int64_t>(num_sms) + blocks_per_split - 1) / blocks_per_split;
  constexpr int kMinKeys = kDecodeWarps * DecodeWalk<D>::kChunkKeys;
  splits = std::min<int64_t>(splits, (max_visible + kMinKeys - 1) / kMinKeys);
  return static_cast<int>(std::clamp<int64_t>(splits, 1, kMaxSplits));
}

template <typename T, int D, int kGroup>
absl::Status LaunchDecode(const void* q, int heads, const DeviceKvPools& pools, const DecodeRows& rows, float scale,
                          void* out, float* lse, float* workspace, cudaStream_t stream, int num_sms) {
  const int group = heads / pools.kv_heads;
  const int splits = DecodeSplits<D>(rows.rows, pools.kv_heads, rows.max_visible, num_sms);
  float* partial_out = workspace;  // (rows, heads, splits, D)
  float* partial_lse = workspace + rows.rows * heads * kMaxSplits * D;  // (rows, heads, splits)
  const dim3 grid(splits, pools.kv_heads, static_cast<unsigned>(rows.rows));
  const bool programmatic = DependentLaunchSupported();
  IXC_CUDA_RETURN_IF_ERROR(LaunchAfterPrior(
      programmatic, DecodeKernel<T, D, kGroup>, grid, kDecodeThreads, stream, static_cast<const T*>(q), heads, group,
      static_cast<const T*>(pools.k), static_cast<const T*>(pools.v), pools.block_size, pools.kv_heads, rows,
      scale * kLog2e, partial_out, partial_lse, static_cast<T*>(out), lse));
  if (splits > 1) {
    IXC_CUDA_RETURN_IF_ERROR(LaunchAfterPrior(programmatic, CombineSplitsKernel<T, D>,
                                              static_cast<unsigned>(rows.rows * heads), kCombineThreads, stream,
                                              partial_out, partial_lse, splits, static_cast<T*>(out), lse));
  }
  return absl::OkStatus();
}

// ---- log-sum-exp merge ----

template <typename T>
__global__ void MergeKernel(T* out_a, float* lse_a, const T* out_b, const float* lse_b, int64_t head_rows,
                            int head_dim) {
  IXC_GRID_STRIDE(e, head_rows * head_dim) {
    const int64_t head_row = e / head_dim;
    const float a = lse_a[head_row], b = lse_b[head_row];
    if (b == -INFINITY) continue;  // nothing on side b: out_a stays, as in the reference
    const float m = fmaxf(a, b);
    const float wa = expf(a - m), wb = expf(b - m);
    out_a[e] = FromFloat<T>((wa * ToFloat(out_a[e]) + wb * ToFloat(out_b[e])) / (wa + wb));
  }
}

__global__ void MergeLseKernel(float* lse_a, const float* lse_b, int64_t head_rows) {
  IXC_GRID_STRIDE(i, head_rows) {
    const float a = lse_a[i], b = lse_b[i], m = fmaxf(a, b);
    lse_a[i] = m == -INFINITY ? -INFINITY : m + logf(expf(a - m) + expf(b - m));
  }
}

// Calls f.template operator()<D>() for the supported head dims.
template <typename F>
absl::Status DispatchHeadDim(int head_dim, const char* op, F&& f) {
  switch (head_dim) {
    case 16:
      return f(std::integral_constant<int, 16>{});
    case 32:
      return f(std::integral_constant<int, 32>{});
    case 64:
      return f(std::integral_constant<int, 64>{});
    case 128:
      return f(std::integral_constant<int, 128>{});
  }
  return absl::InvalidArgumentError(absl::StrCat(op, ": head_dim ", head_dim, " (built for 16, 32, 64, 128)"));
}

absl::Status CheckPools(const DeviceKvPools& pools, int heads, const char* op) {
  if (pools.kv_heads <= 0 || heads <= 0 || heads % pools.kv_heads != 0 || pools.block_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": heads ", heads, ", kv_heads ", pools.kv_heads,
                                                   ", block_size ", pools.block_size));
  }
  if (pools.dtype == DType::kF32) return absl::InvalidArgumentError(absl::StrCat(op, ": the KV pools must be bf16 or f16"));
  return absl::OkStatus();
}

}  // namespace

absl::Status LaunchRopeAndStoreKv(const void* qkv, const int32_t* positions, const int32_t* slots, int64_t tokens,
                                  int group, const RopeParams& rope, void* q, const DeviceKvPools& pools,
                                  cudaStream_t stream) {
  if (tokens < 0 || group <= 0 || rope.head_dim != pools.head_dim || rope.head_dim % 2 != 0 || pools.kv_heads <= 0 ||
      rope.head_dim / 2 > kRopeMaxHalf) {
    return absl::InvalidArgumentError(absl::StrCat("RopeAndStoreKv: tokens ", tokens, ", group ", group,
                                                   ", head_dim ", rope.head_dim, " vs pools' ", pools.head_dim));
  }
  if (tokens == 0) return absl::OkStatus();
  // Whole rows per block from a few hundred tokens on (a 32K prompt: 32K blocks of 12 passes); fewer tokens split
  // each row into blocks of one pass.
  const int packed = pools.kv_heads * (group + 2), half = rope.head_dim / 2;
  const int heads_per_block = tokens >= 256 ? packed : std::max(1, kRopeThreads / half);
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(tokens, int64_t{1} << 20)),
                  static_cast<unsigned>((packed + heads_per_block - 1) / heads_per_block));
  cudaError_t launched = cudaSuccess;
  IXC_RETURN_IF_ERROR(DispatchDType(pools.dtype, [&](auto tag) {
    using T = decltype(tag);
    launched = LaunchAfterPrior(DependentLaunchSupported(), RopeStoreKernel<T>, grid, kRopeThreads, stream,
                                static_cast<const T*>(qkv), positions, slots, tokens, pools.kv_heads, group,
                                rope.head_dim, heads_per_block, rope.base, rope.position_scale, static_cast<T*>(q),
                                static_cast<T*>(pools.k), static_cast<T*>(pools.v));
  }));
  IXC_CUDA_RETURN_IF_ERROR(launched);
  return absl::OkStatus();
}

absl::Status LaunchFlashAttention(const void* q, const int32_t* positions, int64_t tokens, int heads,
                                  const DeviceKvPools& pools, const int32_t* block_table, int64_t num_keys,
                                  int64_t max_position, float scale, void* out, float* lse, cudaStream_t stream) {
  return LaunchBatchedFlashAttention(q, positions, tokens, 1, heads, pools, block_table, 0, num_keys, max_position,
                                     scale, out, lse, stream);
}

absl::Status LaunchBatchedFlashAttention(const void* q, const int32_t* positions, int64_t tokens, int sequences,
                                         int heads, const DeviceKvPools& pools, const int32_t* block_tables,
                                         int64_t table_stride, int64_t num_keys, int64_t max_position, float scale,
                                         void* out, float* lse, cudaStream_t stream) {
  IXC_RETURN_IF_ERROR(CheckPools(pools, heads, "FlashAttention"));
  if (tokens < 0 || num_keys < 0 || num_keys > INT32_MAX || max_position >= INT32_MAX || sequences < 0 ||
      sequences > 65535 || table_stride < 0) {
    return absl::InvalidArgumentError(absl::StrCat("FlashAttention: tokens ", tokens, ", keys ", num_keys,
                                                   ", sequences ", sequences, ", table stride ", table_stride));
  }
  if (tokens == 0 || sequences == 0) return absl::OkStatus();
  if (FlashWgmmaSelected(pools.head_dim)) {
    return LaunchFlashWgmma(q, positions, tokens, sequences, heads, pools, block_tables, table_stride, num_keys,
                            scale, out, lse, stream);
  }
  absl::Status status;
  IXC_RETURN_IF_ERROR(DispatchHalfDType(pools.dtype, "FlashAttention", [&](auto tag) {
    using T = decltype(tag);
    status.Update(DispatchHeadDim(pools.head_dim, "FlashAttention", [&](auto dim) {
      return LaunchFlash<T, decltype(dim)::value>(q, positions, tokens, sequences, heads, pools, block_tables,
                                                   table_stride, num_keys, scale, out, lse, stream);
    }));
  }));
  return status;
}

int64_t DecodeWorkspaceFloats(int64_t rows, int heads, int head_dim) {
  return rows * heads * kMaxSplits * (head_dim + 1);
}

absl::Status LaunchPagedDecodeAttention(const void* q, int heads, const DeviceKvPools& pools, const DecodeRows& rows,
                                        float scale, void* out, float* lse, float* workspace,
                                        int64_t workspace_floats, int num_sms, cudaStream_t stream) {
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
      // Registers sized for the group: IXC-2.5 has 4 query heads per KV head.
      if (group <= 2) return LaunchDecode<T, D, 2>(q, heads, pools, rows, scale, out, lse, workspace, stream, num_sms);
      if (group <= 4) return LaunchDecode<T, D, 4>(q, heads, pools, rows, scale, out, lse, workspace, stream, num_sms);
      return LaunchDecode<T, D, kMaxGroup>(q, heads, pools, rows, scale, out, lse, workspace, stream, num_sms);
    }));
  }));
  return status;
}

absl::Status LaunchMergeAttention(DType dtype, void* out_a, float* lse_a, const void* out_b, const float* lse_b,
                                  int64_t rows, int heads, int head_dim, cudaStream_t stream) {
  if (rows < 0 || heads <= 0 || head_dim <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("MergeAttention: rows ", rows, ", heads ", heads));
  }
  const int64_t head_rows = rows * heads;
  if (head_rows == 0) return absl::OkStatus();
  IXC_RETURN_IF_ERROR(DispatchDType(dtype, [&](auto tag) {
    using T = decltype(tag);
    MergeKernel<T><<<GridStrideBlocks(head_rows * head_dim), kGridStrideThreads, 0, stream>>>(
        static_cast<T*>(out_a), lse_a, static_cast<const T*>(out_b), lse_b, head_rows, head_dim);
  }));
  // The outputs read both lse; only then may lse_a change.
  MergeLseKernel<<<GridStrideBlocks(head_rows), kGridStrideThreads, 0, stream>>>(lse_a, lse_b, head_rows);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace ixc::kernels::cuda
