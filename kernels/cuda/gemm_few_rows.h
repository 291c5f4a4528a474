// File: kernels/cuda/gemm_few_rows.h
//
// Gemm::Linear's tensor-core path for a few rows (3-64: batched decode, short chunks), where cuBLASLt reads the
// weights at 36-60% of HBM bandwidth (H200, the 7B layers at 8 and 64 rows). Experimental until it has run on a GPU:
// Gemm takes it only with IXC_GEMM_MMA=1 in the environment, and tests/gpu/run.sh runs the GEMM and model tests and
// the benchmarks both ways.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cuda/gemm.h"

namespace ixc::kernels::cuda {

// Whether IXC_GEMM_MMA=1 is set (read once per process).
bool FewRowsMmaRequested();
// Whether Linear hands m rows of k inputs to LaunchFewRowsLinear: requested, 3 <= m <= 64 and k a multiple of 32.
bool FewRowsMmaSelected(int64_t m, int64_t k);

// The kernels' shared-memory opt-in: once, before the first launch and outside any stream capture (Gemm::Create
// where the flag is set).
absl::Status PrepareFewRowsKernels();

// As Gemm::Linear (whose checks `args` has passed), after PrepareFewRowsKernels. The k range may be split over blocks, whose f32 partial sums
// then go to `workspace` (as many of its bytes as it has) and are added in a fixed order by a second kernel, so
// every run rounds alike. `num_sms`: the device's multiprocessors, to size the split.
absl::Status LaunchFewRowsLinear(const LinearArgs& args, void* workspace, int64_t workspace_bytes, int num_sms,
                                 bool programmatic, cudaStream_t stream);

}  // namespace ixc::kernels::cuda
