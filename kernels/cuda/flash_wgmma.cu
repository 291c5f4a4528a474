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

// S (a warpgroup's 64 rows x 64 keys) = Q . K^T, 16 dims per wgmma: both K-major, a 16-dim slice is 32 bytes into
// its half's rows; 8-row atoms 1024 bytes apart. Q is a tile of kBlockRows rows, this warpgroup's 64 of them.
template <typename T, int D, int kBlockRows>
__device__ void IssueScores(float (&s)[kKeys / 8][4], const uint8_t* q_tile, const uint8_t* k_tile, int warpgroup) {
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    const int half = kk / 4, slice = (kk % 4) * 32;
    const uint64_t a = wgmma::Descriptor(q_tile + half * kBlockRows * 128 + warpgroup * 64 * 128 + slice, 16, 1024);
    const uint64_t b = wgmma::Descriptor(k_tile + half * kKeys * 128 + slice, 16, 1024);
    wgmma::MmaSS<T, kKeys>(s, a, b, kk > 0);
  }
}

// O += P . V, 16 keys per wgmma: V's rows are keys with the head dims contiguous (MN-major): a 16-key slice starts 16
// rows (2048 bytes) in, its two 8-row atoms 1024 bytes apart, the dim halves a tile's half apart.
template <typename T, int D>
__device__ void IssueValues(float (&o)[D / 8][4], const uint32_t (&p)[kKeys / 16][4], const uint8_t* v_tile) {
#pragma unroll
  for (int kc = 0; kc < kKeys / 16; ++kc) {
    wgmma::MmaRS<T, D>(o, p[kc], wgmma::Descriptor(v_tile + kc * 16 * 128, kKeys * 128, 1024));
  }
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

    float s[kKeys / 8][4];
    wgmma::Fence();
    IssueScores<T, D, kRows>(s, q_tile, k_tile, warpgroup);
    wgmma::Commit();
    wgmma::Wait<0>();
    wgmma::PinRegisters(s);

    // The online softmax (masks only on key tiles that reach past a row's last visible key).
    const bool whole_tile = (it + 1) * kKeys - 1 <= warp_min_pos && (it + 1) * kKeys <= keys;
    rows.Step(s, o, it * kKeys, keys, whole_tile, scale_log2, t);

    // O += P . V.
    uint32_t p[kKeys / 16][4];
#pragma unroll
    for (int kc = 0; kc < kKeys / 16; ++kc) FlashRowTile::PackP<T>(s, kc, p[kc]);
    wgmma::Fence();
    IssueValues<T, D>(o, p, v_tile);
    wgmma::Commit();
    wgmma::Wait<0>();
    wgmma::PinRegisters(o);
    __syncthreads();  // the next iteration's load overwrites the stage just read
  }
  rows.Write<T>(o, first_row + warp_first, tokens, heads, head, out, lse, g, t);
}

// The software-pipelined variant (experimental until it has run on a GPU: IXC_FLASH_PIPELINED=1,
// FlashWgmmaPipelinedSelected). Three warpgroups (192 query rows) per block and one block per multiprocessor give
// each thread the registers to hold a tile's probabilities while the next tile's scores come: every warpgroup issues
// tile j's S = Q K^T and tile j - 1's O += P V together, and runs tile j's softmax while P V is still on the tensor
// cores (FlashAttention-3's overlap within a warpgroup); O is rescaled once P V is done. K and V take three stages:
// tile j + 1 loads while tile j's K and tile j - 1's V are read. One barrier per tile.
constexpr int kPipelinedThreads = 384;  // three warpgroups
constexpr int kPipelinedRows = 192;
constexpr int kStages = 3;

template <int D>
constexpr int PipelinedSmemBytes() {
  return TileBytes<D>(kPipelinedRows) + 2 /*K, V*/ * kStages * TileBytes<D>(kKeys) + 1024 /*to align the start*/;
}

template <typename T, int D>
__global__ void __launch_bounds__(kPipelinedThreads, 1)
    FlashWgmmaPipelinedKernel(const T* q, const int32_t* positions, int tokens, int heads, int group, const T* k_pool,
                              const T* v_pool, const int32_t* block_table, int64_t table_stride, int block_size,
                              int kv_heads, int num_keys, float scale_log2, T* out, float* lse) {
  SelectSequence<D>(q, out, lse, block_table, tokens, heads, table_stride);
  extern __shared__ uint8_t smem_raw[];
  const uint32_t misalignment = static_cast<uint32_t>(__cvta_generic_to_shared(smem_raw)) & 1023;
  uint8_t* q_tile = smem_raw + ((1024 - misalignment) & 1023);  // swizzle atoms start at 1024-byte boundaries
  uint8_t* k_tiles = q_tile + TileBytes<D>(kPipelinedRows);     // kStages of them
  uint8_t* v_tiles = k_tiles + kStages * TileBytes<D>(kKeys);   // kStages of them

  const int tile = gridDim.x - 1 - blockIdx.x;  // the longest rows (most keys) start first
  const int block_shift = PowerOfTwoShift(block_size);
  const int head = blockIdx.y, kv_head = head / group;
  const int warpgroup = threadIdx.x / 128, warp = threadIdx.x / 32 % 4, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int first_row = tile * kPipelinedRows, warp_first = warpgroup * 64 + warp * 16;
  FlashRowTile rows;
  rows.Start(positions, tokens, first_row + warp_first, g);
  const int warp_min_pos = WarpMin(min(rows.pos_lo, rows.pos_hi));
  const int keys = BlockKeys(positions, first_row, kPipelinedRows, tokens, num_keys);
  const int key_tiles = (keys + kKeys - 1) / kKeys;
  auto whole_tile = [&](int j) { return (j + 1) * kKeys - 1 <= warp_min_pos && (j + 1) * kKeys <= keys; };

  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  if (key_tiles == 0) {  // the same for the whole block
    rows.Write<T>(o, first_row + warp_first, tokens, heads, head, out, lse, g, t);
    return;
  }
  auto load_tile = [&](int key_tile) {  // one cp.async group
    const int stage = key_tile % kStages;
    uint8_t* k_dst = k_tiles + stage * TileBytes<D>(kKeys);
    uint8_t* v_dst = v_tiles + stage * TileBytes<D>(kKeys);
    LoadKeyTile<D, kPipelinedThreads>(
        k_pool, v_pool, block_table, block_size, block_shift, kv_heads, kv_head, key_tile * kKeys, kKeys, keys,
        [=](int r, int chunk) { return Chunk(k_dst, kKeys, r, chunk); },
        [=](int r, int chunk) { return Chunk(v_dst, kKeys, r, chunk); });
  };
  float s[kKeys / 8][4];      // tile j's scores, then its probabilities
  uint32_t p[kKeys / 16][4];  // tile j - 1's probabilities, P V's A fragments
  auto issue_scores = [&](int j) {
    IssueScores<T, D, kPipelinedRows>(s, q_tile, k_tiles + (j % kStages) * TileBytes<D>(kKeys), warpgroup);
  };
  auto issue_values = [&](int j) { IssueValues<T, D>(o, p, v_tiles + (j % kStages) * TileBytes<D>(kKeys)); };
  auto pack = [&] {
#pragma unroll
    for (int kc = 0; kc < kKeys / 16; ++kc) FlashRowTile::PackP<T>(s, kc, p[kc]);
  };

  // Tile 0 (with the block's Q rows): its scores alone, nothing to overlap yet.
  LoadQueryRows<D, kPipelinedThreads>(q, first_row, kPipelinedRows, tokens, heads, head,
                                      [&](int r, int chunk) { return Chunk(q_tile, kPipelinedRows, r, chunk); });
  load_tile(0);
  CpAsyncWait<0>();
  wgmma::FenceSharedForMma();
  __syncthreads();
  if (key_tiles > 1) load_tile(1);
  wgmma::Fence();
  issue_scores(0);
  wgmma::Commit();
  wgmma::Wait<0>();
  wgmma::PinRegisters(s);
  rows.Scores(s, 0, keys, whole_tile(0), scale_log2, t);  // o is still zero: nothing to rescale
  pack();

  for (int j = 1; j < key_tiles; ++j) {
    CpAsyncWait<0>();  // tile j, the one group in flight
    wgmma::FenceSharedForMma();
    // Tile j is visible to every warpgroup, and every warpgroup is done with tile j - 2's stage, which tile j + 1
    // takes now.
    __syncthreads();
    if (j + 1 < key_tiles) load_tile(j + 1);
    wgmma::Fence();
    issue_scores(j);
    wgmma::Commit();
    issue_values(j - 1);
    wgmma::Commit();
    wgmma::Wait<1>();  // the scores; P V goes on
    wgmma::PinRegisters(s);
    const FlashRowTile::Correction correction = rows.Scores(s, j * kKeys, keys, whole_tile(j), scale_log2, t);
    wgmma::Wait<0>();
    wgmma::PinRegisters(o);
    wgmma::PinRegisters(p);  // read by P V until now
    FlashRowTile::Rescale(o, correction);
    pack();
  }
  wgmma::Fence();
  issue_values(key_tiles - 1);
  wgmma::Commit();
  wgmma::Wait<0>();
  wgmma::PinRegisters(o);
  wgmma::PinRegisters(p);
  rows.Write<T>(o, first_row + warp_first, tokens, heads, head, out, lse, g, t);
}

template <typename T, int D>
absl::Status Launch(const void* q, const int32_t* positions, int64_t tokens, int sequences, int heads,
                    const DeviceKvPools& pools, const int32_t* block_tables, int64_t table_stride, int64_t num_keys,
                    float scale, void* out, float* lse, cudaStream_t stream) {
  const bool pipelined = FlashWgmmaPipelinedSelected(D);
  const int smem = pipelined ? PipelinedSmemBytes<D>() : SmemBytes<D>();
  auto kernel = pipelined ? FlashWgmmaPipelinedKernel<T, D> : FlashWgmmaKernel<T, D>;
  // Above 48 KiB of shared memory needs the kernel's opt-in: once per instantiation.
  static const cudaError_t opt_in[2] = {
      cudaFuncSetAttribute(FlashWgmmaKernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, SmemBytes<D>()),
      cudaFuncSetAttribute(FlashWgmmaPipelinedKernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           PipelinedSmemBytes<D>())};
  IXC_CUDA_RETURN_IF_ERROR(opt_in[pipelined]);
  IXC_CUDA_RETURN_IF_ERROR(LaunchFlashGrid<T>(
      kernel, pipelined ? kPipelinedRows : kRows, pipelined ? kPipelinedThreads : kThreads, smem, q, positions, tokens,
      sequences, heads, pools, block_tables, table_stride, num_keys, scale, out, lse, stream));
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

bool FlashWgmmaPipelinedSelected(int head_dim) {
  static const bool requested = KernelFlagSet("IXC_FLASH_PIPELINED");
  return requested && FlashWgmmaSelected(head_dim);
}

const char* FlashKernelName(int head_dim) {
  return FlashWgmmaPipelinedSelected(head_dim) ? "pipelined wgmma"
         : FlashWgmmaSelected(head_dim)        ? "wgmma"
                                               : "mma.sync";
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
