#!/usr/bin/env bash
# Nsight Compute's view of the decode-sized kernels, each against the one it may replace: split-KV decode attention
# over a 32K context (one row, 32 heads over 8 KV heads; the scalar kernel, then the tensor-core one of
# IXC_DECODE_MMA=1), and the wo GEMM at 32 rows (cuBLASLt's kernels are named by cuBLASLt, so only the few-rows kernel
# of IXC_GEMM_MMA=1 is picked out; its cuBLASLt figure is in kernels_cuda_bench gemm). On the GPU machine, with
# .gpu-bin carried (about a minute):
#   bash tests/gpu/profile_decode_kernels.sh
# Nsight Compute locks the clocks, so its durations run longer than the benchmark's.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/gpu/bundle_env.sh
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
sections=(--section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section SchedulerStats
  --section WarpStateStats)
# Each shape of the benchmarks runs 3 warm-up and 10 timed launches: decode attention's 8K row comes before the 32K
# one; the few-rows GEMM runs wqkv at 8, 32 and 64 rows, then wo at 8 rows, before wo at 32.
echo "== decode attention, 1 row x 32K keys, scalar kernel"
"$ncu" "${sections[@]}" -k regex:DecodeKernel --launch-skip 13 --launch-count 1 .gpu-bin/kernels_cuda_bench decode
echo "== decode attention, 1 row x 32K keys, IXC_DECODE_MMA=1"
IXC_DECODE_MMA=1 "$ncu" "${sections[@]}" -k regex:DecodeMmaKernel --launch-skip 13 --launch-count 1 \
  .gpu-bin/kernels_cuda_bench decode
echo "== wo (4096 x 4096) at 32 rows, IXC_GEMM_MMA=1"
IXC_GEMM_MMA=1 "$ncu" "${sections[@]}" -k regex:FewRowsKernel --launch-skip 52 --launch-count 1 \
  .gpu-bin/kernels_cuda_bench gemm
