// File: kernels/cuda/wgmma.cuh
//
// Hopper's warpgroup MMA (wgmma, sm_90a only: compiled in flash_wgmma.cu's target alone), as the flash kernel there
// uses it: d (64 x N f32, in the m16n8 accumulator layout of each warp's 16 rows, flash_tile.cuh) += a (64 x 16)
// . b (16 x N), issued by the 4 warps of a warpgroup together and asynchronously (Fence before, Commit and Wait
// after). Operands in shared memory are described by a 64-bit descriptor over tiles in the 128-byte swizzle: rows of
// 64 16-bit elements (128 bytes), 8-row atoms of 1024 bytes at 1024-byte aligned addresses, the 16-byte chunk c of
// row r stored at chunk c ^ (r % 8).
//   MmaSS  a and b from shared memory, both K-major (the 16-wide K slice contiguous in each row): S = Q . K^T
//   MmaRS  a from registers (the m16n8k16 A fragment of each warp's 16 rows), b MN-major (the N dimension
//          contiguous, a row per K index): O += P . V
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace ixc::kernels::cuda::wgmma {

// Byte offset of row `row`'s 16-byte chunk `chunk` in a 128-byte-swizzled tile.
__device__ inline uint32_t SwizzledOffset(int row, int chunk) {
  return static_cast<uint32_t>(row * 128 + ((chunk ^ (row & 7)) << 4));
}

// A shared-memory operand starting at `smem`: `leading` and `stride` are the descriptor's byte offsets (K-major:
// stride between 8-row atoms, leading unused; MN-major: leading between 64-element atoms along N, stride between
// 8-row atoms along K).
__device__ inline uint64_t Descriptor(const void* smem, uint32_t leading, uint32_t stride) {
  const uint32_t address = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  return static_cast<uint64_t>((address & 0x3FFFF) >> 4) | (static_cast<uint64_t>((leading >> 4) & 0x3FFF) << 16) |
         (static_cast<uint64_t>((stride >> 4) & 0x3FFF) << 32) | (uint64_t{1} << 62);
}

// Before the first wgmma of a batch, once the registers it reads or accumulates into were last written.
__device__ inline void Fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ inline void Commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ inline void Wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Shared memory written by this thread (cp.async included) that wgmma reads next: before the barrier.
__device__ inline void FenceSharedForMma() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Keeps the compiler from moving reads or writes of accumulators across the asynchronous MMAs that own them.
template <int kBlocks>
__device__ inline void PinRegisters(float (&d)[kBlocks][4]) {
#pragma unroll
  for (int j = 0; j < kBlocks; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(d[j][e])::"memory");
  }
}

// The same for A fragments in registers that an MMA still in flight reads: they stay where they are until the wait.
template <int kSlices>
__device__ inline void PinRegisters(uint32_t (&a)[kSlices][4]) {
#pragma unroll
  for (int j = 0; j < kSlices; ++j) {
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(a[j][e])::"memory");
  }
}

// d (+)= a . b, both from shared memory, K-major; `accumulate` 0 overwrites d.
template <typename T, int N>
__device__ void MmaSS(float (&d)[N / 8][4], uint64_t a, uint64_t b, int accumulate);
// d += a . b, a from registers, b MN-major (transposed).
template <typename T, int N>
__device__ void MmaRS(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t b);

// One definition per shape, stamped for bf16 and f16 (inline assembly takes the type as literal text).
#define IXC_WGMMA_SS_64(CTYPE, PTX)                                                                                \
  template <>                                                                                                      \
  __device__ inline void MmaSS<CTYPE, 64>(float(&d)[8][4], uint64_t a, uint64_t b, int accumulate) {               \
    asm volatile(                                                                                                  \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                                                               \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." PTX "." PTX                                                  \
        " {"                                                                                                       \
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, "                         \
        "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"                                     \
        "}, %32, %33, p, 1, 1, 0, 0;\n}\n"                                                                         \
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), \
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), \
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), \
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), \
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])                                               \
        : "l"(a), "l"(b), "r"(accumulate));                                                                        \
  }

#define IXC_WGMMA_RS_64(CTYPE, PTX)                                                                                \
  template <>                                                                                                      \
  __device__ inline void MmaRS<CTYPE, 64>(float(&d)[8][4], const uint32_t(&a)[4], uint64_t b) {                    \
    asm volatile(                                                                                                  \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                                                               \
        "wgmma.mma_async.sync.aligned.m64n64k16.f32." PTX "." PTX                                                  \
        " {"                                                                                                       \
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, "                         \
        "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"                                     \
        "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"                                                           \
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]), \
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]), \
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), \
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), \
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])                                               \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));                                             \
  }

#define IXC_WGMMA_RS_128(CTYPE, PTX)                                                                                 \
  template <>                                                                                                        \
  __device__ inline void MmaRS<CTYPE, 128>(float(&d)[16][4], const uint32_t(&a)[4], uint64_t b) {                    \
    asm volatile(                                                                                                    \
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"                                                                 \
        "wgmma.mma_async.sync.aligned.m64n128k16.f32." PTX "." PTX                                                   \
        " {"                                                                                                         \
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, "                           \
        "%18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, "                           \
        "%34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, "                           \
        "%50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"                                       \
        "}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"                                                             \
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),   \
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),   \
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),   \
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),   \
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]),   \
          "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]), \
          "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),            \
          "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]),            \
          "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]),            \
          "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])                                             \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));                                               \
  }

IXC_WGMMA_SS_64(__nv_bfloat16, "bf16")
IXC_WGMMA_SS_64(__half, "f16")
IXC_WGMMA_RS_64(__nv_bfloat16, "bf16")
IXC_WGMMA_RS_64(__half, "f16")
IXC_WGMMA_RS_128(__nv_bfloat16, "bf16")
IXC_WGMMA_RS_128(__half, "f16")

#undef IXC_WGMMA_SS_64
#undef IXC_WGMMA_RS_64
#undef IXC_WGMMA_RS_128

}  // namespace ixc::kernels::cuda::wgmma
