// Attention kernels. Scores are scaled into the log2 domain (s * scale * log2(e)) so the softmax uses exp2f; the
// log-sum-exp handed back is converted to natural log, as the reference returns it.
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"

namespace ixc::kernels::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ---- RoPE and KV store ----

// One thread per (token, packed head, i < half): rotates the pair (i, i + half) of a q or k head, or copies it for v.
template <typename T>
__global__ void RopeStoreKernel(const T* qkv, const int32_t* positions, const int32_t* slots, int64_t tokens,
                                int kv_heads, int group, int head_dim, float base, float position_scale, T* q,
                                T* k_pool, T* v_pool) {
  const int half = head_dim / 2, packed = kv_heads * (group + 2);
  const int64_t total = tokens * packed * half;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < total;
       idx += int64_t{gridDim.x} * blockDim.x) {
    const int i = static_cast<int>(idx % half);
    const int64_t rest = idx / half;
    const int p = static_cast<int>(rest % packed);
    const int64_t token = rest / packed;
    const int kv_head = p / (group + 2), r = p % (group + 2);
    const T* src = qkv + (token * packed + p) * head_dim;
    const T a = src[i], b = src[i + half];
    const int64_t slot = slots[token];
    const int64_t cache_offset = (slot * kv_heads + kv_head) * head_dim;
    if (r == group + 1) {  // V: stored as it is
      if (slot >= 0) {
        v_pool[cache_offset + i] = a;
        v_pool[cache_offset + i + half] = b;
      }
      continue;
    }
    // As the reference: inv_freq = 1 / base^(2i/d) and the angle in f32.
    const float inv_freq = 1.f / powf(base, static_cast<float>(2 * i) / static_cast<float>(head_dim));
    const float angle = static_cast<float>(positions[token]) * position_scale * inv_freq;
    float s, c;
    sincosf(angle, &s, &c);
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

// ---- tensor-core helpers (sm_80+) ----

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

// Four 8x8 b16 matrices from shared memory, transposed: lane l gives the address of row l % 8 of matrix l / 8.
__device__ inline void LdMatrixX4Trans(uint32_t (&r)[4], const void* smem_row) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// 16 bytes global -> shared without a register round trip; zero-filled when !valid.
__device__ inline void CpAsync16(void* smem, const void* global, bool valid) {
  const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(address), "l"(global), "r"(valid ? 16 : 0));
}
__device__ inline void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n"); }
template <int kPending>
__device__ inline void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

// ---- flash attention (prefill) ----

constexpr int kFlashRows = 64;   // query rows per block: 4 warps x 16
constexpr int kFlashKeys = 64;   // keys per tile
constexpr int kFlashThreads = 128;

template <int D>
constexpr int FlashSmemBytes() {
  return 2 /*K, V*/ * 2 /*stages*/ * kFlashKeys * (D + 8) * 2;
}

// Block (query tile, head). Each warp owns 16 query rows: S = Q K^T and O += P V on tensor cores, with the row
// statistics of the online softmax in registers (a thread holds rows g and g + 8 of its warp's 16, g = lane / 4).
// Rows are padded by 8 elements in shared memory so the fragment loads hit 32 distinct banks.
template <typename T, int D>
__global__ void __launch_bounds__(kFlashThreads) FlashKernel(const T* q, const int32_t* positions, int tokens,
                                                             int heads, int group, const T* k_pool, const T* v_pool,
                                                             const int32_t* block_table, int block_size,
                                                             int kv_heads, int num_keys, float scale_log2, T* out,
                                                             float* lse) {
  constexpr int kStride = D + 8;
  extern __shared__ __align__(16) unsigned char smem[];
  T* k_tiles = reinterpret_cast<T*>(smem);           // [2][kFlashKeys][kStride]
  T* v_tiles = k_tiles + 2 * kFlashKeys * kStride;   // [2][kFlashKeys][kStride]

  const int tile = gridDim.x - 1 - blockIdx.x;  // the longest rows (most keys) start first
  const int head = blockIdx.y, kv_head = head / group;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int row_lo = tile * kFlashRows + warp * 16 + g, row_hi = row_lo + 8;
  const int last_row = min(tile * kFlashRows + kFlashRows, tokens) - 1;
  const int keys = min(num_keys, positions[last_row] + 1);
  const int key_tiles = (keys + kFlashKeys - 1) / kFlashKeys;
  const int pos_lo = row_lo < tokens ? positions[row_lo] : -1;  // rows past the end see no key
  const int pos_hi = row_hi < tokens ? positions[row_hi] : -1;

  // This warp's 16 query rows as A fragments, for every 16-wide slice of the head dimension.
  uint32_t q_frag[D / 16][4];
  auto q_word = [&](int row, int col) -> uint32_t {
    if (row >= tokens) return 0;
    return *reinterpret_cast<const uint32_t*>(q + (static_cast<int64_t>(row) * heads + head) * D + col);
  };
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    q_frag[kk][0] = q_word(row_lo, kk * 16 + 2 * t);
    q_frag[kk][1] = q_word(row_hi, kk * 16 + 2 * t);
    q_frag[kk][2] = q_word(row_lo, kk * 16 + 2 * t + 8);
    q_frag[kk][3] = q_word(row_hi, kk * 16 + 2 * t + 8);
  }

  auto load_tile = [&](int key_tile, int stage) {
    T* k_dst = k_tiles + stage * kFlashKeys * kStride;
    T* v_dst = v_tiles + stage * kFlashKeys * kStride;
    constexpr int kChunks = D / 8;  // 16-byte pieces per row
    for (int c = threadIdx.x; c < kFlashKeys * kChunks; c += kFlashThreads) {
      const int r = c / kChunks, col = (c % kChunks) * 8;
      const int key = key_tile * kFlashKeys + r;
      const bool valid = key < keys;
      int64_t offset = 0;
      if (valid) {
        const int64_t slot = static_cast<int64_t>(block_table[key / block_size]) * block_size + key % block_size;
        offset = (slot * kv_heads + kv_head) * D + col;
      }
      CpAsync16(k_dst + r * kStride + col, k_pool + offset, valid);
      CpAsync16(v_dst + r * kStride + col, v_pool + offset, valid);
    }
    CpAsyncCommit();
  };

  float o[D / 8][4];
#pragma unroll
  for (int i = 0; i < D / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.f, l_hi = 0.f;

  if (key_tiles > 0) load_tile(0, 0);
  for (int it = 0; it < key_tiles; ++it) {
    const int stage = it & 1;
    if (it + 1 < key_tiles) {
      load_tile(it + 1, stage ^ 1);
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    const T* k_tile = k_tiles + stage * kFlashKeys * kStride;
    const T* v_tile = v_tiles + stage * kFlashKeys * kStride;

    float s[kFlashKeys / 8][4];
#pragma unroll
    for (int nt = 0; nt < kFlashKeys / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
#pragma unroll
      for (int nt = 0; nt < kFlashKeys / 8; ++nt) {
        const T* k_row = k_tile + (nt * 8 + g) * kStride + kk * 16 + 2 * t;
        Mma<T>(s[nt], q_frag[kk], *reinterpret_cast<const uint32_t*>(k_row),
               *reinterpret_cast<const uint32_t*>(k_row + 8));
      }
    }
    // Scale, mask (causal and past the last key), and the tile's row maxima.
    float tile_max_lo = -INFINITY, tile_max_hi = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kFlashKeys / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = it * kFlashKeys + nt * 8 + 2 * t + (e & 1);
        const int pos = e < 2 ? pos_lo : pos_hi;
        s[nt][e] = key <= pos && key < keys ? s[nt][e] * scale_log2 : -INFINITY;
      }
      tile_max_lo = fmaxf(tile_max_lo, fmaxf(s[nt][0], s[nt][1]));
      tile_max_hi = fmaxf(tile_max_hi, fmaxf(s[nt][2], s[nt][3]));
    }
#pragma unroll
    for (int offset = 1; offset < 4; offset *= 2) {
      tile_max_lo = fmaxf(tile_max_lo, __shfl_xor_sync(0xffffffff, tile_max_lo, offset));
      tile_max_hi = fmaxf(tile_max_hi, __shfl_xor_sync(0xffffffff, tile_max_hi, offset));
    }
    const float new_lo = fmaxf(m_lo, tile_max_lo), new_hi = fmaxf(m_hi, tile_max_hi);
    // A row that has seen no key yet keeps max -inf; subtract 0 then, so exp2 gives 0 rather than NaN.
    const float base_lo = new_lo == -INFINITY ? 0.f : new_lo, base_hi = new_hi == -INFINITY ? 0.f : new_hi;
    const float correction_lo = exp2f(m_lo - base_lo), correction_hi = exp2f(m_hi - base_hi);
    m_lo = new_lo;
    m_hi = new_hi;
    l_lo *= correction_lo;
    l_hi *= correction_hi;
#pragma unroll
    for (int i = 0; i < D / 8; ++i) {
      o[i][0] *= correction_lo;
      o[i][1] *= correction_lo;
      o[i][2] *= correction_hi;
      o[i][3] *= correction_hi;
    }
#pragma unroll
    for (int nt = 0; nt < kFlashKeys / 8; ++nt) {
      s[nt][0] = exp2f(s[nt][0] - base_lo);
      s[nt][1] = exp2f(s[nt][1] - base_lo);
      s[nt][2] = exp2f(s[nt][2] - base_hi);
      s[nt][3] = exp2f(s[nt][3] - base_hi);
      l_lo += s[nt][0] + s[nt][1];
      l_hi += s[nt][2] + s[nt][3];
    }
    // O += P V: the S accumulators of two adjacent 8-key tiles are exactly the A fragment of a 16-key slice of P.
#pragma unroll
    for (int kc = 0; kc < kFlashKeys / 16; ++kc) {
      const uint32_t p[4] = {PackPair<T>(s[2 * kc][0], s[2 * kc][1]), PackPair<T>(s[2 * kc][2], s[2 * kc][3]),
                             PackPair<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]),
                             PackPair<T>(s[2 * kc + 1][2], s[2 * kc + 1][3])};
      const int matrix = lane / 8;
      const T* v_row = v_tile + (kc * 16 + (matrix & 1) * 8 + lane % 8) * kStride + (matrix >> 1) * 8;
#pragma unroll
      for (int dt = 0; dt < D / 8; dt += 2) {
        uint32_t b[4];
        LdMatrixX4Trans(b, v_row + dt * 8);
        Mma<T>(o[dt], p, b[0], b[1]);
        Mma<T>(o[dt + 1], p, b[2], b[3]);
      }
    }
    __syncthreads();  // the next iteration's load overwrites the stage just read
  }

#pragma unroll
  for (int offset = 1; offset < 4; offset *= 2) {
    l_lo += __shfl_xor_sync(0xffffffff, l_lo, offset);
    l_hi += __shfl_xor_sync(0xffffffff, l_hi, offset);
  }
  const float inv_lo = l_lo > 0.f ? 1.f / l_lo : 0.f, inv_hi = l_hi > 0.f ? 1.f / l_hi : 0.f;
#pragma unroll
  for (int i = 0; i < D / 8; ++i) {
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
    if (row_lo < tokens) lse[row_lo * heads + head] = l_lo > 0.f ? (m_lo + log2f(l_lo)) * kLn2 : -INFINITY;
    if (row_hi < tokens) lse[row_hi * heads + head] = l_hi > 0.f ? (m_hi + log2f(l_hi)) * kLn2 : -INFINITY;
  }
}

template <typename T, int D>
absl::Status LaunchFlash(const void* q, const int32_t* positions, int64_t tokens, int heads, const DeviceKvPools& pools,
                         const int32_t* block_table, int64_t num_keys, float scale, void* out, float* lse,
                         cudaStream_t stream) {
  constexpr int kSmem = FlashSmemBytes<D>();
  auto kernel = FlashKernel<T, D>;
  // Above 48 KiB of shared memory needs the kernel's opt-in: once per instantiation (a process drives one
  // device), not on every launch.
  static const cudaError_t opt_in =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  IXC_CUDA_RETURN_IF_ERROR(opt_in);
  const dim3 grid(static_cast<unsigned>((tokens + kFlashRows - 1) / kFlashRows), static_cast<unsigned>(heads));
  kernel<<<grid, kFlashThreads, kSmem, stream>>>(
      static_cast<const T*>(q), positions, static_cast<int>(tokens), heads, heads / pools.kv_heads,
      static_cast<const T*>(pools.k), static_cast<const T*>(pools.v), block_table, pools.block_size, pools.kv_heads,
      static_cast<int>(num_keys), scale * kLog2e, static_cast<T*>(out), lse);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

// ---- paged decode attention (split-KV) ----

constexpr int kDecodeThreads = 128;
constexpr int kDecodeTile = 128;  // keys per pass: one per thread for the scores
constexpr int kMaxGroup = 8;
constexpr int kMaxSplits = 128;

// Block (split, kv head, row): the group's query heads over the split's keys. Scores: one thread per key, 16-byte
// loads of its K row. Softmax statistics: one warp per head. P V: each thread owns 8 dims of one head and a share of
// the tile's keys (16-byte V loads, coalesced across the threads of a key); the shares are summed at the end.
template <typename T, int D>
__global__ void __launch_bounds__(kDecodeThreads) DecodeKernel(const T* q, int heads, int group, const T* k_pool,
                                                               const T* v_pool, int block_size, int kv_heads,
                                                               DecodeRows rows, float scale_log2,
                                                               float* partial_out, float* partial_lse) {
  const int split = blockIdx.x, kv_head = blockIdx.y, row = blockIdx.z, splits = gridDim.x;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __shared__ float q_s[kMaxGroup][D];
  __shared__ float p_s[kMaxGroup][kDecodeTile];
  __shared__ int64_t offset_s[kDecodeTile];
  __shared__ float m_s[kMaxGroup], l_s[kMaxGroup], correction_s[kMaxGroup];
  __shared__ float sums_s[kDecodeThreads * 8];

  for (int i = threadIdx.x; i < group * D; i += kDecodeThreads) {
    q_s[i / D][i % D] = ToFloat(q[(static_cast<int64_t>(row) * heads + kv_head * group) * D + i]);
  }
  if (threadIdx.x < kMaxGroup) {
    m_s[threadIdx.x] = -INFINITY;
    l_s[threadIdx.x] = 0.f;
  }
  const int visible = rows.visible_keys[row];
  const int32_t* table = rows.block_tables + rows.table_offsets[row];
  // This row's keys cut into `splits` chunks of a multiple of 16: each row balanced on its own length, and nothing
  // here depends on the launch's longest row but the split count (a captured graph replays for any lengths).
  const int chunk = ((visible + splits - 1) / splits + 15) / 16 * 16;
  const int begin = split * chunk, end = min(visible, begin + chunk);

  constexpr int kVecs = D / 8;  // 8-dim pieces of a head
  const int owners = group * kVecs, shares = kDecodeThreads / owners;
  const bool owner = threadIdx.x < owners * shares;
  const int share = threadIdx.x / owners, piece = threadIdx.x % owners;
  const int owned_head = piece / kVecs, owned_dim = (piece % kVecs) * 8;
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  __syncthreads();

  for (int base = begin; base < end; base += kDecodeTile) {
    const int n = min(kDecodeTile, end - base);
    if (threadIdx.x < n) {
      const int key = base + threadIdx.x;
      const int64_t slot = static_cast<int64_t>(table[key / block_size]) * block_size + key % block_size;
      const int64_t offset = (slot * kv_heads + kv_head) * D;
      offset_s[threadIdx.x] = offset;
      float dot[kMaxGroup] = {};
#pragma unroll 4
      for (int c = 0; c < kVecs; ++c) {
        const uint4 raw = *reinterpret_cast<const uint4*>(k_pool + offset + c * 8);
        const T* k8 = reinterpret_cast<const T*>(&raw);
#pragma unroll
        for (int h = 0; h < kMaxGroup; ++h) {
          if (h < group) {
#pragma unroll
            for (int e = 0; e < 8; ++e) dot[h] += q_s[h][c * 8 + e] * ToFloat(k8[e]);
          }
        }
      }
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) {
        if (h < group) p_s[h][threadIdx.x] = dot[h] * scale_log2;
      }
    }
    __syncthreads();
    for (int h = warp; h < group; h += kDecodeThreads / 32) {
      float tile_max = -INFINITY;
      for (int j = lane; j < n; j += 32) tile_max = fmaxf(tile_max, p_s[h][j]);
      for (int offset = 16; offset > 0; offset /= 2) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffff, tile_max, offset));
      const float new_max = fmaxf(m_s[h], tile_max);  // finite: the tile has at least one key
      float sum = 0.f;
      for (int j = lane; j < n; j += 32) {
        const float p = exp2f(p_s[h][j] - new_max);
        p_s[h][j] = p;
        sum += p;
      }
      for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffff, sum, offset);
      if (lane == 0) {
        const float correction = exp2f(m_s[h] - new_max);
        correction_s[h] = correction;
        l_s[h] = l_s[h] * correction + sum;
        m_s[h] = new_max;
      }
    }
    __syncthreads();
    if (owner) {
      const float correction = correction_s[owned_head];
#pragma unroll
      for (int e = 0; e < 8; ++e) acc[e] *= correction;
      for (int j = share; j < n; j += shares) {
        const uint4 raw = *reinterpret_cast<const uint4*>(v_pool + offset_s[j] + owned_dim);
        const T* v8 = reinterpret_cast<const T*>(&raw);
        const float p = p_s[owned_head][j];
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] += p * ToFloat(v8[e]);
      }
    }
    __syncthreads();
  }

  if (owner) {
#pragma unroll
    for (int e = 0; e < 8; ++e) sums_s[share * group * D + owned_head * D + owned_dim + e] = acc[e];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < group * D; i += kDecodeThreads) {
    float total = 0.f;
    for (int s = 0; s < shares; ++s) total += sums_s[s * group * D + i];
    const int h = i / D;
    const int64_t head_row = static_cast<int64_t>(row) * heads + kv_head * group + h;
    partial_out[(head_row * splits + split) * D + i % D] = l_s[h] > 0.f ? total / l_s[h] : 0.f;
  }
  if (threadIdx.x < group) {
    const int h = threadIdx.x;
    const int64_t head_row = static_cast<int64_t>(row) * heads + kv_head * group + h;
    partial_lse[head_row * splits + split] = l_s[h] > 0.f ? (m_s[h] + log2f(l_s[h])) * kLn2 : -INFINITY;
  }
}

// Block (row, head), one thread per dim: the splits' partial results merged by their log-sum-exp.
template <typename T>
__global__ void CombineSplitsKernel(const float* partial_out, const float* partial_lse, int splits, int head_dim,
                                    T* out, float* lse) {
  const int64_t head_row = blockIdx.x;
  float max_lse = -INFINITY;
  for (int s = 0; s < splits; ++s) max_lse = fmaxf(max_lse, partial_lse[head_row * splits + s]);
  float weight_sum = 0.f;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float value = 0.f;
    weight_sum = 0.f;
    for (int s = 0; s < splits; ++s) {
      const float l = partial_lse[head_row * splits + s];
      const float w = l == -INFINITY ? 0.f : expf(l - max_lse);
      weight_sum += w;
      value += w * partial_out[(head_row * splits + s) * head_dim + d];
    }
    out[head_row * head_dim + d] = FromFloat<T>(weight_sum > 0.f ? value / weight_sum : 0.f);
  }
  if (lse != nullptr && threadIdx.x == 0) lse[head_row] = weight_sum > 0.f ? max_lse + logf(weight_sum) : -INFINITY;
}

int DecodeSplits(int64_t rows, int kv_heads, int64_t max_visible, int num_sms) {
  const int64_t blocks_per_split = rows * kv_heads;
  // Enough blocks for 8 per multiprocessor: the loads of many blocks in flight hide the memory latency.
  int64_t splits = (8 * static_cast<int64_t>(num_sms) + blocks_per_split - 1) / blocks_per_split;
  splits = std::min<int64_t>(splits, (max_visible + kDecodeTile - 1) / kDecodeTile);  // >= one tile of keys each
  return static_cast<int>(std::clamp<int64_t>(splits, 1, kMaxSplits));
}

template <typename T, int D>
absl::Status LaunchDecode(const void* q, int heads, const DeviceKvPools& pools, const DecodeRows& rows, float scale,
                          void* out, float* lse, float* workspace, cudaStream_t stream, int num_sms) {
  const int group = heads / pools.kv_heads;
  const int splits = DecodeSplits(rows.rows, pools.kv_heads, rows.max_visible, num_sms);
  float* partial_out = workspace;  // (rows, heads, splits, D)
  float* partial_lse = workspace + rows.rows * heads * kMaxSplits * D;  // (rows, heads, splits)
  const dim3 grid(splits, pools.kv_heads, static_cast<unsigned>(rows.rows));
  DecodeKernel<T, D><<<grid, kDecodeThreads, 0, stream>>>(
      static_cast<const T*>(q), heads, group, static_cast<const T*>(pools.k), static_cast<const T*>(pools.v),
      pools.block_size, pools.kv_heads, rows, scale * kLog2e, partial_out, partial_lse);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  CombineSplitsKernel<T><<<static_cast<unsigned>(rows.rows * heads), std::min(D, 128), 0, stream>>>(
      partial_out, partial_lse, splits, D, static_cast<T*>(out), lse);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

// ---- log-sum-exp merge ----

template <typename T>
__global__ void MergeKernel(T* out_a, float* lse_a, const T* out_b, const float* lse_b, int64_t head_rows,
                            int head_dim) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < head_rows * head_dim;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t head_row = e / head_dim;
    const float a = lse_a[head_row], b = lse_b[head_row];
    if (b == -INFINITY) continue;  // nothing on side b: out_a stays, as in the reference
    const float m = fmaxf(a, b);
    const float wa = expf(a - m), wb = expf(b - m);
    out_a[e] = FromFloat<T>((wa * ToFloat(out_a[e]) + wb * ToFloat(out_b[e])) / (wa + wb));
  }
}

__global__ void MergeLseKernel(float* lse_a, const float* lse_b, int64_t head_rows) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < head_rows; i += int64_t{gridDim.x} * blockDim.x) {
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
  if (tokens < 0 || group <= 0 || rope.head_dim != pools.head_dim || rope.head_dim % 2 != 0 || pools.kv_heads <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("RopeAndStoreKv: tokens ", tokens, ", group ", group,
                                                   ", head_dim ", rope.head_dim, " vs pools' ", pools.head_dim));
  }
  if (tokens == 0) return absl::OkStatus();
  const int64_t work = tokens * pools.kv_heads * (group + 2) * (rope.head_dim / 2);
  const int blocks = static_cast<int>(std::min<int64_t>((work + 255) / 256, 65535));
  IXC_RETURN_IF_ERROR(DispatchDType(pools.dtype, [&](auto tag) {
    using T = decltype(tag);
    RopeStoreKernel<T><<<blocks, 256, 0, stream>>>(static_cast<const T*>(qkv), positions, slots, tokens,
                                                   pools.kv_heads, group, rope.head_dim, rope.base,
                                                   rope.position_scale, static_cast<T*>(q),
                                                   static_cast<T*>(pools.k), static_cast<T*>(pools.v));
  }));
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

absl::Status LaunchFlashAttention(const void* q, const int32_t* positions, int64_t tokens, int heads,
                                  const DeviceKvPools& pools, const int32_t* block_table, int64_t num_keys,
                                  int64_t max_position, float scale, void* out, float* lse, cudaStream_t stream) {
  IXC_RETURN_IF_ERROR(CheckPools(pools, heads, "FlashAttention"));
  if (tokens < 0 || num_keys < 0 || num_keys > INT32_MAX || max_position >= INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("FlashAttention: tokens ", tokens, ", keys ", num_keys));
  }
  if (tokens == 0) return absl::OkStatus();
  absl::Status status;
  IXC_RETURN_IF_ERROR(DispatchHalfDType(pools.dtype, "FlashAttention", [&](auto tag) {
    using T = decltype(tag);
    status.Update(DispatchHeadDim(pools.head_dim, "FlashAttention", [&](auto dim) {
      return LaunchFlash<T, decltype(dim)::value>(q, positions, tokens, heads, pools, block_table, num_keys, scale,
                                                   out, lse, stream);
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
  if (group > kMaxGroup || group * pools.head_dim > 1024) {
    return absl::InvalidArgumentError(absl::StrCat("PagedDecodeAttention: ", group, " query heads per KV head of ",
                                                   pools.head_dim, " dims (at most 8 and 1024 dims in all)"));
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
      return LaunchDecode<T, decltype(dim)::value>(q, heads, pools, rows, scale, out, lse, workspace, stream,
                                                    num_sms);
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
  const int blocks = static_cast<int>(std::min<int64_t>((head_rows * head_dim + 255) / 256, 65535));
  IXC_RETURN_IF_ERROR(DispatchDType(dtype, [&](auto tag) {
    using T = decltype(tag);
    MergeKernel<T><<<blocks, 256, 0, stream>>>(static_cast<T*>(out_a), lse_a, static_cast<const T*>(out_b), lse_b,
                                               head_rows, head_dim);
  }));
  // The outputs read both lse; only then may lse_a change.
  MergeLseKernel<<<static_cast<int>(std::min<int64_t>((head_rows + 255) / 256, 65535)), 256, 0, stream>>>(
      lse_a, lse_b, head_rows);
  IXC_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace ixc::kernels::cuda
