// The decode GEMV (up to kGemvRows activation rows): bound by reading the weights once, so everything here is about
// keeping the load ports and the memory bus busy. Written once as a template over the vector ISA; gemv_avx2.cc and
// gemv_avx512.cc instantiate it (kernels/cpu/gemv_kernel.h; the AVX-512 one chosen at run time by linear.cc).
//
// Per iteration a row gives 2 x kLanes weights as two f32 vectors:
//   f32:  two consecutive vectors;
//   f16:  two conversions (vcvtph2ps);
//   bf16: one load of 2 x kLanes values, split without a shuffle: a bf16 is the top half of its f32, so each 32-bit
//         lane's low value shifted up 16 bits is the even element and the lane masked to its high half is the odd
//         one. x is laid out the same way once per call (each chunk's even elements, then its odd ones), so the
//         products pair up; a sum in another order, as every GEMV's.
#ifndef IXC_KERNELS_CPU_GEMV_H_
#define IXC_KERNELS_CPU_GEMV_H_

#include <cstdint>

#include "kernels/ops.h"

namespace ixc::kernels {

// The most activation rows the GEMV takes. It serves them all from one read of each weight block (the block stays
// in L1 across passes of kRowsPerPass rows), so it beats converting the weights for sgemm up to about this many
// (gemm_bench, this repo's 2-core AVX-512 VM: bf16 92544 x 256 at M = 16 6.1 against 10.7 ms, at M = 32 13.3 against
// 13.8 ms, at M = 64 27 against 19 ms); f32 weights need no conversion and go to sgemm past kGemvRowsF32.
inline constexpr int64_t kGemvRows = 32;
inline constexpr int64_t kGemvRowsF32 = 16;

// out (m, N) = x (m, K) . w (N, K)^T (+ out when accumulating), m <= kGemvRows: the variants linear.cc chooses from.
void GemvAvx2(const float* x, TensorView w, float* out, int64_t m, bool accumulate);
void GemvAvx512(const float* x, TensorView w, float* out, int64_t m, bool accumulate);

}  // namespace ixc::kernels

#endif  // IXC_KERNELS_CPU_GEMV_H_
