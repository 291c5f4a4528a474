// File: kernels/cuda/mma.cuh
//
// Warp-level tensor-core helpers (sm_80+) the attention kernels share: the m16n8k16 MMA, ldmatrix and movmatrix.
// Fragments follow PTX's layouts: in an 8x8 b16 matrix lane 4g + t holds elements 2t and 2t + 1 of row g; an
// m16n8k16 A fragment is four such matrices (rows 0-7 | 8-15) x (columns 0-7 | 8-15) in the order r0 = (0-7,
// 0-7), r1 = (8-15, 0-7), r2 = (0-7, 8-15), r3 = (8-15, 8-15); B is two (k 0-7, k 8-15) with lane 4g + t holding
// k 2t, 2t + 1 of column g; the accumulator holds columns 2t, 2t + 1 of rows g ([0], [1]) and g + 8 ([2], [3]).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace ixc::kernels::cuda {

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

// The transpose of an 8x8 b16 matrix held one row pair per lane: lane 4g + t gives elements 2t, 2t + 1 of row g
// and receives those of column g.
__device__ inline uint32_t MovMatrixTrans(uint32_t pair) {
  uint32_t transposed;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(transposed) : "r"(pair));
  return transposed;
}

// Pair `pair` (0-3) of a 16-byte load of eight b16 values: elements 2 pair and 2 pair + 1, one fragment register.
__device__ inline uint32_t PairOf(const uint4& piece, int pair) {  // pair: a constant once unrolled
  return pair == 0 ? piece.x : pair == 1 ? piece.y : pair == 2 ? piece.z : piece.w;
}

// d += A B over 32 of k, the two k-steps of one "round", where the A and B fragments come straight from 16-byte
// loads: lane 4g + t has loaded piece t of the round (8 consecutive k) of A's rows g (a_lo) and g + 8 (a_hi) and
// of B's column g (b). A dot product does not care in which order its k are summed, so k-step h takes pair 2h of
// each piece as the logical columns 2t, 2t + 1 and pair 2h + 1 as 2t + 8, 2t + 9: the same k on both sides.
template <typename T>
__device__ inline void MmaPiecesRound(float (&d)[4], const uint4& a_lo, const uint4& a_hi, const uint4& b) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint32_t a[4] = {PairOf(a_lo, 2 * h), PairOf(a_hi, 2 * h), PairOf(a_lo, 2 * h + 1),
                           PairOf(a_hi, 2 * h + 1)};
    Mma<T>(d, a, PairOf(b, 2 * h), PairOf(b, 2 * h + 1));
  }
}

}  // namespace ixc::kernels::cuda
