// Flash prefill on Hopper's warpgroup MMA. A block is two warpgroups, each owning 64 query rows (128 per block); per
// 64-key tile S = Q K^T is one batch of wgmma with Q and K in shared memory, the online softmax runs on S in
// registers (flash_tile.cuh's FlashRowTile, as the mma.sync kernel's), and O += P V is one batch of wgmma with P in
// registers and V in shared memory read transposed. Q, K and V sit in the 128-byte swizzle (wgmma.cuh), K and V
// double-buffered by cp.async; a wgmma reads them only after each writer's proxy fence and the block barrier.
#include <climits>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/flash_tile.cuh"
#include "kernels/cuda/flash_wgmma.h"
#include "kernels/cuda/wgmma.cuh"

namespace ixc::kernels::cuda {
namespace {

constexpr int kThreads = 256;  // two warpgroups
constexpr int kRows = 128;     // query rows per block, 64 per warpgroup
constexpr int kKeys = 64;      // keys per tile

// A [rows][D] tile in the 128-byte swizzle: D / 64 column halves of rows x 128 bytes, one after the other.
template <int D>
constexpr int TileBytes(int rows) {
  return (D / 64) * rows * 128;
}
template <int D>
constexpr int SmemBytes() {
  return TileBytes<D>(kRows) + 2 /*K, V*/ * 2 /*stages*/ * TileBytes<D>(kKeys) + 1024 /*to align the start*/;
}

// Where row r's 16-byte chunk c (of D / 8) lives in a swizzled tile of `rows` rows.
__device__ inline uint8_t* Chunk(uint8_t* tile, int rows, int r, int c) {
  return tile + (c / 8) * rows * 128 + wgmma::SwizzledOffset(r, c % 8);
}

template <typename T, int D>
__global__ void __launch_bounds__(kThreads, 2)
    FlashWgmmaKernel(const T* q, const int32_t* positions, int tokens, int heads, int group, const T* k_pool,
                     const T* v_pool, const int32_t* block_table, int64_t table_stride, int block_size, int kv_heads,
                     int num_keys, float scale_log2, T* out, float* lse) {
  SelectSequence<D>(q, out, lse, block_table, tokens, heads, table_stride);
  extern __shared__ uint8_t smem_raw[];
  const uint32_t misalignment = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023;
  uint8_t* q_tile = smem_raw + ((1024 - misalignment) & 1023);  // swizzle atoms start at 1024-byte boundaries
  uint8_t* k_tiles = q_tile + TileBytes<D>(kRows);              // 2 stages
  uint8_t* v_tiles = k_tiles + 2 * TileBytes<D>(kKeys);         // 2 stages

  const int tile = gridDim.x - 1 - blockIdx.x;  // the longest rows (most keys) start first
  const int block_shift = PowerOfTwoShift(block_size);
  const int head = blockIdx.y, kv_head = head / group;
  const int warpgroup = threadIdx.x / 128, warp = threadIdx.x / 32 % 4, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int first_row = tile * kRows, warp_first = warpgroup * 64 + warp * 16;  // warp_first: within the block
  FlashRowTile rows;
  rows.Start(positions, tokens, first_row + warp_first, g);
  int warp_min_pos = min(rows.pos_lo, rows.pos_hi);  // key tiles up to here need no mask for any row of the warp
  warp_min_pos = WarpMin(warp_min_pos);
  const int keys = BlockKeys(positions, first_row, kRows, tokens, num_keys);
  const int key_tiles = (keys + kKeys - 1) / kKeys;

  // The block's Q rows: in the first cp.async group, with K/V tile 0.
  LoadQueryRows<D, kThreads>(q, first_row, kRows, tokens, heads, head,
                             [&](int r, int chunk) { return Chunk(q_tile, kRows, r, chunk); });
  auto load_tile = [&](int key_tile, int stage) {
    uint8_t* k_dst = k_tiles + stage * TileBytes<D>(kKeys);
    uint8_t* v_dst = v_tiles + stage * TileBytes<D>(kKeys);
    LoadKeyTile<D, kThreads>(
        k_pool, v_pool, block_table, block_size, block_shift, kv_heads, kv_head, key_tile * kKeys, kKeys, keys,
        [=](int r, int chunk) { return Chunk(k_dst, kKeys, r, chunk); },
        [=](int r, int chunk) { return Chunk(v_dst, kKeys, r, chunk); });
  };

  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  if (key_tiles > 0) load_tile(0, 0);
  if (key_tiles == 0) PrefetchAndWait(0, 0, load_tile);  // nothing reads Q, but no copy is left in flight
  for (int it = 0; it < key_tiles; ++it) {
    const int stage = it & 1;
    PrefetchAndWait(it, key_tiles, load_tile);
    wgmma::FenceSharedForMma();  // this thread's copies, visible to the tensor cores after the barrier
    __syncthreads();
    const uint8_t* k_tile = k_tiles + stage * TileBytes<D>(kKeys);
    const uint8_t* v_tile = v_tiles + stage * TileBytes<D>(kKeys);

    // S (this warpgroup's 64 rows x 64 keys) = Q . K^T, 16 dims per wgmma: both K-major, a 16-dim slice is 32 bytes
    // into its half's rows; 8-row atoms 1024 bytes apart.
    float s[kKeys / 8][4];
    wgmma::Fence();
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const int half = kk / 4, slice = (kk % 4) * 32;
      const uint64_t a = wgmma::Descriptor(q_tile + half * kRows * 128 + warpgroup * 64 * 128 + slice, 16, 1024);
      const uint64_t b = wgmma::Descriptor(k_tile + half * kKeys * 128 + slice, 16, 1024);
      wgmma::MmaSS<T, kKeys>(s, a, b, kk > 0);
    }
    wgmma::Commit();
    wgmma::Wait<0>();
    wgmma::PinRegisters(s);

    // The online softmax (masks only on key tiles that reach past a row's last visible key).
    const bool whole_tile = (it + 1) * kKeys - 1 <= warp_min_pos && (it + 1) * kKeys <= keys;
    rows.Step(s, o, it * kKeys, keys, whole_tile, scale_log2, t);

    // O += P . V, 16 keys per wgmma: V's rows are keys with the head dims contiguous (MN-major): a 16-key slice
    // starts 16 rows (2048 bytes) in, its two 8-row atoms 1024 bytes apart, the dim halves a tile's half apart.
    uint32_t p[kKeys / 16][4];
#pragma unroll
    for (int kc = 0; kc < kKeys / 16; ++kc) FlashRowTile::PackP<T>(s, kc, p[kc]);
    wgmma::Fence();
#pragma unroll
    for (int kc = 0; kc < kKeys / 16; ++kc) {
      wgmma::MmaRS<T, D>(o, p[kc], wgmma::Descriptor(v_tile + kc * 16 * 128, kKeys * 128, 1024));
    }
    wgmma::Commit();
    wgmma::Wait<0>();
    wgmma::PinRegisters(o);
    __syncthreads();  // the next iteration's load overwrites the stage just read
  }
  rows.Write<T>(o, first_row + warp_first, tokens, heads, head, out, lse, g, t);
}

template <typename T, int D>
absl::Status Launch(const void* q, const int32_t* positions, int64_t tokens, int sequences, int heads,
                    const DeviceKvPools& pools, const int32_t* block_tables, int64_t table_stride, int64_t num_keys,
                    float scale, void* out, float* lse, cudaStream_t stream) {
  constexpr int kSmem = SmemBytes<D>();
  auto kernel = FlashWgmmaKernel<T, D>;
  // Above 48 KiB of shared memory needs the kernel's opt-in: once per instantiation.
  static const cudaError_t opt_in = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  IXC_CUDA_RETURN_IF_ERROR(opt_in);
  IXC_CUDA_RETURN_IF_ERROR(LaunchFlashGrid<T>(kernel, kRows, kThreads, kSmem, q, positions, tokens, sequences, heads,
                                              pools, block_tables, table_stride, num_keys, scale, out, lse, stream));
  return absl::OkStatus();
}

}  // namespace

bool FlashWgmmaSelected(int head_dim) {
  static const bool selected = [] {
    int device = 0;
    cudaDeviceProp properties{};
    return !FallbackKernelsRequested() && cudaGetDevice(&device) == cudaSuccess &&
           cudaGetDeviceProperties(&properties, device) == cudaSuccess && properties.major == 9 &&
           properties.minor == 0;
  }();
  return selected && (head_dim == 64 || head_dim == 128);
}

absl::Status LaunchFlashWgmma(const void* q, const int32_t* positions, int64_t tokens, int sequences, int heads,
                              const DeviceKvPools& pools, const int32_t* block_tables, int64_t table_stride,
                              int64_t num_keys, float scale, void* out, float* lse, cudaStream_t stream) {
  if (pools.head_dim != 64 && pools.head_dim != 128) {
    return absl::InvalidArgumentError(absl::StrCat("FlashWgmma: head_dim ", pools.head_dim, " (built for 64 and 128)"));
  }
  absl::Status status;
  IXC_RETURN_IF_ERROR(DispatchHalfDType(pools.dtype, "FlashWgmma", [&](auto tag) {
    using T = decltype(tag);
    status.Update(pools.head_dim == 64 ? Launch<T, 64>(q, positions, tokens, sequences, heads, pools, block_tables,
                                                       table_stride, num_keys, scale, out, lse, stream)
                                       : Launch<T, 128>(q, positions, tokens, sequences, heads, pools, block_tables,
                                                        table_stride, num_keys, scale, out, lse, stream));
  }));
  return status;
}

}  // namespace ixc::kernels::cuda
