// Attention kernels. Scores are scaled into the log2 domain (s * scale * log2(e)) so the softmax uses exp2; the
// log-sum-exp handed back is converted to natural log, as the reference returns it (kernels/cuda/flash_tile.cuh).
#include <algorithm>
#include <climits>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/attention_dispatch.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/flash_tile.cuh"
#include "kernels/cuda/flash_wgmma.h"
#include "kernels/cuda/mma.cuh"
#include "kernels/cuda/rope.cuh"

namespace ixc::kernels::cuda {
namespace {

// ---- RoPE and KV store ----

constexpr int kRopeThreads = 256;
constexpr int kRopeWarps = kRopeThreads / 32;
constexpr int kRopeMaxHalf = 256;  // head_dim <= 512

// Two neighbouring elements of a head, loaded and stored as one (4 bytes in bf16 / f16, 8 in f32).
template <typename T>
struct alignas(2 * sizeof(T)) TwoOf {
  T x, y;
};

// Pair indices i .. i + kWidth - 1 of the packed head at head_start: rotated with the token's angles (`rotate`: q
// and k heads) or copied (v), to dst. kWidth 2 reads and writes both halves' two neighbours as one access each (head
// dims of a multiple of 4: the halves' starts are then even).
template <typename T, int kWidth>
__device__ void RopeStorePairs(const T* head_start, int i, int half, bool rotate, const float* cos_s,
                               const float* sin_s, T* dst) {
  T a[kWidth], b[kWidth];
  if constexpr (kWidth == 2) {
    const TwoOf<T> two_a = *reinterpret_cast<const TwoOf<T>*>(head_start + i);
    const TwoOf<T> two_b = *reinterpret_cast<const TwoOf<T>*>(head_start + i + half);
    a[0] = two_a.x, a[1] = two_a.y, b[0] = two_b.x, b[1] = two_b.y;
  } else {
    a[0] = head_start[i], b[0] = head_start[i + half];
  }
  if (rotate) {
#pragma unroll
    for (int e = 0; e < kWidth; ++e) RotatePair(a[e], b[e], cos_s[i + e], sin_s[i + e]);
  }
  if constexpr (kWidth == 2) {
    *reinterpret_cast<TwoOf<T>*>(dst + i) = TwoOf<T>{a[0], a[1]};
    *reinterpret_cast<TwoOf<T>*>(dst + i + half) = TwoOf<T>{b[0], b[1]};
  } else {
    dst[i] = a[0];
    dst[i + half] = b[0];
  }
}

// A block per token (grid-stride over tokens) and per `heads_per_block` packed heads of its row (blockIdx.y). The
// block computes the token's cos / sin of each pair index i < half once into shared memory (the angle's sincosf,
// exact and slow for the large angles of long positions, once per (token, i) and block instead of once per head);
// then each warp takes whole packed heads, so where a head goes (q, the k or v slot) is worked out once per head and
// warp, and rotates (q and k heads) or copies (v) its pairs, kWidth neighbours per lane. Long prompts take whole rows
// per block; a few decode tokens split their rows over blocks, so the step stays one wave deep.
template <typename T, int kWidth>
__global__ void __launch_bounds__(kRopeThreads)
    RopeStoreKernel(const T* qkv, const int32_t* positions, const int32_t* slots, int64_t tokens, int kv_heads,
                    int group, int head_dim, int heads_per_block, float base, float position_scale, T* q, T* k_pool,
                    T* v_pool) {
  AllowNextKernel();
  WaitForPriorKernel();
  __shared__ float cos_s[kRopeMaxHalf], sin_s[kRopeMaxHalf];
  const int half = head_dim / 2, per_kv = group + 2, packed = kv_heads * per_kv;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int first_head = blockIdx.y * heads_per_block;
  const int end_head = min(packed, first_head + heads_per_block);
  for (int64_t token = blockIdx.x; token < tokens; token += gridDim.x) {
    const float position = static_cast<float>(positions[token]) * position_scale;
    __syncthreads();  // the previous token's readers are done
    for (int i = threadIdx.x; i < half; i += blockDim.x) RopeAngle(position, i, head_dim, base, &sin_s[i], &cos_s[i]);
    __syncthreads();
    const int64_t slot = slots[token];
    const T* row = qkv + token * packed * head_dim;
    for (int p = first_head + warp; p < end_head; p += kRopeWarps) {
      const int kv_head = p / per_kv, r = p - kv_head * per_kv;  // r: q heads 0..group-1, then k, then v
      if (r >= group && slot < 0) continue;                      // a token whose K and V are not kept here
      T* dst = r < group ? q + (token * kv_heads * group + kv_head * group + r) * head_dim
                         : (r == group ? k_pool : v_pool) + (slot * kv_heads + kv_head) * head_dim;
      for (int i = lane * kWidth; i < half; i += 32 * kWidth) {
        RopeStorePairs<T, kWidth>(row + int64_t{p} * head_dim, i, half, r <= group, cos_s, sin_s, dst);
      }
    }
  }
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

// ---- log-sum-exp merge ----

// A warp per (row, head): the two sides' weights once, the head's dims four per lane, then its lse (lane 0, once
// every lane has read the old one). It was a thread per element with both exponentials each and a second kernel for
// the lse: 29% of HBM on the H200 at 32K tokens x 32 heads x 128.
constexpr int kMergeThreads = 256;
constexpr int kMergeWarps = kMergeThreads / 32;

template <typename T>
__global__ void __launch_bounds__(kMergeThreads)
    MergeKernel(T* out_a, float* lse_a, const T* out_b, const float* lse_b, int64_t head_rows, int head_dim) {
  const int lane = threadIdx.x % 32;
  for (int64_t head_row = blockIdx.x * int64_t{kMergeWarps} + threadIdx.x / 32; head_row < head_rows;
       head_row += int64_t{gridDim.x} * kMergeWarps) {
    const float a = lse_a[head_row], b = lse_b[head_row];
    if (b == -INFINITY) continue;  // nothing on side b: out_a and lse_a stay, as in the reference
    const float m = fmaxf(a, b);
    const float wa = expf(a - m), wb = expf(b - m);
    T* row_a = out_a + head_row * head_dim;
    const T* row_b = out_b + head_row * head_dim;
    for (int c = 4 * lane; c < head_dim; c += 4 * 32) {
      const float4 x = LoadFour(row_a + c), y = LoadFour(row_b + c);
      StoreFour(row_a + c, {(wa * x.x + wb * y.x) / (wa + wb), (wa * x.y + wb * y.y) / (wa + wb),
                            (wa * x.z + wb * y.z) / (wa + wb), (wa * x.w + wb * y.w) / (wa + wb)});
    }
    __syncwarp();
    if (lane == 0) lse_a[head_row] = m + logf(wa + wb);
  }
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
  // Whole rows per block from a few hundred tokens on (a 32K prompt: 32K blocks, 6 heads a warp); fewer tokens
  // split each row into blocks of a head per warp.
  const int packed = pools.kv_heads * (group + 2), half = rope.head_dim / 2;
  const int heads_per_block = tokens >= 256 ? packed : kRopeWarps;
  const dim3 grid(static_cast<unsigned>(std::min<int64_t>(tokens, int64_t{1} << 20)),
                  static_cast<unsigned>((packed + heads_per_block - 1) / heads_per_block));
  cudaError_t launched = cudaSuccess;
  IXC_RETURN_IF_ERROR(DispatchDType(pools.dtype, [&](auto tag) {
    using T = decltype(tag);
    // Two pair indices per lane where both halves of a head start on an even element.
    auto kernel = half % 2 == 0 ? RopeStoreKernel<T, 2> : RopeStoreKernel<T, 1>;
    launched =
        LaunchAfterPrior(DependentLaunchSupported(), kernel, grid, kRopeThreads, stream, static_cast<const T*>(qkv),
                         positions, slots, tokens, pools.kv_heads, group, rope.head_dim, heads_per_block, rope.base,
                         rope.position_scale, static_cast<T*>(q), static_cast<T*>(pools.k), static_cast<T*>(pools.v));
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

absl::Status LaunchMergeAttention(DType dtype, void* out_a, float* lse_a, const void* out_b, const float* lse_b,
                                  int64_t rows, int heads, int head_dim, cudaStream_t stream) {
  if (rows < 0 || heads <= 0 || head_dim <= 0 || head_dim % 4 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("MergeAttention: rows ", rows, ", heads ", heads, ", head_dim ",
                                                   head_dim, " (a multiple of 4)"));
  }
  if (const auto bad = FirstNotFourAligned({{out_a, DTypeSize(dtype)}, {out_b, DTypeSize(dtype)}})) {
    return absl::InvalidArgumentError(absl::StrCat("MergeAttention: an output at ",
                                                   absl::Hex(reinterpret_cast<uintptr_t>(bad->first)),
                                                   " is not aligned to 4 of its ", bad->second, "-byte elements"));
  }
  const int64_t head_rows = rows * heads;
  if (head_rows == 0) return absl::OkStatus();
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>((head_rows + kMergeWarps - 1) / kMergeWarps, 65535));
  IXC_RETURN_IF_ERROR(DispatchDType(dtype, [&](auto tag) {
    using T = decltype(tag);
    MergeKernel<T><<<blocks, kMergeThreads, 0, stream>>>(static_cast<T*>(out_a), lse_a, static_cast<const T*>(out_b),
                                                         lse_b, head_rows, head_dim);
  }));
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace ixc::kernels::cuda
