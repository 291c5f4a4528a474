#!/usr/bin/env bash
# Nsight Compute's view of split-KV decode attention over a 32K context (one row, 32 heads over 8 KV heads): the
# tensor-core kernel, then the scalar one that IXC_FALLBACK_KERNELS=1 picks. On the GPU machine, with
# .gpu-bin carried (about a minute):
#   bash tests/gpu/profile_decode_kernels.sh
# Nsight Compute locks the clocks, so its durations run longer than the benchmark's.
set -euo pipefail
cd "$(dirname "$0")/../.."
source tests/gpu/bundle_env.sh
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
sections=(--section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section SchedulerStats
  --section WarpStateStats)
# Each shape of the benchmark runs 3 warm-up and 10 timed launches: the 8K row comes before the 32K one.
echo "== decode attention, 1 row x 32K keys, tensor cores"
"$ncu" "${sections[@]}" -k regex:DecodeMmaKernel --launch-skip 13 --launch-count 1 .gpu-bin/kernels_cuda_bench decode
echo "== decode attention, 1 row x 32K keys, scalar kernel (IXC_FALLBACK_KERNELS=1)"
IXC_FALLBACK_KERNELS=1 "$ncu" "${sections[@]}" -k regex:DecodeKernel --launch-skip 13 --launch-count 1 \
  .gpu-bin/kernels_cuda_bench decode
