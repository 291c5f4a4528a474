// Few-row linear layers on tensor cores: out^T (n x m) = w (n x k) . x^T (k x m), 16 weight rows (output features)
// on the rows of an m16n8k16 MMA and 8 rows of x on its columns. A block is 8 warps of 16 features each; its k range
// (the whole of k, or one split of it) is walked in 256-wide slices. Each slice of x (every row, zeros past m) is
// staged in shared memory by cp.async, double-buffered, while each warp loads its 16 x 256 weights straight from
// global memory into registers, 16 bytes per load (lane 4g + t: pieces 4i + t of features g and g + 8), which serve
// as its A fragments as they are, x's pieces read alike from shared memory as the B fragments (MmaPiecesRound). The
// weights are read once, x's slices come from L2.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/cuda/async_copy.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/dependent_launch.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm_few_rows.h"
#include "kernels/cuda/grid_stride.cuh"
#include "kernels/cuda/mma.cuh"

namespace ixc::kernels::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kBlockFeatures = 16 * kWarps;
constexpr int kMaxRows = 64;
constexpr int kSliceK = 256;
constexpr int kSliceRounds = kSliceK / 32;  // 16-byte pieces of a weight row's slice per lane: four lanes share it
// A staged slice's row stride: 64 bytes of padding put rows r and r + 1 in different halves of the banks, so the
// eight lanes of a 16-byte shared load's phase (two rows, four pieces each) never collide.
constexpr int kSliceStride = kSliceK + 32;

template <int kRowTiles>
constexpr int SmemBytes() {
  return 2 /*buffers*/ * kRowTiles * 8 * kSliceStride * 2;
}

// Block (feature group, k split). With one split the block writes out (adding to it when accumulating); otherwise
// its f32 partial sums to partials[split] (m, n), which AddPartialsKernel adds up.
template <typename T, typename Out, int kRowTiles>
__global__ void __launch_bounds__(kThreads, 2) FewRowsKernel(const T* x, const T* w, Out* out, float* partials, int m,
                                                             int n, int k, int split_k, bool accumulate) {
  AllowNextKernel();
  constexpr int kRows = kRowTiles * 8;
  extern __shared__ __align__(16) unsigned char smem[];
  T* slices = reinterpret_cast<T*>(smem);  // [2][kRows][kSliceStride]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int feature_lo = blockIdx.x * kBlockFeatures + warp * 16 + g, feature_hi = feature_lo + 8;
  const int k_begin = blockIdx.y * split_k, k_end = min(k, k_begin + split_k);  // k_end: a multiple of 32
  const int num_slices = (k_end - k_begin + kSliceK - 1) / kSliceK;
  const T* w_lo = w + static_cast<int64_t>(min(feature_lo, n - 1)) * k;
  const T* w_hi = w + static_cast<int64_t>(min(feature_hi, n - 1)) * k;

  auto stage_x = [&](int slice) {
    T* dst = slices + (slice & 1) * kRows * kSliceStride;
    const int k0 = k_begin + slice * kSliceK;
    for (int c = threadIdx.x; c < kRows * (kSliceK / 8); c += kThreads) {
      const int row = c / (kSliceK / 8), piece = c % (kSliceK / 8);
      const bool valid = row < m && k0 + piece * 8 < k_end;
      CpAsync16(dst + row * kSliceStride + piece * 8, x + (valid ? static_cast<int64_t>(row) * k + k0 + piece * 8 : 0),
                valid);
    }
    CpAsyncCommit();
  };
  uint4 lo[kSliceRounds], hi[kSliceRounds];  // features g and g + 8: pieces 4i + t of the slice (zeros past k, n)
  auto load_weights = [&](int slice) {
    const int k0 = k_begin + slice * kSliceK;
#pragma unroll
    for (int i = 0; i < kSliceRounds; ++i) {
      const int kk = k0 + (4 * i + t) * 8;
      lo[i] = hi[i] = uint4{0, 0, 0, 0};
      if (kk < k_end) {
        if (feature_lo < n) lo[i] = __ldg(reinterpret_cast<const uint4*>(w_lo + kk));
        if (feature_hi < n) hi[i] = __ldg(reinterpret_cast<const uint4*>(w_hi + kk));
      }
    }
  };

  float acc[kRowTiles][4];  // out^T: features g ([0], [1]) and g + 8 ([2], [3]) of rows 8 nt + 2t, 8 nt + 2t + 1
#pragma unroll
  for (int nt = 0; nt < kRowTiles; ++nt) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
  load_weights(0);       // the weights do not depend on the kernel before: requested while it finishes
  WaitForPriorKernel();  // x and out do
  stage_x(0);
  for (int s = 0; s < num_slices; ++s) {
    if (s > 0) load_weights(s);
    if (s + 1 < num_slices) {
      stage_x(s + 1);
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    const T* slice = slices + (s & 1) * kRows * kSliceStride;
    const int rounds = (min(k_end - (k_begin + s * kSliceK), kSliceK)) / 32;
#pragma unroll
    for (int i = 0; i < kSliceRounds; ++i) {
      if (i >= rounds) break;  // the same for the whole block
#pragma unroll
      for (int nt = 0; nt < kRowTiles; ++nt) {
        const uint4 xb = *reinterpret_cast<const uint4*>(slice + (nt * 8 + g) * kSliceStride + (4 * i + t) * 8);
        MmaPiecesRound<T>(acc[nt], lo[i], hi[i], xb);
      }
    }
    __syncthreads();  // the next slice's copy overwrites the buffer just read
  }

  const bool one_split = gridDim.y == 1;
#pragma unroll
  for (int nt = 0; nt < kRowTiles; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int row = nt * 8 + 2 * t + (e & 1), feature = e < 2 ? feature_lo : feature_hi;
      if (row >= m || feature >= n) continue;
      const int64_t at = static_cast<int64_t>(row) * n + feature;
      if (one_split) {
        out[at] = FromFloat<Out>(acc[nt][e] + (accumulate ? ToFloat(out[at]) : 0.f));
      } else {
        partials[blockIdx.y * static_cast<int64_t>(m) * n + at] = acc[nt][e];
      }
    }
  }
}

// out = the splits' partial sums added in split order (+ out when accumulating): the same rounding on every run.
template <typename Out>
__global__ void AddPartialsKernel(const float* partials, int splits, int64_t count, Out* out, bool accumulate) {
  AllowNextKernel();
  WaitForPriorKernel();
  IXC_GRID_STRIDE(i, count) {
    float sum = 0.f;
    for (int s = 0; s < splits; ++s) sum += partials[s * count + i];
    out[i] = FromFloat<Out>(sum + (accumulate ? ToFloat(out[i]) : 0.f));
  }
}

// The k range per block: enough blocks for two per multiprocessor, whole slices, and all the partials in the
// workspace (else fewer splits).
int SplitK(int64_t m, int64_t n, int64_t k, int64_t workspace_bytes, int num_sms) {
  const int64_t feature_blocks = (n + kBlockFeatures - 1) / kBlockFeatures;
  const int64_t slices = (k + kSliceK - 1) / kSliceK;
  int64_t splits = (2 * static_cast<int64_t>(num_sms) + feature_blocks - 1) / feature_blocks;
  splits = std::clamp<int64_t>(splits, 1, slices);
  splits = std::min<int64_t>(splits, std::max<int64_t>(1, workspace_bytes / (m * n * 4)));
  return static_cast<int>((slices + splits - 1) / splits * kSliceK);
}

template <typename T, typename Out, int kRowTiles>
cudaError_t Launch(const LinearArgs& args, void* workspace, int64_t workspace_bytes, int num_sms, bool programmatic,
                   cudaStream_t stream) {
  auto kernel = FewRowsKernel<T, Out, kRowTiles>;
  constexpr int kSmem = SmemBytes<kRowTiles>();
  const int split_k = SplitK(args.m, args.n, args.k, workspace_bytes, num_sms);
  const int splits = static_cast<int>((args.k + split_k - 1) / split_k);
  const dim3 grid(static_cast<unsigned>((args.n + kBlockFeatures - 1) / kBlockFeatures), static_cast<unsigned>(splits));
  float* partials = static_cast<float*>(workspace);  // (splits, m, n) where splits > 1
  Out* out = static_cast<Out*>(args.out);
  const cudaError_t launched =
      LaunchAfterPriorWithSmem(programmatic, kernel, grid, kThreads, kSmem, stream, static_cast<const T*>(args.x),
                               static_cast<const T*>(args.w), out, partials, static_cast<int>(args.m),
                               static_cast<int>(args.n), static_cast<int>(args.k), split_k, args.accumulate);
  if (launched != cudaSuccess || splits == 1) return launched;
  const int64_t count = args.m * args.n;
  return LaunchAfterPrior(programmatic, AddPartialsKernel<Out>, GridStrideBlocks(count), kGridStrideThreads, stream,
                          partials, splits, count, out, args.accumulate);
}

// Every instantiation's shared-memory opt-in (above 48 KiB it is needed; a process drives one device).
template <typename T, typename Out, int... kRowTiles>
cudaError_t OptIn(std::integer_sequence<int, kRowTiles...>) {
  cudaError_t error = cudaSuccess;
  ((error = error != cudaSuccess
                ? error
                : cudaFuncSetAttribute(FewRowsKernel<T, Out, kRowTiles>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       SmemBytes<kRowTiles>())),
   ...);
  return error;
}

template <typename T, typename Out>
cudaError_t DispatchRows(const LinearArgs& args, void* workspace, int64_t workspace_bytes, int num_sms,
                         bool programmatic, cudaStream_t stream) {
  if (args.m <= 8) return Launch<T, Out, 1>(args, workspace, workspace_bytes, num_sms, programmatic, stream);
  if (args.m <= 16) return Launch<T, Out, 2>(args, workspace, workspace_bytes, num_sms, programmatic, stream);
  if (args.m <= 32) return Launch<T, Out, 4>(args, workspace, workspace_bytes, num_sms, programmatic, stream);
  return Launch<T, Out, 8>(args, workspace, workspace_bytes, num_sms, programmatic, stream);
}

}  // namespace

bool FewRowsMmaRequested() {
  static const bool requested = ExperimentalKernelRequested("IXC_GEMM_MMA");
  return requested;
}

bool FewRowsMmaSelected(int64_t m, int64_t k) {
  return FewRowsMmaRequested() && m >= 3 && m <= kMaxRows && k % 32 == 0;
}

absl::Status PrepareFewRowsKernels() {
  using Tiles = std::integer_sequence<int, 1, 2, 4, 8>;
  for (const cudaError_t error : {OptIn<__nv_bfloat16, __nv_bfloat16>(Tiles{}), OptIn<__nv_bfloat16, float>(Tiles{}),
                                  OptIn<__half, __half>(Tiles{}), OptIn<__half, float>(Tiles{})}) {
    IXC_CUDA_RETURN_IF_ERROR(error);
  }
  return absl::OkStatus();
}

absl::Status LaunchFewRowsLinear(const LinearArgs& args, void* workspace, int64_t workspace_bytes, int num_sms,
                                 bool programmatic, cudaStream_t stream) {
  if (args.m < 1 || args.m > kMaxRows || args.k % 32 != 0 || args.n <= 0 || args.n > INT32_MAX / 2 ||
      args.k > INT32_MAX / 2) {
    return absl::InvalidArgumentError(absl::StrCat("FewRowsLinear: m ", args.m, ", n ", args.n, ", k ", args.k,
                                                   " (built for 1-", kMaxRows, " rows and k a multiple of 32)"));
  }
  return DispatchLinearTypes(args.in, args.out_dtype, "FewRowsLinear", [&](auto in, auto out) {
    return DispatchRows<decltype(in), decltype(out)>(args, workspace, workspace_bytes, num_sms, programmatic, stream);
  });
}

}  // namespace ixc::kernels::cuda
